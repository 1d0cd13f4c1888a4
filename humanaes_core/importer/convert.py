"""Import a released HumanAesExpert checkpoint (InternVL 2 original layout) into the native format.

The released checkpoints (`KwaiVGI/HumanAesExpert-1B`, `-8B`) ship their own modelling code for an old
transformers. We never import or run anything from the source directory: only `config.json`, the
tokenizer's data files and the `*.safetensors` tensors are read (pickles are never opened).

What happens, in two steps:

* `plan_import` reads the config (config.py), the tokenizer (tokenizer.py) and the tensor headers
  (source.py) and decides where every source tensor goes: the backbone is renamed to transformers'
  native InternVL layout, fused qkv/wqkv split (weights.py); the heads are recognised by name *and*
  shape (heads.py). Every source tensor is placed exactly once or the import fails and lists what it
  could not place, what it expected and what was missing: nothing is dropped silently and no head is
  initialised at random and passed off as imported.
* `import_checkpoint` then streams the tensors into the native model and writes it with
  `save_checkpoint`, so `load_scorer(OUT)` opens it.

What the weights cannot show (the open fields: positions, activations, orders, the template) is read
from the snapshot's modeling code as text (modeling_reader.py, never run); evidence beats defaults, and
the report lists which fields were read and which assumed. A self-check on sample photos (selfcheck.py)
then looks for the symptoms of a wrong assumption and warns loudly, naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.importer.config import (
    TEMPLATE_FORMAT,
    SourceConfig,
    native_config,
    read_config,
    source_prompt,
)
from humanaes_core.importer.heads import (
    EXPERT_STRUCTURE,
    METAVOTER_MODES,
    METAVOTER_STRUCTURE,
    HeadsPlan,
    build_heads,
    plan_heads,
)
from humanaes_core.importer.modeling_reader import ModelingEvidence, read_modeling
from humanaes_core.importer.selfcheck import SelfCheck, run_self_check
from humanaes_core.importer.source import (
    ImportFailure,
    SourceFiles,
    SourceTensor,
    TensorPlacement,
    describe,
    listing,
)
from humanaes_core.importer.tokenizer import convert_tokenizer
from humanaes_core.importer.weights import (
    FusedTensor,
    backbone_dtype,
    backbone_plan,
    build_backbone,
    place_backbone,
    tied_output,
)
from humanaes_core.model import EXPERT_ACTIVATIONS, OpenFields

if TYPE_CHECKING:
    from transformers import InternVLConfig, PreTrainedTokenizerBase

    from humanaes_core.model import CheckpointMeta, PromptConfig

log = logging.getLogger(__name__)

IMPORTER_VERSION = 1


@dataclass
class ImportReport:
    """What an import did: the output, every placement and the assumptions it made."""

    out: Path | None
    variant: str
    placements: list[TensorPlacement]
    assumptions: list[str]
    provenance: dict = field(default_factory=dict)
    open_fields: dict = field(default_factory=dict)  # read (field -> where), assumed, not understood
    self_check: SelfCheck | None = None
    warnings: list[str] = field(default_factory=list)  # loud: a likely wrong assumption

    def to_dict(self) -> dict:
        return {
            "out": str(self.out) if self.out else None,
            "variant": self.variant,
            "placements": [p.to_dict() for p in self.placements],
            "assumptions": self.assumptions,
            "open_fields": self.open_fields,
            "self_check": self.self_check.to_dict() if self.self_check else None,
            "warnings": self.warnings,
        }


@dataclass
class ImportPlan:
    """Everything decided before any tensor data is read: configs, tokenizer, placements, assumptions."""

    root: Path
    source_config: SourceConfig
    config: InternVLConfig
    tokenizer: PreTrainedTokenizerBase
    prompt: PromptConfig
    backbone: dict[str, FusedTensor]
    heads: HeadsPlan
    placements: list[TensorPlacement]
    assumptions: list[str]
    source: SourceFiles
    open_fields: OpenFields = field(default_factory=OpenFields)
    evidence: ModelingEvidence = field(default_factory=ModelingEvidence)

    def fields_report(self) -> dict:
        """Which open fields were read from evidence (and where), which assumed, what was not understood."""
        f = self.open_fields
        return {
            "read": {n: f.evidence[n] for n in f.read()},
            "assumed": f.assumed(),
            "values": {
                **{k: v for k, v in f.to_dict().items() if k != "evidence"},
                "template": self.prompt.template,
            },
            "not_understood": self.evidence.not_understood,
            "modeling_files": self.evidence.files,
            "metavoter": self.evidence.metavoter,
        }


def _check_options(root: Path, expert_activation: str | None, metavoter: str) -> None:
    if not root.is_dir():
        raise ImportFailure(f"{root} is not a directory")
    if metavoter not in METAVOTER_MODES:
        raise ImportFailure(f"--metavoter must be one of {', '.join(METAVOTER_MODES)}, not {metavoter!r}")
    if expert_activation is not None and expert_activation not in EXPERT_ACTIVATIONS:
        raise ImportFailure(
            f"--expert-activation must be one of {', '.join(EXPERT_ACTIVATIONS)}, not {expert_activation!r}"
        )


def _image_token_id(tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig, sc: SourceConfig) -> int:
    """The id of the image placeholder token, checking the tokenizer fits the language model."""
    ids = tokenizer.encode(prompt.img_context, add_special_tokens=False)
    if len(ids) != 1:
        raise ImportFailure(f"the tokenizer has no single {prompt.img_context} token (got ids {ids})")
    vocab_size = int(sc.llm.get("vocab_size", 0))
    if len(tokenizer) > vocab_size:
        raise ImportFailure(
            f"the tokenizer has {len(tokenizer)} tokens but the language model only {vocab_size}"
        )
    return ids[0]


def _unplaced(rest: dict[str, SourceTensor], variant: str) -> str:
    """The problem line for source tensors neither the backbone nor the heads took."""
    return (
        f"{len(rest)} source tensors could not be placed:"
        + listing([f"{describe(n, t.shape)} in {t.file}" for n, t in sorted(rest.items())])
        + "\n  the importer places: vision_model.* (InternViT-300M), mlp1.{0,1,3}, language_model.* "
        f"({'Qwen2' if variant == 'qwen2' else 'InternLM2'}), language_model.lm_regression_head, "
        f"language_model.expert_head* ({EXPERT_STRUCTURE}) and a MetaVoter ({METAVOTER_STRUCTURE})"
    )


def plan_import(
    src: str | Path, *, expert_activation: str | None = None, metavoter: str = "auto"
) -> ImportPlan:
    """Read config, tokenizer and tensor headers of `src` and decide every placement, or fail listing why."""
    root = Path(src).expanduser()
    _check_options(root, expert_activation, metavoter)
    sc = read_config(root)
    source = SourceFiles(root)
    tokenizer = convert_tokenizer(root, sc.variant)
    evidence = read_modeling(root)
    prompt = evidence.prompt(source_prompt(sc, tokenizer.bos_token))
    code_activation = evidence.values.get("expert_ffn_activation")
    if expert_activation is None and code_activation in EXPERT_ACTIVATIONS:
        expert_activation = code_activation
    image_token_id = _image_token_id(tokenizer, prompt, sc)
    tie, tied_duplicate = tied_output(source, sc.variant, sc.llm)
    config = native_config(sc, image_token_id, tie)
    backbone = backbone_plan(config, sc.variant)

    problems: list[str] = []
    placements = place_backbone(backbone, source, tied_duplicate, problems)
    claimed = {p.source for p in placements}
    rest = {n: t for n, t in source.tensors.items() if n not in claimed}
    heads, rest = plan_heads(
        rest,
        config.text_config.hidden_size,
        expert_activation or "gelu",
        metavoter,
        source,
        problems,
        evidence.values.get("expert_submodules"),
    )
    if rest:
        problems.append(_unplaced(rest, sc.variant))
    if problems:
        raise ImportFailure(f"cannot import {root}:\n- " + "\n- ".join(problems))
    open_fields = _open_fields(evidence, heads)
    return ImportPlan(
        root=root,
        source_config=sc,
        config=config,
        tokenizer=tokenizer,
        prompt=prompt,
        backbone=backbone,
        heads=heads,
        placements=placements + heads.placements(source),
        assumptions=_assumptions(heads, evidence, open_fields, code_activation, expert_activation),
        source=source,
        open_fields=open_fields,
        evidence=evidence,
    )


def _open_fields(evidence: ModelingEvidence, heads: HeadsPlan) -> OpenFields:
    """The modeling file's evidence over the defaults; the regression width as the weights have it."""
    fields = evidence.open_fields()
    weights = f"weights: lm_regression_head [{heads.regression_width}, hidden]"
    if evidence.values.get("regression_width", heads.regression_width) != heads.regression_width:
        evidence.puzzle(
            f"the code's regression width {evidence.values['regression_width']} disagrees with the weights'; "
            "the weights' is used",
            evidence.where["regression_width"],
        )
    fields.regression_width = heads.regression_width
    fields.evidence["regression_width"] = evidence.where.get("regression_width", weights)
    return fields


