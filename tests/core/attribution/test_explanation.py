"""The explanation explains the number shown: over the cards of a trained tiny model, every level adds
up to the shown difference and every sentence goes the way the score went."""

import itertools
import json
import re
import shutil

import pytest
import torch

from humanaes_core import load_scorer
from humanaes_core.attribution import (
    ABOUT_THE_SAME,
    VOTER_INPUTS,
    HeadsAttributor,
    coalition_values,
    explain_card,
    shapley_over_set,
    voter_inputs,
)
from humanaes_core.attribution.explanation import _PLAYERS, _TREE, _chain, _owen, coalition_table
from humanaes_core.data import load_data
from humanaes_core.errors import CheckpointError
from humanaes_core.model.meta import HEADS_FILE, META_FILE
from humanaes_core.schema import BY_KEY, LEAF_KEYS
from tests.conftest import GOOD_PHOTOS


@pytest.fixture(scope="module")
def trained(learned):
    """The trained tiny model and its cards for the 80 held-out synthetic photos."""
    model = learned["result"].output
    scorer = load_scorer(model, device="cpu", max_tiles=1)
    photos = [s.path for s in load_data(learned["root"], split="test").samples]
    return model, scorer.score(photos)


def _mean_overall(cards) -> float:
    return sum(c.dims["overall"] for c in cards) / len(cards)


def test_every_level_adds_up_to_the_difference_shown(trained):
    model, cards = trained
    reference = _mean_overall(cards)
    spread = max(c.dims["overall"] for c in cards) - min(c.dims["overall"] for c in cards)
    assert spread > 0.2  # a trained model: the cards differ, so the check is not about zeros
    for card in cards:
        why = explain_card(card, cards, model)
        assert why.total == pytest.approx(card.dims["overall"] - reference, abs=1e-6)
        assert why.value == card.dims["overall"] and why.reference == pytest.approx(reference)
        assert list(why.children) == list(VOTER_INPUTS)
        for node in why.walk():
            if node.children:
                assert sum(c.total for c in node.children.values()) == pytest.approx(node.total, abs=1e-9)
        assert tuple(why.children["expert"].children) == BY_KEY["overall"].children


def test_every_sentence_goes_the_way_the_score_went(trained):
    model, cards = trained
    seen = {"Above": 0, "Below": 0, "About": 0}
    for card in cards:
        why = explain_card(card, cards, model)
        word = why.sentence.split()[0]
        seen[word] += 1
        if abs(why.total) < ABOUT_THE_SAME:
            assert word == "About"
            continue
        assert word == ("Above" if why.total > 0 else "Below"), why.sentence
        # The driver named first pushed the same way, and so did the dimension it leads to.
        named = re.findall(r"\(([+-]\d\.\d{3})\)", why.sentence.split("mainly because of", 1)[1])
        assert named, why.sentence
        assert all(n.startswith("+" if why.total > 0 else "-") or float(n) == 0 for n in named), why.sentence
        for word_ in ("MetaVoter", "expert head", "FFN", "Shapley"):
            assert word_ not in why.sentence
    assert seen["Above"] > 10 and seen["Below"] > 10, seen


def test_the_three_vote_inputs_get_their_exact_shapley_values(trained):
    # Computed directly as a 3-input game of the vote (expert Overall as one input), not through the tree.
    model, cards = trained
    cards = cards[:60]  # at most MAX_REFERENCES: explain_card then uses every card as the reference set too
    heads = HeadsAttributor.from_checkpoint(model)
    rows = torch.tensor([heads.voter_inputs(c) for c in cards], dtype=torch.float64)
    reference = _mean_overall(cards)
    for card in cards[:10]:
        direct = shapley_over_set(
            heads.final_score, heads.voter_inputs(card), rows, start=reference, end=card.dims["overall"]
        )
        why = explain_card(card, cards, model)
        # The tree recomputes Overall from the leaves in float64, the card holds the model's float32 value.
        assert [why.children[k].total for k in VOTER_INPUTS] == pytest.approx(direct, abs=1e-6)


def _nested_orders(tree: dict, node: str):
    """Every order of the eleven inputs in which each group's members come one after another."""
    if node not in tree:
        yield [node]
        return
    for group_order in itertools.permutations(tree[node]):
        for parts in itertools.product(*(list(_nested_orders(tree, g)) for g in group_order)):
            yield [p for part in parts for p in part]


