"""Record what the released HumanAesExpert model computes, so `humanaes-import --verify` can compare.

Run it in the release's own environment (transformers 4.44.2, torch, torchvision, a CUDA GPU), with
internet or a downloaded snapshot; it imports nothing from HumanAes:

    python tools/release_reference.py --model KwaiVGI/HumanAesExpert-1B --out reference.json \\
        resources/samples/*.jpg

It loads the model exactly as the release's README and test.py do (``AutoModel.from_pretrained(...,
torch_dtype=float16, trust_remote_code=True)``, ``AutoTokenizer(..., use_fast=False)``), decodes each
photo with the release's ``load_image`` (PIL, ``convert('RGB')``, InternVL's dynamic tiling, bicubic
448 px tiles, ImageNet mean/std) and calls ``score()``, ``run_metavoter()`` and ``expert_score()``.
Nothing is changed in the model: the tokenizer is wrapped only to note what it is asked, and forward
hooks only read.

reference.json (format "humanaes-release-reference", version 1)::

    {"format": "humanaes-release-reference", "version": 1,
     "model": "<--model>", "environment": {"python", "torch", "transformers", "device", "dtype"},
     "settings": {"question": "<image>\\nRate the aesthetics of this human picture.", "max_num": 12,
                  "input_size": 448},
     "level_ids": {"bad": {"space": [ids of " bad"], "nospace": [ids of "bad"]}, ...},
     "samples": [{
        "file": "astronaut.jpg", "path": "<as given>", "file_sha256": "<sha256 of the photo's bytes>",
        "pixel_values": {"shape": [7, 3, 448, 448], "dtype": "float32",
                         "sha256": "<sha256 of the float32 bytes, C order, little-endian>",
                         "stats": {"mean", "std", "min", "max"}, "first": [8 values]},
        "calls": {"score" | "run_metavoter" | "expert_score": {
            "output": <what the call returned, as JSON>, "text": <expert_score's text, if any>,
            "error": null | "<exception>",
            "prompts": [{"text": "<what the tokenizer was given>", "input_ids": [...]}],
            "forward_ids": [[input_ids the model's forward received], ...],
            "heads": {"regression" | "expert" | "metavoter" | "lm": {
                "module": "<dotted name>", "type": "<class name>",
                "calls": [{"input": SUMMARY, "output": SUMMARY,
                           "level_logits": {"<token id>": logit, ...}}]}}}}}]}

A SUMMARY of a tensor is {"shape", "norm", "first", "values"}: "norm" and "first" (8 values) are of
its last row (the last position of a sequence, or the one hidden state a head reads), "values" the
whole tensor flattened when it has at most 64 elements (a head's scores, the MetaVoter's 3 inputs).
"level_logits" (lm head only) are the last position's logits of every token in "level_ids".

Heads are found by module name: "regress" (regression), "expert", "voter" (MetaVoter), and the
language model's output layer (lm_head / output); only the outermost called module of each kind is
hooked (an expert head kept in a ModuleDict: its first sub-module, which reads the hidden state),
and at most `MAX_HOOK_CALLS` calls of it are kept per call (the first is the prompt's forward pass).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FORMAT = "humanaes-release-reference"
VERSION = 1
QUESTION = "<image>\nRate the aesthetics of this human picture."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LEVELS = ("bad", "poor", "fair", "good", "excellent")
CALLS = ("score", "run_metavoter", "expert_score")
FIRST = 8
MAX_VALUES = 64
MAX_HOOK_CALLS = 4
MAX_OUTPUT_VALUES = 4096
CONTAINERS = frozenset({"ModuleDict", "ModuleList"})
#: Module-name patterns of the heads; the language model's output layer is matched by `_is_lm_head`.
HEAD_PATTERNS = {"regression": re.compile(r"regress"), "expert": re.compile(r"expert"),
                 "metavoter": re.compile(r"voter")}  # fmt: skip


# --- pure helpers (tested with fake models) ------------------------------------------------------------


def tensor_sha256(tensor: Any) -> str:
    """sha256 of a tensor's values as float32, C order, little-endian: the hash both sides compute."""
    import numpy as np

    array = tensor.detach().float().contiguous().cpu().numpy()
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def _floats(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def summary(tensor: Any) -> dict:
    """Shape, and the norm and first values of the last row (a whole small tensor in "values")."""
    t = tensor.detach().float().cpu()
    row = t.reshape(-1, t.shape[-1])[-1] if t.dim() else t.reshape(1)
    out: dict = {
        "shape": list(t.shape),
        "norm": float(row.norm()),
        "first": _floats(row[:FIRST].tolist()),
    }
    if t.numel() <= MAX_VALUES:
        out["values"] = _floats(t.flatten().tolist())
    return out


def pixel_record(pixel_values: Any) -> dict:
    """What identifies the decoded photo: shape, hash of the float32 values, a few statistics."""
    t = pixel_values.detach().float().cpu()
    return {
        "shape": list(t.shape),
        "dtype": "float32",
        "sha256": tensor_sha256(t),
        "stats": {
            "mean": float(t.mean()),
            "std": float(t.std()),
            "min": float(t.min()),
            "max": float(t.max()),
        },
        "first": _floats(t.flatten()[:FIRST].tolist()),
    }


def jsonable(value: Any) -> Any:
    """A call's return value as JSON: tensors and arrays as lists (large ones summarised)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach"):  # a torch tensor
        if value.numel() > MAX_OUTPUT_VALUES:
            return summary(value)
        return jsonable(value.detach().float().cpu().tolist())
    if hasattr(value, "tolist"):  # numpy
        return jsonable(value.tolist())
    return repr(value)


def _first_tensor(value: Any) -> Any:
    """The first tensor in a hook's input or output (tuples, lists, dicts, model outputs)."""
    if hasattr(value, "detach"):
        return value
    if isinstance(value, dict) or (hasattr(value, "values") and callable(value.values)):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for v in value:
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def _summarise(value: Any) -> Any:
    """A hook's output: one tensor, or a structure of them (an expert head may return a dict)."""
    if hasattr(value, "detach"):
        return summary(value)
    if isinstance(value, dict):
        return {str(k): _summarise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_summarise(v) for v in value]
    return jsonable(value)


def _is_lm_head(name: str) -> bool:
    return name.endswith("lm_head") or name.endswith("language_model.output")


def find_heads(model: Any) -> dict[str, tuple[str, Any]]:
    """The outermost called module of each head kind, by name: {role: (dotted name, module)}.

    `named_modules` lists a module before its children, so the first match of a kind is the outermost.
    Containers (ModuleDict, ModuleList) are never called themselves: their first called child is taken.
    """
    found: dict[str, tuple[str, Any]] = {}
    for name, module in model.named_modules():
        if not name or type(module).__name__ in CONTAINERS:
            continue
        roles = [r for r, pattern in HEAD_PATTERNS.items() if pattern.search(name)]
        if _is_lm_head(name):
            roles.append("lm")
        for role in roles:
            found.setdefault(role, (name, module))
    return found


class Recorder:
    """Hook bookkeeping: which call is running, and what the tokenizer and the heads saw during it."""

    def __init__(self, level_ids: dict[str, dict[str, list[int]]] | None = None) -> None:
        self.call: str | None = None
        self.calls: dict[str, dict] = {}
        self.level_token_ids = sorted(
            {ids[0] for v in (level_ids or {}).values() for ids in v.values() if ids}
        )
        self._handles: list[Any] = []

    def begin(self, call: str) -> dict:
        self.call = call
        entry = {"output": None, "error": None, "prompts": [], "forward_ids": [], "heads": {}}
        self.calls[call] = entry
        return entry

    def end(self) -> None:
        self.call = None

    def note_prompt(self, text: Any, ids: Any) -> None:
        if self.call is not None:
            self.calls[self.call]["prompts"].append({"text": jsonable(text), "input_ids": jsonable(ids)})

    def note_forward(self, ids: Any) -> None:
        if self.call is not None and ids is not None:
            forwards = self.calls[self.call]["forward_ids"]
            if len(forwards) < MAX_HOOK_CALLS:
                forwards.append(jsonable(ids.reshape(-1) if hasattr(ids, "reshape") else ids))

    def head_hook(self, role: str, name: str, module: Any) -> Callable:
        def hook(_module: Any, args: tuple, output: Any) -> None:
            if self.call is None:
                return
            heads = self.calls[self.call]["heads"]
            entry = heads.setdefault(role, {"module": name, "type": type(module).__name__, "calls": []})
            if len(entry["calls"]) >= MAX_HOOK_CALLS:
                return
            x, y = _first_tensor(args), _first_tensor(output)
            record: dict = {"input": summary(x) if x is not None else None, "output": _summarise(output)}
            if role == "lm" and y is not None and self.level_token_ids:
                last = y.detach().float().reshape(-1, y.shape[-1])[-1]
                record["output"] = None  # a vocabulary-wide row: only the level tokens are kept
                record["level_logits"] = {str(i): float(last[i]) for i in self.level_token_ids}
            entry["calls"].append(record)

        return hook

    def attach(self, model: Any) -> dict[str, str]:
        """Hook every head found and the model's forward; returns {role: module name}."""
        heads = find_heads(model)
        for role, (name, module) in heads.items():
            self._handles.append(module.register_forward_hook(self.head_hook(role, name, module)))

        def forward_pre(_module: Any, args: tuple, kwargs: dict) -> None:
            ids = kwargs.get("input_ids")
            if (
                ids is None
                and len(args) > 1
                and hasattr(args[1], "dtype")
                and not args[1].is_floating_point()
            ):
                ids = args[1]  # InternVLChatModel.forward(pixel_values, input_ids, ...)
            self.note_forward(ids)

        self._handles.append(model.register_forward_pre_hook(forward_pre, with_kwargs=True))
        return {role: name for role, (name, _) in heads.items()}

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class RecordingTokenizer:
    """The release's tokenizer, passed through unchanged, noting each text it encodes."""

    def __init__(self, tokenizer: Any, recorder: Recorder) -> None:
        self._tokenizer = tokenizer
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Any:
        out = self._tokenizer(text, *args, **kwargs)
        ids = out.get("input_ids")
        self._recorder.note_prompt(text, ids)
        return out

    def encode(self, text: Any, *args: Any, **kwargs: Any) -> Any:
        ids = self._tokenizer.encode(text, *args, **kwargs)
        self._recorder.note_prompt(text, ids)
        return ids


def level_ids(tokenizer: Any) -> dict[str, dict[str, list[int]]]:
    """Each level word's token ids with and without a leading space (the LM score reads one of them)."""
    return {
        level: {
            "space": list(tokenizer.encode(" " + level, add_special_tokens=False)),
            "nospace": list(tokenizer.encode(level, add_special_tokens=False)),
        }
        for level in LEVELS
    }


def record_photo(model: Any, tokenizer: Any, recorder: Recorder, pixel_values: Any, question: str) -> dict:
    """Run the three calls on one photo's pixels; one call failing is recorded, not fatal."""
    wrapped = RecordingTokenizer(tokenizer, recorder)
    calls: dict[str, Callable[[], Any]] = {
        "score": lambda: model.score(wrapped, pixel_values, question),
        "run_metavoter": lambda: model.run_metavoter(wrapped, pixel_values),
        "expert_score": lambda: model.expert_score(wrapped, pixel_values),
    }
    recorder.calls = {}
    for call in CALLS:
        entry = recorder.begin(call)
        try:
            result = calls[call]()
        except Exception as e:  # recorded; the other calls still run
            entry["error"] = f"{type(e).__name__}: {e}"
        else:
            if call == "expert_score" and isinstance(result, tuple) and len(result) == 2:
                result, entry["text"] = result
            entry["output"] = jsonable(result)
        finally:
            recorder.end()
    return recorder.calls


def write_json(data: dict, out: Path) -> None:
    """Write strict JSON atomically (a temporary file in the same folder, then renamed)."""
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the release's preprocessing (load_image of its test.py, described by InternVL) -----------------


def _closest_ratio(aspect: float, ratios: list[tuple[int, int]], width: int, height: int, size: int) -> tuple:
    best, best_diff = (1, 1), float("inf")
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best, best_diff = ratio, diff
        elif diff == best_diff and width * height > 0.5 * size * size * ratio[0] * ratio[1]:
            best = ratio
    return best


def _tiles(image: Any, max_num: int, size: int) -> Iterator[Any]:
    """InternVL's dynamic tiling: the closest grid of 1..max_num tiles, row by row, plus a thumbnail."""
    width, height = image.size
    ratios = sorted(
        {
            (i, j)
            for n in range(1, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= max_num
        },
        key=lambda r: r[0] * r[1],
    )
    cols, rows = _closest_ratio(width / height, ratios, width, height, size)
    resized = image.resize((cols * size, rows * size))
    for k in range(cols * rows):
        x, y = (k % cols) * size, (k // cols) * size
        yield resized.crop((x, y, x + size, y + size))
    if cols * rows != 1:
        yield image.resize((size, size))


def load_image(path: Path, max_num: int = 12, size: int = 448) -> Any:
    """The release's load_image: float32 pixel values [tiles, 3, size, size]."""
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from torchvision.transforms.functional import InterpolationMode

    transform = T.Compose(
        [
            T.Resize((size, size), interpolation=InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
    image = Image.open(path).convert("RGB")
    return torch.stack([transform(tile) for tile in _tiles(image, max_num, size)])


# --- main ---------------------------------------------------------------------------------------------


def _environment(device: str, dtype: str) -> dict:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "dtype": dtype,
    }


def run(model_id: str, photos: list[Path], out: Path, max_num: int, device: str, question: str) -> dict:
    """Load the release, record every photo, write `out`; returns the reference."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model = AutoModel.from_pretrained(
        model_id, torch_dtype=dtype, low_cpu_mem_usage=True, trust_remote_code=True
    ).eval()
    model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True, use_fast=False)
    ids = level_ids(tokenizer)
    recorder = Recorder(ids)
    heads = recorder.attach(model)
    samples = []
    with torch.no_grad():
        for path in photos:
            pixels = load_image(path, max_num=max_num)
            sample = {
                "file": path.name,
                "path": str(path),
                "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "pixel_values": pixel_record(pixels),
            }
            sample["calls"] = record_photo(model, tokenizer, recorder, pixels.to(device, dtype), question)
            samples.append(sample)
            outputs = ", ".join(f"{c}={sample['calls'][c]['output']!r:.60}" for c in CALLS)
            print(f"{path.name}: {outputs}")
    recorder.detach()
    reference = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_id,
        "environment": _environment(device, str(dtype).removeprefix("torch.")),
        "settings": {"question": question, "max_num": max_num, "input_size": 448},
        "hooked_modules": heads,
        "level_ids": ids,
        "samples": samples,
    }
    write_json(reference, out)
    return reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Record the released HumanAesExpert's pixels, prompts and head outputs for sample "
        "photos (run in the release's environment; then `humanaes-import SRC OUT --verify reference.json`)."
    )
    parser.add_argument("photos", nargs="+", type=Path, help="sample photos (resources/samples/*.jpg)")
    parser.add_argument("--model", default="KwaiVGI/HumanAesExpert-1B", help="hub id or local snapshot")
    parser.add_argument("--out", type=Path, default=Path("reference.json"), help="where to write the JSON")
    parser.add_argument("--max-num", type=int, default=12, help="most tiles per photo (the release's 12)")
    parser.add_argument("--device", default="cuda", help="cuda (fp16, as the release runs) or cpu (fp32)")
    parser.add_argument("--question", default=QUESTION, help="the question score() is asked")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.photos if not p.is_file()]
    if missing:
        parser.error(f"not a file: {', '.join(missing)}")
    if args.out.suffix.lower() != ".json":
        parser.error("--out must end in .json")
    run(args.model, args.photos, args.out, args.max_num, args.device, args.question)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
