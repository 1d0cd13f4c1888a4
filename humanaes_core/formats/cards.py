"""Card tables: score cards as flat rows, written as CSV, JSON lines or one JSON array.

``humanaes-score`` writes them, and so do the culling exports (``humanaes-cull --export``, the app's
Export cards) and ``humanaes-eval --csv``; all go through here so that every table has the same columns
and the same answer to two hazards:

- File names that are not valid UTF-8. Python hands them over with lone surrogates
  (``os.fsdecode(b"caf\\xe9.jpg")``), which a strict UTF-8 writer refuses. JSON keeps the exact name:
  ``\\udcXX`` escapes, which ``json.loads`` + ``os.fsencode`` turn back into the original bytes; CSV stays
  valid UTF-8 for spreadsheets: the undecodable bytes appear as ``\\xNN`` text.
- Spreadsheet readability. CSV headers carry the paper's letters (``L_overall``, ``A_facial_brightness``
  ... ``K_environment``; JSON keeps the plain keys), path, level and overall come first, and scores are
  written with 4 decimals (the model's outputs carry no more meaning than that).
- Formula injection (OWASP "CSV Injection"). A spreadsheet runs a cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return as a formula, so a photo named ``=1+2.jpg`` or a folder named
  ``=HYPERLINK(...)`` would become live. Such text cells get a leading single quote (``'=1+2.jpg``);
  numbers (``-0.5``) stay numbers. JSON is written exactly, never quoted.

The writers take an open text stream: callers open their target with ``humanaes_core.outputs.open_output``
(the one guard for output paths, which replaces files atomically), with ``newline=""`` for CSV.
"""

from __future__ import annotations

import csv
import json
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from humanaes_core.schema import BY_KEY, HEAD_NAMES, KEYS

__all__ = [
    "CHECK_COLUMNS",
    "CSV_COLUMNS",
    "CSV_NAMES",
    "card_row",
    "csv_text",
    "json_line",
    "table_format",
    "write_csv",
    "write_json",
    "write_json_lines",
    "write_rows",
]

#: The photo checks (``card.faces``, ``card.checks``): number of faces, faces with both eyes closed, the
#: main face's focus (sharp / soft / missed / unknown), whole-photo blur and exposure, and the misfire
#: kind; empty for a photo not checked.
CHECK_COLUMNS = ["faces", "eyes_closed", "focus", "blur", "exposure", "misfire"]
#: A dimension's CSV header: its letter and key (``L_overall``); rows and JSON use the plain key.
CSV_NAMES = {k: f"{BY_KEY[k].letter}_{k}" for k in KEYS}
CSV_COLUMNS = [
    "path",
    "level",
    CSV_NAMES["overall"],
    "error",
    *(CSV_NAMES[k] for k in KEYS if k != "overall"),
    *(f"head_{h}" for h in HEAD_NAMES),
    "tiles",
    "mode",
    "model",
    *CHECK_COLUMNS,
]
#: Decimals of a score in CSV.
CSV_DECIMALS = 4

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV Injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A text cell that is only a number (``-0.5``, ``+1e-3``) is no formula and is left as it is.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def card_row(path: str, card: dict | None, error: str | None) -> dict:
    """One flat row: path, error, level, the 12 dimensions, the four heads, tiles, mode, model and the
    photo checks (`CHECK_COLUMNS`, when the card was checked)."""
    row: dict = {"path": path, "error": error}
    if card is not None:
        row["level"] = card["level"]
        row.update({k: card["dims"].get(k) for k in KEYS})
        row.update({f"head_{h}": card["heads"].get(h) for h in HEAD_NAMES})
        row.update({"tiles": card["tiles"], "mode": card["mode"], "model": card["model"]})
        row.update(_check_cells(card.get("faces"), card.get("checks")))
    return row


def _check_cells(faces: list[dict] | None, checks: dict | None) -> dict:
    """The `CHECK_COLUMNS` of a card dict's checks; {} for a card never checked."""
    if faces is None or checks is None:
        return {}
    main = checks.get("main_face")
    focus = faces[main].get("focus") if isinstance(main, int) and 0 <= main < len(faces) else None
    return {
        "faces": len(faces),
        "eyes_closed": sum(bool(f.get("eyes_closed")) for f in faces),
        "focus": focus,
        "blur": checks.get("blur"),
        "exposure": checks.get("exposure"),
        "misfire": checks.get("misfire"),
    }


def _json_text(value: Any, indent: int | None = None) -> str:
    """Readable UTF-8 JSON; with ``\\udcXX`` escapes instead when a string holds undecodable bytes."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    return text


def json_line(row: dict) -> str:
    """One JSON line (see the module docstring for file names that are not UTF-8)."""
    return _json_text(row) + "\n"


def csv_text(value: object) -> object:
    """One CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``, undecodable
    bytes of a file name become ``\\xNN`` (the byte itself) so the file stays valid UTF-8; numbers and
    every other value stay as they are; a float gets `CSV_DECIMALS` decimals."""
    if isinstance(value, float):
        return f"{value:.{CSV_DECIMALS}f}"
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = os.fsencode(value).decode("utf-8", "backslashreplace")
    if value.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def table_format(out: str | os.PathLike[str]) -> str:
    """The table format `out` asks for: "csv" (.csv), "json" (.json) or "jsonl" (anything else)."""
    return {".csv": "csv", ".json": "json"}.get(Path(out).suffix.lower(), "jsonl")


def write_csv(rows: Sequence[dict], fh: IO[str], columns: Sequence[str] = CSV_COLUMNS) -> None:
    """The rows as CSV with a header of `columns` (a row may leave columns out: empty cells); a row's
    dimension keys go under their lettered headers (`CSV_NAMES`) unless `columns` names the key itself."""
    names = list(columns)
    header = {k: k if k in names else CSV_NAMES.get(k, k) for k in CSV_NAMES}
    writer = csv.DictWriter(fh, fieldnames=names)
    writer.writeheader()
    writer.writerows({header.get(k, k): csv_text(v) for k, v in row.items()} for row in rows)


def write_json_lines(rows: Sequence[dict], fh: IO[str]) -> None:
    """One JSON object per line."""
    fh.writelines(json_line(row) for row in rows)


def write_json(rows: Sequence[dict], fh: IO[str]) -> None:
    """One JSON array, one indented object per row (a row with an undecodable name is escaped, the
    others stay readable)."""
    items = ",\n".join(textwrap.indent(_json_text(row, indent=1), " ") for row in rows)
    fh.write(f"[\n{items}\n]" if rows else "[]")


def write_rows(rows: Sequence[dict], fh: IO[str], fmt: str, columns: Sequence[str] = CSV_COLUMNS) -> None:
    """The rows in `fmt` ("csv", "json" or "jsonl", see `table_format`)."""
    if fmt == "csv":
        write_csv(rows, fh, columns)
    elif fmt == "json":
        write_json(rows, fh)
    else:
        write_json_lines(rows, fh)
