"""Console scripts (DESIGN section 7). Each has --help; a user-facing failure prints one clear message
and an exit code, never a traceback. Each script lives in its own module and is imported only when run,
so one script's --help does not pay for another's imports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from humanaes_core.errors import HumanAesError

if TYPE_CHECKING:
    from humanaes_core.scoring import CachedScoring
    from humanaes_core.store import ScoreCache

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def guard(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Turn HumanAesError and Ctrl-C into a message and an exit code."""

    def wrapped(argv: list[str] | None = None) -> int:
        setup_logging()
        try:
            return main(argv)
        except HumanAesError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    wrapped.__doc__ = main.__doc__
    return wrapped


def add_model_args(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="photos per forward pass (default: 1 on a CPU, 8 on a GPU)",
    )


def cached_scoring(args: argparse.Namespace, cache: ScoreCache | None, max_tiles: int) -> CachedScoring:
    """The cached scorer that --model/--device/--precision/--quantize/--batch-size/--heads ask for."""
    from humanaes_core.scoring import CachedScoring

    return CachedScoring(
        args.model,
        cache=cache,
        device=args.device,
        precision=args.precision,
        quantize=args.quantize,
        max_tiles=max_tiles,
        batch_size=args.batch_size,
        heads=args.heads,
    )


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