def test_owen_values_match_the_definition_over_group_respecting_orders(trained):
    # The Owen value is the mean marginal contribution over the orders that keep every group together;
    # enumerate all 25,920 of them against the same coalition values.
    model, cards = trained
    heads = HeadsAttributor.from_checkpoint(model)
    card = cards[3]

    def row(c):
        lm, reg, _ = heads.voter_inputs(c)
        return [lm, reg, *(c.expert_raw[k] for k in LEAF_KEYS)]

    background = torch.tensor([row(c) for c in cards[:8]], dtype=torch.float64)
    values = coalition_values(lambda z: _chain(heads, z), row(card), background)
    bit = {p: 1 << i for i, p in enumerate(_PLAYERS)}
    totals, n = dict.fromkeys(_PLAYERS, 0.0), 0
    for order in _nested_orders(_TREE, "overall"):
        mask = 0
        for p in order:
            totals[p] += values[mask | bit[p]] - values[mask]
            mask |= bit[p]
        n += 1
    assert n == 25920
    owen = _owen(values)
    for p in _PLAYERS:
        assert owen[p] == pytest.approx(totals[p] / n, abs=1e-12)


def test_the_group_by_group_table_is_the_brute_force_one(trained):
    # coalition_table computes Face 32 times, Overall 512 times and the vote 2,048 times per reference;
    # the brute-force table runs the whole chain for all 2,048 coalitions of all eleven inputs.
    model, cards = trained
    heads = HeadsAttributor.from_checkpoint(model)

    def row(c):
        lm, reg, _ = heads.voter_inputs(c)
        return [lm, reg, *(c.expert_raw[k] for k in LEAF_KEYS)]

    background = torch.tensor([row(c) for c in cards[:12]], dtype=torch.float64)
    for card in cards[:3]:
        fast = coalition_table(heads, row(card), background)
        slow = coalition_values(lambda z: _chain(heads, z), row(card), background)
        assert fast == pytest.approx(slow, abs=1e-12)


def test_old_cards_without_vote_inputs_still_add_up(trained):
    model, cards = trained
    old = [json.loads(json.dumps({**c.to_dict(), "voter_inputs": None})) for c in cards]
    heads = HeadsAttributor.from_checkpoint(model)
    for new, dict_card in zip(cards[:5], old, strict=False):
        # What the vote read is recovered from the stored fields: S'_LM from the level probabilities,
        # S_exp from expert_raw, the regression score from heads (clamped, so close here).
        assert voter_inputs(dict_card) == pytest.approx(heads.voter_inputs(new), abs=1e-5)
        why = explain_card(dict_card, old, model)
        assert why.total == pytest.approx(dict_card["dims"]["overall"] - _mean_overall(cards), abs=1e-6)


def test_heads_alone_explain_without_the_backbone(trained, tmp_path):
    model, cards = trained
    heads_only = tmp_path / "heads_only"
    heads_only.mkdir()
    for name in (META_FILE, HEADS_FILE):
        shutil.copy(model / name, heads_only / name)
    a, b = explain_card(cards[0], cards, heads_only), explain_card(cards[0], cards, model)
    assert [n.total for n in a.walk()] == pytest.approx([n.total for n in b.walk()], abs=1e-12)
    assert a.sentence == b.sentence


def test_quick_cards_cannot_be_explained(scorer, photo_dir, tiny_model):
    (quick,) = scorer.score([photo_dir / GOOD_PHOTOS[0]], heads="overall")
    full = scorer.score([photo_dir / p for p in GOOD_PHOTOS])
    with pytest.raises(ValueError, match="expert"):
        explain_card(quick, full, tiny_model)
    with pytest.raises(ValueError, match="reference"):
        explain_card(full[0], [quick], tiny_model)


def test_heads_that_do_not_match_the_metadata_are_a_checkpoint_error(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model / HEADS_FILE, broken / HEADS_FILE)
    meta = json.loads((tiny_model / META_FILE).read_text())
    meta["heads"]["expert_ffn_hidden"] += 1
    (broken / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="heads differ"):
        HeadsAttributor.from_checkpoint(broken)
