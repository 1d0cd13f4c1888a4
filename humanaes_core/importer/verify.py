"""`humanaes-import SRC OUT --verify reference.json`: the imported model against the release, stage by stage.

reference.json is written by ``tools/release_reference.py`` in the release's own environment (its
docstring is the schema; `reference` reads it): for each sample photo the release's pixel values
(shape, sha256 of the float32 bytes), the prompt and input ids of each call, what ``score()``,
``run_metavoter()`` and ``expert_score()`` returned, and, where hooks reached them, each head's input
(norm and first values of the hidden state it read) and output. Here the same photos go through the
imported model and each stage is compared in order: pixels, input ids per call, the LM head's input and
level logits, the regression head, the expert head, the MetaVoter, and last all heads as
`HumanAesModel.score_batch` computes them with the fields found (what `load_scorer` will give).

When a head disagrees, the open fields it depends on (and only those: `HEAD_FIELDS`) are searched,
fewest changes first, over ``OpenFields.alternatives``; when the ids disagree, the questions and
templates. The search evaluates the heads, built as loading builds them (`with_fields`), on hidden
states computed once per photo at every position and layer a head may read (`photo_states`; the
positions are defined in `humanaes_core.model.release`), so a candidate costs the heads only. The
closest combination within the tolerance is written into OUT/humanaes.json with the evidence
"verify: <file>" and the manifest is signed again; several within the tolerance are reported as
ambiguous. `regression_width` follows the weights' shape, so it is not searched.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from humanaes_core.files import atomic_write, read_json_file
from humanaes_core.importer.reference import (
    COMPARE,
    find_photo,
    flat,
    head_call,
    hidden_diff,
    pixel_sha256,
    read_reference,
)
from humanaes_core.model import MAX_METADATA_BYTES, META_FILE, HumanAesModel, write_manifest

if TYPE_CHECKING:
    from humanaes_core.model import TileConfig

OPEN_FIELDS_KEY = "open_fields"
#: The fields each head depends on, searched in this order when that head disagrees.
HEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "regression": ("head_position", "head_hidden", "regression_activation"),
    "expert": ("head_position", "head_hidden", "expert_activation", "expert_l_inputs", "expert_leaf_order"),
    "metavoter": ("metavoter_inputs", "lm_level_space", "lm_normalisation"),
}
#: Most combinations tried for one head.
MAX_CANDIDATES = 4096


@dataclass(frozen=True)
class Tolerance:
    """How close counts as the same: scores absolutely; hidden states relative to the row's norm.

    The release runs in fp16 on CUDA and the check usually in fp32 on the CPU: scores in [0, 1] then
    differ by about 1e-3, hidden-state summaries by about 1 %.
    """

    score: float = 0.01
    hidden: float = 0.05


@dataclass
class StageResult:
    stage: str
    matched: bool | None  # None: the reference does not reach this stage
    max_diff: float | None = None
    note: str = ""

    def row(self) -> list[str]:
        state = "n/a" if self.matched is None else ("yes" if self.matched else "NO")
        diff = "" if self.max_diff is None else f"{self.max_diff:.3g}"
        return [self.stage, state, diff, self.note]


@dataclass
class VerifyReport:
    """The stages compared, the open fields that reproduce the reference, and warnings."""

    reference: str
    stages: list[StageResult] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # field -> value, for every head that matched
    changed: dict[str, Any] = field(default_factory=dict)  # the subset that differs from the import
    prompt: dict[str, Any] = field(default_factory=dict)  # template / question_index found by the ids
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.matched is not False for s in self.stages)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "ok": self.ok,
            "stages": [s.__dict__ for s in self.stages],
            "fields": self.fields,
            "changed": self.changed,
            "prompt": self.prompt,
            "warnings": self.warnings,
        }

    def table(self) -> str:
        rows = [["stage", "matched", "max difference", "note"], *(s.row() for s in self.stages)]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


# --- open fields --------------------------------------------------------------------------------------


def alternatives(name: str) -> list:
    """Candidate values of an open field (or "template"), the default first."""
    from humanaes_core.model import OpenFields

    return OpenFields.alternatives(name)


def current_fields(meta_json: Mapping) -> dict[str, Any]:
    """The checkpoint's open fields (humanaes.json's "open_fields"), defaults where absent."""
    from humanaes_core.model import OpenFields

    stored = OpenFields.from_dict(meta_json.get(OPEN_FIELDS_KEY) or {}).to_dict()
    stored.pop("evidence", None)
    return stored


def candidates(now: Mapping[str, Any], names: Sequence[str], limit: int = MAX_CANDIDATES) -> Iterable[dict]:
    """`now` first, then every combination changing 1, 2, ... of `names` (at most `limit` in all)."""
    made = 0
    for k in range(len(names) + 1):
        for chosen in itertools.combinations(names, k):
            others = [[v for v in alternatives(n) if v != now[n]] for n in chosen]
            for values in itertools.product(*others):
                if made >= limit:
                    return
                made += 1
                yield {**now, **dict(zip(chosen, values, strict=True))}


# --- our side: hidden states once, heads under any combination ---------------------------------------


@dataclass
class _Photo:
    """One photo's states in the imported model: what every head could read, and the LM's logits."""

    pixels: torch.Tensor
    reads: dict[tuple[str, str, str], torch.Tensor]  # (question, position, hidden) -> [H]
    lm_row: torch.Tensor  # logits over the vocabulary where the level word is predicted
    lm_hidden: torch.Tensor


def _run(model: HumanAesModel, feats: torch.Tensor, ids: list[int], image: slice) -> tuple[torch.Tensor, ...]:
    """Final-norm and pre-norm hidden states [T, H] of one sequence with the image at `image`."""
    lm = model.backbone.model.language_model
    captured: list[torch.Tensor] = []
    handle = lm.norm.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        embeds = lm.get_input_embeddings()(torch.tensor([ids], device=model.device)).clone()
        embeds[0, image] = feats[0].to(embeds.dtype)
        pos = torch.arange(len(ids), device=model.device).unsqueeze(0)
        final = lm(inputs_embeds=embeds, position_ids=pos).last_hidden_state[0]
    finally:
        handle.remove()
    return final.float(), captured[-1][0].float()


def _last(ids: list[int], token: int, stop: int) -> int | None:
    found = [i for i, t in enumerate(ids[:stop]) if t == token]
    return found[-1] if found else None


@torch.inference_mode()
def photo_states(model: HumanAesModel, pixels: torch.Tensor) -> _Photo:
    """Run the overall and 12-dimension prompts once and keep every position a head might read
    (`humanaes_core.model.release.HEAD_POSITIONS` defines them)."""
    n = pixels.shape[0]
    lay = model.layout(n)
    feats = model.encode_images(pixels, n)
    overall, dims = lay.prefix_ids + lay.overall_ids, lay.prefix_ids + lay.dims_ids
    last_prompt = len(lay.prefix_ids) + lay.overall_reg_offset
    im_end = model.tokenizer.convert_tokens_to_ids(model.prompt.im_end)
    at = {
        ("overall", "last_prompt_token"): last_prompt,
        ("overall", "answer_start"): len(overall) - 1,
        ("overall", "im_end"): _last(overall, im_end, last_prompt + 1),
        ("dims", "last_prompt_token"): len(dims) - 1,
        ("dims", "answer_start"): len(dims) - 1,
        ("dims", "im_end"): _last(dims, im_end, len(dims)),
    }
    states = {
        q: _run(model, feats, ids, lay.image_slice) for q, ids in (("overall", overall), ("dims", dims))
    }
    reads = {}
    for (question, position), index in at.items():
        for layer, hidden in zip(("final_norm", "last_layer"), states[question], strict=True):
            if index is not None:
                reads[question, position, layer] = hidden[index]
    final = states["overall"][0][-1]
    lm_row = model.backbone.lm_head(final.to(model.dtype)).float()
    return _Photo(pixels, reads, lm_row, final)


def with_fields(model: HumanAesModel, f: Mapping[str, Any]) -> HumanAesModel:
    """The same backbone and weights with the heads built for the open fields `f` (as loading does)."""
    from humanaes_core.model import Heads, OpenFields

    heads = Heads(model.heads.config, OpenFields.from_dict({k: v for k, v in f.items() if k != "evidence"}))
    heads.load_state_dict(model.heads.state_dict())
    heads.to(model.device).eval()
    return HumanAesModel(model.backbone, heads, model.tokenizer, model.prompt, model.num_image_token)


@torch.inference_mode()
def head_values(model: HumanAesModel, photo: _Photo, f: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every head's score for one photo under the open fields `f` (None: a position not reachable)."""
    h_reg = photo.reads.get(("overall", f["head_position"], f["head_hidden"]))
    h_exp = photo.reads.get(("dims", f["head_position"], f["head_hidden"]))
    if h_reg is None or h_exp is None:
        return None
    alt = with_fields(model, f)
    heads = alt.heads
    reg = heads.regression(h_reg.unsqueeze(0))
    expert = heads.expert(h_exp.unsqueeze(0))
    lm = heads.lm_input(photo.lm_row[alt.level_token_ids].unsqueeze(0))
    by_name = {"lm": lm, "regression": reg, "expert": expert["overall"]}
    voter = heads.metavoter(lm, reg, expert["overall"])
    return {
        "regression": float(reg[0]),
        "expert": {k: float(v[0]) for k, v in expert.items()},
        "lm": float(lm[0]),
        "metavoter_in": [float(by_name[n][0]) for n in heads.metavoter.inputs],
        "metavoter": float(voter[0]),
        "reg_hidden": h_reg,
        "exp_hidden": h_exp,
    }


