"""`humanaes-train --data D --base M --out DIR`: fine-tune HumanAesExpert (two stages) into a checkpoint."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import TYPE_CHECKING

from humanaes_core.cli import EXIT_INTERRUPTED, EXIT_OK, echo, guard

if TYPE_CHECKING:
    from humanaes_core.train import TrainConfig

EPILOG = """\
D is a HumanBeauty root (train_label.jsonl), a .jsonl label file, a CSV (path + overall and/or the 12
dimension keys) or a folder of photos you rated (XMP stars/rejects: reject 0.0, 1 star 0.1 ... 5 stars 0.9).

Settings come from the defaults, then --config FILE (YAML or JSON, keys as the flags with - or _), then
the flags given here. Recipes: training/*.yaml. Multi-GPU: accelerate launch $(which humanaes-train) ...

Ctrl-C finishes the current step, saves a resumable state in DIR/resume and stops; the same command with
--resume continues. The result is a checkpoint directory for --model / load_scorer(DIR).

examples:
  humanaes-train --data ~/Pictures/rated --base KwaiVGI/HumanAesExpert-1B --out my-taste
  humanaes-train --config training/humanaes-1b-lora.yaml --data HumanBeauty --base M --out run1
"""


def build_parser() -> argparse.ArgumentParser:
    """One flag per `TrainConfig` field (type, choices and help from the dataclass), plus --config and
    --no-image-check (the flag that predates the generated --no-check-images)."""
    from transformers import HfArgumentParser

    from humanaes_core.train import TrainConfig

    p = HfArgumentParser(
        TrainConfig,
        prog="humanaes-train",
        description="Fine-tune HumanAesExpert: stage 1 LoRA + regression/expert heads (paper Eq. 7), "
        "stage 2 the MetaVoter; writes a native checkpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=None, help="YAML or JSON file with settings (flags override it)")
    p.add_argument(
        "--no-image-check",
        dest="check_images",
        action="store_false",
        help="skip opening every image first",
    )
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Defaults, then the --config file, then the flags actually given (a TrainConfig)."""
    from humanaes_core.train import TrainConfig, read_config_file

    # A flag that is not given keeps this marker (argparse fills in only missing attributes), so that
    # only the flags actually given override the config file.
    absent = object()
    given = argparse.Namespace(**{f.name: absent for f in fields(TrainConfig)})
    args = build_parser().parse_args(argv, namespace=given)
    values = read_config_file(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k != "config" and v is not absent}
    return TrainConfig.from_mapping({**values, **flags}, where=args.config or "arguments")


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-train: fine-tune HumanAesExpert into a native checkpoint."""
    config = config_from_args(argv)

    from humanaes_core.train import TrainingInterrupted, train

    try:
        result = train(config)
    except TrainingInterrupted as e:
        echo(f"\n{e}", err=True)
        return EXIT_INTERRUPTED
    if not result.main_process:
        return EXIT_OK
    if result.metrics:
        m = result.metrics
        shown = "  ".join(
            f"{label} {'n/a' if m[key] is None else format(m[key], '.4f')}"
            for label, key in (("SRCC", "srcc"), ("PLCC", "plcc"), ("MAE", "mae"), ("accuracy", "accuracy"))
        )
        echo(f"validation ({m['n']} photos): {shown}", err=True)
    if result.taste is not None:
        for line in result.taste.lines():
            echo(line, err=True)
    echo(
        f"checkpoint written to {result.output} ({result.steps} stage-1 steps). "
        f"Evaluate: humanaes-eval --data DATA --model {result.output} --out metrics.json",
        err=True,
    )
    return EXIT_OK


if __name__ == "__main__":  # `accelerate launch -m humanaes_core.cli.train ...`
    sys.exit(main())
