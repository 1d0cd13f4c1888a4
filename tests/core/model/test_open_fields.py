"""Every open field of the release is data: a non-default value changes the scores exactly as described.

Each variant model shares the tiny model's backbone and head weights; its outputs are checked against a
hand computation from a plain full pass of the language model (hidden states read by position from the
token ids, the pre-norm state from a hook on the last decoder layer), never from the code under test.
"""

from __future__ import annotations

import json

import pytest
import torch

from humanaes_core.errors import CheckpointError
from humanaes_core.model import CheckpointMeta, Heads, HumanAesModel, OpenFields, load_model, save_checkpoint
from humanaes_core.model.heads import lm_level_score
from humanaes_core.model.meta import read_meta
from humanaes_core.model.release import open_fields_problems
from humanaes_core.schema import BY_KEY, KEYS, LEAF_KEYS, LEVELS, PARENT_KEYS

TOL = 1e-4


@pytest.fixture(scope="module")
def base(scorer) -> HumanAesModel:
    return scorer.model


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(2, 3, 448, 448)


def variant(base: HumanAesModel, **changes) -> HumanAesModel:
    """The tiny model with other open fields and its head weights (a 12-wide regression gets new ones)."""
    fields = OpenFields(**changes)
    heads = Heads(base.heads.config, fields)
    state = dict(base.heads.state_dict())
    if fields.regression_width == 12:
        torch.manual_seed(5)
        w = torch.randn(12, base.heads.config.hidden_size) * 0.1
        state["regression.linear.weight"], state["regression.linear.bias"] = w, torch.full((12,), 0.25)
    heads.load_state_dict(state)
    return HumanAesModel(
        base.backbone, heads.eval(), base.tokenizer, base.prompt, base.num_image_token
    ).eval()


@torch.no_grad()
def reference(model: HumanAesModel, pixels: torch.Tensor) -> dict:
    """Plain full passes of the overall and 12-dimension sequences: normed and pre-norm states, ids."""
    lay = model.layout(1)
    feats = model.encode_images(pixels, 1)
    lm = model.backbone.model.language_model
    out = {}
    for name, suffix in (("overall", lay.overall_ids), ("dims", lay.dims_ids)):
        ids = lay.prefix_ids + suffix
        emb = lm.get_input_embeddings()(torch.tensor(ids)).unsqueeze(0).repeat(len(pixels), 1, 1)
        emb[:, lay.image_slice] = feats.to(emb.dtype)
        captured: list[torch.Tensor] = []

        def keep(_m, _a, o, captured=captured) -> None:
            captured.append(o[0] if isinstance(o, tuple) else o)

        hook = lm.layers[-1].register_forward_hook(keep)
        try:
            result = lm(inputs_embeds=emb, output_hidden_states=True)
        finally:
            hook.remove()
        out[name] = {"ids": ids, "normed": result.hidden_states[-1], "pre": captured[-1]}
        assert torch.allclose(result.hidden_states[-1], result.last_hidden_state)
    question = model.prompt.overall_questions[model.prompt.question_index]
    out["prompt_len"] = len(model.prompt_ids(1, question)[0])
    return out


def positions(ref: dict, model: HumanAesModel, where: str) -> tuple[int, int]:
    """Hand-found positions (in the full sequences) of the regression and the expert head."""
    over, dims = ref["overall"]["ids"], ref["dims"]["ids"]
    end = model.tokenizer.convert_tokens_to_ids(model.prompt.im_end)
    if where == "last_prompt_token":
        return ref["prompt_len"] - 1, len(dims) - 1
    if where == "answer_start":
        return len(over) - 1, len(dims) - 1
    return max(i for i, t in enumerate(over[: ref["prompt_len"]]) if t == end), max(
        i for i, t in enumerate(dims) if t == end
    )