@torch.inference_mode()
def scored(model: HumanAesModel, photo: _Photo, f: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer's own head outputs under `f` (`HumanAesModel.score_batch`): the confirmation."""
    out = with_fields(model, f).score_batch(photo.pixels, photo.pixels.shape[0])
    assert out.expert is not None and out.metavoter is not None
    return {
        "regression": float(out.regression[0]),
        "expert": {k: float(v[0]) for k, v in out.expert.items()},
        "metavoter": float(out.metavoter[0]),
        "level_logits": out.level_logits[0],
    }


# --- stages ----------------------------------------------------------------------------------------------


def _prompt_ids(model: HumanAesModel, n_tiles: int) -> dict[str, list[int]]:
    lay = model.layout(n_tiles)
    overall = lay.prefix_ids + lay.overall_ids
    return {
        "overall prompt": overall[: len(lay.prefix_ids) + lay.overall_reg_offset + 1],
        "overall prompt + answer prefix": overall,
        "12-dimension prompt": lay.prefix_ids + lay.dims_ids,
    }


def _reference_sequences(entry: Mapping, image_token: int) -> list[list[int]]:
    """The call's scoring sequences: what the forward received, else what the tokenizer gave, with the
    image tokens (generation steps and level-word look-ups are left out)."""
    seqs = [s for s in entry.get("forward_ids") or [] if isinstance(s, list)]
    if not seqs:
        seqs = [p.get("input_ids") for p in entry.get("prompts") or [] if isinstance(p, Mapping)]
    ids = [[int(x) for x in flat(s)] for s in seqs]
    return [s for s in ids if image_token in s]


def _ids_mismatches(model: HumanAesModel, sample: Mapping, n_tiles: int) -> dict[str, str | None]:
    """Per call: None when every scoring sequence equals one of ours, else where the first differs."""
    ours = _prompt_ids(model, n_tiles)
    out: dict[str, str | None] = {}
    for call, entry in (sample.get("calls") or {}).items():
        seqs = _reference_sequences(entry, model.img_context_id) if isinstance(entry, Mapping) else []
        if not seqs:
            continue
        out[call] = None
        for seq in seqs:
            if any(seq == o for o in ours.values()):
                continue
            name, o = max(ours.items(), key=lambda kv: _common(seq, kv[1]))
            i = _common(seq, o)
            theirs, mine = model.tokenizer.decode(seq[i : i + 3]), model.tokenizer.decode(o[i : i + 3])
            out[call] = f"token {i} of {len(seq)}: release {theirs!r}, ours ({name}) {mine!r}"
    return out


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _prompt_alternatives(model: HumanAesModel) -> Iterable[tuple[dict, HumanAesModel]]:
    """The model with each other question and template (when the prompt has one), fewest changes first."""
    prompt = model.prompt
    options = {"question_index": range(len(prompt.overall_questions))}
    if "template" in {f.name for f in fields(prompt)}:
        options["template"] = alternatives("template")
    changes = []
    for values in itertools.product(*options.values()):
        change = {k: v for k, v in zip(options, values, strict=True) if getattr(prompt, k) != v}
        if change:
            changes.append(change)
    for change in sorted(changes, key=len):
        alt = replace(prompt, **change)
        yield change, HumanAesModel(model.backbone, model.heads, model.tokenizer, alt, model.num_image_token)


def _pixels_stage(samples: Sequence[Mapping], pixels: Sequence[torch.Tensor], report: VerifyReport) -> None:
    worst, bad = 0.0, []
    for sample, px in zip(samples, pixels, strict=True):
        ref = sample.get("pixel_values") or {}
        if list(px.shape) == list(ref.get("shape") or []) and pixel_sha256(px) == ref.get("sha256"):
            continue
        stats = ref.get("stats") or {}
        ours = {"mean": px.mean(), "std": px.std(), "min": px.min(), "max": px.max()}
        diffs = [abs(float(ours[k]) - float(v)) for k, v in stats.items() if k in ours]
        diffs += [abs(a - b) for a, b in zip(flat(ref.get("first", [])), px.flatten().tolist(), strict=False)]
        worst = max(worst, *diffs, 0.0)
        bad.append(f"{sample['file']} {list(px.shape)} vs {ref.get('shape')}")
    note = "bit-identical" if not bad else "differ: " + "; ".join(bad)[:200] + " (heads below use ours)"
    report.stages.append(StageResult("pixels", not bad, worst, note))


def _ids_stage(
    model: HumanAesModel, samples: Sequence[Mapping], pixels: Sequence[torch.Tensor], report: VerifyReport
) -> HumanAesModel:
    """Compare the input ids of every call; when they differ, look for the template and question that
    give the release's ids, and continue with them."""

    def mismatches(m: HumanAesModel) -> list[dict[str, str | None]]:
        return [_ids_mismatches(m, s, px.shape[0]) for s, px in zip(samples, pixels, strict=True)]

    found = mismatches(model)
    if any(v for per in found for v in per.values()):
        for change, alt in _prompt_alternatives(model):
            alt_found = mismatches(alt)
            if any(alt_found[0]) and not any(v for per in alt_found for v in per.values()):
                report.prompt = change
                report.warnings.append(f"the release's ids come from prompt settings {change}")
                model, found = alt, alt_found
                break
    for call in ("score", "run_metavoter", "expert_score"):
        seen = [per[call] for per in found if call in per]
        if not seen:
            report.stages.append(StageResult(f"ids: {call}", None, note="no sequence in the reference"))
            continue
        wrong = [w for w in seen if w]
        note = wrong[0] if wrong else "identical" + (f" with {report.prompt}" if report.prompt else "")
        report.stages.append(StageResult(f"ids: {call}", not wrong, float(len(wrong)), note))
    return model


def _lm_stage(
    photos: Sequence[_Photo], samples: Sequence[Mapping], tol: Tolerance, report: VerifyReport
) -> None:
    hidden, logits, seen = 0.0, 0.0, False
    for photo, sample in zip(photos, samples, strict=True):
        ref = head_call(sample, "lm", ("score", "run_metavoter"))
        if ref is None:
            continue
        seen = True
        hidden = max(hidden, hidden_diff(ref.get("input"), photo.lm_hidden) or 0.0)
        for token, value in (ref.get("level_logits") or {}).items():
            ours = float(photo.lm_row[int(token)])
            logits = max(logits, abs(ours - float(value)) / (1.0 + abs(float(value))))
    if not seen:
        report.stages.append(StageResult("lm head", None, note="not reached by the reference's hooks"))
        return
    report.stages.append(StageResult("lm head input", hidden <= tol.hidden, hidden, "relative to RMS"))
    report.stages.append(StageResult("lm level logits", logits <= tol.hidden, logits, "relative"))


@dataclass
class _Trial:
    cost: float
    fields: dict[str, Any]
    score: float
    hidden: float | None  # None: the reference has no summary of this head's input
    note: str


def _trial(model: HumanAesModel, head: str, cand: dict, photos: Sequence[_Photo], samples: Sequence[Mapping],
           tol: Tolerance) -> _Trial | None:  # fmt: skip
    """How far `cand` is from the reference on one head over all photos (None: not computable/no data)."""
    score, hidden = 0.0, None
    notes = set()
    for photo, sample in zip(photos, samples, strict=True):
        values = head_values(model, photo, cand)
        if values is None:
            return None
        got = COMPARE[head](values, sample)
        if got is None:
            continue
        score = max(score, got[0])
        if got[1] is not None:
            hidden = max(hidden or 0.0, got[1])
        notes.add(got[2])
    if not notes:
        return None
    cost = max(score / tol.score, (hidden or 0.0) / tol.hidden)
    return _Trial(cost, cand, score, hidden, ", ".join(sorted(n for n in notes if n)))


def _head_stage(
    model: HumanAesModel,
    head: str,
    now: dict[str, Any],
    fixed: set[str],
    photos: Sequence[_Photo],
    samples: Sequence[Mapping],
    tol: Tolerance,
    report: VerifyReport,
) -> dict[str, Any]:
    """Compare one head and search its fields when it disagrees; returns the fields to continue with."""
    names = [n for n in HEAD_FIELDS[head] if n not in fixed]
    first = _trial(model, head, now, photos, samples, tol)
    if first is None:
        report.stages.append(StageResult(head, None, note="not in the reference"))
        return now
    trials = [first]
    if first.cost > 1:
        trials += [t for c in candidates(now, names) if c != now
                   for t in [_trial(model, head, c, photos, samples, tol)] if t is not None]  # fmt: skip
    best = min(trials, key=lambda t: t.cost)
    matched = best.cost <= 1
    changed = {n: best.fields[n] for n in names if best.fields[n] != now[n]}
    if matched:
        report.fields.update({n: best.fields[n] for n in names})
        report.changed.update(changed)
        within = [t for t in trials if t.cost <= 1]
        if len(within) > 1:
            report.warnings.append(
                f"{head}: {len(within)} combinations reproduce the reference; kept the closest"
            )
    note = ", ".join(f"{k}={v}" for k, v in changed.items()) or "as imported"
    if not matched:
        note = "no combination reproduces it; closest: " + note
    report.stages.append(
        StageResult(head, matched, best.score, note + (f" ({best.note})" if best.note else ""))
    )
    if best.hidden is not None:
        report.stages.append(
            StageResult(f"{head} head input", best.hidden <= tol.hidden, best.hidden, "relative")
        )
    return best.fields if matched else now


# --- the whole check ----------------------------------------------------------------------------------------


def verify_model(
    model: HumanAesModel,
    tiles: TileConfig,
    reference: Mapping,
    photos: Sequence[Path],
    fields_now: Mapping[str, Any],
    *,
    reference_name: str = "reference.json",
    tol: Tolerance = Tolerance(),
) -> VerifyReport:
    """Compare `model` (scoring with `tiles`) with the reference, stage by stage; search where it differs."""
    from humanaes_core.model import preprocess

    samples = reference["samples"]
    report = VerifyReport(reference=reference_name)
    pixels = [preprocess(p, tiles) for p in photos]
    _pixels_stage(samples, pixels, report)
    model = _ids_stage(model, samples, pixels, report)
    states = [photo_states(model, px) for px in pixels]
    _lm_stage(states, samples, tol, report)
    now, fixed = dict(fields_now), set()
    for head in ("regression", "expert", "metavoter"):
        now = _head_stage(model, head, now, fixed, states, samples, tol, report)
        if any(s.stage == head and s.matched for s in report.stages):  # one reading for both heads
            fixed |= {"head_position", "head_hidden"} & set(HEAD_FIELDS[head])
    _confirm(model, states, samples, now, tol, report)
    return report


def _confirm(
    model: HumanAesModel,
    photos: Sequence[_Photo],
    samples: Sequence[Mapping],
    f: Mapping[str, Any],
    tol: Tolerance,
    report: VerifyReport,
) -> None:
    """Score the photos the way `load_scorer` will with the fields found, and compare once more."""
    worst, seen = 0.0, False
    for photo, sample in zip(photos, samples, strict=True):
        values = {**scored(model, photo, f), "reg_hidden": None, "exp_hidden": None}
        for compare in COMPARE.values():
            got = compare(values, sample)
            if got is not None:
                seen, worst = True, max(worst, got[0])
    if seen:
        note = "the scorer (score_batch) with the fields found"
        report.stages.append(StageResult("all heads, as scored", worst <= tol.score, worst, note))


def write_fields(out: str | Path, report: VerifyReport) -> bool:
    """Write what the check found into OUT/humanaes.json (evidence "verify: <file>") and re-sign the
    manifest; False when there is nothing to write."""
    if not report.fields and not report.prompt:
        return False
    out = Path(out)
    data = dict(read_json_file(out / META_FILE, MAX_METADATA_BYTES))
    stored = dict(data.get(OPEN_FIELDS_KEY) or {})
    evidence = dict(stored.get("evidence") or {})
    source = f"verify: {report.reference}"
    for name, value in report.fields.items():
        stored[name] = value
        evidence[name] = source
    if report.prompt:
        data["prompt"] = {**data.get("prompt", {}), **report.prompt}
        evidence.update(dict.fromkeys(report.prompt, source))
    stored["evidence"] = evidence
    data[OPEN_FIELDS_KEY] = stored
    provenance = dict(data.get("provenance") or {})
    provenance["verify"] = {"reference": report.reference, "ok": report.ok, "changed": report.changed}
    data["provenance"] = provenance
    with atomic_write(out / META_FILE) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False))
    write_manifest(out)
    return True


