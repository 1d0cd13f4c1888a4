"""HumanAes core: the HumanAesExpert model, scoring, cache, training and evaluation — no Qt.

The public API (DESIGN section 7) is imported lazily so that `import humanaes_core.schema` or a
CLI's --help does not pay for importing torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ScoreCard", "ScoreResult", "Scorer", "load_scorer"]

if TYPE_CHECKING:
    from humanaes_core.scoring import ScoreCard, Scorer, ScoreResult, load_scorer


def __getattr__(name: str) -> Any:
    if name in __all__:
        from humanaes_core.scoring import scorer as scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'humanaes_core' has no attribute {name!r}")
