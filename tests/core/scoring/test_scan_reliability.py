"""Scanning a folder through the cache when the folder or the library is hostile (issue 16): a file dated
after 2262 (item 8), a photo swapped in with its size and mtime restored (item 14), the disk filling up
while photos are scored (item 10), a photo or a URL given as the library (item 3)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event

from humanaes_core.cli.score import main as score_main
from humanaes_core.scoring import CachedScoring
from humanaes_core.store import ScoreCache
from humanaes_core.store import sqlite as sqlite_mod
from humanaes_core.store.errors import CacheUnavailableError
from tests import procs
from tests.core.store.test_full_disk import fill, small_disk

YEAR_3000_NS = 32_503_680_000 * 10**9
OLD_NS = 1_600_000_000 * 10**9


def _runner(model: Path, cache: ScoreCache | None) -> CachedScoring:
    return CachedScoring(model, cache=cache, device="cpu", max_tiles=1, batch_size=2)


def _bmp(path: Path, seed: int) -> Path:
    """An uncompressed photo: every one of the same size has the same number of bytes."""
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((256, 192), Image.Resampling.BICUBIC).save(path)
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def _score(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = score_main(argv)
    return rc, capsys.readouterr().err


def _rows(out: Path) -> list[str]:
    return out.read_text(encoding="utf-8").splitlines()


# --------------------------------------------------------------------------------------- item 8


def test_a_photo_dated_after_2262_is_scored_with_the_rest_of_its_folder(tiny_model, tmp_path):
    folder = procs.photo_folder(tmp_path / "shoot", 3, seed=1)
    future = sorted(folder.iterdir())[1]
    os.utime(future, ns=(YEAR_3000_NS, YEAR_3000_NS))
    if future.stat().st_mtime_ns < 2**63:
        pytest.skip("this file system cannot date a file after 2262")
    files = sorted(folder.iterdir())
    with ScoreCache(tmp_path / "library.sqlite") as cache:
        first = list(_runner(tiny_model, cache).run(files))
        assert all(r.card is not None for r in first) and len(first) == 3
        again = _runner(tiny_model, cache)
        assert all(r.card is not None for r in again.run(files)) and again.stats.cached == 3


def test_humanaes_score_scores_a_folder_with_a_photo_from_year_3000(tiny_model, tmp_path, capsys):
    folder = procs.photo_folder(tmp_path / "shoot", 2, seed=2)
    future = sorted(folder.iterdir())[0]
    os.utime(future, ns=(YEAR_3000_NS, YEAR_3000_NS))
    if future.stat().st_mtime_ns < 2**63:
        pytest.skip("this file system cannot date a file after 2262")
    out = tmp_path / "scores.jsonl"
    argv = [str(folder), "--model", str(tiny_model), "--device", "cpu", "--max-tiles", "1", "--quiet"]
    rc, err = _score([*argv, "--cache", str(tmp_path / "lib.sqlite"), "--out", str(out)], capsys)
    assert rc == 0, err
    rows = [json.loads(line) for line in _rows(out)]
    assert len(rows) == 2 and all(row["error"] is None and row["overall"] is not None for row in rows)


# -------------------------------------------------------------------------------------- item 14


def test_a_same_size_photo_swapped_in_with_its_mtime_restored_is_scored_again(tiny_model, tmp_path):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    photo = _bmp(shoot / "IMG_1.bmp", seed=1)
    incoming = _bmp(tmp_path / "IMG_1.bmp", seed=2)  # rsync -t / cp -p of another frame, same size
    assert photo.stat().st_size == incoming.stat().st_size and photo.read_bytes() != incoming.read_bytes()
    with ScoreCache(tmp_path / "library.sqlite") as cache:
        (before,) = _runner(tiny_model, cache).run([photo])
        shutil.copy2(incoming, photo)  # bytes replaced in place, mtime restored
        os.utime(photo, ns=(OLD_NS, OLD_NS))
        assert (photo.stat().st_size, photo.stat().st_mtime_ns) == (incoming.stat().st_size, OLD_NS)
        runner = _runner(tiny_model, cache)
        (after,) = runner.run([photo])
        assert runner.stats.scored == 1 and runner.stats.cached == 0
    (fresh,) = _runner(tiny_model, None).run([incoming])
    assert after.card.dims == fresh.card.dims != before.card.dims


# -------------------------------------------------------------------------------------- item 10


def _cap_every_engine(monkeypatch: pytest.MonkeyPatch, extra_pages: int) -> None:
    """Every library engine this test opens lets its file grow by ``extra_pages`` pages, then is full."""
    real = sqlite_mod._make_engine

    def capped(path: Path):
        engine = real(path)

        def on_connect(conn, _record) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages + extra_pages}")

        event.listen(engine, "connect", on_connect)
        return engine

    monkeypatch.setattr(sqlite_mod, "_make_engine", capped)


def test_the_disk_filling_while_scoring_ends_the_run_and_keeps_every_card_stored(
    tiny_model, tmp_path, monkeypatch
):
    files = sorted(procs.photo_folder(tmp_path / "shoot", 8, seed=3).iterdir())
    db = tmp_path / "library.sqlite"
    ScoreCache(db).close()
    _cap_every_engine(monkeypatch, extra_pages=2)
    results = []
    with ScoreCache(db) as cache:
        with pytest.raises(CacheUnavailableError, match="disk is full") as e:
            for result in _runner(tiny_model, cache).run(files):
                results.append(result)
        assert "\n" not in str(e.value)
        stored = cache.count()
    assert 0 < len(results) < len(files) and all(r.card is not None for r in results)
    assert stored == len(results) - 1  # the last card was scored (and yielded) but could not be kept
    monkeypatch.undo()
    with ScoreCache(db) as cache:  # room again: the next run starts from every card kept
        runner = _runner(tiny_model, cache)
        assert len(list(runner.run(files))) == len(files) and runner.stats.cached == stored


def test_humanaes_score_on_a_full_disk_writes_out_what_was_scored(tiny_model, tmp_path, capsys):
    folder = procs.photo_folder(tmp_path / "shoot", 12, seed=4)
    out = tmp_path / "scores.jsonl"
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "library.sqlite"
        ScoreCache(db).close()
        filler = fill(disk, leave=96 << 10)
        argv = [str(folder), "--model", str(tiny_model), "--device", "cpu", "--max-tiles", "1", "--quiet"]
        # the cards alone fill the disk (the photo checks' own writes would take the last bytes first)
        argv.append("--no-checks")
        rc, err = _score([*argv, "--batch-size", "1", "--cache", str(db), "--out", str(out)], capsys)
        filler.unlink()
        stored = len(procs.cards(db))
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "disk is full" in lines[0]
    assert "Traceback" not in err
    rows = _rows(out)
    assert f"results of the {len(rows)} photos done before are in {out}" in lines[0]
    assert 0 < stored < len(rows) + 1 and len(rows) < 12


# --------------------------------------------------------------------------------------- item 3


def test_humanaes_score_refuses_a_photo_as_its_cache(tiny_model, tmp_path, capsys):
    folder = procs.photo_folder(tmp_path / "s", 3, seed=5)
    photo = sorted(folder.iterdir())[2]
    data, ino = photo.read_bytes(), photo.stat().st_ino
    out = tmp_path / "scores.jsonl"
    argv = [str(folder), "--model", str(tiny_model), "--device", "cpu", "--quiet", "--out", str(out)]
    rc, err = _score([*argv, "--cache", str(photo)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "not a SQLite database" in err
    assert photo.read_bytes() == data and photo.stat().st_ino == ino
    assert sorted(p.name for p in folder.iterdir()) == ["IMG_05_000.jpg", "IMG_05_001.jpg", "IMG_05_002.jpg"]
    assert not out.exists()


def test_humanaes_score_refuses_a_url_that_names_no_library(tiny_model, tmp_path, capsys, monkeypatch):
    folder = procs.photo_folder(tmp_path / "s", 1, seed=6)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [str(folder), "--model", str(tiny_model), "--device", "cpu", "--quiet", "--out", "o.jsonl"]
    rc, err = _score([*argv, "--cache", "mysql+pymysql://u:p@db.example/humanaes"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "not a library HumanAes can use" in err
    assert list(work.iterdir()) == []
    rc, err = _score([*argv, "--cache", f"sqlite:///{tmp_path / 'lib.sqlite'}"], capsys)
    assert rc == 0, err
    conn = sqlite3.connect(tmp_path / "lib.sqlite")
    assert conn.execute("SELECT count(*) FROM scores").fetchone() == (1,)
    conn.close()
