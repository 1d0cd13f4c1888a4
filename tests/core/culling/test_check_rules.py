"""Check rules: closed eyes, missed focus and misfires reject; bursts prefer open, sharp eyes."""

from __future__ import annotations

from pathlib import Path

import pytest

from humanaes_core.checks import Face, PhotoChecks
from humanaes_core.culling import SHOOT_PRESETS, CheckRules, best_of, check_rejects, frame_key, plan_cull
from humanaes_core.scoring import ScoreCard


def _face(closed: bool = False, focus: str = "sharp", score: float = 0.9, size: int = 100) -> Face:
    eye = "closed" if closed else "open"
    return Face(
        box=(0, 0, size, size),
        size=size,
        left_eye=eye,
        right_eye=eye,
        eyes_closed=closed,
        focus=focus,
        focus_score=score,
    )


def _card(overall: float, faces: list[Face] | None = None, **checks) -> ScoreCard:
    return ScoreCard(
        dims={"overall": overall},
        heads={},
        level="fair",
        lm_probs=[],
        tiles=1,
        mode="m",
        faces=faces,
        checks=None
        if faces is None and not checks
        else PhotoChecks(main_face=0 if faces else None, **checks),
    )


def test_closed_eyes_of_the_main_face_reject_and_a_group_needs_its_share():
    rules = CheckRules(closed_eyes=0.5)
    assert check_rejects(_card(0.5, [_face(closed=True)]), rules) == ["eyes closed"]
    group = [_face(size=200)] + [_face(closed=True, size=80)] * 2 + [_face(size=80)] * 3
    assert check_rejects(_card(0.5, group), rules) == []  # 2 of 6 blinked: under half
    group[3:5] = [_face(closed=True, size=80)] * 2
    assert check_rejects(_card(0.5, group), rules) == ["eyes closed (4 of 6 faces)"]
    assert check_rejects(_card(0.5, group), CheckRules(closed_eyes=None)) == []


def test_missed_focus_sensitivity_and_misfires_in_photographers_words():
    soft = _card(0.5, [_face(focus="soft", score=0.4)])
    assert check_rejects(soft, CheckRules(missed_focus=0.5)) == []  # 0.5: only missed focus
    assert check_rejects(soft, CheckRules(missed_focus=1.0)) == ["soft focus"]
    missed = _card(0.5, [_face(focus="missed", score=0.1)])
    assert check_rejects(missed, CheckRules(missed_focus=0.5)) == ["missed focus"]
    shaken = _card(0.5, [], blur="shake")
    assert check_rejects(shaken, CheckRules(missed_focus=0.5)) == ["camera shake"]
    black = _card(0.5, [], misfire="black")
    assert check_rejects(black, SHOOT_PRESETS["wedding"]) == ["misfire: black frame"]
    assert check_rejects(_card(0.9), SHOOT_PRESETS["portrait"]) == []  # never checked: nothing to say
    assert check_rejects(black.to_dict(), CheckRules(misfire=True)) == ["misfire: black frame"]


def test_presets_cover_the_kinds_of_shoot():
    assert set(SHOOT_PRESETS) >= {"ceremony", "portrait", "event", "sports", "wedding"}
    assert SHOOT_PRESETS["wedding"] == SHOOT_PRESETS["ceremony"]
    assert SHOOT_PRESETS["sports"].closed_eyes is None and SHOOT_PRESETS["sports"].missed_focus is not None
    with pytest.raises(ValueError):
        CheckRules(closed_eyes=1.5)


def test_best_frame_of_a_burst_prefers_open_sharp_eyes_then_the_score():
    blink = _card(0.9, [_face(closed=True)])
    soft = _card(0.8, [_face(focus="soft", score=0.4)])
    good = _card(0.6, [_face()])
    cards = {Path("a.jpg"): blink, Path("b.jpg"): soft, Path("c.jpg"): good}
    assert best_of(list(cards), cards) == Path("c.jpg")
    assert sorted(cards, key=lambda p: frame_key(cards[p])) == [Path("c.jpg"), Path("b.jpg"), Path("a.jpg")]
    # group shots: the frame with the fewest closed eyes
    two = _card(0.9, [_face(), _face(closed=True), _face(closed=True)])
    one = _card(0.5, [_face(), _face(closed=True), _face()])
    assert best_of(["x", "y"], {"x": two, "y": one}) == Path("y")
    # unchecked cards rank by score as before
    assert best_of(["p", "q"], {"p": _card(0.3), "q": _card(0.7)}) == Path("q")


def test_plan_cull_rejects_on_the_rules_and_keeps_the_best_usable_frame_of_a_burst():
    cards = {Path("a.jpg"): _card(0.9, [_face(closed=True)]), Path("b.jpg"): _card(0.6, [_face()])}
    plan = plan_cull(
        cards, keep_top_percent=50, per="burst", groups=[list(cards)], rules=CheckRules(closed_eyes=0.5)
    )
    assert plan[Path("b.jpg")].keep and not plan[Path("a.jpg")].keep
    assert "eyes closed" in plan[Path("a.jpg")].reason
    only_rules = plan_cull(cards, rules=SHOOT_PRESETS["portrait"])
    assert [p.name for p, d in only_rules.items() if d.keep] == ["b.jpg"]
