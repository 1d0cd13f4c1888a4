"""Two app windows and a CLI on one library (a SQLite file and a PostgreSQL database): a decision made in
one appears in the others without a restart; two editors of one photo are both told; while the library
server cannot be reached, decisions are kept behind a banner and saved, in order, when it is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from humanaes_core.store import DecisionStore, Flag, LibraryOfflineError, PhotoDecision
from humanaes_desktop.culling import DecisionKeeper
from humanaes_desktop.mainwindow import MainWindow
from tests import procs
from tests.conftest import synthetic_photo


@pytest.fixture
def max_tiles() -> int:
    return 1


@pytest.fixture
def fast_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DecisionKeeper, "POLL_MS", 100)
    monkeypatch.setattr(DecisionKeeper, "RETRY_MS", 100)


def _ready(window: MainWindow) -> bool:
    photos = window.model.photos
    hashed = photos and all(p.content_hash for p in photos)
    idle = not (window.decisions.busy or window.scanner.busy or window.controller.running)
    return bool(hashed) and idle


def _shown(window: MainWindow, name: str) -> PhotoDecision | None:
    photo = next(p for p in window.model.photos if p.path.name == name)
    return photo.decision


@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver (POSIX)")
def test_two_windows_and_a_cli_see_each_others_decisions(
    make_window, qtbot, library, tmp_path, monkeypatch, fast_feed
):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(3):
        synthetic_photo(200 + i, (320, 240)).save(folder / f"photo_{i}.jpg", quality=85)
    monkeypatch.setenv("HUMANAES_LIBRARY", str(library))  # the windows' default: the shared library
    first, second = make_window(), make_window()
    notices: dict[MainWindow, list[str]] = {first: [], second: []}
    for window in (first, second):
        shown = window.notice
        window.notice = lambda text, msecs=10000, w=window, shown=shown: (
            notices[w].append(text),
            shown(text, msecs),
        )
        window.open_paths([folder])
        qtbot.waitUntil(lambda w=window: _ready(w), timeout=120000)

    first.select_row(first.model.row_of(folder / "photo_0.jpg"))
    first.set_flag(Flag.PICK)  # P in the first window (a key would go to the active, second one)
    qtbot.waitUntil(lambda: (_shown(second, "photo_0.jpg") or PhotoDecision()).picked, timeout=10000)
    assert "Changed by another editor: 1 photo" in notices[second]
    assert _shown(first, "photo_0.jpg").picked and "Pick: 1 photo" in notices[first]

    photo = next(p for p in first.model.photos if p.path.name == "photo_1.jpg")
    env = procs.child_env(Path(str(library)), tmp_path / "models")
    env["HUMANAES_LIBRARY"] = str(library)
    child = procs.start(
        procs.decide_child,
        str(library),
        photo.content_hash,
        str(photo.path),
        4,
        env,
        str(tmp_path / "cli.log"),
    )
    child.join(60)
    assert child.exitcode == 0, (tmp_path / "cli.log").read_text()
    for window in (first, second):
        qtbot.waitUntil(
            lambda w=window: (_shown(w, "photo_1.jpg") or PhotoDecision()).stars == 4, timeout=10000
        )
    with DecisionStore(library) as store:
        assert store.count() == 2 and store.get(photo.content_hash) == PhotoDecision(4)


def test_two_editors_of_one_photo_are_both_told(qtbot, library, monkeypatch):
    photo = [("a" * 40, Path("/p/a.jpg"))]
    monkeypatch.setattr(DecisionKeeper, "POLL_MS", 100)
    first = DecisionKeeper(library=str(library))
    monkeypatch.setattr(DecisionKeeper, "POLL_MS", 3_600_000)  # the second one does not look meanwhile
    second = DecisionKeeper(library=str(library))
    try:
        with qtbot.waitSignal(second.loaded, timeout=10000):
            second.load(["a" * 40])  # opens the library: what it has seen is the revision now
        with qtbot.waitSignal(first.changed, timeout=10000):
            first.update(photo, "3 stars", stars=3)
        notices: dict[str, list[str]] = {"first": [], "second": []}
        first.notice.connect(notices["first"].append)
        second.notice.connect(notices["second"].append)
        second.update(photo, "5 stars", stars=5)
        qtbot.waitUntil(lambda: bool(notices["first"] and notices["second"]), timeout=10000)
        assert notices["second"] == [
            "1 photo had just been changed by another editor; your change replaced theirs"
        ]
        assert notices["first"] == [
            "Another editor just changed 1 photo you had changed; their change is shown"
        ]
        with DecisionStore(library) as store:
            assert store.get("a" * 40) == PhotoDecision(5)  # last writer wins
    finally:
        first.close()
        second.close()


def test_decisions_made_while_the_server_is_away_are_kept_and_saved_in_order(
    qtbot, tmp_path, monkeypatch, fast_feed
):
    library = tmp_path / "library.sqlite"
    real = DecisionStore.amend
    outage = {"left": 3}

    def flaky(self, *args, **kwargs):
        if outage["left"]:
            outage["left"] -= 1
            raise LibraryOfflineError("cannot reach the library server db.example (connection refused)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DecisionStore, "amend", flaky)
    keeper = DecisionKeeper(library=library)
    saved: list[str] = []
    keeper.changed.connect(lambda changes, what: saved.append(what))
    try:
        with qtbot.waitSignal(keeper.offline, timeout=10000) as banner:
            keeper.update([("b" * 40, Path("/p/b.jpg"))], "pick", flag=Flag.PICK)
        assert "db.example" in banner.args[0] and "kept" in banner.args[0]
        keeper.update([("b" * 40, Path("/p/b.jpg"))], "2 stars", stars=2)
        assert keeper.waiting
        back: list[str] = []
        keeper.online.connect(back.append)
        with qtbot.waitSignal(keeper.stale, timeout=20000):  # and the window reads its folder again
            pass
        assert back == ["The library is back; 2 changes saved."] and not keeper.waiting
        assert saved == ["pick", "2 stars"]
        with DecisionStore(library) as store:
            assert store.get("b" * 40) == PhotoDecision(2, Flag.PICK)
            assert store.undo_description() == "2 stars"
    finally:
        keeper.close()
