"""The native checkpoint: a self-describing directory that `load_scorer(dir)` loads alone.

Layout (everything safetensors or JSON; nothing is unpickled and no code from the directory runs):

    humanaes.json           format/version, heads sizes, prompt template, preprocessing, provenance
    config.json             transformers' native InternVLConfig of the backbone
    model*.safetensors      backbone weights in transformers' native InternVL naming (sharded if large)
    heads.safetensors       regression, expert and MetaVoter weights
    tokenizer.json, tokenizer_config.json, ...   the tokenizer (fast, tokenizers-backed)
    adapter/                optional peft LoRA adapter of the language model (merged at load
                            unless the language model is 4-bit)
    manifest.json           size and sha256 of every other file; the model fingerprint is its hash

Loading verifies the directory against its manifest before anything is read (``verify``): every listed
file must exist with its size and sha256, the small files (JSON, tokenizer, heads) are hashed on every
load, and the large weight files on the first load only: a verified stamp keyed by the file's path,
size, mtime, ctime and inode (in the model cache folder, ``verified.json``) lets later loads skip the
hash until the file changes in any way. A file the loader would read that the manifest does not list
(weights, JSON, an adapter) is refused, because it could change the model without changing its
fingerprint. Pickles (``*.bin``, ``*.pt``...) and Python files are never opened or imported: weights load
with ``use_safetensors=True``, tokenizers and configs with ``trust_remote_code=False``, and an adapter
only from ``adapter_model.safetensors``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import torch
from safetensors.torch import load_file, save_file

from humanaes_core.errors import CheckpointError
from humanaes_core.model.heads import Heads, HeadsConfig
from humanaes_core.model.modeling import HumanAesModel
from humanaes_core.model.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from humanaes_core.model.prompts import PromptConfig

log = logging.getLogger(__name__)

FORMAT = "humanaes-checkpoint"
FORMAT_VERSION = 1
META_FILE = "humanaes.json"
MANIFEST_FILE = "manifest.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: Files at least this large are hashed on their first load only (then trusted while unchanged).
STAMP_MIN_BYTES = 32 << 20
STAMPS_FILE = "verified.json"
_MAX_STAMPS = 512
#: Top-level files the loaders (ours, transformers, tokenizers) may read: an unlisted one is refused. Other
#: files (a README, the user's own metrics.json) are never read and may sit beside the checkpoint's own.
_LOADER_READS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "humanaes.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "*.tiktoken",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
)
#: Files that could run code if something opened them: never read, but worth a warning.
_DANGEROUS = ("*.py", "*.pyc", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib", "*.so")


@dataclass
class ImageConfig:
    """Preprocessing the backbone was trained with (DESIGN section 4)."""

    image_size: int = 448
    max_tiles: int = 12
    use_thumbnail: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class CheckpointMeta:
    """Contents of humanaes.json."""

    heads: HeadsConfig
    prompt: PromptConfig = field(default_factory=PromptConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    name: str = "HumanAesExpert"
    provenance: dict = field(default_factory=dict)  # where the weights came from; training config etc.

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "heads": self.heads.to_dict(),
            "prompt": self.prompt.to_dict(),
            "image": asdict(self.image),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict, where: Path) -> CheckpointMeta:
        if data.get("format") != FORMAT:
            raise CheckpointError(f"{where}: not a HumanAes checkpoint (format {data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: checkpoint format version {data['format_version']} is newer than this HumanAes "
                f"supports ({FORMAT_VERSION}); update HumanAes"
            )
        image = dict(data.get("image", {}))
        for k in ("mean", "std"):
            if k in image:
                image[k] = tuple(image[k])
        return cls(
            heads=HeadsConfig.from_dict(data["heads"]),
            prompt=PromptConfig.from_dict(data.get("prompt", {})),
            image=ImageConfig(**image),
            name=data.get("name", "HumanAesExpert"),
            provenance=data.get("provenance", {}),
        )


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    path = Path(path)
    try:
        data = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no {META_FILE}; this is not a HumanAes checkpoint directory"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}/{META_FILE} is unreadable: {e}") from None
    return CheckpointMeta.from_json(data, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    entries = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
    }
    (directory / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))


def _read_manifest(directory: Path) -> dict[str, dict]:
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())["files"]
        if not isinstance(manifest, dict):
            raise ValueError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{directory}: missing or unreadable {MANIFEST_FILE} ({e})") from None
    for name, entry in manifest.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name or ":" in name:
            raise CheckpointError(
                f"{directory}: {MANIFEST_FILE} names a file outside the checkpoint: {name!r}"
            )
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or "sha256" not in entry:
            raise CheckpointError(f"{directory}: {MANIFEST_FILE} has a malformed entry for {name!r}")
    return manifest


def check_manifest(directory: Path, full: bool = False) -> dict:
    """Refuse a checkpoint whose files are missing or changed size (or, with `full`, changed content)."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    problems = []
    for name, entry in manifest.items():
        p = directory / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {p.stat().st_size}, manifest says {entry['size']}")
        elif full and _sha256(p) != entry["sha256"]:
            problems.append(f"{name}: content does not match the manifest's sha256")
    if problems:
        raise CheckpointError(_damaged(directory, problems))
    return manifest


