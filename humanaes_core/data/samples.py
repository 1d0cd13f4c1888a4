"""A data set for training and evaluation: labelled photos (`Sample`), what was left out, the labels'
fingerprint and the seeded hold-out split. The readers that build one are in `loaders`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from humanaes_core.errors import HumanAesError
from humanaes_core.schema import KEYS

__all__ = ["DataError", "DataSet", "Sample", "split_train_val"]


class DataError(HumanAesError):
    """A data set that cannot be used as it is; the message lists every problem with file and line."""


@dataclass(frozen=True)
class Sample:
    """One labelled photo. `labels` holds any of the 12 keys (``overall`` included), in [0, 1]."""

    path: Path
    labels: Mapping[str, float]
    origin: str  # "file:line" or the sidecar the label came from, for messages
    level: str | None = None  # overall level word given by the data (HumanBeauty text_level)

    @property
    def overall(self) -> float | None:
        return self.labels.get("overall")

    @property
    def is_dims(self) -> bool:
        """A 12-dimension sample (f = 1 in Eq. 7): it has a label besides overall."""
        return any(k != "overall" for k in self.labels)

    @property
    def complete(self) -> bool:
        """All 12 dimensions labelled, so the 12-line answer text can be written."""
        return all(k in self.labels for k in KEYS)


@dataclass
class DataSet:
    """Validated samples plus what was left out and why."""

    samples: list[Sample]
    root: Path
    format: str  # "humanbeauty", "jsonl", "csv" or "rated-folder"
    source: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def labels_fingerprint(self) -> str:
        """Identity of the labels (paths relative to the root, values, levels); image bytes are not read,
        so moving the data folder keeps it. A resumed run must see the same."""
        h = hashlib.sha256()
        for s in self.samples:
            try:
                name = s.path.relative_to(self.root).as_posix()
            except ValueError:
                name = s.path.as_posix()
            row = [name, sorted((k, round(v, 6)) for k, v in s.labels.items()), s.level]
            h.update(json.dumps(row, separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()[:16]

    def skipped_text(self, reasons: int = 12, examples: int = 3) -> str:
        """What was left out and why, for a training run's output: one line per reason (the commonest
        first) with a count and a few file names; empty when nothing was left out."""
        by_reason: dict[str, list[str]] = {}
        for path, why in self.skipped:
            by_reason.setdefault(why, []).append(Path(path).name)
        if not by_reason:
            return ""
        lines = [f"{len(self.samples)} labelled photos used, {len(self.skipped)} left out:"]
        ranked = sorted(by_reason.items(), key=lambda item: -len(item[1]))
        for why, names in ranked[:reasons]:
            shown = ", ".join(names[:examples]) + (", ..." if len(names) > examples else "")
            lines.append(f"  {len(names)} {why}: {shown}")
        if len(ranked) > reasons:
            lines.append(f"  ... and {sum(len(n) for _, n in ranked[reasons:])} for other reasons")
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        dims = [s for s in self.samples if s.is_dims]
        return {
            "samples": len(self.samples),
            "overall_only": len(self.samples) - len(dims),
            "twelve_dim": sum(s.complete for s in dims),
            "partial_dims": sum(not s.complete for s in dims),
            "skipped": len(self.skipped),
        }


def split_train_val(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """A seeded random hold-out; at least one sample stays on each side when a split is asked for."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    n = len(samples)
    n_val = round(n * fraction)
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
