"""Copying and moving picks safely: re-runs, interrupted moves, locks, destinations, odd names and links."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from humanaes_core.cli.cull import main as cull_main
from humanaes_core.culling import (
    CullError,
    Decision,
    check_destination,
    copy_picks,
    folder_lock,
    write_sidecars,
)
from humanaes_core.culling.moves import JOURNAL_NAME, MoveJournal, recover_moves
from humanaes_core.formats.xmp import read_rating
from tests.conftest import synthetic_photo

KEEP = Decision(True, 4, "test")


def _shoot(folder: Path, names: list[str], sidecar: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for i, name in enumerate(names):
        photo = folder / name
        synthetic_photo(40 + i, (48, 32)).save(photo, quality=90)
        if sidecar:
            Path(f"{photo}.xmp").write_text(f"<x:xmpmeta><!-- {i} --></x:xmpmeta>", encoding="utf-8")
        photos.append(photo)
    return photos


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------- re-running --move-picks


def _cull(folder: Path, model: Path, db: Path, *extra: str) -> int:
    args = [str(folder), "--model", str(model), "--device", "cpu", "--max-tiles", "1", "--quiet"]
    return cull_main([*args, "--cache", str(db), *extra])


def test_rerunning_keep_top_with_move_picks_moves_nothing_new(tiny_model, tmp_path, capsys):
    """Issue 16 item 4: 4 photos moved 2, then 1, then 1: the plan shrank with the folder."""
    src = tmp_path / "shoot"
    _shoot(src, [f"IMG_{i}.jpg" for i in range(4)])
    picks = tmp_path / "picks"
    moved = []
    move = ("--move-picks", str(picks))
    for _ in range(3):
        assert _cull(src, tiny_model, tmp_path / "c.sqlite", "--keep-top", "50%", *move) == 0
        moved.append(len([p for p in picks.iterdir() if p.suffix == ".jpg"]))
        out = capsys.readouterr().out
        assert "4 photos culled: 2 kept, 2 rejected" in out
    assert moved == [2, 2, 2]
    assert "moved 0 photos" in out and "(2 already there)" in out
    assert sorted(p.name for p in src.iterdir()) == sorted(
        n for n in (f"IMG_{i}.jpg{x}" for i in range(4) for x in ("", ".xmp")) if not (picks / n).exists()
    )
    # a stricter plan later does not move the photos back, and the plan still counts them
    assert _cull(src, tiny_model, tmp_path / "c.sqlite", "--keep-top", "25%", *move) == 0
    assert "4 photos culled: 1 kept, 3 rejected" in capsys.readouterr().out
    assert len([p for p in picks.iterdir() if p.suffix == ".jpg"]) == 2


def test_a_second_run_waits_for_the_first(tmp_path):
    """Runs on one folder are serialised: the second waits (and says so) until the first is done."""
    folder = tmp_path / "picks"
    folder.mkdir()
    holder = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        fd = os.open({str(folder)!r}, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(1.5)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        told: list[Path] = []
        started = time.monotonic()
        with folder_lock([folder], on_wait=told.append):
            waited = time.monotonic() - started
        assert told == [folder] and waited > 0.5
        with (  # one lock per folder however it is spelled, and re-entrant
            folder_lock([folder, folder / ".." / "picks"], on_wait=told.append),
            folder_lock([folder], on_wait=told.append),
        ):
            pass
        assert told == [folder]
    finally:
        proc.wait(10)


# ------------------------------------------------------------------------- interrupted moves


def test_an_interrupted_move_whose_photo_arrived_is_completed(tmp_path):
    """Issue 16 item 6: killed after the photo's new name exists, before the sources were removed."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_1.jpg"])
    side = Path(f"{photo}.xmp")
    dest.mkdir()
    journal = MoveJournal(dest)
    journal.begin(photo, dest / photo.name, [(side, dest / side.name)])
    os.link(photo, dest / photo.name)  # the photo arrived; the sidecar did not; nothing removed yet
    (dest / ".humanaes-0123456789abcdef.partial").write_bytes(b"half a sidecar")
    lines = recover_moves(dest)
    assert len(lines) == 1 and "finished moving" in lines[0]
    assert _names(src) == [] and _names(dest) == [JOURNAL_NAME, "IMG_1.jpg", "IMG_1.jpg.xmp"]
    assert MoveJournal(dest).moved() == {src.resolve() / "IMG_1.jpg": dest / "IMG_1.jpg"}
    assert recover_moves(dest) == []


def test_an_interrupted_move_whose_photo_did_not_arrive_is_undone(tmp_path):
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_1.jpg"])
    side = Path(f"{photo}.xmp")
    dest.mkdir()
    MoveJournal(dest).begin(photo, dest / photo.name, [(side, dest / side.name)])
    os.link(side, dest / side.name)  # the sidecar went first; then the run was killed
    (dest / photo.name).write_bytes(b"")  # an empty placeholder of a publish without hard links
    lines = recover_moves(dest)
    assert len(lines) == 1 and "stays where it was" in lines[0]
    assert _names(src) == ["IMG_1.jpg", "IMG_1.jpg.xmp"] and _names(dest) == [JOURNAL_NAME]
    assert MoveJournal(dest).moved() == {}
    report = copy_picks({photo: KEEP}, dest, move=True)  # and the next run moves it properly
    assert len(report.copied) == 1 and _names(dest) == [JOURNAL_NAME, "IMG_1.jpg", "IMG_1.jpg.xmp"]


