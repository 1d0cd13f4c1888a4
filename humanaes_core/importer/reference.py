"""reference.json, the release's own outputs (tools/release_reference.py), read and compared with ours.

`read_reference` checks the file, `find_photo` finds the photos it was recorded from, and the comparers
(`COMPARE`) say how far one head's values are from what the release computed: (score difference,
hidden-state difference or None when the reference has no summary of the head's input, a note), or None
when the reference did not reach that head. `verify` runs the stages on top of these.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from humanaes_core.errors import HumanAesError, shown
from humanaes_core.files import read_json_file
from humanaes_core.model import MAX_METADATA_BYTES
from humanaes_core.schema import BY_KEY, KEYS, OFFICIAL_ORDER

REFERENCE_FORMAT = "humanaes-release-reference"
REFERENCE_VERSION = 1


class VerifyError(HumanAesError):
    """The reference cannot be used (not a reference file, photos missing): one line for the CLI."""


# --- the reference file -------------------------------------------------------------------------------


def read_reference(path: str | Path) -> dict:
    """reference.json, checked for its format and the parts every stage needs."""
    path = Path(path)
    try:
        data = read_json_file(path, MAX_METADATA_BYTES * 8)
    except (OSError, ValueError) as e:
        raise VerifyError(f"{path}: cannot read the reference ({e})") from None
    if not isinstance(data, Mapping) or data.get("format") != REFERENCE_FORMAT:
        raise VerifyError(f"{path}: not a reference written by tools/release_reference.py")
    if data.get("version") != REFERENCE_VERSION:
        raise VerifyError(
            f"{path}: reference version {shown(data.get('version'))}, expected {REFERENCE_VERSION}"
        )
    samples = data.get("samples")
    if not isinstance(samples, list) or not samples or not all(isinstance(s, Mapping) for s in samples):
        raise VerifyError(f"{path}: the reference holds no samples")
    for s in samples:
        if not isinstance(s.get("file"), str) or not isinstance(s.get("calls", {}), Mapping):
            raise VerifyError(f"{path}: a sample without a file name or with malformed calls")
    return dict(data)


def find_photo(sample: Mapping, search: Sequence[Path]) -> Path:
    """The photo a sample was recorded from: its recorded path, else its name in one of `search`."""
    candidates = [Path(sample["path"])] if isinstance(sample.get("path"), str) else []
    candidates += [folder / Path(sample["file"]).name for folder in search]
    for candidate in candidates:
        if candidate.is_file():
            want = sample.get("file_sha256")
            if want is None or hashlib.sha256(candidate.read_bytes()).hexdigest() == want:
                return candidate
    raise VerifyError(
        f"photo {shown(sample['file'])} of the reference not found (or different) in "
        + ", ".join(str(p) for p in search)
    )


def pixel_sha256(pixels: torch.Tensor) -> str:
    """The same hash as the reference script: float32 values, C order, little-endian."""
    array = pixels.detach().float().contiguous().cpu().numpy().astype("<f4", copy=False)
    return hashlib.sha256(array.tobytes()).hexdigest()


# --- reading the reference's values ---------------------------------------------------------------------


def head_call(sample: Mapping, role: str, calls: Sequence[str]) -> Mapping | None:
    """The first recorded call of a head (the prompt's forward pass) in the first call that reached it."""
    for call in calls:
        head = ((sample.get("calls") or {}).get(call) or {}).get("heads", {}).get(role)
        if isinstance(head, Mapping) and head.get("calls"):
            return head["calls"][0]
    return None


def flat(value: Any) -> list[float]:
    if isinstance(value, Mapping):
        value = value.get("values", [])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, list):
        return [x for v in value for x in flat(v)]
    return []


def _expert_reference(value: Any) -> list[tuple[str, dict[str, float]]]:
    """expert_score()'s 12 scores as {key: score}: a dict by key or name, or a list in either order."""
    if isinstance(value, Mapping):
        by_name = {d.name.lower(): k for k, d in BY_KEY.items()}
        out = {}
        for name, v in value.items():
            key = name if name in BY_KEY else by_name.get(str(name).strip().lower())
            if key is not None and flat(v):
                out[key] = flat(v)[-1]
        return [("by name", out)] if out else []
    values = flat(value)
    if len(values) != len(KEYS):
        return []
    return [(label, dict(zip(order, values, strict=True))) for label, order in
            (("official order", OFFICIAL_ORDER), ("A-L order", KEYS))]  # fmt: skip


def hidden_diff(ref: Any, h: torch.Tensor | None) -> float | None:
    """Difference of a hidden state from the reference's summary, in units of its RMS element (None:
    the reference has no summary)."""
    if h is None or not isinstance(ref, Mapping) or not ref.get("norm"):
        return None
    first = flat(ref.get("first", []))
    norm = float(ref["norm"])
    rms = max(norm / math.sqrt(max(h.numel(), 1)), 1e-12)
    ours = h[: len(first)].tolist()
    return max(
        [abs(norm - float(h.norm())) / norm, *(abs(a - b) / rms for a, b in zip(first, ours, strict=True))]
    )


# --- head comparisons: (score difference, hidden difference, note) or None without reference data ---------


def _compare_regression(values: Mapping, sample: Mapping) -> tuple[float, float | None, str] | None:
    ref = head_call(sample, "regression", ("score", "run_metavoter"))
    out = flat(ref.get("output")) if ref else []
    if not out:
        return None
    return abs(values["regression"] - out[-1]), hidden_diff(ref.get("input"), values["reg_hidden"]), ""


def _compare_expert(values: Mapping, sample: Mapping) -> tuple[float, float | None, str] | None:
    options = _expert_reference(((sample.get("calls") or {}).get("expert_score") or {}).get("output"))
    hook = head_call(sample, "expert", ("expert_score", "run_metavoter"))
    if not options:
        return None
    ours = values["expert"]
    label, ref = min(options, key=lambda o: max(abs(ours[k] - v) for k, v in o[1].items()))
    score = max(abs(ours[k] - v) for k, v in ref.items())
    return score, hidden_diff(hook.get("input") if hook else None, values["exp_hidden"]), label


def _compare_metavoter(values: Mapping, sample: Mapping) -> tuple[float, float | None, str] | None:
    out = flat(((sample.get("calls") or {}).get("run_metavoter") or {}).get("output"))
    hook = head_call(sample, "metavoter", ("run_metavoter",))
    ref_in = flat(hook.get("input")) if hook else []
    if not out and len(ref_in) != 3:
        return None
    diffs = [abs(values["metavoter"] - out[0])] if out else []
    if len(ref_in) == 3 and values.get("metavoter_in"):
        diffs += [abs(a - b) for a, b in zip(values["metavoter_in"], ref_in, strict=True)]
    return max(diffs), None, "inputs and output" if len(ref_in) == 3 else "output"


COMPARE: dict[str, Callable[[Mapping, Mapping], tuple[float, float | None, str] | None]] = {
    "regression": _compare_regression,
    "expert": _compare_expert,
    "metavoter": _compare_metavoter,
}
