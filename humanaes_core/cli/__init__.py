"""Console scripts (DESIGN section 7). Each has --help; a user-facing failure prints one clear message
and an exit code, never a traceback. Each script lives in its own module and is imported only when run,
so one script's --help does not pay for another's imports.

Shared here: `guard` (errors as one line), `echo` (every line that may show a path: file names need not
be valid UTF-8, terminals need not be UTF-8), `check_outputs` (every output path a user names, checked
before any work starts) and the argparse types for bounded numbers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from humanaes_core.errors import HumanAesError

if TYPE_CHECKING:
    from humanaes_core.scoring import CachedScoring
    from humanaes_core.store import ScoreCache

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: When the command started: this package is the first of ours a console script imports, so times
#: measured from here include the imports (torch's take seconds) that a clock started in main() misses.
STARTED = time.perf_counter()
#: Most 448 px tiles a photo may be cut into (InternVL's dynamic tiling; more only times out).
MAX_TILES = 40


def elapsed() -> float:
    """Seconds since the command started (`STARTED`)."""
    return time.perf_counter() - STARTED


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def printable(text: str, encoding: str | None = "utf-8") -> str:
    """`text` as it can be shown on a stream of `encoding`: bytes of a file name that are not UTF-8
    (lone surrogates, ``os.fsdecode(b"caf\\xe9")``) as ``\\xNN``, characters the stream cannot encode
    as ``\\uXXXX`` escapes. Without it a strict terminal (``PYTHONIOENCODING=utf-8:strict``) turns
    the print of such a name into a traceback after the work was done."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    enc = encoding or "utf-8"
    return text.encode(enc, "backslashreplace").decode(enc, "replace")


def echo(text: str, *, err: bool = False) -> None:
    """Print one line to stdout (or stderr) safely, whatever paths it shows (see `printable`)."""
    stream: TextIO = sys.stderr if err else sys.stdout
    print(printable(text, getattr(stream, "encoding", None)), file=stream)


def check_outputs(*targets: tuple[str | None, str]) -> None:
    """Refuse, before any work starts, each named output (`(path, flag)`; None or "-" skipped) that is
    not ours to replace: a photo, a sidecar, a database, a folder, a binary file (`outputs.check_output`)."""
    from humanaes_core.outputs import check_output

    for path, flag in targets:
        if path is not None and path != "-":
            check_output(path, flag)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value

    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from `low` to `high` (not NaN), else a one-line usage error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def non_negative_float(text: str) -> float:
    """An argparse type: a number >= 0 (not NaN), else a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def guard(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Turn HumanAesError and Ctrl-C into a message and an exit code."""

    def wrapped(argv: list[str] | None = None) -> int:
        setup_logging()
        try:
            return main(argv)
        except HumanAesError as e:
            echo(f"error: {e}", err=True)
            return EXIT_USAGE
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            return EXIT_INTERRUPTED

    wrapped.__doc__ = main.__doc__
    return wrapped


def add_library_args(parser: argparse.ArgumentParser) -> None:
    """``--library URL`` (``--cache`` is its older name): a SQLite file or a PostgreSQL server."""
    parser.add_argument(
        "--library",
        "--cache",
        dest="cache",
        default=None,
        metavar="URL",
        help="the library: a SQLite file (default: library.sqlite in the per-user data folder, or "
        "$HUMANAES_LIBRARY) or a shared PostgreSQL server, postgresql+psycopg://user@host/database",
    )


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint directory or hub id (KwaiVGI/HumanAesExpert-1B, KwaiVGI/HumanAesExpert-8B)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="number format of the model: auto = bf16 on a GPU (fp16 where bf16 is unsupported), fp32 on "
        "the CPU",
    )
    parser.add_argument(
        "--quantize", default=None, choices=["4bit"], help="load the language model in 4-bit NF4"
    )
    parser.add_argument(
        "--max-tiles",
        type=int_in(1, MAX_TILES),
        default=12,
        help=f"448px tiles per photo, 1-{MAX_TILES}, plus 1 overview of the whole photo when it is cut "
        "into more than one: 12 means up to 13, as the 'tiles' column counts them (fewer is faster)",
    )
    parser.add_argument(
        "--batch-size",
        type=int_in(1, 4096),
        default=None,
        help="photos per forward pass, 1-4096 (default: 1 on a CPU, 8 on a GPU; lower it when the GPU "
        "runs out of memory)",
    )


def cached_scoring(args: argparse.Namespace, cache: ScoreCache | None, max_tiles: int) -> CachedScoring:
    """The cached scorer that --model/--device/--precision/--quantize/--batch-size/--heads ask for (with
    the photo checks unless --no-checks); on a Ray cluster with --engine ray (--address, --workers)."""
    kwargs = {
        "cache": cache,
        "device": args.device,
        "precision": args.precision,
        "quantize": args.quantize,
        "max_tiles": max_tiles,
        "batch_size": args.batch_size,
        "heads": args.heads,
        "preset": getattr(args, "preset", None),
        "checks": not getattr(args, "no_checks", False),
    }
    if getattr(args, "engine", "local") == "ray":
        from humanaes_core.scoring import RayScoring  # imports Ray: only for a cluster run

        return RayScoring(args.model, address=args.address, workers=args.workers, **kwargs)
    from humanaes_core.scoring import CachedScoring

    return CachedScoring(args.model, **kwargs)


def score_main(argv: list[str] | None = None) -> int:
    from humanaes_core.cli.score import main

    return main(argv)


def train_main(argv: list[str] | None = None) -> int:
    from humanaes_core.cli.train import main

    return main(argv)


def eval_main(argv: list[str] | None = None) -> int:
    from humanaes_core.cli.evaluate import main

    return main(argv)


def cull_main(argv: list[str] | None = None) -> int:
    from humanaes_core.cli.cull import main

    return main(argv)


def import_main(argv: list[str] | None = None) -> int:
    from humanaes_core.cli.imports import main

    return main(argv)
