"""Where a model comes from: a local checkpoint directory or a Hugging Face hub id.

Hub downloads go into the platformdirs cache (with a progress bar) so the app and the CLIs share
them. Offline, a hub id that is not cached fails with one paragraph that says how to get the weights.
A released checkpoint in InternVL's original layout is converted once, on first use, into
`cache_dir()/converted/<owner>--<name>--<revision>` and read from there afterwards.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from humanaes_core.errors import ModelNotAvailableError
from humanaes_core.model.locations import cache_dir
from humanaes_core.model.meta import is_checkpoint

log = logging.getLogger(__name__)

KNOWN_MODELS = ("KwaiVGI/HumanAesExpert-1B", "KwaiVGI/HumanAesExpert-8B")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
                f"{path} looks like a released HumanAesExpert checkpoint in InternVL's original layout, "
                "which HumanAes does not load directly; convert it once with "
                f"`humanaes-import {path} OUT` (OUT: a new folder) and pass OUT to --model."
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
    return import_snapshot(text, snapshot)


def converted_dir(repo_id: str, revision: str) -> Path:
    """Where the native conversion of one hub revision is cached."""
    return cache_dir() / "converted" / f"{repo_id.replace('/', '--')}--{revision}"


def import_snapshot(repo_id: str, snapshot: Path) -> Path:
    """The native checkpoint of a downloaded original-layout snapshot, converted on first use.

    The revision is the snapshot folder's name (the commit hash in the hub cache), so a new release
    is converted again while an unchanged one is converted only once.
    """
    from humanaes_core.importer import ImportFailure, import_checkpoint, looks_like_original

    target = converted_dir(repo_id, snapshot.name)
    if is_checkpoint(target):
        return target
    if not looks_like_original(snapshot):
        raise ModelNotAvailableError(
            f"{repo_id} (downloaded to {snapshot}) is neither a HumanAes checkpoint nor a released "
            "HumanAesExpert checkpoint in InternVL's original layout"
        )
    log.warning("converting %s to the native format (once; later runs load %s)", repo_id, target)
    try:
        import_checkpoint(
            snapshot, target, overwrite=True, provenance={"hub_id": repo_id, "revision": snapshot.name}
        )
    except ImportFailure as e:
        raise ModelNotAvailableError(
            f"{repo_id} was downloaded to {snapshot} but could not be converted automatically. {e}\n"
            f"Convert it by hand with `humanaes-import {snapshot} OUT [options]` and pass OUT to --model."
        ) from None
    return target
