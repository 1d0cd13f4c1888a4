"""Exact Shapley attribution of the expert head's parents to their children."""

import itertools
import json
import math
import shutil

import pytest
import torch

from humanaes_core.attribution import (
    ExpertAttributor,
    ParentAttribution,
    explain,
    mean_reference,
    shapley_values,
)
from humanaes_core.errors import CheckpointError
from humanaes_core.model.meta import HEADS_FILE, META_FILE
from humanaes_core.schema import BY_KEY, KEYS, PARENT_KEYS
from tests.conftest import GOOD_PHOTOS


def _shapley_by_permutations(f, x, b):
    """Textbook definition: the mean marginal contribution over all n! orders of adding the inputs."""
    n = len(x)
    totals = [0.0] * n
    for order in itertools.permutations(range(n)):
        current = list(b)
        before = float(f(torch.tensor([current], dtype=torch.float64))[0])
        for i in order:
            current[i] = x[i]
            after = float(f(torch.tensor([current], dtype=torch.float64))[0])
            totals[i] += after - before
            before = after
    return [t / math.factorial(n) for t in totals]


def test_linear_function_gets_weight_times_difference():
    w = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    phis = shapley_values(lambda z: z @ w + 7.0, [1.0, 2.0, 3.0], [0.0, 1.0, 5.0])
    assert phis == pytest.approx([0.5, -2.0, -6.0])


def test_interaction_is_split_and_dummy_gets_zero():
    # f = x0 * x1 (x2 is ignored): the symmetric interaction is shared, the dummy input gets nothing.
    phis = shapley_values(lambda z: z[:, 0] * z[:, 1], [2.0, 3.0, 9.0], [0.0, 0.0, 1.0])
    assert phis == pytest.approx([3.0, 3.0, 0.0])


def test_matches_permutation_definition_on_a_random_mlp():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.GELU(), torch.nn.Linear(16, 1)).double()

    def f(z):
        return net(z).squeeze(-1)

    x = [0.9, 0.1, 0.5, 0.7, 0.3]
    b = [0.4, 0.6, 0.5, 0.2, 0.8]
    with torch.no_grad():
        fast = shapley_values(f, x, b)
        slow = _shapley_by_permutations(f, x, b)
        gap = float(
            f(torch.tensor([x], dtype=torch.float64))[0] - f(torch.tensor([b], dtype=torch.float64))[0]
        )
    assert fast == pytest.approx(slow, abs=1e-12)
    assert sum(fast) == pytest.approx(gap, abs=1e-12)


def test_shapley_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        shapley_values(lambda z: z.sum(-1), [1.0, 2.0], [1.0])


@pytest.fixture(scope="module")
def cards(scorer, photo_dir):
    return scorer.score([photo_dir / p for p in GOOD_PHOTOS])


def test_ffns_loaded_alone_reproduce_the_cards(tiny_model, cards, tmp_path):
    # Only the two small files are copied: no backbone weights, tokenizer or config exist here.
    heads_only = tmp_path / "heads_only"
    heads_only.mkdir()
    for name in (META_FILE, HEADS_FILE):
        shutil.copy(tiny_model / name, heads_only / name)
    attributor = ExpertAttributor.from_checkpoint(heads_only)
    for card in cards:
        for parent in PARENT_KEYS:
            children = [card.expert_raw[c] for c in BY_KEY[parent].children]
            assert attributor.parent_value(parent, children) == pytest.approx(
                card.expert_raw[parent], abs=1e-5
            )


