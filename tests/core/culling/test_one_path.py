"""One culling path: the app's decisions and humanaes-cull's plans go through the same rules, the same
sidecar writer and the same card tables; exports survive file names that are not UTF-8."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from humanaes_core.culling import (
    Decision,
    SidecarEntry,
    export_cards,
    keeper_label_for,
    keeper_stars,
    level_stars,
    plan_cull,
    rated_decision,
    write_sidecar_entries,
    write_sidecars,
)
from humanaes_core.formats import read_rating
from humanaes_core.origins import Origin
from humanaes_core.store import Flag, PhotoDecision
from tests.conftest import synthetic_photo

from .test_cull import _card

RAW_NAME = b"caf\xe9.jpg"  # Latin-1 bytes: not valid UTF-8


def _never() -> str | None:
    raise AssertionError("the current label is read only for rejects")


def test_keeper_label_rules():
    assert keeper_label_for(True, "Green", _never) == "Green"
    assert keeper_label_for(False, "Green", lambda: "green") == ""  # an earlier run's keeper label goes
    assert keeper_label_for(False, "Green", lambda: "Red") is None  # someone else's label stays
    assert keeper_label_for(False, "Green", lambda: None) is None
    assert keeper_label_for(None, "Green", _never) is None  # rated, neither kept nor rejected
    assert keeper_label_for(True, None, _never) is None and keeper_label_for(False, "", _never) is None


def test_keeper_stars_and_rated_decisions():
    assert keeper_stars(3, "excellent") == 3 and keeper_stars(None, "good") == level_stars("good") == 4
    assert keeper_stars(0, None) is None
    assert rated_decision(None, level="good", overall=0.7, who="you") is None
    assert rated_decision(PhotoDecision(), level="good", overall=0.7, who="you") is None
    pick = rated_decision(PhotoDecision(flag=Flag.PICK), level="good", overall=0.7, who="you")
    assert pick == Decision(True, 4, "picked (you)", 0.7, "good")
    reject = rated_decision(PhotoDecision(2, Flag.REJECT), level=None, overall=None, who="auto-cull")
    assert (reject.keep, reject.rating, reject.reason, reject.overall) == (
        False,
        -1,
        "rejected (auto-cull)",
        0.0,
    )
    rated = rated_decision(PhotoDecision(3), level="bad", overall=0.1, who="XMP sidecar")
    assert (rated.keep, rated.stars, rated.reason) == (True, 3, "3 stars (XMP sidecar)")


def test_sidecar_entries_from_ratings():
    path = Path("/photos/a.jpg")
    pick = SidecarEntry.from_rating(path, PhotoDecision(flag=Flag.PICK), "excellent")
    assert (pick.stars, pick.pick, pick.rejected, pick.keep) == (5, True, False, True)
    assert SidecarEntry.from_rating(path, PhotoDecision(flag=Flag.PICK), None).stars is None
    cleared = SidecarEntry.from_rating(path, PhotoDecision(0), "good")  # 0 stars is "unrated"
    assert cleared.stars is None and cleared.empty and cleared.keep is None
    reject = SidecarEntry.from_rating(path, PhotoDecision(4, Flag.REJECT, "Red"), "good")
    assert (reject.stars, reject.rejected, reject.pick, reject.label, reject.keep) == (
        4,
        True,
        None,
        "Red",
        False,
    )
    # a plan's decisions are HumanAes's, with the plan; a photographer's keep their origin
    ours = {"origin": Origin.HUMANAES, "plan": "keep top 50% per folder"}
    keeper = SidecarEntry.from_decision(path, Decision(True, 4, ""), ours["plan"])
    assert keeper == SidecarEntry(path, 4, False, True, **ours)
    assert SidecarEntry.from_decision(path, Decision(False, 4, ""), ours["plan"]) == SidecarEntry(
        path, None, True, False, **ours
    )
    assert SidecarEntry.from_rating(path, PhotoDecision(3), "good").origin == Origin.PHOTOGRAPHER
    auto = SidecarEntry.from_rating(path, PhotoDecision(flag=Flag.PICK, **ours), "good")
    assert (auto.origin, auto.plan) == (Origin.HUMANAES, ours["plan"])


def _shoot(folder: Path) -> dict[Path, object]:
    folder.mkdir()
    cards = {}
    for i, score in enumerate((0.91, 0.65, 0.45, 0.15)):
        path = folder / f"p{i}.jpg"
        synthetic_photo(i, (48, 32)).save(path, quality=85)
        cards[path] = _card(score)
    return cards


def _sidecars_say(photos) -> list[tuple]:
    """(name, stars, rejected, pick, label) as each photo's sidecar says."""
    said = []
    for photo in photos:
        rating = read_rating(photo)
        said.append((photo.name, rating.stars, rating.rejected, rating.pick, rating.label))
    return said


