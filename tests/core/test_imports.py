"""Importing what does not need a model must not import torch (a CLI's --help, a cached rescan, the app)."""

import subprocess
import sys

import pytest

TORCH_FREE = [
    "humanaes_core",
    "humanaes_core.schema",
    "humanaes_core.sources",
    "humanaes_core.files",
    "humanaes_core.formats.photos",
    "humanaes_core.formats.xmp",
    "humanaes_core.model.meta",
    "humanaes_core.model.manifest",
    "humanaes_core.model.prompts",
    "humanaes_core.scoring.presets",
    "humanaes_core.store",
    "humanaes_core.data",
    "humanaes_core.checks.checker",
    "humanaes_core.scoring.photo_checks",
    "humanaes_core.culling.rules",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_public_names_resolve() -> None:
    """Every name a sub-package lists in __all__ is importable from it (lazy exports stay in sync)."""
    import importlib

    for package in (
        "checks",
        "culling",
        "data",
        "evaluation",
        "files",
        "formats",
        "importer",
        "model",
        "scoring",
    ):
        mod = importlib.import_module(f"humanaes_core.{package}")
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"humanaes_core.{package}.{name}"
    store = importlib.import_module("humanaes_core.store")
    for name in store.__all__:
        assert getattr(store, name) is not None
