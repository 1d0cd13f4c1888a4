"""A checkpoint's manifest: every file's size and sha256, verified before anything is loaded.

Loading verifies the directory against its manifest before anything is read (``verify``): every listed
file must exist with its size and sha256, the small files (JSON, tokenizer, heads) are hashed on every
load, and the large weight files on the first load only: a verified stamp keyed by the file's path,
size, mtime, ctime and inode (in the model cache folder, ``verified.json``) lets later loads skip the
hash until the file changes in any way. A file the loader would read that the manifest does not list
(weights, JSON, an adapter) is refused, because it could change the model without changing its
fingerprint. For the same reason every file a loader reads lies inside the checkpoint: a link that
leads out of it (except a hub snapshot's links into its own ``blobs``), a shard index or tokenizer
config naming a file elsewhere, and a device or FIFO where a file should be are refused, and the
metadata and tokenizer files must be within their size limits (``meta``) before anything parses them.
Torch-free: the fingerprint of a model is known without loading it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from humanaes_core.errors import CheckpointError, shown
from humanaes_core.files import atomic_write, read_json_file, read_small_file
from humanaes_core.model.locations import cache_dir
from humanaes_core.model.meta import (
    ADAPTER_DIR,
    MANIFEST_FILE,
    MAX_METADATA_BYTES,
    MAX_TOKENIZER_BYTES,
    TOKENIZER_FILES,
)

log = logging.getLogger(__name__)

#: Files at least this large are hashed on their first load only (then trusted while unchanged).
STAMP_MIN_BYTES = 32 << 20
STAMPS_FILE = "verified.json"
_MAX_STAMPS = 512
_PROBLEMS_SHOWN = 5
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
    "*.jinja",
)
#: Folders the loaders read (peft the adapter, transformers extra chat templates): all of each is checked.
_READ_FOLDERS = (ADAPTER_DIR, "additional_chat_templates")
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
        manifest = read_json_file(directory / MANIFEST_FILE, MAX_METADATA_BYTES)["files"]
        if not isinstance(manifest, dict):
            raise ValueError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{directory}: missing or unreadable {MANIFEST_FILE} ({e})") from None
    for name, entry in manifest.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name or ":" in name:
            raise CheckpointError(
                f"{directory}: {MANIFEST_FILE} names a file outside the checkpoint: {shown(name)}"
            )
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or "sha256" not in entry:
            raise CheckpointError(f"{directory}: {MANIFEST_FILE} has a malformed entry for {shown(name)}")
    return manifest


def _roots(directory: Path) -> tuple[str, ...]:
    """Where the checkpoint's files may really be: the folder, and for a hub snapshot its ``blobs``."""
    roots = [os.path.realpath(directory)]
    if directory.resolve().parent.name == "snapshots":  # <cache>/models--owner--name/snapshots/<rev>
        roots.append(os.path.realpath(directory.resolve().parent.parent / "blobs"))
    return tuple(roots)


