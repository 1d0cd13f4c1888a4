"""Console scripts. Each has --help; user-facing failures print one clear message, never a traceback."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import HumanAesError
from .schema import KEYS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HEAD_NAMES = ("lm", "regression", "expert", "metavoter")
CSV_COLUMNS = ["path", "error", "level", *KEYS, *(f"head_{h}" for h in HEAD_NAMES), "tiles", "mode", "model"]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _guard(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Turn HumanAesError and Ctrl-C into a message and an exit code."""

    def wrapped(argv: list[str] | None = None) -> int:
        _setup_logging()
        try:
            return main(argv)
        except HumanAesError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted; cards scored so far are in the cache", file=sys.stderr)
            return EXIT_INTERRUPTED

    wrapped.__doc__ = main.__doc__
    return wrapped


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint directory or hub id (KwaiVGI/HumanAesExpert-1B, KwaiVGI/HumanAesExpert-8B)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N"
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument(
        "--quantize", default=None, choices=["4bit"], help="load the language model in 4-bit NF4"
    )
    parser.add_argument(
        "--max-tiles", type=int, default=12, help="448px tiles per photo, 1-40 (fewer is faster)"
    )
    parser.add_argument("--batch-size", type=int, default=8)


def card_row(path: str, card: dict | None, error: str | None) -> dict:
    """One flat output row: path, error, level, the 12 dimensions and the four heads."""
    row: dict = {"path": path, "error": error}
    if card is not None:
        row["level"] = card["level"]
        row.update({k: card["dims"].get(k) for k in KEYS})
        row.update({f"head_{h}": card["heads"].get(h) for h in HEAD_NAMES})
        row.update({"tiles": card["tiles"], "mode": card["mode"], "model": card["model"]})
    return row


def write_rows(rows: Sequence[dict], out: str) -> None:
    """CSV when `out` ends in .csv, else JSON lines ('-': to stdout). Files are replaced atomically."""
    if out == "-":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            if target.suffix.lower() == ".csv":
                writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@_guard
def score_main(argv: list[str] | None = None) -> int:
    """humanaes-score: score photos and folders into JSON lines or CSV."""
    parser = argparse.ArgumentParser(
        prog="humanaes-score",
        description="Score photos with HumanAesExpert. Folders are scanned recursively; cached photos are "
        "not scored again. Files that cannot be read get a row with an 'error' field; the exit code stays 0.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="photo files and/or folders")
    _model_args(parser)
    parser.add_argument(
        "--out", required=True, help="output file: .csv for CSV, anything else JSON lines; - stdout"
    )
    parser.add_argument(
        "--heads", default="all", choices=["all", "overall"], help="overall: quick LM+regression only"
    )
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    parser.add_argument("--cache", default=None, help="cache database file (default: per-user data dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from .cache import ScoreCache
    from .scan import CachedScoring, collect_photos

    files, skipped = collect_photos(args.paths, recursive=not args.no_recursive)
    started = time.perf_counter()
    cache = None if args.no_cache else ScoreCache(args.cache)
    try:
        runner = CachedScoring(
            args.model,
            cache=cache,
            device=args.device,
            precision=args.precision,
            quantize=args.quantize,
            max_tiles=args.max_tiles,
            batch_size=args.batch_size,
            heads=args.heads,
        )
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
        f"{st.cached + st.scored} photos scored ({st.cached} from cache, {st.scored} by the model"
        f"{f', model loaded in {st.load_seconds:.1f}s' if st.model_loaded else ', model not loaded'}), "
        f"{len(all_skipped)} skipped, {elapsed:.1f}s. Results: {args.out}",
        file=sys.stderr,
    )
    for s in all_skipped:
        print(f"  skipped {s.path}: {s.reason}", file=sys.stderr)
    return EXIT_OK


def _not_yet(prog: str, what: str) -> Callable[[list[str] | None], int]:
    @_guard
    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            prog=prog, description=f"{what} (not available in this version yet)."
        )
        parser.parse_known_args(argv)
        print(f"{prog}: {what} is not available in this version of HumanAes yet.", file=sys.stderr)
        return EXIT_FAILED

    return main


train_main = _not_yet("humanaes-train", "fine-tuning HumanAesExpert on a data set or your own ratings")
eval_main = _not_yet("humanaes-eval", "evaluating a model with the paper's metrics")
cull_main = _not_yet("humanaes-cull", "headless culling with XMP ratings")
import_main = _not_yet("humanaes-import", "converting the released HumanAesExpert checkpoints")
