"""The miniature original-layout sources and their imports, built once for the importer's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from humanaes_core.importer import import_checkpoint
from tests.core.importer.originals import CASES, write_original


@pytest.fixture(scope="package")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("original")
    return {v: write_original(root / v, v, **opts) for v, opts in CASES.items()}


@pytest.fixture(scope="package")
def imported(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("native")
    return {v: (import_checkpoint(src, root / v), root / v) for v, src in sources.items()}