def _inside(path: Path, roots: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def _size_limit(name: str) -> int | None:
    """The most bytes a file the loaders parse may have (None: weights and other data, unlimited)."""
    base = PurePosixPath(name).name
    if any(fnmatch.fnmatch(base, pattern) for pattern in TOKENIZER_FILES):
        return MAX_TOKENIZER_BYTES
    if base.endswith(".json") and (name.startswith(f"{ADAPTER_DIR}/") or _loader_reads(base)):
        return MAX_METADATA_BYTES
    return None


def _loader_reads(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _LOADER_READS)


def check_manifest(directory: Path, full: bool = False) -> dict:
    """Refuse a checkpoint whose files are missing or changed size (or, with `full`, changed content).

    A listed file must be a regular file inside the checkpoint (see `_roots`) and, if a loader parses
    it, within its size limit.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    roots = _roots(directory)
    problems = []
    for name, entry in manifest.items():
        p = directory / name
        limit = _size_limit(name)
        if not p.is_file():
            problems.append(f"{name}: missing" + (" (not a regular file)" if p.exists() else ""))
        elif not _inside(p, roots):
            problems.append(f"{name}: leads outside the checkpoint (to {os.path.realpath(p)})")
        elif p.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {p.stat().st_size}, manifest says {entry['size']}")
        elif limit is not None and entry["size"] > limit:
            problems.append(f"{name}: {entry['size']:,} bytes, more than the {limit:,} such a file may have")
        elif full and _sha256(p) != entry["sha256"]:
            problems.append(f"{name}: content does not match the manifest's sha256")
    if problems:
        raise CheckpointError(_damaged(directory, problems))
    return manifest


def _damaged(directory: Path, problems: list[str]) -> str:
    """One line: the checkpoint, what is wrong with it (the first few problems) and what to do."""
    shown_problems = "; ".join(problems[:_PROBLEMS_SHOWN])
    more = f" (and {len(problems) - _PROBLEMS_SHOWN} more)" if len(problems) > _PROBLEMS_SHOWN else ""
    return (
        f"{directory}: checkpoint is damaged or incomplete, so it was not loaded: {shown_problems}{more}. "
        "Download, import or train it again (or restore it from a backup)."
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
        data = read_json_file(_stamps_path(), MAX_METADATA_BYTES)
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


def _walk(directory: Path) -> Iterator[Path]:
    """What the loaders may open: the top level, and all of the adapter and chat-template folders
    (links to folders are yielded, never entered)."""
    for p in directory.iterdir():
        if p.name in _READ_FOLDERS and p.is_dir() and not p.is_symlink():
            for folder, dirs, files in os.walk(p):
                base = Path(folder)
                yield from (base / name for name in dirs if (base / name).is_symlink())
                yield from (base / name for name in files)
        elif not p.is_dir() or p.is_symlink():
            yield p


def _unlisted(directory: Path, manifest: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Problems of files the manifest does not list (read by a loader, leading outside, not a regular
    file), and the names of unlisted code or pickles."""
    problems, dangerous = [], []
    roots = _roots(directory)
    for p in _walk(directory):
        rel = p.relative_to(directory).as_posix()
        if rel in manifest or rel == MANIFEST_FILE:
            continue
        if any(fnmatch.fnmatch(p.name.lower(), pat) for pat in _DANGEROUS):
            dangerous.append(rel)
        elif not ("/" in rel or p.name in _READ_FOLDERS or _loader_reads(p.name)):
            continue  # never read: a README, the user's notes (or a link to them) may sit beside
        elif p.is_symlink() and not _inside(p, roots):
            problems.append(f"{rel}: a link that leads outside the checkpoint (to {os.path.realpath(p)})")
        else:
            why = "not listed in" if p.is_file() else "not a regular file, and not listed in"
            problems.append(f"{rel}: {why} {MANIFEST_FILE} (it would change the model unnoticed)")
    return problems, dangerous


def _named_files(directory: Path, manifest: dict[str, dict]) -> list[str]:
    """Problems of the files a verified JSON file names: a shard index's weight_map, a tokenizer
    config's fast_tokenizer_files. Each must be a plain name beside it that the manifest lists."""
    problems = []
    for name in manifest:
        base = PurePosixPath(name)
        if base.name.endswith(".safetensors.index.json"):
            key = "weight_map"
        elif base.name == "tokenizer_config.json":
            key = "fast_tokenizer_files"
        else:
            continue
        try:
            data = read_json_file(directory / name, MAX_METADATA_BYTES)
        except (OSError, ValueError) as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        named = data.get(key) if isinstance(data, dict) else None
        if key == "weight_map" and not isinstance(named, dict):
            problems.append(f"{name}: no weight_map")
            continue
        if isinstance(named, dict):
            named = list(named.values())
        for value in named if isinstance(named, list) else []:
            target = base.parent / value if isinstance(value, str) else None
            if target is None or "/" in value or "\\" in value or value in ("", ".", ".."):
                problems.append(f"{name}: names {shown(value)}, which is not a file beside it")
                break
            if target.as_posix() not in manifest:
                problems.append(f"{name}: names {shown(value)}, which {MANIFEST_FILE} does not list")
                break
    return problems


def verify(directory: str | os.PathLike) -> dict:
    """Refuse a checkpoint that does not match its manifest; returns the manifest.

    Small files are hashed every time; files of ``STAMP_MIN_BYTES`` or more once, then skipped while
    a stamp shows them unchanged since (same path, size, mtime, ctime and inode). Raises
    ``CheckpointError`` naming every file that is missing, changed, or read by the loader but unlisted.
    """
    directory = Path(directory)
    manifest = check_manifest(directory)
    problems, dangerous = _unlisted(directory, manifest)
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
    if not problems:  # the JSON that names files is read only once its hash matched
        problems = _named_files(directory, manifest)
    if problems:
        raise CheckpointError(_damaged(directory, problems))
    if fresh:
        _save_stamps(fresh)
    return manifest


def checkpoint_fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a checkpoint's weights and settings, without loading it (hash of its manifest)."""
    try:
        data = read_small_file(Path(directory) / MANIFEST_FILE, MAX_METADATA_BYTES)
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot read {MANIFEST_FILE} ({e})") from None
    return hashlib.sha256(data).hexdigest()[:16]