def ffn(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module.fc2(module.act(module.fc1(x))).squeeze(-1)


def hand_scores(model: HumanAesModel, ref: dict) -> dict:
    """Every head output computed by hand from the reference states and the open fields."""
    f, heads = model.heads.fields, model.heads
    reg_at, exp_at = positions(ref, model, f.head_position)
    kind = "pre" if f.head_hidden == "last_layer" else "normed"
    reg_h, exp_h = ref["overall"][kind][:, reg_at], ref["dims"][kind][:, exp_at]
    lm_h = ref["overall"]["normed"][:, -1]
    level_ids = model.level_token_ids
    level_logits = model.backbone.lm_head(lm_h)[:, level_ids].float()
    regression = heads.regression.linear(reg_h)[:, -1]
    act = torch.sigmoid if f.expert_activation == "sigmoid" else (lambda x: x)
    if f.regression_activation == "sigmoid":
        regression = torch.sigmoid(regression)
    raw = act(heads.expert.leaves(exp_h))
    scores = {key: raw[:, i] for i, key in enumerate(f.expert_leaf_order)}
    for key in PARENT_KEYS:
        order = f.expert_l_inputs if key == "overall" else BY_KEY[key].children
        scores[key] = act(ffn(heads.expert.parents[key], torch.stack([scores[c] for c in order], -1)))
    s_lm = lm_level_score(level_logits)
    lm_in = (s_lm - 1) / 4 if f.lm_normalisation == "linear" else s_lm
    named = {"lm": lm_in, "regression": regression, "expert": scores["overall"]}
    voter = heads.metavoter.net(torch.stack([named[n] for n in f.metavoter_inputs], -1)).squeeze(-1)
    return {"level_logits": level_logits, "regression": regression, "expert": scores, "metavoter": voter}


def close(a: dict, b: dict) -> bool:
    ok = torch.allclose(a["level_logits"], b["level_logits"], atol=TOL)
    ok &= torch.allclose(a["regression"], b["regression"], atol=TOL)
    ok &= torch.allclose(a["metavoter"], b["metavoter"], atol=TOL)
    return ok and all(torch.allclose(a["expert"][k], b["expert"][k], atol=TOL) for k in KEYS)


def as_dict(out) -> dict:
    return {
        "level_logits": out.level_logits,
        "regression": out.regression,
        "expert": out.expert,
        "metavoter": out.metavoter,
    }


VARIANTS = {
    "head_position": [{"head_position": "answer_start"}, {"head_position": "im_end"}],
    "head_hidden": [{"head_hidden": "last_layer"}],
    "regression_activation": [{"regression_activation": "sigmoid"}],
    "expert_activation": [{"expert_activation": "sigmoid"}],
    "regression_width": [{"regression_width": 12}],
    "expert_leaf_order": [{"expert_leaf_order": OpenFields.alternatives("expert_leaf_order")[1]}],
    "expert_l_inputs": [
        {"expert_l_inputs": ["environment", "facial_aesthetic", "general_appearance_aesthetic"]}
    ],
    "metavoter_inputs": [{"metavoter_inputs": ["expert", "lm", "regression"]}],
    "lm_level_space": [{"lm_level_space": False}],
    "lm_normalisation": [{"lm_normalisation": "none"}],
}


def test_every_open_field_has_a_variant_here():
    assert set(VARIANTS) == set(OpenFields.names())


def test_default_model_matches_the_hand_computation(base, pixels):
    assert close(as_dict(base.score_batch(pixels, 1)), hand_scores(base, reference(base, pixels)))


@pytest.mark.parametrize(
    "changes",
    [c for cs in VARIANTS.values() for c in cs],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_a_non_default_field_scores_differently_and_as_computed_by_hand(base, pixels, changes):
    model = variant(base, **changes)
    got = as_dict(model.score_batch(pixels, 1))
    assert not close(got, as_dict(base.score_batch(pixels, 1))), "the field changed nothing"
    assert close(got, hand_scores(model, reference(model, pixels)))
    # the two-pass path reads the same positions
    assert close(as_dict(model.score_batch(pixels, 1, shared_prefix=False)), got)


def test_last_layer_is_the_last_decoder_layer_before_the_final_norm(base, pixels):
    model = variant(base, head_hidden="last_layer")
    ref = reference(model, pixels)
    lm = model.backbone.model.language_model
    # the pre-norm state normed is what transformers calls hidden_states[-1] (the output after the norm)
    assert torch.allclose(lm.norm(ref["overall"]["pre"]), ref["overall"]["normed"], atol=1e-5)
    assert not torch.allclose(ref["overall"]["pre"], ref["overall"]["normed"], atol=1e-2)


def test_bare_level_tokens_have_no_leading_space(base):
    model = variant(base, lm_level_space=False)
    spaced = [base.tokenizer.decode([i]) for i in base.level_token_ids]
    bare = [model.tokenizer.decode([i]) for i in model.level_token_ids]
    assert all(s.startswith(" ") for s in spaced)
    assert all(not b.startswith(" ") and level.startswith(b) for b, level in zip(bare, LEVELS, strict=True))


@pytest.mark.parametrize("changes", [{}, *VARIANTS["head_position"], *VARIANTS["head_hidden"]], ids=str)
def test_training_reads_where_scoring_reads(base, pixels, changes):
    model = variant(base, **changes)
    p = model.prompt
    q = p.overall_questions[p.question_index]
    answers = [f"{p.overall_answer_prefix} good", None]
    questions = [q, p.dims_questions[p.question_index]]
    with torch.no_grad():
        out = model.training_forward(pixels, [1, 1], questions, answers)
    ref = reference(model, pixels)
    reg_at, exp_at = positions(ref, model, model.heads.fields.head_position)
    kind = "pre" if model.heads.fields.head_hidden == "last_layer" else "normed"
    assert torch.allclose(out.head_hidden[0], ref["overall"][kind][0, reg_at], atol=TOL)
    assert torch.allclose(out.head_hidden[1], ref["dims"][kind][1, exp_at], atol=TOL)


def test_training_teaches_the_level_token_scoring_reads(base):
    model = variant(base, lm_level_space=False)
    p = model.prompt
    q = p.overall_questions[p.question_index]
    ids, _, plen = model.training_ids(1, q, f"{p.overall_answer_prefix} good")
    _, fixed = model._training_reads(ids, plen, q, f"{p.overall_answer_prefix} good")
    assert model.level_token_ids[LEVELS.index("good")] in fixed[plen:]
    assert base.level_token_ids[LEVELS.index("good")] not in fixed[plen:]


def test_alternatives_start_with_the_default_and_validate():
    default = OpenFields().to_dict()
    for name in OpenFields.names():
        choices = OpenFields.alternatives(name)
        assert choices[0] == default[name] and len(choices) >= 2
        for value in choices:
            assert open_fields_problems({name: value}) == [], (name, value)
    assert OpenFields.alternatives("template")[0] == "internvl_chat"
    with pytest.raises(KeyError):
        OpenFields.alternatives("colour")
    assert len(OpenFields.alternatives("metavoter_inputs")) == 6


def test_round_trip_and_bad_values():
    fields = OpenFields(
        head_position="im_end", expert_leaf_order=list(reversed(LEAF_KEYS)), evidence={"x": "y"}
    )
    assert OpenFields.from_dict(json.loads(json.dumps(fields.to_dict()))) == fields
    assert OpenFields.from_dict({}) == OpenFields()
    for bad in (
        {"head_position": "first"},
        {"regression_width": 3},
        {"lm_level_space": 1},
        {"expert_l_inputs": ["environment"]},
        {"colour": 1},
        {"evidence": []},
        [],
    ):
        assert open_fields_problems(bad), bad
    fields = OpenFields(evidence={"head_position": "modeling_x.py:3"})
    assert fields.read() == ["head_position"] and "head_hidden" in fields.assumed()
    assert fields.source_of("head_hidden") == "assumed"


def test_checkpoint_keeps_the_fields_and_old_checkpoints_load_with_defaults(base, tiny_model, tmp_path):
    assert read_meta(tiny_model).open_fields == OpenFields()
    data = json.loads((tiny_model / "humanaes.json").read_text())
    data.pop("open_fields", None)
    assert CheckpointMeta.from_json(data, tiny_model).open_fields == OpenFields()  # written before the field
    data["open_fields"] = {"head_hidden": "penultimate"}
    with pytest.raises(CheckpointError, match=r"open_fields\.head_hidden"):
        CheckpointMeta.from_json(data, tiny_model)

    model = variant(base, regression_width=12, metavoter_inputs=["regression", "expert", "lm"])
    meta = read_meta(tiny_model)
    meta.open_fields = model.heads.fields
    save_checkpoint(model, tmp_path / "v", meta)
    loaded, meta2 = load_model(tmp_path / "v", device=torch.device("cpu"), dtype=torch.float32)
    assert meta2.open_fields == model.heads.fields == loaded.heads.fields
    assert loaded.heads.regression.linear.out_features == 12
