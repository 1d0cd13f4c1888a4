"""`humanaes-import SRC OUT`: convert a released HumanAesExpert checkpoint into the native format."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from humanaes_core.cli import EXIT_OK, check_outputs, echo, guard
from humanaes_core.importer import BACKBONE_DTYPES, METAVOTER_MODES
from humanaes_core.model import EXPERT_ACTIVATIONS

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

EPILOG = """\
SRC is the folder of a released checkpoint in InternVL's original layout (config.json, *.safetensors,
tokenizer files), e.g. downloaded with `hf download KwaiVGI/HumanAesExpert-1B --local-dir HumanAesExpert-1B`;
a hub id downloads it first. Nothing in SRC is executed and pickle files are never opened. Every tensor is
placed or the import stops and lists what it could not place; OUT is only written when all is well.
Open the result with `humanaes --model OUT` or `humanaes-score PHOTOS --model OUT --out scores.csv`.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanaes-import",
        description="Convert a released HumanAesExpert checkpoint (KwaiVGI/HumanAesExpert-1B or -8B, "
        "InternVL's original layout) into a HumanAes checkpoint that --model and load_scorer() open.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="folder of the released checkpoint, or its hub id")
    parser.add_argument("out", metavar="OUT", help="new folder for the converted checkpoint")
    parser.add_argument(
        "--metavoter",
        choices=METAVOTER_MODES,
        default="auto",
        help="auto: import the MetaVoter from SRC and fail if there is none; mean: SRC has none, make the "
        "final score the mean of the LM, regression and expert scores (recorded in the checkpoint)",
    )
    parser.add_argument(
        "--expert-activation",
        choices=EXPERT_ACTIVATIONS,
        default=None,
        help="activation inside the expert head's FFNs; the weights do not store it (default: gelu)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", *BACKBONE_DTYPES),
        default="auto",
        help="storage precision of the backbone (auto: as in SRC, bf16 for the releases)",
    )
    parser.add_argument("--name", default=None, help="display name stored in the checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it already exists")
    parser.add_argument(
        "--dry-run", action="store_true", help="check SRC and list the placements; write nothing"
    )
    parser.add_argument("--report", metavar="FILE", help="write the placement table and assumptions as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-import: convert a released HumanAesExpert checkpoint into a native checkpoint."""
    args = _parser().parse_args(argv)
    check_outputs((args.report, "--report"))  # before anything is converted

    from tqdm import tqdm

    from humanaes_core.importer import ImportReport, import_checkpoint, plan_import
    from humanaes_core.outputs import open_output

    src = Path(args.src).expanduser()
    provenance: dict = {}
    if not src.exists() and _HUB_ID.fullmatch(args.src):
        from humanaes_core.sources import download

        src = download(args.src, progress=None if args.quiet else tqdm)
        provenance = {"hub_id": args.src, "revision": src.name}

    if args.dry_run:
        plan = plan_import(src, expert_activation=args.expert_activation, metavoter=args.metavoter)
        report = ImportReport(None, plan.source_config.variant, plan.placements, plan.assumptions)
    else:
        with tqdm(total=0, unit="tensor", disable=args.quiet, file=sys.stderr, desc="converting") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = import_checkpoint(
                src,
                args.out,
                expert_activation=args.expert_activation,
                metavoter=args.metavoter,
                dtype=args.dtype,
                overwrite=args.overwrite,
                name=args.name,
                provenance=provenance,
                progress=progress,
            )
    if args.report:
        with open_output(args.report, "--report") as f:
            json.dump(report.to_dict(), f, indent=1, ensure_ascii=False)
    done = "checked, nothing written" if args.dry_run else f"written to {report.out}"
    echo(f"{len(report.placements)} tensors placed ({report.variant}); {done}.", err=True)
    for assumption in report.assumptions:
        echo(f"  assumed: {assumption}", err=True)
    return EXIT_OK