def verify_import(
    out: str | Path,
    reference_path: str | Path,
    model: HumanAesModel,
    tiles: TileConfig,
    *,
    question_index: int | None = None,
    photo_dirs: Sequence[str | Path] = (),
    tol: Tolerance = Tolerance(),
    write: bool = True,
) -> VerifyReport:
    """`--verify`: check the checkpoint at `out` (loaded as `model`, photos decoded with `tiles`, asked
    question `question_index`, default the checkpoint's) against reference.json and write the open
    fields that reproduce it into `out`."""
    if question_index is not None and question_index != model.prompt.question_index:
        prompt = replace(model.prompt, question_index=question_index)
        model = HumanAesModel(model.backbone, model.heads, model.tokenizer, prompt, model.num_image_token)
    reference_path = Path(reference_path)
    reference = read_reference(reference_path)
    search = [Path(d) for d in photo_dirs] + [reference_path.parent]
    photos = [find_photo(s, search) for s in reference["samples"]]
    meta_json = read_json_file(Path(out) / META_FILE, MAX_METADATA_BYTES)
    report = verify_model(
        model,
        tiles,
        reference,
        photos,
        current_fields(meta_json),
        reference_name=reference_path.name,
        tol=tol,
    )
    if write:
        write_fields(out, report)
    return report
