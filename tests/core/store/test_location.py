"""Where the library lives: environment overrides, and the one-time move of an old cache.sqlite."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from humanaes_core.store import location
from humanaes_core.store.decisions import DecisionStore, PhotoDecision
from humanaes_core.store.location import default_library_path
from humanaes_core.store.scores import ScoreCache

H = "a" * 40


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-user data folder, here a temporary one, with no environment override."""
    folder = tmp_path / "data" / "humanaes"
    monkeypatch.delenv("HUMANAES_CACHE", raising=False)
    monkeypatch.delenv("HUMANAES_LIBRARY", raising=False)
    monkeypatch.setattr(location.platformdirs, "user_data_dir", lambda *a, **k: str(folder))
    return folder


def _legacy_file(folder: Path, stars: int = 4) -> Path:
    """An old ``cache.sqlite`` as a killed HumanAes 0.1 leaves it: its last commits only in the WAL."""
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder.parent / f"stage-{stars}.sqlite"
    ScoreCache(stage).close()
    DecisionStore(stage).close()
    conn = sqlite3.connect(stage, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO scores VALUES (?, 'm', 's', '{\"v\": 1}', 0)", (H,))
    conn.execute(
        "INSERT INTO decisions (content_hash, path, stars, flag, label, source, updated_at) "
        "VALUES (?, '/p/a.jpg', ?, 0, NULL, 'user', 0)",
        (H, stars),
    )
    legacy = folder / "cache.sqlite"
    for suffix in ("", "-wal", "-shm"):  # copied while the writer is still open: a crash's snapshot
        shutil.copyfile(f"{stage}{suffix}", f"{legacy}{suffix}")
    conn.close()
    assert Path(f"{legacy}-wal").stat().st_size > 0
    return legacy


def test_the_old_variable_still_chooses_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "my-cache.sqlite"
    monkeypatch.delenv("HUMANAES_LIBRARY", raising=False)
    monkeypatch.setenv("HUMANAES_CACHE", str(target))
    assert default_library_path() == target
    with ScoreCache() as c:  # no explicit path: the env var decides, parents are created
        assert c.path == target
        c.put("d" * 40, "m", "s", {"v": 1})
    assert target.exists()


def test_the_new_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUMANAES_CACHE", str(tmp_path / "old.sqlite"))
    monkeypatch.setenv("HUMANAES_LIBRARY", str(tmp_path / "mine.sqlite"))
    assert default_library_path() == tmp_path / "mine.sqlite"
    monkeypatch.setenv("HUMANAES_LIBRARY", "  ")  # blank counts as unset
    assert default_library_path() == tmp_path / "old.sqlite"


def test_the_default_is_library_sqlite_in_the_user_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUMANAES_CACHE", raising=False)
    monkeypatch.delenv("HUMANAES_LIBRARY", raising=False)
    p = default_library_path()
    assert p.name == "library.sqlite"
    assert p.parent.name.lower() == "humanaes"


def test_an_old_cache_sqlite_is_moved_once_with_its_wal(data_dir: Path) -> None:
    legacy = _legacy_file(data_dir)
    with ScoreCache() as cache, DecisionStore(cache) as store:
        assert cache.path == data_dir / "library.sqlite"
        assert cache.get(H, "m", "s") == {"v": 1}  # this commit was only in the WAL
        assert store.get(H) == PhotoDecision(4)
    assert not legacy.exists() and not Path(f"{legacy}-wal").exists()
    _legacy_file(data_dir, stars=1)  # a cache.sqlite appearing later is left alone
    with DecisionStore(default_library_path()) as store:
        assert store.get(H) == PhotoDecision(4)
    assert legacy.exists()


def test_an_existing_library_is_never_clobbered(data_dir: Path) -> None:
    with DecisionStore() as store:
        store.set_stars([(H, "/p/a.jpg")], 2)
    legacy = _legacy_file(data_dir, stars=5)
    before = legacy.read_bytes()
    with DecisionStore() as store:
        assert store.get(H) == PhotoDecision(2, origin="photographer")
    assert legacy.read_bytes() == before


def test_only_the_default_folder_is_adopted(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = data_dir.parent / "elsewhere"
    legacy = _legacy_file(elsewhere)
    monkeypatch.setenv("HUMANAES_LIBRARY", str(elsewhere / "library.sqlite"))
    with ScoreCache() as cache:  # a location the user chose is taken as given: nothing is moved
        assert cache.count() == 0
    assert legacy.exists()


def test_an_interrupted_move_is_finished(data_dir: Path) -> None:
    legacy = _legacy_file(data_dir)
    library = data_dir / "library.sqlite"
    Path(f"{legacy}-wal").replace(f"{library}-wal")  # killed after moving the WAL
    with ScoreCache() as cache:
        assert cache.get(H, "m", "s") == {"v": 1}
    assert not legacy.exists()


def test_concurrent_openers_move_it_once(data_dir: Path) -> None:
    _legacy_file(data_dir)
    barrier = threading.Barrier(6)
    seen: list[object] = []

    def opener(i: int) -> None:
        try:
            barrier.wait()
            with ScoreCache() if i % 2 else DecisionStore() as store:
                seen.append(store.get(H, "m", "s") if i % 2 else store.get(H))
        except BaseException as e:
            seen.append(e)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen.count({"v": 1}) == 3 and seen.count(PhotoDecision(4)) == 3
    assert sorted(p.name for p in data_dir.glob("*.sqlite")) == ["library.sqlite"]
