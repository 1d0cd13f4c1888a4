"""Card tables: score cards as flat rows, written as CSV, JSON lines or one JSON array.

``humanaes-score`` writes them, and so do the culling exports (``humanaes-cull --export``, the app's
Export cards), which add decision columns; both go through here so that every table has the same
columns and the same answer to file names that are not valid UTF-8. Python hands such names over with
lone surrogates (``os.fsdecode(b"caf\\xe9.jpg")``), which a strict UTF-8 writer refuses:

- JSON keeps the exact name: ``\\udcXX`` escapes, which ``json.loads`` + ``os.fsencode`` turn back
  into the original bytes;
- CSV stays valid UTF-8 for spreadsheets: the undecodable bytes appear as ``\\xNN`` text.

Every file is replaced atomically (``humanaes_core.files.atomic_write``).
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from humanaes_core.files import atomic_write
from humanaes_core.schema import HEAD_NAMES, KEYS

__all__ = [
    "CSV_COLUMNS",
    "card_row",
    "csv_text",
    "json_line",
    "write_csv",
    "write_json",
    "write_json_lines",
    "write_rows",
]

CSV_COLUMNS = ["path", "error", "level", *KEYS, *(f"head_{h}" for h in HEAD_NAMES), "tiles", "mode", "model"]


def card_row(path: str, card: dict | None, error: str | None) -> dict:
    """One flat row: path, error, level, the 12 dimensions, the four heads, tiles, mode and model."""
    row: dict = {"path": path, "error": error}
    if card is not None:
        row["level"] = card["level"]
        row.update({k: card["dims"].get(k) for k in KEYS})
        row.update({f"head_{h}": card["heads"].get(h) for h in HEAD_NAMES})
        row.update({"tiles": card["tiles"], "mode": card["mode"], "model": card["model"]})
    return row


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
    """Undecodable bytes of a file name as ``\\xNN`` (the byte itself), so the CSV stays valid UTF-8;
    any other value as it is."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


@contextmanager
def _replace(out: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """`out`, its folder created if need be, replaced atomically with what is written."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, newline="") as fh:
        yield fh


def write_csv(
    rows: Sequence[dict], out: str | os.PathLike[str], columns: Sequence[str] = CSV_COLUMNS
) -> None:
    """The rows as CSV with a header of `columns` (a row may leave columns out: empty cells)."""
    with _replace(out) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows({k: csv_text(v) for k, v in row.items()} for row in rows)


def write_json_lines(rows: Sequence[dict], out: str | os.PathLike[str]) -> None:
    """One JSON object per line."""
    with _replace(out) as fh:
        fh.writelines(json_line(row) for row in rows)


def write_json(rows: Sequence[dict], out: str | os.PathLike[str]) -> None:
    """One JSON array, one indented object per row (a row with an undecodable name is escaped, the
    others stay readable)."""
    items = ",\n".join(textwrap.indent(_json_text(row, indent=1), " ") for row in rows)
    with _replace(out) as fh:
        fh.write(f"[\n{items}\n]" if rows else "[]")


def write_rows(
    rows: Sequence[dict], out: str | os.PathLike[str], columns: Sequence[str] = CSV_COLUMNS
) -> None:
    """CSV when `out` ends in .csv, else JSON lines: the ``humanaes-score`` formats."""
    if Path(out).suffix.lower() == ".csv":
        write_csv(rows, out, columns)
    else:
        write_json_lines(rows, out)
