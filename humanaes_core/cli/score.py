"""`humanaes-score PATH... --model M --out F`: score photos and folders into JSON lines or CSV."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from humanaes_core.cli import (
    EXIT_OK,
    add_library_args,
    add_model_args,
    cached_scoring,
    check_outputs,
    echo,
    elapsed,
    guard,
    int_in,
)
from humanaes_core.errors import HumanAesError
from humanaes_core.wording import count

T = TypeVar("T")


def add_preset_arg(parser: argparse.ArgumentParser) -> None:
    """--preset, which sets --max-tiles (so --max-tiles has no default of its own any more)."""
    from humanaes_core.scoring import ALL_PRESETS  # torch-free: --help stays fast

    parser.add_argument(
        "--preset",
        choices=list(ALL_PRESETS),
        default=None,
        help="speed/accuracy: accurate = up to 12 tiles + 1 overview (default), balanced = 4 + 1, fast = 1 "
        "(one 448 px view of the whole photo; several times faster, see BENCHMARKS.md); release = the "
        "released code's pixels, question and fp16, to compare scores with it (docs/models.md)",
    )
    parser.set_defaults(max_tiles=None)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[Any], None]]:
    """`update(stats)` once per photo: a bar on stderr, or nothing with --quiet, and then tqdm is not even
    imported (its import is a noticeable part of a cached rescan, which takes well under a second)."""
    if quiet:
        yield lambda _stats: None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    # warnings while the bar runs (the CPU one, as the model loads) go on a line of their own above it
    with logging_redirect_tqdm(), tqdm(total=total, unit="photo", file=sys.stderr) as bar:

        def update(st: Any) -> None:
            bar.update(1)
            bar.set_postfix(cached=st.cached, scored=st.scored, skipped=st.failed, refresh=False)

        yield update


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """--engine ray and its cluster: which machines and how many model workers (docs/scale.md)."""
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: decode on the CPUs and score on one worker per GPU of a "
        "Ray cluster, cards written to the library as they arrive (docs/scale.md)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the cluster's address (auto: the one `ray start` began on this machine; "
        "default: that one or $RAY_ADDRESS if there is one, else a cluster of this machine's GPUs and CPUs)",
    )
    parser.add_argument(
        "--workers",
        type=int_in(1, 4096),
        default=None,
        help="with --engine ray: model workers (default: one per GPU of the cluster, else one per CPU)",
    )


def _until_stopped(results: Iterator[T], stopped: list[HumanAesError]) -> Iterator[T]:
    """The results until the run stops with an error (the disk filled up), which goes into `stopped`:
    what was scored before it is still written to --out."""
    try:
        yield from results
    except HumanAesError as e:
        stopped.append(e)


def _explain(rows: dict[str, dict], cards: dict[str, dict], model_path: object) -> None:
    """The 'why' of every card against the average of all the cards of this run."""
    from humanaes_core.attribution import explain_card

    reference = list(cards.values())
    for source, card in cards.items():
        why = explain_card(card, reference, model_path, reference_name="the average of these photos")
        rows[source]["why"] = why.sentence


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
    add_library_args(parser)
    parser.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the photo checks (faces, closed eyes, focus, blur, exposure, misfires): their columns "
        "stay empty",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add a 'why' column: why each photo's overall differs from the average of the photos scored",
    )
    add_engine_args(parser)
    args = parser.parse_args(argv)
    if args.explain and args.heads != "all":
        parser.error("--explain needs the full card (--heads all): quick cards have no breakdown to explain")

    check_outputs((args.out, "--out"))  # before anything is scored: a typo must cost nothing

    from humanaes_core.formats import (
        CSV_COLUMNS,
        card_row,
        collect_photos,
        json_line,
        table_format,
        write_rows,
    )
    from humanaes_core.outputs import open_output
    from humanaes_core.scoring import resolve_max_tiles
    from humanaes_core.store import ScoreCache

    max_tiles = resolve_max_tiles(args.preset, args.max_tiles)
    files, skipped = collect_photos(args.paths, recursive=not args.no_recursive)
    cache = None if args.no_cache else ScoreCache(args.cache)
    runner = None
    try:
        runner = cached_scoring(args, cache, max_tiles)
        order = {str(p): i for i, p in enumerate(files)}
        rows: list[dict] = [card_row(s.path, None, s.reason) for s in skipped]
        by_file: dict[str, dict] = {}
        cards: dict[str, dict] = {}
        stopped: list[HumanAesError] = []
        with _progress(len(files), args.quiet) as update:
            for result in _until_stopped(runner.run(files), stopped):
                card = result.card.to_dict() if result.card is not None else None
                by_file[result.source or ""] = card_row(result.source or "", card, result.error)
                if card is not None:
                    cards[result.source or ""] = card
                update(runner.stats)
        if stopped and not by_file:
            raise stopped[0]
        columns = list(CSV_COLUMNS)
        if args.explain and cards:
            _explain(by_file, cards, runner.model_path)
            columns.append("why")
        rows += sorted(by_file.values(), key=lambda r: order.get(r["path"], -1))
        if args.out == "-":
            sys.stdout.writelines(json_line(row) for row in rows)
        else:
            with open_output(args.out, "--out", newline="") as fh:
                write_rows(rows, fh, "csv" if table_format(args.out) == "csv" else "jsonl", columns)
    finally:
        if cache is not None:
            cache.close()
        if args.engine == "ray" and runner is not None:
            runner.close()
    if stopped:
        where = "the output" if args.out == "-" else args.out
        raise HumanAesError(f"{stopped[0]}; results of the {len(by_file)} photos done before are in {where}")
    st = runner.stats
    all_skipped = skipped + st.skipped
    echo(
        f"{count(st.cached + st.scored, 'photo')} scored ({st.cached} from cache, {st.scored} by the model"
        f"{f', model loaded in {st.load_seconds:.1f}s' if st.model_loaded else ', model not loaded'}), "
        f"{len(all_skipped)} skipped, {elapsed():.1f}s. Results: {args.out}",
        err=True,
    )
    for s in all_skipped:
        echo(f"  skipped {s.path}: {s.reason}", err=True)
    for w in runner.workers.values() if args.engine == "ray" else ():  # the Ray engine's model actors
        echo(f"  worker {w.name}: {count(w.photos, 'photo')}, {w.rate:.2f} photos/s of model time", err=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
