"""Score cards, results and the settings fingerprint: the part of scoring a cached run needs.

Torch-free on purpose: a folder whose photos are all in the cache is read back into cards and keyed by
its settings without importing torch or transformers (``scan.CachedScoring``); ``scorer`` imports the
model only when a photo needs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Protocol

from humanaes_core.checks import Face, PhotoChecks
from humanaes_core.schema import score_to_level

CARD_VERSION = 1


class HasLabel(Protocol):
    """A placement as the fingerprint sees it (``model.Placement`` or a torch-free stand-in)."""

    @property
    def label(self) -> str: ...


@dataclass
class ScoreCard:
    """Everything the model says about one photo.

    `dims` holds all 12 keys for a full card (`heads="all"`): the leaves and parents from the expert
    head, and `overall` from the MetaVoter, the paper's final score. A quick card (`heads="overall"`)
    holds only `overall`, the mean of the normalised LM score and the regression score. Values are
    clamped to [0, 1]; `expert_raw` keeps the expert head's unclamped outputs and `voter_inputs` the
    three scores the MetaVoter read (``lm``, ``regression``, ``expert``), so explanations recompute the
    shown overall from exactly what the model computed.
    `faces` and `checks` are what the photographer's checks found (``humanaes_core.checks``: closed
    eyes, focus, blur, exposure, misfire); None until the photo is checked.
    """

    dims: dict[str, float]
    heads: dict[str, float]
    level: str
    lm_probs: list[float]
    tiles: int
    mode: str
    model: str = ""
    source: str | None = None
    expert_raw: dict[str, float] | None = None
    voter_inputs: dict[str, float] | None = None
    version: int = CARD_VERSION
    faces: list[Face] | None = None
    checks: PhotoChecks | None = None

    @property
    def levels(self) -> dict[str, str]:
        """Rating word of every dimension present."""
        return {k: score_to_level(v) for k, v in self.dims.items()}

    def to_dict(self) -> dict:
        """JSON-ready; `ScoreCard.from_dict` reverses it. Built by hand: ``dataclasses.asdict`` is
        generic and took most of a cached 1,000-photo run's time."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("dims", "heads", "expert_raw", "voter_inputs"):
            if data[key] is not None:
                data[key] = dict(data[key])
        data["lm_probs"] = list(self.lm_probs)
        data["faces"] = None if self.faces is None else [f.to_dict() for f in self.faces]
        data["checks"] = None if self.checks is None else self.checks.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ScoreCard:
        faces = data.get("faces")
        checks = data.get("checks")
        return cls(
            **{k: v for k, v in data.items() if k not in ("faces", "checks")},
            faces=None if faces is None else [Face.from_dict(f) for f in faces],
            checks=None if checks is None else PhotoChecks.from_dict(checks),
        )


@dataclass
class ScoreResult:
    """One input's outcome from `Scorer.score_iter`: a card, or the reason it could not be scored."""

    index: int
    source: str | None
    card: ScoreCard | None = None
    error: str | None = None


def settings_fingerprint(
    *,
    heads: str,
    max_tiles: int,
    question_index: int,
    placement: HasLabel,
    fast_decode: bool,
    release_decode: bool = False,
) -> str:
    """Hash of the scoring settings; computable without loading the model, so cache hits skip loading."""
    settings = {
        "card": CARD_VERSION,
        "heads": heads,
        "max_tiles": max_tiles,
        "question": question_index,
        "placement": placement.label,
        "fast_decode": fast_decode and not release_decode,
    }
    if release_decode:  # only then, so the cards cached with the other presets keep their keys
        settings["decode"] = "release"
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
