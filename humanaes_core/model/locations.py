"""Where HumanAes keeps models on this machine: the platformdirs cache (downloads, imports, stamps).

Torch-free and import-free of the rest of the package, so every module that needs the folder (the hub
download, the manifest's verified stamps) can import it without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """Root of downloaded and converted models (HUMANAES_MODELS overrides it)."""
    env = os.environ.get("HUMANAES_MODELS", "").strip()
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("humanaes", appauthor=False))
