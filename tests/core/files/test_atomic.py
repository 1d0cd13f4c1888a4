import os
import stat
from pathlib import Path

import pytest

from humanaes_core.files import NotRegularFileError, atomic_write


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_replaces_whole_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_new_file_gets_umask_mode_not_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ratings.csv"
    target.write_text("keep me")
    with pytest.raises(UnicodeEncodeError), atomic_write(target) as f:
        f.write("caf\udce9.jpg")  # strict UTF-8 refuses a lone surrogate
    assert target.read_text() == "keep me"
    assert _leftovers(tmp_path) == []


def test_non_utf8_file_name_and_content(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.csv")
    target = tmp_path / name
    with atomic_write(target, errors="surrogateescape") as f:
        f.write(name)
    assert os.fsencode(target.name) == b"caf\xe9.csv"
    assert target.read_bytes() == b"caf\xe9.csv"
    with atomic_write(os.fsencode(tmp_path) + b"/raw\xff.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / os.fsdecode(b"raw\xff.bin")).read_bytes() == b"\x00\x01"


def test_very_long_name_fits_the_temp_name(tmp_path: Path) -> None:
    target = tmp_path / ("x" * 250 + ".xmp")
    with atomic_write(target) as f:
        f.write("ok")
    assert target.read_text() == "ok"


def test_refuses_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError), atomic_write(fifo) as f:
        f.write("x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(NotRegularFileError), atomic_write(tmp_path) as f:
        f.write("x")
    assert _leftovers(tmp_path) == []
