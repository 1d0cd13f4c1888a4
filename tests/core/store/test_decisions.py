"""The decision store: P/X/U and star keys, undo/redo that survives a restart, in the cache's database;
each test runs on a SQLite file and on a PostgreSQL library (the ``library`` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from humanaes_core.origins import Origin
from humanaes_core.store.decisions import DecisionStore, DecisionsVersionError, Flag, PhotoDecision
from humanaes_core.store.migrations import SCHEMA_VERSION
from humanaes_core.store.scores import ScoreCache


@pytest.fixture
def db(library):
    return library


def _items(*names: str) -> list[tuple[str, str]]:
    return [(f"hash-{n}", f"/photos/{n}.jpg") for n in names]


def test_keys_set_fields_and_keep_the_others(db):
    with DecisionStore(db) as store:
        store.set_stars(_items("a", "b"), 4)
        store.set_flag(_items("a"), Flag.PICK)
        store.set_label(_items("b"), "Green")
        store.set_flag(_items("b"), Flag.REJECT)
        assert store.get("hash-a") == PhotoDecision(4, Flag.PICK, None)
        assert store.get("hash-b") == PhotoDecision(4, Flag.REJECT, "Green")
        assert store.get("hash-b").rejected and not store.get("hash-b").picked
        assert store.get("hash-c") is None
        store.set_flag(_items("b"), Flag.NONE)  # U: unflag, stars and label stay
        assert store.get("hash-b") == PhotoDecision(4, Flag.NONE, "Green")
        assert store.all()["hash-a"] == ("/photos/a.jpg", PhotoDecision(4, Flag.PICK, None))
        assert store.count() == 2


def test_undo_and_redo_step_by_step(db):
    with DecisionStore(db) as store:
        assert not store.can_undo() and store.undo() == []
        store.set_stars(_items("a", "b", "c"), 3)  # one step for three photos
        store.set_flag(_items("b"), Flag.REJECT)
        assert store.undo_description() == "reject"
        changes = store.undo()
        assert [(c.content_hash, c.decision) for c in changes] == [("hash-b", PhotoDecision(3))]
        assert store.get("hash-b") == PhotoDecision(3)
        assert store.can_redo() and store.redo_description() == "reject"
        store.undo()  # the three-photo star step, in one go
        assert store.get_many(["hash-a", "hash-b", "hash-c"]) == {}
        assert not store.can_undo()
        store.redo()
        assert store.get("hash-c") == PhotoDecision(3)
        store.redo()
        assert store.get("hash-b").rejected
        assert not store.can_redo()


def test_a_new_change_drops_the_redo_stack(db):
    with DecisionStore(db) as store:
        store.set_stars(_items("a"), 1)
        store.set_stars(_items("a"), 2)
        store.undo()
        store.set_stars(_items("a"), 5)
        assert not store.can_redo()
        store.undo()
        assert store.get("hash-a") == PhotoDecision(1)


def test_history_survives_a_restart(db):
    with DecisionStore(db) as store:
        store.set_flag(_items("a"), Flag.PICK)
        store.set_flag(_items("a"), Flag.REJECT)
    with DecisionStore(db) as store:
        assert store.get("hash-a").rejected
        store.undo()
        assert store.get("hash-a").picked


def test_unchanged_decisions_make_no_undo_step_but_update_the_path(db):
    with DecisionStore(db) as store:
        store.set_stars(_items("a"), 2)
        assert store.set_stars([("hash-a", "/moved/a.jpg")], 2) == []
        assert store.undo_description() == "2 stars"
        assert store.all()["hash-a"][0] == "/moved/a.jpg"


def test_apply_sets_and_clears_as_one_step(db):
    with DecisionStore(db) as store:
        store.set_stars(_items("old"), 5)
        plan = [
            ("hash-a", "/p/a.jpg", PhotoDecision(4, Flag.PICK, origin="humanaes")),
            ("hash-b", "/p/b.jpg", PhotoDecision(2, Flag.REJECT, origin="humanaes")),
            ("hash-old", "/p/old.jpg", None),
        ]
        changed = store.apply(plan, "auto-cull: top 50%")
        assert len(changed) == 3 and store.get("hash-old") is None
        assert store.get("hash-a").origin == "humanaes"
        assert store.undo_description() == "auto-cull: top 50%"
        store.undo()
        assert store.get("hash-old") == PhotoDecision(5) and store.get("hash-a") is None


def test_origin_and_plan_are_stored_and_travel_through_undo(db):
    auto = PhotoDecision(3, Flag.REJECT, origin=Origin.HUMANAES, plan="auto-cull: keep top 10% per folder")
    with DecisionStore(db) as store:
        store.apply([("hash-a", "/p/a.jpg", auto)], "auto-cull: keep top 10% per folder")
        assert store.get("hash-a") == auto
        # a key press makes it the photographer's: HumanAes's stars and plan are not theirs
        store.set_flag(_items("a"), Flag.PICK)
        assert store.get("hash-a") == PhotoDecision(None, Flag.PICK, origin=Origin.PHOTOGRAPHER)
        store.undo()
        assert store.get("hash-a") == auto
    with DecisionStore(db) as store:  # after a restart
        store.redo()
        assert store.get("hash-a").origin == Origin.PHOTOGRAPHER
        store.undo()
        assert store.all()["hash-a"][1] == auto


def test_history_is_capped(db):
    with DecisionStore(db, max_history=3) as store:
        for stars in range(6):
            store.set_stars(_items("a"), stars)
        assert len([store.undo() for _ in range(10) if store.can_undo()]) == 3
        assert store.get("hash-a") == PhotoDecision(2)


def test_lives_beside_the_score_cache(db):
    with ScoreCache(db) as cache:
        cache.put("hash-a", "model", "settings", {"dims": {"overall": 0.5}})
        with DecisionStore(cache) as store:
            assert store.path == cache.path
            store.set_stars(_items("a"), 3)
        assert cache.get("hash-a", "model", "settings") == {"dims": {"overall": 0.5}}
    with ScoreCache(db) as cache:  # reopening: the cache's schema is untouched
        assert cache.schema_version == SCHEMA_VERSION and cache.count() == 1
    with DecisionStore(db) as store:
        assert store.get("hash-a") == PhotoDecision(3)


def test_a_newer_decisions_schema_is_refused(db):
    with DecisionStore(db) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'decisions_schema_version'"))
    with pytest.raises(DecisionsVersionError, match="newer HumanAes"):
        DecisionStore(db)


def test_invalid_decisions_are_refused(db):
    with pytest.raises(ValueError, match="stars"):
        PhotoDecision(6)
    with DecisionStore(db) as store, pytest.raises(ValueError):
        store.set_stars(_items("a"), 9)
    assert PhotoDecision.from_dict(PhotoDecision(2, Flag.REJECT, "Red").to_dict()) == PhotoDecision(
        2, Flag.REJECT, "Red"
    )
