"""A checkpoint's manifest: every file's size and sha256, verified before anything is loaded.

Loading verifies the directory against its manifest before anything is read (``verify``): every listed
file must exist with its size and sha256, the small files (JSON, tokenizer, heads) are hashed on every
load, and the large weight files on the first load only: a verified stamp keyed by the file's path,
size, mtime, ctime and inode (in the model cache folder, ``verified.json``) lets later loads skip the
hash until the file changes in any way. A file the loader would read that the manifest does not list
(weights, JSON, an adapter) is refused, because it could change the model without changing its
fingerprint. Torch-free: the fingerprint of a model is known without loading it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import time
from pathlib import Path, PurePosixPath

from humanaes_core.errors import CheckpointError
from humanaes_core.files import atomic_write
from humanaes_core.model.locations import cache_dir
from humanaes_core.model.meta import ADAPTER_DIR, MANIFEST_FILE

log = logging.getLogger(__name__)

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    """List every file of `directory` with its size and sha256 (the manifest itself excepted)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    entries = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
    }
    with atomic_write(directory / MANIFEST_FILE) as f:
        json.dump({"files": entries}, f, indent=1, sort_keys=True)


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
        with atomic_write(target) as f:
            json.dump(stamps, f, indent=0)
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


def checkpoint_fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a checkpoint's weights and settings, without loading it (hash of its manifest)."""
    try:
        data = (Path(directory) / MANIFEST_FILE).read_bytes()
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot read {MANIFEST_FILE} ({e})") from None
    return hashlib.sha256(data).hexdigest()[:16]