def _assumptions(
    heads: HeadsPlan,
    evidence: ModelingEvidence,
    fields: OpenFields,
    code_activation: object,
    activation: str | None,
) -> list[str]:
    lines = heads.assumptions(activation_given=activation is not None)
    if activation is not None and activation == code_activation:
        where = evidence.where["expert_ffn_activation"]
        lines = [ln.replace("(from --expert-activation)", f"(from {where})") for ln in lines]
    for name in fields.assumed():
        default = getattr(fields, name, None) if name != "template" else "internvl_chat"
        lines.append(f"open field {name} = {default!r} assumed (not settled by the modeling code)")
    lines += [f"modeling code not understood: {line}" for line in evidence.not_understood]
    return lines


def _meta(plan: ImportPlan, name: str | None, provenance: dict | None) -> CheckpointMeta:
    from humanaes_core.model import CheckpointMeta, ImageConfig

    sc = plan.source_config
    files = {p.name: p.stat().st_size for p in sorted(plan.root.glob("*.safetensors"))}
    record = {
        "source": "humanaes_core.importer.convert",
        "importer_version": IMPORTER_VERSION,
        "source_name": plan.root.name,
        "source_files": files,
        "variant": sc.variant,
        "llm_architectures": sc.llm.get("architectures"),
        "template": sc.template,
        "template_format": TEMPLATE_FORMAT[sc.template],
        "tensors_placed": len(plan.placements),
        "expert_head": {
            "layout": plan.heads.expert_layout,
            "activation": plan.heads.config.expert_activation,
        },
        "metavoter": (
            {"source": "imported", "prefix": plan.heads.metavoter_prefix}
            if plan.heads.metavoter
            else {"source": "mean of the three heads (--metavoter mean)"}
        ),
        "assumptions": plan.assumptions,
        "open_fields": plan.fields_report(),
    } | (provenance or {})
    return CheckpointMeta(
        heads=plan.heads.config,
        open_fields=plan.open_fields,
        prompt=plan.prompt,
        image=ImageConfig(image_size=sc.image_size, max_tiles=sc.max_tiles, use_thumbnail=sc.use_thumbnail),
        name=name or (provenance or {}).get("hub_id", "").rpartition("/")[2] or plan.root.name,
        provenance=record,
    )


