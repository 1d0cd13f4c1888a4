"""ARCHITECTURE.md's file map must match the tree, so a newcomer can trust it to find a concept's file.

Every .py file under humanaes_core/ and humanaes_desktop/ is named (in backticks, relative to the repo
root) in the "## File map" section, and every file the document names exists. When this fails after
adding, splitting, moving or deleting a module, add or fix that file's line in the map.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "ARCHITECTURE.md"
PACKAGES = ("humanaes_core", "humanaes_desktop")
PATH_RE = re.compile(r"`((?:humanaes_core|humanaes_desktop)/[^`\s]*\.py)`")


def tree_files() -> set[str]:
    """The package's Python files on disk, tracked or not (byte-code caches excluded)."""
    return {
        p.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def file_map_section(text: str) -> str:
    """The text from the "## File map" heading to the next level-2 heading (or the end)."""
    match = re.search(r"^## File map[^\n]*\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        pytest.fail('ARCHITECTURE.md has no "## File map" section')
    return match.group(1)


def named(text: str) -> set[str]:
    return set(PATH_RE.findall(text))


def test_file_map_names_every_module() -> None:
    mapped = named(file_map_section(DOC.read_text(encoding="utf-8")))
    missing = sorted(tree_files() - mapped)
    assert not missing, "files missing from ARCHITECTURE.md's file map:\n  " + "\n  ".join(missing)


def test_every_named_file_exists() -> None:
    stale = sorted(p for p in named(DOC.read_text(encoding="utf-8")) if not (ROOT / p).is_file())
    assert not stale, "ARCHITECTURE.md names files that do not exist:\n  " + "\n  ".join(stale)


def test_each_file_is_mapped_once() -> None:
    section = file_map_section(DOC.read_text(encoding="utf-8"))
    found = PATH_RE.findall(section)
    twice = sorted({p for p in found if found.count(p) > 1})
    assert not twice, "named more than once in the file map:\n  " + "\n  ".join(twice)


def test_the_checks_see_the_tree_and_the_map() -> None:
    """Guard against the test passing vacuously (a wrong root, a changed heading, a regex that misses)."""
    assert "humanaes_core/__init__.py" in tree_files()
    assert "humanaes_desktop/__main__.py" in tree_files()
    sample = "## File map\n- `humanaes_core/x.py` — y\n## Next\n`humanaes_desktop/z.py`"
    assert named(file_map_section(sample)) == {"humanaes_core/x.py"}