def test_the_app_and_humanaes_cull_write_the_same_sidecars(tmp_path):
    """A plan written by humanaes-cull and the same picks/rejects made in the app give the same sidecars,
    including the keeper label taken off a reject that an earlier run labelled."""
    cli, app = _shoot(tmp_path / "cli"), _shoot(tmp_path / "app")
    for cards in (cli, app):  # an earlier, looser run labelled every photo a keeper
        write_sidecars(plan_cull(cards, min_level="bad"), label="Green")
    plan = plan_cull(cli, keep_top_percent=50)
    cli_report = write_sidecars(plan, label="Green")

    flags = {path.name: d.keep for path, d in plan.items()}
    entries = [
        SidecarEntry.from_rating(
            path, PhotoDecision(flag=Flag.PICK if flags[path.name] else Flag.REJECT), card.level
        )
        for path, card in app.items()
    ]
    app_report = write_sidecar_entries(entries, "auto", "Green")
    assert type(app_report) is type(cli_report)
    assert (app_report.photos, len(app_report.written), app_report.failed) == (4, 4, [])
    assert (cli_report.photos, len(cli_report.written), cli_report.failed) == (4, 4, [])
    assert _sidecars_say(app) == _sidecars_say(cli)
    said = {name: (stars, rejected, label) for name, stars, rejected, _, label in _sidecars_say(cli)}
    assert said["p0.jpg"] == (5, False, "Green") and said["p3.jpg"] == (None, True, None)


def test_an_entry_that_says_nothing_makes_no_sidecar(tmp_path):
    photo = tmp_path / "a.jpg"
    synthetic_photo(1, (32, 32)).save(photo)
    done: list[tuple[int, int]] = []
    report = write_sidecar_entries(
        [SidecarEntry(photo, None, False, None, None)], progress=lambda n, total: done.append((n, total))
    )
    assert (report.skipped, report.photos, report.written) == (1, 0, []) and done == [(1, 1)]
    assert not list(tmp_path.glob("*.xmp"))


# -------------------------------------------------------------------------- exports, non-UTF-8 names


@pytest.fixture
def undecodable(tmp_path) -> tuple[dict[Path, object], dict[Path, Decision]]:
    name = tmp_path / os.fsdecode(RAW_NAME)
    plain = tmp_path / "été.jpg"
    cards = {name: _card(0.8), plain: _card(0.3)}
    return cards, {name: Decision(True, 4, "picked (you)"), plain: Decision(False, 2, "rejected (you)")}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("with_decisions", [True, False])
def test_export_csv_keeps_non_utf8_names_readable(undecodable, tmp_path, with_decisions):
    cards, decisions = undecodable
    out = tmp_path / "out" / "cards.csv"
    export_cards(cards, out, decisions=decisions if with_decisions else None, errors={"x.jpg": "broken"})
    text = out.read_bytes().decode("utf-8")  # valid UTF-8
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[0]["path"].endswith("caf\\xe9.jpg") and rows[1]["path"].endswith("été.jpg")
    assert rows[2]["error"] == "broken"
    if with_decisions:
        assert [r["rating"] for r in rows] == ["4", "-1", ""]
    assert _leftovers(out.parent) == []


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("with_decisions", [True, False])
def test_export_json_keeps_the_exact_non_utf8_name(undecodable, tmp_path, suffix, with_decisions):
    cards, decisions = undecodable
    out = tmp_path / f"cards{suffix}"
    export_cards(cards, out, decisions=decisions if with_decisions else None)
    text = out.read_bytes().decode("utf-8")
    rows = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    assert os.fsencode(rows[0]["path"]) == os.fsencode(tmp_path) + b"/" + RAW_NAME
    assert rows[1]["path"].endswith("été.jpg") and "été" in text  # other names stay readable
    assert ("keep" in rows[0]) == with_decisions
    if with_decisions:
        assert rows[0]["keep"] is True and rows[1]["rating"] == -1
    assert _leftovers(tmp_path) == []


def test_culling_does_not_import_the_cli():
    code = (
        "import sys, humanaes_core.culling as c\n"
        "for name in c.__all__: getattr(c, name)\n"
        "assert not [m for m in sys.modules if m.startswith('humanaes_core.cli')], 'cli imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