def test_contributions_add_up_to_the_difference_from_the_reference(tiny_model, cards):
    attributor = ExpertAttributor.from_checkpoint(tiny_model)
    reference = mean_reference(cards)
    for card in cards:
        result = attributor.attribute(card, reference)
        assert set(result) == set(PARENT_KEYS)
        for parent, attr in result.items():
            assert list(attr.contributions) == list(BY_KEY[parent].children)
            assert attr.value == pytest.approx(card.expert_raw[parent], abs=1e-5)
            assert sum(attr.contributions.values()) == pytest.approx(attr.delta, abs=1e-9)
            expected_ref = attributor.parent_value(parent, [reference[c] for c in BY_KEY[parent].children])
            assert attr.reference_value == pytest.approx(expected_ref, abs=1e-12)
    # The four photos differ, so at least one contribution is clearly non-zero.
    assert any(
        abs(v) > 1e-4
        for c in cards
        for v in attributor.attribute(c, reference)["overall"].contributions.values()
    )


def test_card_against_itself_has_zero_contributions(tiny_model, cards):
    attributor = ExpertAttributor.from_checkpoint(tiny_model)
    result = attributor.attribute(cards[0], cards[0].to_dict())
    for attr in result.values():
        assert all(v == pytest.approx(0.0, abs=1e-12) for v in attr.contributions.values())


def test_mean_reference_averages_expert_raw_and_skips_quick_cards(scorer, cards, photo_dir):
    quick = scorer.score([photo_dir / GOOD_PHOTOS[0]], heads="overall")
    ref = mean_reference([*cards, *quick, json.loads(json.dumps(cards[0].to_dict()))])
    for key in KEYS:
        expected = (sum(c.expert_raw[key] for c in cards) + cards[0].expert_raw[key]) / (len(cards) + 1)
        assert ref[key] == pytest.approx(expected)
    with pytest.raises(ValueError):
        mean_reference(quick)
    with pytest.raises(ValueError):
        mean_reference([])


def test_quick_card_cannot_be_attributed(tiny_model, scorer, cards, photo_dir):
    (quick,) = scorer.score([photo_dir / GOOD_PHOTOS[0]], heads="overall")
    attributor = ExpertAttributor.from_checkpoint(tiny_model)
    with pytest.raises(ValueError, match="expert"):
        attributor.attribute(quick, mean_reference(cards))


def test_mismatched_expert_head_is_a_checkpoint_error(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model / HEADS_FILE, broken / HEADS_FILE)
    meta = json.loads((tiny_model / META_FILE).read_text())
    meta["heads"]["expert_ffn_hidden"] += 1
    (broken / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="expert head"):
        ExpertAttributor.from_checkpoint(broken)


def _attr(parent, value, ref, contributions):
    children = dict.fromkeys(contributions, 0.0)
    return ParentAttribution(parent, value, ref, children, children, contributions)


def test_explanation_follows_the_main_driver_down():
    attrs = {
        "overall": _attr(
            "overall",
            0.40,
            0.55,
            {"facial_aesthetic": -0.12, "general_appearance_aesthetic": -0.05, "environment": 0.02},
        ),
        "facial_aesthetic": _attr(
            "facial_aesthetic",
            0.3,
            0.5,
            {
                "facial_brightness": 0.01,
                "facial_feature_clarity": -0.15,
                "facial_skin_tone": -0.02,
                "facial_structure": -0.03,
                "facial_contour_clarity": -0.01,
            },
        ),
    }
    text = explain(attrs)
    assert text.startswith("Overall is below the folder average mainly because of Facial Aesthetic (-0.120)")
    assert "pulled down most by Facial Feature Clarity (-0.150)" in text
    up = {
        "overall": _attr(
            "overall",
            0.7,
            0.5,
            {"facial_aesthetic": 0.01, "general_appearance_aesthetic": 0.0, "environment": 0.19},
        )
    }
    assert explain(up, "the training data") == (
        "Overall is above the training data mainly because of Environment (+0.190)."
    )
    same = {
        "overall": _attr(
            "overall",
            0.5,
            0.5,
            {"facial_aesthetic": 0.0, "general_appearance_aesthetic": 0.0, "environment": 0.0},
        )
    }
    assert explain(same) == "Overall is about the same as the folder average."