def test_a_duplicate_left_by_a_killed_move_is_resolved(tmp_path):
    """On one file system the photo was linked and the run killed before the original was removed (no
    journal: an older version): the re-run must not leave both in place."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_1.jpg"])
    dest.mkdir()
    os.link(photo, dest / photo.name)
    report = copy_picks({photo: KEEP}, dest, move=True)
    assert not report.failed and _names(src) == []
    assert _names(dest) == [JOURNAL_NAME, "IMG_1.jpg", "IMG_1.jpg.xmp"]


def test_a_torn_journal_line_is_ignored_and_the_journal_stays_readable(tmp_path):
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    photos = _shoot(src, ["IMG_1.jpg", "IMG_2.jpg"])
    copy_picks({photos[0]: KEEP}, dest, move=True)
    with (dest / JOURNAL_NAME).open("ab") as fh:
        fh.write(b'{"id": "abc", "src": "/x')  # killed while appending
    copy_picks({photos[1]: KEEP}, dest, move=True)
    assert len(MoveJournal(dest).moved()) == 2 and MoveJournal(dest).pending() == []


# ---------------------------------------------------------------------------------- destinations


@pytest.mark.parametrize("case", ["file", "dangling", "inside", "same"])
def test_a_bad_destination_is_refused_before_anything_is_written(case, tiny_model, tmp_path, capsys):
    """Issue 16 item 5: --write-xmp --copy-picks s/picks re-rated the copies on the second run; a file as
    the destination failed after the sidecars were written."""
    src = tmp_path / "s"
    _shoot(src, ["IMG_0.jpg", "IMG_1.jpg"], sidecar=False)
    dests = {"file": tmp_path / "f.txt", "dangling": tmp_path / "gone", "inside": src / "picks", "same": src}
    dest = dests[case]
    if case == "file":
        dest.write_text("notes", encoding="utf-8")
    if case == "dangling":
        dest.symlink_to(tmp_path / "nowhere")
    before = _names(src)
    act = ("--write-xmp", "--copy-picks", str(dest))
    assert _cull(src, tiny_model, tmp_path / "c.sqlite", "--keep-top", "50%", *act) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert _names(src) == before  # no sidecar, no picks folder


def test_a_subfolder_is_fine_when_it_is_not_scanned(tmp_path):
    src = tmp_path / "s"
    src.mkdir()
    check_destination(src / "picks", [src], recursive=False)
    check_destination(src / ".picks", [src])  # hidden folders are not scanned
    check_destination(tmp_path / "elsewhere" / "new", [src])
    with pytest.raises(CullError, match="inside"):
        check_destination(src / "a" / "picks", [src])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_destination_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(CullError, match="permission denied"):
        check_destination(locked / "picks", [])


# ------------------------------------------------------------------------------ links and names


def test_a_dangling_link_takes_the_name_and_the_photo_takes_the_next(tmp_path):
    """A dangling picks/IMG_1.jpg failed the photo instead of taking "-1"."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_1.jpg"])
    dest.mkdir()
    (dest / "IMG_1.jpg").symlink_to(tmp_path / "nowhere.jpg")
    report = copy_picks({photo: KEEP}, dest)
    assert not report.failed and [t.name for _, t in report.copied] == ["IMG_1-1.jpg"]
    assert (dest / "IMG_1-1.jpg.xmp").is_file()


def test_a_dangling_sidecar_link_does_not_strand_the_sidecar(tmp_path):
    """A dangling picks/IMG_2.jpg.xmp made --move-picks leave the sidecar behind, reported as moved."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_2.jpg"])
    dest.mkdir()
    (dest / "IMG_2.jpg.xmp").symlink_to(tmp_path / "nowhere.xmp")
    report = copy_picks({photo: KEEP}, dest, move=True)
    assert not report.failed and _names(src) == []
    assert (dest / "IMG_2-1.jpg").is_file() and (dest / "IMG_2-1.jpg.xmp").is_file()


def test_a_link_to_the_photo_itself_is_not_a_copy(tmp_path):
    """picks/IMG_3.jpg -> shoot/IMG_3.jpg was reported "already there" while the photo stayed."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_3.jpg"])
    dest.mkdir()
    (dest / "IMG_3.jpg").symlink_to(photo)
    report = copy_picks({photo: KEEP}, dest, move=True)
    assert not report.already_there and [t.name for _, t in report.copied] == ["IMG_3-1.jpg"]
    assert not photo.exists() and (dest / "IMG_3-1.jpg").is_file() and (dest / "IMG_3-1.jpg.xmp").is_file()


@pytest.mark.parametrize("move", [False, True])
def test_photos_with_250_byte_names_are_copied_with_their_sidecars(move, tmp_path):
    """Temporary names were ".<name>.<random>.partial": over 255 bytes for names of 238 and more."""
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    name = "x" * 246 + ".jpg"
    (photo,) = _shoot(src, [name], sidecar=False)
    assert write_sidecars({photo: KEEP}).written == [src / f"{name}.xmp"]
    report = copy_picks({photo: KEEP}, dest, move=move)
    assert not report.failed and read_rating(dest / name).stars == 4


def test_copying_again_adds_a_sidecar_an_interrupted_copy_did_not_get(tmp_path):
    src, dest = tmp_path / "shoot", tmp_path / "picks"
    (photo,) = _shoot(src, ["IMG_4.jpg"])
    copy_picks({photo: KEEP}, dest)
    (dest / "IMG_4.jpg.xmp").unlink()
    report = copy_picks({photo: KEEP}, dest)
    assert len(report.already_there) == 1 and (dest / "IMG_4.jpg.xmp").is_file()


def test_a_destination_on_a_read_only_file_system_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(CullError, match="read-only"):
            check_destination(ro / "picks", [])
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
