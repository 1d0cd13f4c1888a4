"""A shared library: processes writing cards and decisions at once lose and duplicate nothing, undo works
across processes, every handle sees the others' decisions through the change feed, two editors of one
photo are both told, and a dropped server connection is retried. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from humanaes_core.store.decisions import DecisionStore, Flag, PhotoDecision, _ChangeRow, _HistoryRow
from humanaes_core.store.scores import ScoreCache
from tests import procs

WRITERS, STEPS = 3, 40


@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver (POSIX)")
def test_processes_writing_at_once_lose_and_duplicate_nothing(library: Path | str, tmp_path: Path) -> None:
    DecisionStore(library).close()  # created once, so the writers start on the same schema
    env = procs.child_env(Path(str(library)), tmp_path / "models")
    env["HUMANAES_LIBRARY"] = str(library)
    children = [
        procs.start(procs.shared_writer_child, str(library), seed, STEPS, env, str(tmp_path / f"w{seed}.log"))
        for seed in range(WRITERS)
    ]
    for child in children:
        child.join(180)
    logs = [(tmp_path / f"w{seed}.log").read_text() for seed in range(WRITERS)]
    assert [c.exitcode for c in children] == [0] * WRITERS, logs
    assert all(json.loads(log.strip().splitlines()[-1])["writer"] == i for i, log in enumerate(logs))

    with ScoreCache(library) as cache, DecisionStore(library) as store:
        assert cache.count() == STEPS + WRITERS * STEPS  # the shared cards once, each writer's own once
        decided = store.all()
        assert len(decided) == WRITERS * STEPS + 1
        for seed in range(WRITERS):
            for i in range(STEPS):
                assert decided[f"{seed + 1:08x}{i:032x}"] == (f"/w{seed}/{i}.jpg", PhotoDecision(i % 6))
        with cache.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scores")).scalar_one() == cache.count()
            steps = conn.execute(select(_HistoryRow.step, _HistoryRow.description)).all()
            last_shared = conn.execute(
                select(_HistoryRow.after_json)
                .where(_HistoryRow.content_hash == "f" * 40)
                .order_by(_HistoryRow.step.desc())
                .limit(1)
            ).scalar_one()
            revisions = conn.execute(select(_ChangeRow.revision)).scalars().all()
        # one step per write, none mixing two writers' transactions, no step number used twice
        by_step: dict[int, set[str]] = {}
        for step, description in steps:
            by_step.setdefault(step, set()).add(description)
        assert len(by_step) == WRITERS * STEPS and all(len(d) == 1 for d in by_step.values())
        assert len({d for ds in by_step.values() for d in ds}) == WRITERS * STEPS
        assert len(steps) <= 2 * WRITERS * STEPS  # the shared photo is left out when unchanged
        assert len(revisions) == len(set(revisions)) == len(steps)
        # the photo every writer rated holds the last write's decision (last writer wins)
        assert decided["f" * 40][1] == PhotoDecision.from_dict(json.loads(last_shared))


def test_another_handle_sees_decisions_and_undo_through_the_feed(library: Path | str) -> None:
    with DecisionStore(library) as app, DecisionStore(library) as cli:
        start = app.revision()
        cli.set_flag([("a" * 40, "/p/a.jpg"), ("b" * 40, "/p/b.jpg")], Flag.PICK)
        feed = app.changes_since(start)
        assert [(c.content_hash, c.decision) for c in feed.changes] == [
            ("a" * 40, PhotoDecision(flag=Flag.PICK)),
            ("b" * 40, PhotoDecision(flag=Flag.PICK)),
        ]
        assert feed.complete and feed.revision > start
        assert cli.changes_since(start).changes == []  # a handle's own writes are not news to it
        assert app.changes_since(feed.revision).changes == []
        app.undo()  # the undo history is the library's: the app undoes the CLI's step
        assert cli.get("a" * 40) is None
        after = cli.changes_since(feed.revision)
        assert {(c.content_hash, c.decision) for c in after.changes} == {("a" * 40, None), ("b" * 40, None)}


def test_two_editors_of_one_photo_are_both_told(library: Path | str) -> None:
    photo = [("c" * 40, "/p/c.jpg")]
    with DecisionStore(library) as first, DecisionStore(library) as second:
        seen = first.revision()
        second.set_stars(photo, 3)
        (change,) = first.apply([("c" * 40, "/p/c.jpg", PhotoDecision(5))], "5 stars", seen=seen)
        assert change.conflict and first.get("c" * 40) == PhotoDecision(5)  # last writer wins ...
        (told,) = second.changes_since(seen).changes
        assert told.conflict and told.decision == PhotoDecision(5)  # ... and the other one is told
        # based on what it has seen, a write is no conflict
        (calm,) = second.apply([("c" * 40, "/p/c.jpg", PhotoDecision(4))], seen=first.revision())
        assert not calm.conflict


def test_a_key_press_keeps_what_another_editor_set_meanwhile(library: Path | str) -> None:
    photo = [("d" * 40, "/p/d.jpg")]
    with DecisionStore(library) as first, DecisionStore(library) as second:
        first.set_stars(photo, 4)
        second.set_label(photo, "Green")
        first.set_flag(photo, Flag.PICK)  # reads the current decision inside its own write
        assert second.get("d" * 40) == PhotoDecision(4, Flag.PICK, "Green")


def test_a_dropped_server_connection_is_retried(postgres_library: str) -> None:
    with DecisionStore(postgres_library) as store:
        store.set_stars([("e" * 40, "/p/e.jpg")], 2)
        with store.engine.connect() as conn:
            mine = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with ScoreCache(postgres_library) as other, other.engine.connect() as conn:  # the server drops it
            killed = conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": mine}).scalar_one()
        assert killed
        store.set_stars([("e" * 40, "/p/e.jpg")], 3)
        assert store.get("e" * 40) == PhotoDecision(3)


def test_opening_a_second_handle_keeps_this_processs_locks_on_the_file(tmp_path: Path) -> None:
    """Reading the header of a file this process has open would drop its POSIX locks (they go with any
    close); a CLI closing its connection would then take the library for unused and delete the WAL and
    its index under the app, which would never see another process's decisions again."""
    import subprocess
    import sys

    db = tmp_path / "library.sqlite"
    with DecisionStore(db) as app:
        app.set_stars([("a" * 40, "/p/a.jpg")], 1)
        ScoreCache(db).close()  # the scoring worker opens the library for every run
        script = "import sys; from humanaes_core.store import DecisionStore\n"
        script += "DecisionStore(sys.argv[1]).set_stars([('b' * 40, '/p/b.jpg')], 4)"
        subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=120)
        assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
        (seen,) = app.changes_since(1).changes
        assert seen.content_hash == "b" * 40 and seen.decision == PhotoDecision(4)


def test_a_server_that_refuses_the_library_is_one_clear_line(postgres_server: str) -> None:
    from sqlalchemy import make_url

    from humanaes_core.store.errors import CacheUnavailableError, LibraryOfflineError

    missing = make_url(postgres_server).set(database="no_such_library", password="secret")
    with pytest.raises(CacheUnavailableError, match="no_such_library") as e:
        DecisionStore(missing.render_as_string(hide_password=False))
    assert not isinstance(e.value, LibraryOfflineError)  # refused, not away: retrying would not help
    assert "secret" not in str(e.value) and len(str(e.value).splitlines()) == 1