def _damaged(directory: Path, problems: list[str]) -> str:
    return (
        f"{directory}: checkpoint is damaged or incomplete, so it was not loaded:\n  "
        + "\n  ".join(problems)
        + "\nDownload, import or train it again (or restore it from a backup)."
    )


def _stamps_path() -> Path:
    from humanaes_core.model.sources import cache_dir  # sources imports this module

    return cache_dir() / STAMPS_FILE


def _stamp_of(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
    }


def _load_stamps() -> dict[str, dict]:
    try:
        data = json.loads(_stamps_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_stamps(new: dict[str, dict]) -> None:
    """Merge ``new`` into the stamp file, atomically; a stamp that cannot be saved only costs a re-hash."""
    target = _stamps_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stamps = _load_stamps()
        stamps.update(new)
        if len(stamps) > _MAX_STAMPS:  # keep the newest
            ordered = sorted(stamps.items(), key=lambda kv: kv[1].get("verified_at", 0.0))
            stamps = dict(ordered[-_MAX_STAMPS:])
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(stamps, f, indent=0)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        log.debug("could not record verified checkpoint files in %s: %s", target, e)


def _unlisted(directory: Path, manifest: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Files in the directory the manifest does not list: (ones a loader would read, code or pickles)."""
    read, dangerous = [], []
    candidates = [p for p in directory.iterdir() if p.is_file()]
    adapter = directory / ADAPTER_DIR
    if adapter.is_dir():
        candidates += [p for p in adapter.rglob("*") if p.is_file()]
    for p in candidates:
        rel = p.relative_to(directory).as_posix()
        if rel in manifest or rel == MANIFEST_FILE:
            continue
        if any(fnmatch.fnmatch(p.name.lower(), pat) for pat in _DANGEROUS):
            dangerous.append(rel)
        elif rel.startswith(f"{ADAPTER_DIR}/") or any(fnmatch.fnmatch(p.name, pat) for pat in _LOADER_READS):
            read.append(rel)
    return read, dangerous


def verify(directory: str | os.PathLike) -> dict:
    """Refuse a checkpoint that does not match its manifest; returns the manifest.

    Small files are hashed every time; files of ``STAMP_MIN_BYTES`` or more once, then skipped while
    a stamp shows them unchanged since (same path, size, mtime, ctime and inode). Raises
    ``CheckpointError`` naming every file that is missing, changed, or read by the loader but unlisted.
    """
    directory = Path(directory)
    manifest = check_manifest(directory)
    problems: list[str] = []
    unlisted, dangerous = _unlisted(directory, manifest)
    problems += [
        f"{name}: not listed in {MANIFEST_FILE} (it would change the model unnoticed)" for name in unlisted
    ]
    if dangerous:
        names = ", ".join(sorted(dangerous))
        log.warning("%s: ignoring files that are never loaded (no pickles, no code): %s", directory, names)
    stamps = _load_stamps()
    fresh: dict[str, dict] = {}
    for name, entry in manifest.items():
        p = directory / name
        key = os.path.abspath(p)
        stamp = stamps.get(key)
        if entry["size"] >= STAMP_MIN_BYTES and stamp is not None:
            with contextlib.suppress(OSError):
                current = _stamp_of(p, entry["sha256"])
                if all(stamp.get(k) == v for k, v in current.items()):
                    continue  # verified before and untouched since
        if _sha256(p) != entry["sha256"]:
            problems.append(f"{name}: content does not match the manifest's sha256")
        elif entry["size"] >= STAMP_MIN_BYTES:
            with contextlib.suppress(OSError):
                fresh[key] = {**_stamp_of(p, entry["sha256"]), "verified_at": time.time()}
    if problems:
        raise CheckpointError(_damaged(directory, problems))
    if fresh:
        _save_stamps(fresh)
    return manifest


def fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a checkpoint's weights and settings, without loading it (hash of its manifest)."""
    try:
        data = (Path(directory) / MANIFEST_FILE).read_bytes()
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot read {MANIFEST_FILE} ({e})") from None
    return hashlib.sha256(data).hexdigest()[:16]


def save_checkpoint(
    model: HumanAesModel,
    directory: str | os.PathLike,
    meta: CheckpointMeta,
    adapter: torch.nn.Module | None = None,
) -> Path:
    """Write a complete checkpoint atomically: into a temporary sibling, then renamed into place.

    `adapter`: the peft model whose LoRA layers are injected into `model.backbone`; its LoRA weights
    go to `adapter/` and the backbone's own weights are saved without them.
    """
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        if adapter is not None:
            adapter.save_pretrained(tmp / ADAPTER_DIR, safe_serialization=True)
            model.backbone.save_pretrained(tmp, state_dict=_base_state_dict(model.backbone))
        else:
            model.backbone.save_pretrained(tmp)
        heads_state = {k: v.detach().cpu().float().contiguous() for k, v in model.heads.state_dict().items()}
        save_file(heads_state, str(tmp / HEADS_FILE), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(
            json.dumps(meta.to_json(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        write_manifest(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _base_state_dict(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own weights from a model with LoRA layers injected (LoRA factors left out)."""
    return {k.replace(".base_layer.", "."): v for k, v in backbone.state_dict().items() if "lora_" not in k}


def load_model(
    directory: str | os.PathLike,
    *,
    device: torch.device,
    dtype: torch.dtype,
    quantization_config: object | None = None,
) -> tuple[HumanAesModel, CheckpointMeta]:
    """Build the model from a checkpoint directory (no pickle, no remote code)."""
    # transformers is imported here, not at module level: a fully cached rescan never needs it.
    from transformers import AutoTokenizer, InternVLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    meta = read_meta(directory)
    verify(directory)
    hf_logging.disable_progress_bar()  # per-tensor bars mean nothing to a photographer
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    kwargs: dict = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    kwargs["attn_implementation"] = "sdpa"
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device}
    try:
        backbone = InternVLForConditionalGeneration.from_pretrained(directory, **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}: cannot load the backbone weights: {e}") from None
    if quantization_config is None:
        backbone.to(device)
    if (directory / ADAPTER_DIR).is_dir():
        backbone = _apply_adapter(backbone, directory / ADAPTER_DIR, merge=quantization_config is None)
    backbone.eval()
    heads = Heads(meta.heads)
    try:
        state = load_file(str(directory / HEADS_FILE))
        heads.load_state_dict(state, strict=True)
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{directory}/{HEADS_FILE}: {e}") from None
    heads.to(device).eval()
    num_image_token = int(
        (meta.image.image_size // backbone.config.vision_config.patch_size[0]) ** 2
        * backbone.config.downsample_ratio**2
    )
    model = HumanAesModel(backbone, heads, tokenizer, meta.prompt, num_image_token)
    return model.eval(), meta


def _apply_adapter(backbone: torch.nn.Module, adapter_dir: Path, merge: bool) -> torch.nn.Module:
    from peft import PeftModel

    # peft falls back to a pickled adapter_model.bin (or even the hub) when the safetensors file is
    # missing; only the verified safetensors file may be read.
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(
            f"{adapter_dir}: no {ADAPTER_WEIGHTS}; adapters are loaded from safetensors only"
        )
    peft_model = PeftModel.from_pretrained(backbone, adapter_dir, is_trainable=False)
    # Unmerged (4-bit), the LoRA layers stay injected in the base model, which is what we drive.
    return peft_model.merge_and_unload() if merge else peft_model.get_base_model()
