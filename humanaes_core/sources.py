"""Where a model comes from: a local checkpoint directory or a Hugging Face hub id.

Hub downloads go into the platformdirs cache (with a progress bar) so the app and the CLIs share
them. Offline, a hub id that is not cached fails with one paragraph that says how to get the weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from .checkpoint import is_checkpoint
from .errors import ModelNotAvailableError

KNOWN_MODELS = ("KwaiVGI/HumanAesExpert-1B", "KwaiVGI/HumanAesExpert-8B")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """Root of downloaded and converted models (HUMANAES_MODELS overrides it)."""
    env = os.environ.get("HUMANAES_MODELS", "").strip()
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("humanaes", appauthor=False))


def _offline_message(repo_id: str, reason: str) -> str:
    return (
        f"The model {repo_id!r} is not on this machine and could not be downloaded ({reason}). "
        f"With internet access, run the same command again and it downloads into {cache_dir() / 'hub'}. "
        f"On an offline machine, download it elsewhere (`hf download {repo_id} --local-dir HumanAesExpert`), "
        "copy that folder here, convert it with `humanaes-import HumanAesExpert my-model` and pass "
        "`--model my-model`; or pass any native checkpoint directory to --model."
    )


def download(repo_id: str, progress: type | None = None) -> Path:
    """Snapshot of a hub repository in our cache: from the cache when present, else downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    kwargs: dict = {"repo_id": repo_id, "cache_dir": cache_dir() / "hub"}
    if progress is not None:
        kwargs["tqdm_class"] = progress
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError):
        pass
    try:
        return Path(snapshot_download(**kwargs))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise ModelNotAvailableError(_offline_message(repo_id, "offline")) from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        reason = f"the hub answered HTTP {status}" if status else "no connection to the hub"
        raise ModelNotAvailableError(_offline_message(repo_id, reason)) from e
    except OSError as e:
        raise ModelNotAvailableError(
            _offline_message(repo_id, f"network error: {e.__class__.__name__}")
        ) from e


def resolve_model(model: str | os.PathLike, progress: type | None = None) -> Path:
    """A native checkpoint directory for `model` (a directory or a hub id)."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(
                f"{path} is a file; --model takes a checkpoint directory or a hub id"
            )
        if is_checkpoint(path):
            return path
        if (path / "config.json").is_file():
            raise ModelNotAvailableError(
                f"{path} looks like a released HumanAesExpert checkpoint in InternVL's original layout; "
                f"convert it first with `humanaes-import {path} OUT` and pass OUT to --model."
            )
        raise ModelNotAvailableError(f"{path} is not a HumanAes checkpoint directory (no humanaes.json)")
    text = str(model)
    if not _HUB_ID.match(text):
        raise ModelNotAvailableError(
            f"model {text!r} is neither an existing directory nor a hub id like {KNOWN_MODELS[0]!r}"
        )
    snapshot = download(text, progress)
    if is_checkpoint(snapshot):
        return snapshot
    raise ModelNotAvailableError(
        f"{text} was downloaded to {snapshot} in InternVL's original layout; converting released checkpoints "
        f"needs `humanaes-import {snapshot} OUT` (then pass OUT to --model)."
    )
