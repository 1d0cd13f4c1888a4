"""`humanaes-score PATH... --model M --out F`: score photos and folders into JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from humanaes_core.cli import EXIT_OK, add_model_args, cached_scoring, guard
from humanaes_core.errors import HumanAesError
from humanaes_core.schema import KEYS

#: Names of `scoring.PRESETS`, repeated here so that --help does not import torch (a test keeps them equal).
PRESET_NAMES = ("accurate", "balanced", "fast")


def add_preset_arg(parser: argparse.ArgumentParser) -> None:
    """--preset, which sets --max-tiles (so --max-tiles has no default of its own any more)."""
    parser.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="speed/accuracy: accurate = up to 12 tiles (default), balanced = 4, fast = 1 "
        "(one 448 px view of the whole photo; several times faster, see BENCHMARKS.md)",
    )
    parser.set_defaults(max_tiles=None)


HEAD_NAMES = ("lm", "regression", "expert", "metavoter")
CSV_COLUMNS = ["path", "error", "level", *KEYS, *(f"head_{h}" for h in HEAD_NAMES), "tiles", "mode", "model"]


def _photos(n: int) -> str:
    return f"{n} photo" if n == 1 else f"{n} photos"


def card_row(path: str, card: dict | None, error: str | None) -> dict:
    """One flat output row: path, error, level, the 12 dimensions and the four heads."""
    row: dict = {"path": path, "error": error}
    if card is not None:
        row["level"] = card["level"]
        row.update({k: card["dims"].get(k) for k in KEYS})
        row.update({f"head_{h}": card["heads"].get(h) for h in HEAD_NAMES})
        row.update({"tiles": card["tiles"], "mode": card["mode"], "model": card["model"]})
    return row


def json_line(row: dict) -> str:
    """One JSON line, readable UTF-8; a path with undecodable bytes (lone surrogates in Python) is
    written with ``\\udcXX`` escapes instead, which ``json.loads`` + ``os.fsencode`` turn back into the
    exact file name (and which every UTF-8 writer accepts)."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(row, ensure_ascii=True)
    return text + "\n"


def _csv_text(value: object) -> object:
    """Undecodable bytes of a file name as ``\\xNN`` (the byte itself), so the CSV stays valid UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


def write_rows(rows: Sequence[dict], out: str) -> None:
    """CSV when `out` ends in .csv, else JSON lines ('-': to stdout). Files are replaced atomically.

    The CSV stays valid UTF-8: undecodable bytes of a file name appear as ``\\xNN`` there (JSON lines
    keep the exact name, see ``json_line``).
    """
    if out == "-":
        for row in rows:
            sys.stdout.write(json_line(row))
        return
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if target.suffix.lower() == ".csv":
                writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows({k: _csv_text(v) for k, v in row.items()} for row in rows)
            else:
                for row in rows:
                    f.write(json_line(row))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-score: score photos and folders into JSON lines or CSV."""
    parser = argparse.ArgumentParser(
        prog="humanaes-score",
        description="Score photos with HumanAesExpert. Folders are scanned recursively; cached photos are "
        "not scored again. Files that cannot be read get a row with an 'error' field; the exit code stays 0.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photo files and/or folders")
    add_model_args(parser)
    parser.add_argument(
        "--out", required=True, help="output file: .csv for CSV, anything else JSON lines; - stdout"
    )
    parser.add_argument(
        "--heads", default="all", choices=["all", "overall"], help="overall: quick LM+regression only"
    )
    add_preset_arg(parser)
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    parser.add_argument("--cache", default=None, help="cache database file (default: per-user data dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from humanaes_core.formats import PHOTO_SUFFIXES, collect_photos
    from humanaes_core.scoring import resolve_max_tiles
    from humanaes_core.store import ScoreCache

    max_tiles = resolve_max_tiles(args.preset, args.max_tiles)
    if args.out != "-" and Path(args.out).suffix.lower() in PHOTO_SUFFIXES | {".xmp"}:
        # results replace --out atomically: a slip of the keyboard must not replace a photo or a sidecar
        raise HumanAesError(f"--out {args.out}: that is a photo's or sidecar's name; write to .jsonl or .csv")
    files, skipped = collect_photos(args.paths, recursive=not args.no_recursive)
    started = time.perf_counter()
    cache = None if args.no_cache else ScoreCache(args.cache)
    try:
        runner = cached_scoring(args, cache, max_tiles)
        order = {str(p): i for i, p in enumerate(files)}
        rows: list[dict] = [card_row(s.path, None, s.reason) for s in skipped]
        by_file: dict[str, dict] = {}
        with tqdm(total=len(files), unit="photo", disable=args.quiet, file=sys.stderr) as bar:
            for result in runner.run(files):
                card = result.card.to_dict() if result.card is not None else None
                by_file[result.source or ""] = card_row(result.source or "", card, result.error)
                bar.update(1)
                st = runner.stats
                bar.set_postfix(cached=st.cached, scored=st.scored, skipped=st.failed, refresh=False)
        rows += sorted(by_file.values(), key=lambda r: order.get(r["path"], -1))
        write_rows(rows, args.out)
    finally:
        if cache is not None:
            cache.close()
    st = runner.stats
    all_skipped = skipped + st.skipped
    elapsed = time.perf_counter() - started
    print(
        f"{_photos(st.cached + st.scored)} scored ({st.cached} from cache, {st.scored} by the model"
        f"{f', model loaded in {st.load_seconds:.1f}s' if st.model_loaded else ', model not loaded'}), "
        f"{len(all_skipped)} skipped, {elapsed:.1f}s. Results: {args.out}",
        file=sys.stderr,
    )
    for s in all_skipped:
        print(f"  skipped {s.path}: {s.reason}", file=sys.stderr)
    return EXIT_OK
