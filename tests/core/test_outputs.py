import errno
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from PIL import Image

from humanaes_core import outputs
from humanaes_core.outputs import UnsafeOutputError, check_output, open_output


def test_photo_and_sidecar_names_are_refused(tmp_path: Path) -> None:
    for name in ("IMG_1.jpg", "IMG_1.CR2", "IMG_1.heic", "IMG_1.jpg.xmp", "new.png"):
        with pytest.raises(UnsafeOutputError, match="photo's or sidecar's name"):
            check_output(tmp_path / name, "--export")


def test_photo_content_under_an_output_name_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "plan.csv"
    Image.new("RGB", (8, 8)).save(target, format="JPEG")
    before = target.read_bytes()
    with pytest.raises(UnsafeOutputError, match="is a photo"), open_output(target, "--out") as f:
        f.write("path\n")
    assert target.read_bytes() == before


def test_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "library.csv"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(UnsafeOutputError, match="SQLite database"):
        check_output(db, "--out")


def test_folders_and_binary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeOutputError, match="folder"):
        check_output(tmp_path, "--out")
    blob = tmp_path / "x.json"
    blob.write_bytes(b"\x00\x01\x02")
    with pytest.raises(UnsafeOutputError, match="binary"):
        check_output(blob, "--out")


def test_an_earlier_result_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("path,overall\na.jpg,0.5\n")
    with open_output(target, "--out") as f:
        f.write("path,overall\nb.jpg,0.7\n")
    assert target.read_text() == "path,overall\nb.jpg,0.7\n"


def test_dev_null_is_written_not_replaced() -> None:
    with open_output("/dev/null", "--out") as f:
        f.write("discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_is_written_directly(tmp_path: Path) -> None:
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with open_output(fifo, "--out") as f:
        f.write("{}\n")
    reader.join(5)
    assert got == [b"{}\n"] and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "atomic_write", full)
    with (
        pytest.raises(UnsafeOutputError, match="not written: the disk is full"),
        open_output(tmp_path / "a.csv", "--out") as f,
    ):
        f.write("x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    with pytest.raises(UnsafeOutputError, match="permission denied"), open_output(folder / "a.csv") as f:
        f.write("x")


def test_a_link_is_written_through_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "runs" / "today.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    with open_output(link, "--out") as f:
        f.write("new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_link_to_a_photo_is_refused(tmp_path: Path) -> None:
    photo = tmp_path / "IMG_1.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    link = tmp_path / "out.csv"
    link.symlink_to(photo)
    with pytest.raises(UnsafeOutputError, match="photo"):
        check_output(link, "--out")
