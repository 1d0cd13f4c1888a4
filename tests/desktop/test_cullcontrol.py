"""The culling controller without Qt: no window, no event loop, decisions in a real `DecisionStore`.

A plain `View` stands in for the main window and `SyncWriter` for the decision thread: it runs the same
store operations (`decide_op`, `auto_cull_op`) at once and shows what the store says changed, as the
window does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from humanaes_core.culling import CopyReport, SidecarReport
from humanaes_core.origins import Origin
from humanaes_core.schema import KEYS, score_to_level
from humanaes_core.scoring import ScoreCard
from humanaes_core.store import Change, DecisionStore, Flag, PhotoDecision
from humanaes_desktop.cull_dialogs import CullParams
from humanaes_desktop.cullcontrol import CullingController, auto_cull_op, decide_op
from humanaes_desktop.photos import Photo

ROOT = Path(__file__).resolve().parents[2]


def _card(overall: float) -> ScoreCard:
    dims = dict.fromkeys(KEYS, overall)
    return ScoreCard(
        dims=dims,
        heads=dict.fromkeys(("lm", "regression", "expert", "metavoter"), overall),
        level=score_to_level(overall),
        lm_probs=[0.2] * 5,
        tiles=1,
        mode="all",
        expert_raw=dict(dims),
    )


class View:
    """The window as the controller sees it."""

    def __init__(self, photos: list[Photo]) -> None:
        self.photos = photos
        self.selection: list[Photo] = []
        self.groups: list[list[Path]] = []
        self.grouping = False
        self.notices: list[str] = []

    def folder_photos(self) -> list[Photo]:
        return self.photos

    def selected_photos(self) -> list[Photo]:
        return list(self.selection)

    def bursts(self) -> list[list[Path]]:
        return self.groups

    def finding_bursts(self) -> bool:
        return self.grouping

    def notice(self, text: str, msecs: int = 10000) -> None:
        self.notices.append(text)


class SyncWriter:
    """The decision thread, run at once: store operations on a real store, changes shown on the photos."""

    def __init__(self, store: DecisionStore, view: View) -> None:
        self.store, self.view = store, view
        self.descriptions: list[str] = []

    def _show(self, changes: list[Change], what: str) -> None:
        self.descriptions.append(what)
        for change in changes:
            for photo in self.view.photos:
                if photo.content_hash == change.content_hash:
                    photo.decision = change.decision

    def update(
        self,
        items: Sequence[tuple[str, Path]],
        description: str,
        fallback: Mapping[str, PhotoDecision] | None = None,
        **fields: Any,
    ) -> None:
        self._show(decide_op(items, description, fallback or {}, fields)(self.store), description)

    def auto_cull(
        self,
        plan: Sequence[tuple[str, Path, bool]],
        description: str,
        *,
        overwrite_manual: bool = False,
        fallback: Mapping[str, PhotoDecision] | None = None,
    ) -> None:
        op = auto_cull_op(plan, description, fallback or {}, overwrite_manual=overwrite_manual)
        self._show(op(self.store), description)

    def undo(self) -> None:
        self._show(self.store.undo(), "undo")

    def redo(self) -> None:
        self._show(self.store.redo(), "redo")


@pytest.fixture
def folder(tmp_path: Path) -> tuple[View, SyncWriter, CullingController]:
    """Six scored photos (a..f, best first), one a copy of another (same content), one still hashing."""
    photos = [Photo(tmp_path / f"{n}.jpg", f"{n}.jpg") for n in "abcdef"]
    for i, (photo, overall) in enumerate(zip(photos, (0.9, 0.8, 0.7, 0.6, 0.5, 0.4), strict=True)):
        photo.card = _card(overall)
        photo.content_hash = f"h{i}"
    photos[5].content_hash = "h4"  # f is a copy of e
    view = View(photos)
    store = DecisionStore(tmp_path / "library.sqlite")
    writer = SyncWriter(store, view)
    yield view, writer, CullingController(view, writer)
    store.close()


def _photo(view: View, name: str) -> Photo:
    return next(p for p in view.photos if p.path.stem == name)


def test_the_controller_imports_no_qt():
    code = (
        "import sys, humanaes_desktop.cullcontrol\n"
        "qt = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'superqt', 'qtpy')]\n"
        "assert not qt, qt\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_keys_act_once_per_file_keep_editors_stars_and_undo(folder):
    view, writer, control = folder
    e, f = _photo(view, "e"), _photo(view, "f")
    d = _photo(view, "d")
    d.xmp = PhotoDecision(stars=4, origin="editor")
    view.selection = [d, e, f]
    control.set_flag(Flag.PICK)
    assert writer.descriptions == ["pick"]
    # the editor's stars stay
    assert d.decision == PhotoDecision(stars=4, flag=Flag.PICK, origin="photographer")
    assert e.decision == f.decision == PhotoDecision(flag=Flag.PICK, origin="photographer")
    assert writer.store.undo_description() == "pick"

    control.set_stars(2)
    control.set_stars(0)
    assert writer.descriptions[1:] == ["2 stars", "clear stars"]
    assert d.stars == 0 and d.flag == Flag.PICK
    control.undo()
    assert d.stars == 2
    control.undo()
    control.undo()
    assert d.decision is None and d.rating == d.xmp  # back to the sidecar's rating
    control.redo()
    assert d.flag == Flag.PICK

    d.content_hash = None  # re-read after a change on disk: not decidable until hashed again
    view.selection = [d]
    control.set_flag(Flag.REJECT)
    assert view.notices == ["This photo is still being read; try again in a moment."]
    assert writer.descriptions[-1] == "redo"


def test_keys_on_humanaes_decisions_keep_nothing_of_humanaes(folder):
    """A key on a photo humanaes-cull rated in its sidecar (keeper stars from the model's level) or the
    app's auto-cull decided: the result is the photographer's alone, so training never learns the
    model's stars or flags under the photographer's name (issue #13)."""
    view, _writer, control = folder
    plan = "humanaes-cull: keep top 50% per folder"
    kept, dropped = _photo(view, "a"), _photo(view, "b")
    kept.xmp = PhotoDecision(4, Flag.PICK, "Green", origin=Origin.HUMANAES, plan=plan)
    dropped.xmp = PhotoDecision(None, Flag.REJECT, origin=Origin.HUMANAES, plan=plan)
    view.selection = [kept]
    control.set_flag(Flag.PICK)  # confirming the pick does not make the model's 4 stars the photographer's
    assert kept.decision == PhotoDecision(None, Flag.PICK, "Green", origin=Origin.PHOTOGRAPHER)
    view.selection = [dropped]
    control.set_stars(3)  # rating a photo HumanAes rejected: 3 stars, not a reject
    assert dropped.decision == PhotoDecision(3, origin=Origin.PHOTOGRAPHER)


def test_what_the_store_reports_in_words():
    changes = [Change("h1", "a.jpg", None), Change("h2", "b.jpg", None), Change("h2", "c.jpg", None)]
    assert CullingController.changes_text(changes, "reject", True) == "Reject: 2 photos"
    assert (
        CullingController.changes_text(changes[:1], "undo pick", False)
        == "Undo pick: 1 photo (in another folder)"
    )
    assert CullingController.changes_text([], "undo", True) == "Nothing to undo."
    assert CullingController.changes_text([], "pick", True) is None


def test_auto_cull_previews_applies_and_keeps_manual_decisions(folder):
    view, writer, control = folder
    a = _photo(view, "a")
    view.selection = [a]
    control.set_flag(Flag.REJECT)  # the photographer disagrees with the model about its favourite
    _photo(view, "c").card = None  # not scored yet

    half = CullParams(keep_top_percent=50, min_level=None, per="folder", overwrite_manual=False)
    text, ok = control.preview_cull(half)
    # Said once: what auto-cull changes, then the photographer's own decision that stays (issue #14).
    assert ok and text.startswith(
        "Of 5 scored photos, 2 would be picked and 2 rejected; 1 you decided yourself stays as it is."
    )
    assert text.count("picked") == 1 and "(so" not in text
    assert text.endswith("1 photo not scored yet is left alone.")

    control.apply_auto_cull(half)
    assert writer.descriptions[-1] == "auto-cull: keep top 50% per folder"
    assert a.flag == Flag.REJECT and a.rating.origin == "photographer"
    assert [_photo(view, n).flag for n in "bde"] == [Flag.PICK, Flag.PICK, Flag.REJECT]
    assert _photo(view, "f").decision == _photo(view, "e").decision  # one file, one decision
    assert _photo(view, "c").decision is None

    overwrite = CullParams(keep_top_percent=50, min_level=None, per="folder", overwrite_manual=True)
    replaced = control.preview_cull(overwrite)[0]
    assert replaced.startswith("Of 5 scored photos, 3 would be picked and 2 rejected.")
    assert "This replaces 1 decision of your own." in replaced
    control.apply_auto_cull(overwrite)
    assert a.flag == Flag.PICK and a.rating.origin == "humanaes"


def test_a_plan_rejecting_nearly_everything_is_warned(folder):
    """The app says what humanaes-cull refuses without --yes (issue #14, item 5)."""
    view, _writer, control = folder
    for name in "abcdef":  # a shoot the model finds fair at best
        _photo(view, name).card = _card(0.3 + 0.02 * "abcdef".index(name))
    good = CullParams(keep_top_percent=None, min_level="good", per="all", overwrite_manual=False)
    warning = control.cull_warning(good)
    assert warning == "This plan rejects all 6 photos (the best scores 0.40, fair): check the threshold."
    half = CullParams(keep_top_percent=50, min_level=None, per="folder", overwrite_manual=False)
    assert control.cull_warning(half) is None


def test_per_burst_waits_for_the_bursts(folder):
    view, writer, control = folder
    per_burst = CullParams(keep_top_percent=None, min_level="excellent", per="burst", overwrite_manual=False)
    view.grouping = True
    text, ok = control.preview_cull(per_burst)
    assert not ok and text.startswith("Cannot cull: bursts are still being found")
    control.apply_auto_cull(per_burst)
    assert view.notices[-1].startswith("Auto-cull: bursts are still being found") and not writer.descriptions

    view.grouping = False
    view.groups = [[_photo(view, "a").path, _photo(view, "b").path]]
    assert control.cull_groups(per_burst) == view.groups
    empty = View([Photo(Path("x.jpg"), "x.jpg")])
    assert CullingController(empty, writer).preview_cull(per_burst) == (
        "No photo is scored yet: nothing to cull.",
        False,
    )


def test_what_to_write_copy_and_export(folder, tmp_path):
    view, _writer, control = folder
    view.selection = [_photo(view, "a")]
    control.set_flag(Flag.PICK)
    view.selection = [_photo(view, "b")]
    control.set_flag(Flag.REJECT)
    _photo(view, "c").xmp = PhotoDecision(stars=5, origin="editor")  # an editor's: not written back
    _photo(view, "d").card, _photo(view, "d").error = None, "cannot decode"

    entries = control.sidecar_entries()
    assert [e.path.stem for e in entries] == ["a", "b"]
    assert control.sidecar_summary(entries).startswith(
        "2 photos with decisions made in HumanAes: 1 picked, 1 rejected"
    )
    assert list(control.picks()) == [_photo(view, "a").path]
    cards, decisions, errors = control.export_plan()
    assert [p.stem for p in cards] == ["a", "b", "c", "e", "f"]
    assert {p.stem: d.keep for p, d in decisions.items()} == {"a": True, "b": False, "c": True}
    assert decisions[_photo(view, "c").path].reason.endswith("(an editor)")
    assert errors == {str(_photo(view, "d").path): "cannot decode"}

    report = SidecarReport(
        photos=2, written=[tmp_path / "a.jpg.xmp"], failed=[(tmp_path / "b.jpg", "read-only")]
    )
    text, failures = control.sidecars_written(report)
    assert text == "Wrote 1 XMP sidecar for 2 photos; 1 could not be written (see Skipped files)."
    assert failures == [(str(tmp_path / "b.jpg"), "sidecar not written: read-only")]
    copied = CopyReport(
        copied=[(tmp_path / "a.jpg", tmp_path / "out" / "a.jpg")], failed=[(tmp_path / "z.jpg", "gone")]
    )
    text, failures = control.picks_copied(copied, tmp_path / "out", move=True)
    assert text == f"Moved 1 pick to {tmp_path / 'out'}; 1 failed (see Skipped files)."
    assert failures == [(str(tmp_path / "z.jpg"), "not moved: gone")]
