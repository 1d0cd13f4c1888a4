"""`humanaes-eval --data D --model M --out F.json`: the paper's metrics (Tables 2 and 3) for a model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from humanaes_core.cli import EXIT_OK, add_model_args, check_outputs, echo, guard
from humanaes_core.wording import count

EPILOG = """\
D: a HumanBeauty root (its test_label.jsonl by default, see --split), a .jsonl label file, a CSV (path +
overall and/or the 12 dimension keys) or a folder of photos rated with XMP stars.

Two families of numbers are reported side by side. "standard": MSE, RMSE, MAE and signed PLCC/SRCC/KRCC
as textbooks define them. "paper_compatible" (starred in the tables): what the official evaluation
script reports, MSE* = sqrt(MSE + 1e-8), MAE* = sqrt(MAE + 1e-8) and |PLCC|, |SRCC|, |KRCC|; only these
compare with the paper's tables. Accuracy and macro precision/recall/F1 on the five levels are shared.

--protocol paper evaluates as the release's eval_HumanAesExpert.py does: the "release" preset (its
load_image pixels, its question "Rate the aesthetics of this human picture.", fp16 on CUDA, 12 tiles) and
ground-truth levels from the labels' text_level where a line has one (HumanBeauty's 58K overall-only
samples), the score's level elsewhere.
"""


def _write_json(report: dict, out: Path) -> None:
    """The report as readable UTF-8 JSON, through the output guard (replaced atomically). A file name
    with undecodable bytes (a skipped photo) makes it fall back to ``\\udcXX`` escapes, which keep the
    exact name."""
    from humanaes_core.evaluation import json_safe
    from humanaes_core.outputs import open_output

    safe = json_safe(report)
    text = json.dumps(safe, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(safe, indent=2, ensure_ascii=True)
    with open_output(out, "--out") as f:
        f.write(text)


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-eval: evaluate a model with the paper's metrics."""
    parser = argparse.ArgumentParser(
        prog="humanaes-eval",
        description="Evaluate a HumanAesExpert model on labelled photos: overall metrics shaped like the "
        "paper's Table 2 (per head too) and per-dimension MAE like Table 3; printed and written to JSON.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="HumanBeauty root, .jsonl, .csv or rated photo folder")
    add_model_args(parser)
    parser.add_argument("--out", required=True, help="report file (JSON)")
    parser.add_argument("--csv", default=None, help="also write the metrics as CSV rows to this file")
    parser.add_argument("--split", default="test", help="label file of a HumanBeauty root (default: test)")
    parser.add_argument(
        "--allow-absolute-paths", action="store_true", help="labels may point outside the data"
    )
    parser.add_argument("--allow-unknown-keys", action="store_true", help="ignore extra keys in label lines")
    parser.add_argument(
        "--protocol",
        choices=("standard", "paper"),
        default="standard",
        help="paper: the release's evaluation (its pixels, question and text_level ground truth)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.protocol == "paper" and args.max_tiles != 12:
        parser.error("--protocol paper uses the release's 12 tiles; leave out --max-tiles")
    check_outputs((args.out, "--out"), (args.csv, "--csv"))  # before the model is loaded

    from humanaes_core.data import load_data
    from humanaes_core.evaluation import evaluate, table2, table3, write_csv

    data = load_data(
        args.data,
        split=args.split,
        allow_outside_root=args.allow_absolute_paths,
        allow_unknown_keys=args.allow_unknown_keys,
    )
    report = evaluate(
        data,
        args.model,
        device=args.device,
        precision=args.precision,
        quantize=args.quantize,
        max_tiles=args.max_tiles,
        batch_size=args.batch_size,
        progress=not args.quiet,
        protocol=args.protocol,
    )
    name = report["model"]["name"]
    echo(table2(report, name))
    echo("")
    echo(table3(report, name))
    _write_json(report, Path(args.out))
    if args.csv:
        write_csv(report, args.csv)
    skipped = report["skipped"] + report["data"]["skipped_while_loading"]
    echo(
        f"\n{count(report['scored'], 'photo')} scored, {len(skipped)} skipped. Report: {args.out}"
        + (f", {args.csv}" if args.csv else ""),
        err=True,
    )
    for item in skipped:
        echo(f"  skipped {item['path']}: {item['reason']}", err=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
