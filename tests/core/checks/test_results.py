"""Face and PhotoChecks survive JSON, and ScoreCard carries them (None until checked)."""

from __future__ import annotations

import json

from humanaes_core.checks import Face, PhotoChecks
from humanaes_core.scoring import ScoreCard


def _card(**extra) -> ScoreCard:
    return ScoreCard(
        dims={"overall": 0.5}, heads={}, level="fair", lm_probs=[0.2], tiles=1, mode="m", **extra
    )


def test_face_and_checks_round_trip_through_json():
    face = Face(
        box=(10, 20, 30, 40),
        landmarks={"left_eye": (12.5, 22.0), "right_eye": (30.0, 22.5)},
        size=30,
        left_eye="closed",
        right_eye="open",
        focus="soft",
        focus_score=0.4,
        gaze="away",
        confidence=0.9,
    )
    checks = PhotoChecks(
        blur="shake", blur_score=0.4, exposure="under", exposure_ev=-2.1, misfire=None, main_face=0
    )
    assert Face.from_dict(json.loads(json.dumps(face.to_dict()))) == face
    assert PhotoChecks.from_dict(json.loads(json.dumps(checks.to_dict()))) == checks
    assert face.closed_eyes == 1 and not face.eyes_closed


def test_a_card_round_trips_its_checks_and_an_unchecked_card_says_none():
    card = _card(faces=[Face(box=(1, 2, 3, 4), size=3)], checks=PhotoChecks(misfire="black"))
    again = ScoreCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card and again.checks.misfire == "black"
    plain = _card()
    assert plain.to_dict()["faces"] is None and ScoreCard.from_dict(plain.to_dict()).checks is None
    # a card stored before the checks existed has neither key
    old = {k: v for k, v in plain.to_dict().items() if k not in ("faces", "checks")}
    assert ScoreCard.from_dict(old).faces is None
