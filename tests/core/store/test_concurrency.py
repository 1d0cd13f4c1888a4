"""Two CLIs and the app on one cache at once: no "database is locked", no duplicate rows, nothing lost.

Each round starts its writers together on a fresh cache: two ``humanaes-score`` runs over overlapping
folders (they race to write the same cards) and an app-like writer (the app's scoring worker plus key
presses, undo and redo in the decision store, and grid reads). A hammer round adds four processes doing
nothing but small writes. One slow round uses the real console script twice and the real desktop app.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text as sa_text

from humanaes_core.store.decisions import DecisionStore
from tests import procs

pytestmark = pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver and SIGKILL (POSIX)")

PER_FOLDER = 20
LOCK_WORDS = ("database is locked", "database is busy", "locked by another", "Traceback")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("concurrent")
    return {name: procs.photo_folder(root / name, PER_FOLDER, seed=10 + i) for i, name in enumerate("abs")}


def _clean_log(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    assert not [w for w in LOCK_WORDS if w in text], text
    return text


def _check_database(db: Path, expected_cards: int) -> None:
    assert procs.integrity(db) == "ok"
    assert procs.duplicate_rows(db) == []
    assert len(procs.cards(db)) == expected_cards


def _score_argv(paths: list[Path], model: Path, db: Path, out: Path) -> list[str]:
    argv = [*map(str, paths), "--model", str(model), "--out", str(out), "--device", "cpu"]
    return [*argv, "--max-tiles", "1", "--batch-size", "4", "--cache", str(db), "--quiet"]


def test_two_clis_and_an_app_writer_share_one_cache(tiny_model, folders, tmp_path):
    rounds, failures = 4, 0
    for r in range(rounds):
        work = tmp_path / f"round{r}"
        work.mkdir()
        db = work / "cache.sqlite"
        env = procs.child_env(db, tmp_path / "models")
        a, b, s = folders["a"], folders["b"], folders["s"]
        argv_a = _score_argv([a, s], tiny_model, db, work / "a.jsonl")
        argv_b = _score_argv([s, b], tiny_model, db, work / "b.jsonl")
        children = [
            procs.start(procs.score_child, argv_a, env, str(work / "cli-a.log")),
            procs.start(procs.score_child, argv_b, env, str(work / "cli-b.log")),
            procs.start(
                procs.app_like_child, str(tiny_model), str(s), str(db), r, 120, env, str(work / "app.log")
            ),
        ]
        for child in children:
            child.join(180)
        failures += sum(child.exitcode != 0 for child in children)
        for log in ("cli-a.log", "cli-b.log", "app.log"):
            _clean_log(work / log)
        assert [c.exitcode for c in children] == [0, 0, 0]
        for out in ("a.jsonl", "b.jsonl"):
            rows = [json.loads(line) for line in (work / out).read_text().splitlines()]
            assert len(rows) == 2 * PER_FOLDER and all(row["error"] is None for row in rows)
        _check_database(db, 3 * PER_FOLDER)
        summary = json.loads((work / "app.log").read_text().strip().splitlines()[-1])
        assert summary["scored"] == PER_FOLDER
    print(f"\n{rounds} rounds x 3 concurrent writers ({3 * rounds} processes): {failures} failures")
    assert failures == 0


def test_hammering_writers_never_see_a_locked_database(library, tmp_path):
    """Four processes doing nothing but small writes, on a SQLite file and on a PostgreSQL library."""
    env = procs.child_env(Path(str(library)), tmp_path / "models")
    env["HUMANAES_LIBRARY"] = str(library)
    DecisionStore(library).close()  # created once, before the writers race
    writers = [
        procs.start(procs.hammer_child, str(library), seed, 3.0, env, str(tmp_path / f"w{seed}.log"))
        for seed in range(4)
    ]
    for w in writers:
        w.join(120)
    ops = 0
    for seed, w in enumerate(writers):
        text = _clean_log(tmp_path / f"w{seed}.log")
        assert w.exitcode == 0, text
        ops += json.loads(text.strip().splitlines()[-1])["ops"]
    if isinstance(library, Path):
        assert procs.integrity(library) == "ok" and procs.duplicate_rows(library) == []
    # every undo step is one writer's one change: steps never mix two writers' transactions
    mixed = (
        "SELECT {0}, COUNT(DISTINCT {1}) FROM decision_history GROUP BY {0} HAVING COUNT(DISTINCT {1}) > 1"
    )
    with DecisionStore(library) as store, store.engine.connect() as conn:
        per_step = conn.execute(sa_text(mixed.format("step", "description"))).all()
        per_description = conn.execute(sa_text(mixed.format("description", "step"))).all()
    assert per_step == [] and per_description == []
    print(f"\n4 hammering writers, {ops} transactions in 3 s: 0 failures")
    # a server round trip (and the pool's ping) per transaction: fewer on two busy cores than SQLite's
    assert ops > (200 if isinstance(library, Path) else 100)


@pytest.mark.slow
def test_real_console_scripts_and_the_real_app_at_once(tiny_model, folders, tmp_path):
    pytest.importorskip("PySide6")
    db = tmp_path / "cache.sqlite"
    (tmp_path / "config").mkdir()
    settings = {"scoring": {"model": str(tiny_model), "device": "cpu", "max_tiles": 1, "batch_size": 4}}
    (tmp_path / "config" / "desktop.json").write_text(json.dumps(settings))
    env = {
        **procs.child_env(db, tmp_path / "models"),
        "HUMANAES_CONFIG_DIR": str(tmp_path / "config"),
        "HUMANAES_THUMBNAILS": str(tmp_path / "thumbnails"),
    }
    a, b, s = folders["a"], folders["b"], folders["s"]
    app_cmd = [sys.executable, "-m", "humanaes_desktop", str(s), "--model", str(tiny_model)]
    app = procs.popen(app_cmd, env, tmp_path / "app.log")
    cli = procs.score_command()
    clis = [
        procs.popen(
            [*cli, *_score_argv([a, s], tiny_model, db, tmp_path / "a.jsonl")], env, tmp_path / "a.log"
        ),
        procs.popen(
            [*cli, *_score_argv([b, s], tiny_model, db, tmp_path / "b.jsonl")], env, tmp_path / "b.log"
        ),
    ]
    try:
        codes = [cli.wait(300) for cli in clis]
        deadline = time.monotonic() + 120
        while len(procs.cards(db)) < 3 * PER_FOLDER and time.monotonic() < deadline and procs.alive(app):
            time.sleep(0.1)
    finally:
        procs.kill9(app)
    for log in ("a.log", "b.log", "app.log"):
        _clean_log(tmp_path / log)
    assert codes == [0, 0]
    _check_database(db, 3 * PER_FOLDER)
    print("\n1 round: 2 humanaes-score console scripts + the desktop app on one cache: 0 failures")
