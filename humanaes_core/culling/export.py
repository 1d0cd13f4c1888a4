"""Exporting a cull: every score card with its decision, as a table for spreadsheets and scripts.

The rows are the ``humanaes-score`` rows (``formats.cards``) plus keep/rating/reason/group columns, so
a spreadsheet that reads one reads the other; file names that are not valid UTF-8 are written the way
``formats.cards`` writes them (CSV: ``\\xNN``; JSON: the exact name as ``\\udcXX`` escapes), and CSV
cells that a spreadsheet would run as formulas are quoted. The target passes the one output guard
(``humanaes_core.outputs``): an export never replaces a photo, a sidecar or the library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from humanaes_core.culling.plan import Decision, card_dict
from humanaes_core.formats import CSV_COLUMNS, card_row, table_format, write_rows
from humanaes_core.outputs import open_output

__all__ = ["DECISION_COLUMNS", "export_cards"]

DECISION_COLUMNS = ["keep", "rating", "reason", "group", "group_size"]


def _decision_columns(
    path: Path, decision: Decision | None, group_of: Mapping[Path, tuple[int, int]] | None
) -> dict:
    """keep, rating, reason and the photo's group: its burst when groups are given, else the plan's."""
    if group_of is not None:
        group, size = group_of.get(path, (None, None))
    else:
        group, size = (None, None) if decision is None else (decision.group, decision.group_size)
    return {
        "keep": None if decision is None else decision.keep,
        "rating": None if decision is None else decision.rating,
        "reason": None if decision is None else decision.reason,
        "group": group,
        "group_size": size,
    }


def export_cards(
    cards: Mapping[str | os.PathLike[str], Any],
    out: str | os.PathLike[str],
    *,
    decisions: Mapping[Path, Decision] | None = None,
    groups: Sequence[Sequence[str | os.PathLike[str]]] | None = None,
    errors: Mapping[str | os.PathLike[str], str] | None = None,
    flag: str = "export",
) -> Path:
    """Every card as one row (the ``humanaes-score`` columns), plus keep/rating/reason/group columns
    when ``decisions`` are given. ``.csv``: CSV; ``.json``: one JSON array; anything else: JSON lines.
    Photos in ``errors`` get a row with only their error. The file is replaced atomically, or written
    directly when it is a device or pipe; a target that is not ours to replace raises
    ``UnsafeOutputError`` (its message starts with `flag`) and nothing is written."""
    target = Path(out)
    group_of: dict[Path, tuple[int, int]] | None = None
    if groups is not None:
        group_of = {Path(m): (i, len(group)) for i, group in enumerate(groups, start=1) for m in group}
    rows: list[dict] = []
    for path, card in cards.items():
        row = card_row(str(path), card_dict(card) if card is not None else None, None)
        if decisions is not None:
            row.update(_decision_columns(Path(path), decisions.get(Path(path)), group_of))
        rows.append(row)
    rows += [card_row(str(path), None, reason) for path, reason in (errors or {}).items()]
    columns = CSV_COLUMNS + (DECISION_COLUMNS if decisions is not None else [])
    with open_output(target, flag, newline="") as fh:
        write_rows(rows, fh, table_format(target), columns)
    return target
