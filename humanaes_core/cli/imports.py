"""`humanaes-import SRC OUT`: convert a released HumanAesExpert checkpoint into the native format."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.cli import EXIT_FAILED, EXIT_OK, check_outputs, echo, guard
from humanaes_core.importer import BACKBONE_DTYPES, METAVOTER_MODES
from humanaes_core.model import EXPERT_ACTIVATIONS

if TYPE_CHECKING:
    from humanaes_core.importer import VerifyReport

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
    verify = parser.add_argument_group(
        "verify against the release",
        "compare the import with a reference.json written by tools/release_reference.py in the release's own "
        "environment (docs/models.md, 'Verify your import')",
    )
    verify.add_argument("--verify", metavar="REFERENCE", help="reference.json to compare the import with")
    verify.add_argument(
        "--verify-photos",
        metavar="DIR",
        action="append",
        default=[],
        help="folder holding the reference's photos (default: where they were recorded, the reference's "
        "folder, resources/samples)",
    )
    verify.add_argument(
        "--verify-preset",
        default="release",
        help="scoring preset for the photos (default: release, the release's pixels and question; none: the "
        "checkpoint's own settings)",
    )
    verify.add_argument(
        "--verify-tolerance",
        type=float,
        default=0.01,
        help="largest score difference that counts as the same (fp16 on a GPU vs fp32: 0.01)",
    )
    return parser


def _verify(args: argparse.Namespace, out: Path, reference: dict) -> VerifyReport:
    """Score the reference's photos with the imported model, compare stage by stage, print the table."""
    from humanaes_core import load_scorer
    from humanaes_core.importer import Tolerance, verify_import

    preset = None if args.verify_preset == "none" else args.verify_preset
    max_tiles = int((reference.get("settings") or {}).get("max_num", 12))
    scorer = load_scorer(out, max_tiles=max_tiles, preset=preset)
    samples = Path(__file__).resolve().parents[2] / "resources" / "samples"
    tol = Tolerance(score=args.verify_tolerance, hidden=5 * args.verify_tolerance)
    report = verify_import(
        out,
        args.verify,
        scorer.model,
        scorer.tile_config,
        question_index=scorer.question_index,
        photo_dirs=[*args.verify_photos, samples],
        tol=tol,
    )
    echo(report.table())
    for warning in report.warnings:
        echo(f"  warning: {warning}", err=True)
    if report.changed or report.prompt:
        echo(f"written to {out}/humanaes.json: {report.changed | report.prompt}", err=True)
    return report


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-import: convert a released HumanAesExpert checkpoint into a native checkpoint."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verify and args.dry_run:
        parser.error("--verify needs the import written; leave out --dry-run")
    if not (args.verify_tolerance > 0):
        parser.error("--verify-tolerance must be a positive number")
    check_outputs((args.report, "--report"))  # before anything is converted
    reference = None
    if args.verify:
        from humanaes_core.importer import read_reference

        reference = read_reference(args.verify)  # a bad reference fails before the conversion

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
    done = "checked, nothing written" if args.dry_run else f"written to {report.out}"
    echo(f"{len(report.placements)} tensors placed ({report.variant}); {done}.", err=True)
    for assumption in report.assumptions:
        echo(f"  assumed: {assumption}", err=True)
    for warning in report.warnings:  # the self-check's findings, loud: a likely wrong assumption
        echo(f"WARNING: {warning}", err=True)
    verified = _verify(args, Path(args.out).expanduser(), reference) if reference is not None else None
    if args.report:
        with open_output(args.report, "--report") as f:
            extra = {"verify": verified.to_dict()} if verified is not None else {}
            json.dump(report.to_dict() | extra, f, indent=1, ensure_ascii=False)
    if verified is not None and not verified.ok:
        echo("verify: the import does not reproduce the reference in the stages marked NO", err=True)
        return EXIT_FAILED
    return EXIT_OK
