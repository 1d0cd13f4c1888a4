"""Crash safety and damaged databases.

kill -9 at random moments: ``humanaes-score`` (forked from a preloaded forkserver, and as the installed
console script) and the desktop app. After every kill, each card that any reader had seen committed is
still there, ``PRAGMA integrity_check`` passes, and the next run resumes: the cards already there are
served from the cache (not rescored) and there is exactly one card per photo.

A damaged database (garbage after SQLite's header, truncated, damaged pages, damage found while in use)
is moved aside with a warning, whatever is still readable is carried over, and work goes on with a fresh file.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from humanaes_core.store.decisions import DecisionStore, Flag, PhotoDecision
from humanaes_core.store.scores import ScoreCache
from humanaes_core.store.sqlite import SQLITE_HEADER, database_damage
from tests import procs

N_PHOTOS = 36


@dataclass
class Trial:
    kind: str
    trigger: str
    seen: int  # cards a reader saw committed before the kill
    after: int  # cards in the file after the kill
    lost: int
    killed: bool


def _wait_and_kill(
    proc, db: Path, trigger: tuple[str, float], started: float, timeout: float = 120.0
) -> tuple[dict, bool]:
    """Poll the committed cards until the trigger fires, then SIGKILL. Returns (seen, killed)."""
    kind, value = trigger
    seen: dict[str, float] = {}
    deadline = started + timeout
    while time.monotonic() < deadline:
        seen = procs.cards(db)
        if not procs.alive(proc):
            return seen, False  # it finished first: not a kill
        if (kind == "cards" and len(seen) >= value) or (
            kind == "time" and time.monotonic() - started >= value
        ):
            seen = procs.cards(db)  # the last committed state the kill can take away
            procs.kill9(proc)
            return seen, True
        time.sleep(0.004)
    procs.kill9(proc)
    raise AssertionError(f"no progress within {timeout} s")


def _check_after_kill(db: Path, seen: dict[str, float]) -> tuple[dict[str, float], int]:
    assert procs.integrity(db) == "ok"
    after = procs.cards(db)
    lost = [h for h in seen if h not in after]
    changed = [h for h in seen if h in after and after[h] != seen[h]]
    assert not changed
    return after, len(lost)


def _resume(db: Path, folder: Path, model: Path, env: dict, tmp: Path, after: dict[str, float]) -> None:
    """The next run: every photo ends with exactly one card, the ones already there untouched."""
    out = tmp / f"resume-{time.monotonic_ns()}.jsonl"
    log = tmp / "resume.log"
    argv = [str(folder), "--model", str(model), "--out", str(out), "--device", "cpu", "--max-tiles", "1"]
    argv += ["--batch-size", "4", "--cache", str(db), "--quiet"]
    proc = procs.start(procs.score_child, argv, env, str(log))
    proc.join(120)
    assert proc.exitcode == 0, log.read_text(errors="replace")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N_PHOTOS and all(r["error"] is None for r in rows)
    final = procs.cards(db)
    assert len(final) == N_PHOTOS
    assert {h: final[h] for h in after} == after  # resumed from the cache, not scored again
    assert procs.duplicate_rows(db) == []
    assert procs.integrity(db) == "ok"


def _triggers(rng: random.Random, count: int) -> list[tuple[str, float]]:
    """Random kill moments: after a random number of committed cards, or at a random time (which may
    fall in start-up, hashing, model loading or scoring)."""
    out = []
    for i in range(count):
        if i % 3 == 2:
            out.append(("time", rng.uniform(0.05, 1.5)))
        else:
            out.append(("cards", rng.randint(1, N_PHOTOS - 1)))
    return out


def _report(trials: list[Trial]) -> str:
    kills = [t for t in trials if t.killed]
    lines = [f"{'process':<16} {'killed':<16} {'seen':>5} {'after':>5} {'lost':>4}"]
    for t in kills:
        lines.append(f"{t.kind:<16} {t.trigger:<16} {t.seen:>5} {t.after:>5} {t.lost:>4}")
    seen = sum(t.seen for t in kills)
    lines.append(
        f"{len(kills)} kill trials ({len(trials) - len(kills)} runs finished before their kill moment), "
        f"{seen} cards seen committed before the kills, {sum(t.lost for t in kills)} lost"
    )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def shoot(tmp_path_factory) -> Path:
    return procs.photo_folder(tmp_path_factory.mktemp("shoot"), N_PHOTOS, seed=1)


@pytest.mark.slow
@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver and SIGKILL (POSIX)")
def test_kill9_humanaes_score_at_random_moments(tiny_model, shoot, tmp_path):
    rng = random.Random(20240613)
    trials: list[Trial] = []
    real_cli = 3  # of the trials, these start the installed console script in a fresh interpreter
    for i, trigger in enumerate(_triggers(rng, 40)):
        if sum(t.killed for t in trials) >= 20 + real_cli:
            break
        fresh = sum(t.killed and t.kind == "console script" for t in trials) < real_cli and i % 4 == 0
        db = tmp_path / f"trial{i}" / "cache.sqlite"
        db.parent.mkdir()
        env = procs.child_env(db, tmp_path / "models")
        log = db.parent / "run.log"
        argv = [str(shoot), "--model", str(tiny_model), "--out", str(db.parent / "out.jsonl")]
        argv += ["--device", "cpu", "--max-tiles", "1", "--batch-size", "4", "--cache", str(db), "--quiet"]
        if fresh:
            proc = procs.popen([*procs.score_command(), *argv], env, log)
            # a fresh interpreter needs seconds to start: kill it after a random number of cards
            trigger = ("cards", rng.randint(1, N_PHOTOS - 1))
        else:
            proc = procs.start(procs.score_child, argv, env, str(log))
        seen, killed = _wait_and_kill(proc, db, trigger, time.monotonic())
        after, lost = _check_after_kill(db, seen)
        kind = "console script" if fresh else "forked"
        moment = f"after {trigger[1]:.0f} cards" if trigger[0] == "cards" else f"at {trigger[1]:.2f} s"
        trials.append(Trial(kind, moment, len(seen), len(after), lost, killed))
        _resume(db, shoot, tiny_model, env, db.parent, after)
    print("\n" + _report(trials))
    kills = [t for t in trials if t.killed]
    assert len(kills) >= 20 and sum(t.kind == "console script" for t in kills) >= 1
    assert sum(t.lost for t in kills) == 0
    assert any(0 < t.seen < N_PHOTOS for t in kills)  # some kills did land in the middle of scoring


@pytest.mark.slow
@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver and SIGKILL (POSIX)")
def test_kill9_the_desktop_app_while_it_scores(tiny_model, shoot, tmp_path):
    pytest.importorskip("PySide6")
    rng = random.Random(7)
    trials: list[Trial] = []
    for i in range(2):
        work = tmp_path / f"app{i}"
        (work / "config").mkdir(parents=True)
        db = work / "cache.sqlite"
        settings = {"scoring": {"model": str(tiny_model), "device": "cpu", "max_tiles": 1, "batch_size": 4}}
        (work / "config" / "desktop.json").write_text(json.dumps(settings))
        env = {
            **procs.child_env(db, tmp_path / "models"),
            "HUMANAES_CONFIG_DIR": str(work / "config"),
            "HUMANAES_THUMBNAILS": str(work / "thumbnails"),
        }
        cmd = [sys.executable, "-m", "humanaes_desktop", str(shoot), "--model", str(tiny_model)]
        proc = procs.popen(cmd, env, work / "app.log")
        trigger = ("cards", rng.randint(1, N_PHOTOS - 1))
        seen, killed = _wait_and_kill(proc, db, trigger, time.monotonic(), timeout=180)
        assert killed, (work / "app.log").read_text(errors="replace")
        after, lost = _check_after_kill(db, seen)
        trials.append(
            Trial("desktop app", f"after {trigger[1]:.0f} cards", len(seen), len(after), lost, killed)
        )
        _resume(db, shoot, tiny_model, procs.child_env(db, tmp_path / "models"), work, after)
    print("\n" + _report(trials))
    assert sum(t.lost for t in trials) == 0


# ------------------------------------------------------------------------------------- damaged files


def _damaged_files(db: Path) -> list[Path]:
    return sorted(
        p for p in db.parent.iterdir() if ".damaged-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def _filled(db: Path, n_cards: int = 400) -> Path:
    with ScoreCache(db) as cache, DecisionStore(db) as store:
        cache.put_many([(f"{i:040x}", {"i": i, "pad": "x" * 300}) for i in range(n_cards)], "m", "s")
        store.set_stars([(f"{i:040x}", f"/p/{i}.jpg") for i in range(5)], 4)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def test_a_garbage_file_is_moved_aside_and_a_fresh_cache_starts(tmp_path, caplog):
    db = tmp_path / "cache.sqlite"
    db.write_bytes(SQLITE_HEADER + os.urandom(64 << 10))  # without the header it is refused, untouched
    with caplog.at_level(logging.WARNING, logger="humanaes_core.store.sqlite"), ScoreCache(db) as cache:
        assert cache.recovered_from is not None and cache.recovered_from.exists()
        cache.put("a" * 40, "m", "s", {"ok": True})
        assert cache.get("a" * 40, "m", "s") == {"ok": True}
    assert _damaged_files(db) == [cache.recovered_from]
    assert "damaged" in caplog.text and str(cache.recovered_from) in caplog.text
    assert procs.integrity(db) == "ok"
    with ScoreCache(db) as again:  # the new file is healthy: nothing more is moved
        assert again.recovered_from is None and again.count() == 1


def test_a_truncated_file_is_moved_aside(tmp_path):
    db = _filled(tmp_path / "cache.sqlite")
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.truncate(size // 3)
    assert database_damage(db) is not None
    with DecisionStore(db) as store, ScoreCache(db) as cache:
        assert store.recovered_from is not None and cache.recovered_from is None  # moved once
        store.set_flag([("b" * 40, "/p/b.jpg")], Flag.PICK)
        assert store.get("b" * 40).picked
        cache.put("b" * 40, "m", "s", {"v": 1})
    assert len(_damaged_files(db)) == 1 and procs.integrity(db) == "ok"


def test_damaged_pages_are_replaced_and_readable_decisions_kept(tmp_path):
    db = _filled(tmp_path / "cache.sqlite", n_cards=2000)
    size = db.stat().st_size
    with open(db, "r+b") as fh:  # garbage over the last quarter: score pages, the decisions are early
        fh.seek(size * 3 // 4)
        fh.write(os.urandom(size // 4 - 4096))
    assert database_damage(db) is not None
    with DecisionStore(db) as store:
        assert store.recovered_from is not None
        assert store.count() == 5 and store.get(f"{0:040x}") == PhotoDecision(4)  # salvaged
    with ScoreCache(db) as cache:
        assert 0 < cache.count() < 2000  # the readable part of the cards came along too
    assert procs.integrity(db) == "ok"


def test_damage_found_while_in_use_is_repaired_on_the_fly(tmp_path, caplog):
    db = _filled(tmp_path / "cache.sqlite", n_cards=50)
    with ScoreCache(db) as cache:
        assert cache.count() == 50
        cache.engine.dispose()  # so the next read goes to the disk, not to a pooled page cache
        db.write_bytes(SQLITE_HEADER + b"\0" * 84 + os.urandom(8192))
        with caplog.at_level(logging.WARNING, logger="humanaes_core.store.sqlite"):
            assert cache.get("c" * 40, "m", "s") is None  # no exception: a fresh file
        assert cache.recovered_from is not None and "damaged" in caplog.text
        cache.put("c" * 40, "m", "s", {"after": "repair"})
        assert cache.get("c" * 40, "m", "s") == {"after": "repair"}
    assert procs.integrity(db) == "ok"


def test_many_openers_of_one_damaged_file_move_it_aside_once(tmp_path):
    db = tmp_path / "cache.sqlite"
    db.write_bytes(SQLITE_HEADER + b"not a database at all " * 2000)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def opener(i: int) -> None:
        try:
            barrier.wait()
            store_type = DecisionStore if i % 2 else ScoreCache
            with store_type(db) as store:
                if isinstance(store, ScoreCache):
                    store.put(f"{i:040x}", "m", "s", {"i": i})
                else:
                    store.set_stars([(f"{i:040x}", f"/p/{i}.jpg")], 3)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(_damaged_files(db)) == 1
    with ScoreCache(db) as cache, DecisionStore(db) as store:
        assert cache.count() == 3 and store.count() == 3


def test_a_folder_in_place_of_the_cache_is_a_clear_error(tmp_path):
    from humanaes_core.store.errors import CacheUnavailableError

    (tmp_path / "cache.sqlite").mkdir()
    with pytest.raises(CacheUnavailableError, match="is a folder"):
        ScoreCache(tmp_path / "cache.sqlite")


def test_the_app_keeps_working_on_a_damaged_cache(qtbot, tiny_model, tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    from humanaes_desktop.mainwindow import MainWindow
    from humanaes_desktop.settings import AppSettings

    db = tmp_path / "cache.sqlite"
    db.write_bytes(SQLITE_HEADER + os.urandom(32 << 10))
    monkeypatch.setenv("HUMANAES_LIBRARY", str(db))
    monkeypatch.setenv("HUMANAES_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HUMANAES_THUMBNAILS", str(tmp_path / "thumbnails"))
    folder = procs.photo_folder(tmp_path / "shoot", 4, seed=3)
    settings = AppSettings.load()
    settings.scoring.model = str(tiny_model)
    settings.scoring.device = "cpu"
    settings.scoring.max_tiles = 1
    settings.scoring.batch_size = 4
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    window.open_paths([folder])
    qtbot.waitUntil(
        lambda: (
            not window.controller.running
            and len(window.model.photos) == 4
            and all(p.card is not None for p in window.model.photos)
        ),
        timeout=60000,
    )
    assert len(_damaged_files(db)) == 1
    assert procs.integrity(db) == "ok" and len(procs.cards(db)) == 4
    window.close()