def _check_out(out: Path, overwrite: bool) -> None:
    from humanaes_core.model import is_checkpoint

    if out.exists() and not out.is_dir():
        raise ImportFailure(f"{out} is a file; OUT must be a new folder")
    if out.exists() and not overwrite and any(out.iterdir()):
        what = "a HumanAes checkpoint" if is_checkpoint(out) else "not empty"
        raise ImportFailure(f"{out} already exists and is {what}; choose another OUT or pass --overwrite")


def import_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    expert_activation: str | None = None,
    metavoter: str = "auto",
    dtype: str = "auto",
    overwrite: bool = False,
    name: str | None = None,
    provenance: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    self_check: bool = True,
) -> ImportReport:
    """Convert the original-layout checkpoint in `src` into a native checkpoint at `out`.

    Fails (ImportFailure) before writing anything when a tensor cannot be placed, a head is not
    recognised or a MetaVoter is missing (unless `metavoter="mean"`). Then scores the sample photos
    (`self_check`) and reports the figures and any warning in the report and the provenance.
    """
    from humanaes_core.model import HumanAesModel, save_checkpoint

    out = Path(out).expanduser()
    _check_out(out, overwrite)
    plan = plan_import(src, expert_activation=expert_activation, metavoter=metavoter)
    if plan.root.resolve() == out.resolve():
        raise ImportFailure("OUT must differ from SRC")
    target_dtype = backbone_dtype(plan.backbone, plan.source, dtype)
    log.info("importing %s (%s) into %s", plan.root, plan.source_config.variant, out)
    backbone = build_backbone(plan.config, plan.backbone, plan.source, target_dtype, progress)
    heads = build_heads(plan.heads, plan.source, plan.open_fields)
    num_image_token = int(plan.config.image_seq_length)
    model = HumanAesModel(backbone, heads, plan.tokenizer, plan.prompt, num_image_token).eval()
    meta = _meta(plan, name, provenance)
    check = run_self_check(model, meta.image) if self_check else None
    if check is not None:
        meta.provenance["self_check"] = check.to_dict()
    save_checkpoint(model, out, meta)
    return ImportReport(
        out,
        plan.source_config.variant,
        plan.placements,
        plan.assumptions,
        meta.provenance,
        plan.fields_report(),
        check,
        check.warnings if check else [],
    )
