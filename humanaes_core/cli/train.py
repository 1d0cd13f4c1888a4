"""`humanaes-train --data D --base M --out DIR`: fine-tune HumanAesExpert (two stages) into a checkpoint."""

from __future__ import annotations

import argparse
import sys

from humanaes_core.cli import EXIT_INTERRUPTED, EXIT_OK, guard

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
    from humanaes_core.train import TrainConfig

    d = TrainConfig()
    s = argparse.SUPPRESS  # absent flags do not override the config file
    p = argparse.ArgumentParser(
        prog="humanaes-train",
        description="Fine-tune HumanAesExpert: stage 1 LoRA + regression/expert heads (paper Eq. 7), "
        "stage 2 the MetaVoter; writes a native checkpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=s, help="HumanBeauty root, .jsonl, .csv or a rated photo folder")
    p.add_argument("--base", default=s, help="checkpoint directory or hub id to start from")
    p.add_argument("--out", default=s, help="output checkpoint directory")
    p.add_argument("--config", default=None, help="YAML or JSON file with settings (flags override it)")
    p.add_argument("--split", default=s, help=f"label file of a HumanBeauty root (default {d.split})")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=s, help=f"stage 1 epochs (default {d.epochs}, as the paper)")
    g.add_argument(
        "--max-steps", type=int, default=s, help="stop stage 1 after N optimizer steps (0: no limit)"
    )
    g.add_argument("--lr", type=float, default=s, help=f"LoRA/projector learning rate (default {d.lr})")
    g.add_argument(
        "--head-lr", type=float, default=s, help="regression/expert head learning rate (default: --lr)"
    )
    g.add_argument("--weight-decay", type=float, default=s, help=f"(default {d.weight_decay})")
    g.add_argument("--warmup-ratio", type=float, default=s, help=f"(default {d.warmup_ratio})")
    g.add_argument(
        "--max-grad-norm", type=float, default=s, help=f"0 disables clipping (default {d.max_grad_norm})"
    )
    g.add_argument("--batch-size", type=int, default=s, help=f"per device (default {d.batch_size})")
    g.add_argument(
        "--grad-accum", type=int, default=s, help=f"gradient accumulation steps (default {d.grad_accum})"
    )
    g.add_argument(
        "--lambda-reg", type=float, default=s, help=f"λ of Eq. 7, regression MSE (default {d.lambda_reg})"
    )
    g.add_argument("--mu-exp", type=float, default=s, help=f"μ of Eq. 7, expert MSE (default {d.mu_exp})")
    g.add_argument("--seed", type=int, default=s, help=f"(default {d.seed})")
    g.add_argument(
        "--val-fraction", type=float, default=s, help=f"held out for metrics (default {d.val_fraction})"
    )

    g = p.add_argument_group("model")
    g.add_argument("--lora-rank", type=int, default=s, help=f"0: heads only (default {d.lora_rank})")
    g.add_argument("--lora-alpha", type=int, default=s, help=f"(default {d.lora_alpha})")
    g.add_argument("--lora-dropout", type=float, default=s, help=f"(default {d.lora_dropout})")
    g.add_argument(
        "--lora-targets",
        default=s,
        help=f"comma-separated language-model modules (default {','.join(d.lora_targets)})",
    )
    g.add_argument(
        "--train-projector", action="store_true", default=s, help="also train the vision projector"
    )
    g.add_argument(
        "--reset-heads",
        action="store_true",
        default=s,
        help="train new heads from scratch (the paper's setup)",
    )
    g.add_argument("--max-tiles", type=int, default=s, help="tiles per photo (default: the base model's, 12)")
    g.add_argument(
        "--metavoter-epochs", type=int, default=s, help=f"stage 2 epochs (default {d.metavoter_epochs})"
    )
    g.add_argument("--metavoter-lr", type=float, default=s, help=f"(default {d.metavoter_lr})")
    g.add_argument("--metavoter-batch-size", type=int, default=s, help=f"(default {d.metavoter_batch_size})")

    g = p.add_argument_group("hardware and operation")
    g.add_argument(
        "--precision", choices=["auto", "fp32", "fp16", "bf16"], default=s, help="auto: bf16 on GPU"
    )
    g.add_argument("--quantize", choices=["4bit"], default=s, help="QLoRA: 4-bit base (CUDA + bitsandbytes)")
    g.add_argument(
        "--gradient-checkpointing", action="store_true", default=s, help="less memory, ~30%% slower"
    )
    g.add_argument("--cpu", action="store_true", default=s, help="train on the CPU even if a GPU is present")
    g.add_argument("--workers", type=int, default=s, help=f"image decoding processes (default {d.workers})")
    g.add_argument(
        "--save-every", type=int, default=s, help=f"steps between resumable states (default {d.save_every})"
    )
    g.add_argument("--resume", action="store_true", default=s, help="continue the interrupted run in --out")
    g.add_argument(
        "--overwrite", action="store_true", default=s, help="replace an existing checkpoint/run in --out"
    )
    g.add_argument("--name", default=s, help="model name stored in the checkpoint")
    g.add_argument(
        "--allow-absolute-paths", action="store_true", default=s, help="labels may point outside the data"
    )
    g.add_argument(
        "--allow-unknown-keys", action="store_true", default=s, help="ignore extra keys in label lines"
    )
    g.add_argument(
        "--no-image-check",
        dest="check_images",
        action="store_false",
        default=s,
        help="skip opening every image first",
    )
    g.add_argument("--quiet", action="store_true", default=s, help="no progress bar")
    return p


def config_from_args(argv: list[str] | None = None):
    """Defaults, then the --config file, then the flags actually given (a TrainConfig)."""
    args = build_parser().parse_args(argv)

    from humanaes_core.train import TrainConfig, read_config_file

    values = read_config_file(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    return TrainConfig.from_mapping({**values, **flags}, where=args.config or "arguments")


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-train: fine-tune HumanAesExpert into a native checkpoint."""
    config = config_from_args(argv)

    from humanaes_core.train import TrainingInterrupted, train

    try:
        result = train(config)
    except TrainingInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not result.main_process:
        return EXIT_OK
    if result.metrics:
        m = result.metrics
        shown = "  ".join(
            f"{label} {'n/a' if m[key] is None else format(m[key], '.4f')}"
            for label, key in (("SRCC", "srcc"), ("PLCC", "plcc"), ("MAE", "mae"), ("accuracy", "accuracy"))
        )
        print(f"validation ({m['n']} photos): {shown}", file=sys.stderr)
    print(
        f"checkpoint written to {result.output} ({result.steps} stage-1 steps). "
        f"Evaluate: humanaes-eval --data DATA --model {result.output} --out metrics.json",
        file=sys.stderr,
    )
    return EXIT_OK


if __name__ == "__main__":  # `accelerate launch -m humanaes_core.cli.train ...`
    sys.exit(main())
