"""Hostile command lines: every case ends in exit 0 or one line of error, and nothing is lost.

The cases live in ``cli_cases.py``, the runner and the table in ``cli_corpus.py`` (run it as a module to
print the table). With the scanner's corpus (``hostile_corpus``) this is the hostile corpus of
docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cli_cases import CASES, warm_library
from .cli_corpus import run_case, table


@pytest.fixture(scope="module")
def warm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return warm_library(tmp_path_factory.mktemp("warm"), tiny_model)


@pytest.mark.slow
def test_every_hostile_command_line_ends_in_one_line_and_loses_nothing(tiny_model, warm, tmp_path):
    outcomes = [run_case(case, tmp_path / f"case{i}", tiny_model, warm) for i, case in enumerate(CASES)]
    print("\n" + table(outcomes))
    assert len(outcomes) >= 100
    assert [f"{o.case.group}: {o.case.name}: {o.problem or o.last}" for o in outcomes if not o.ok] == []
