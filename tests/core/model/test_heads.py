import math

import pytest
import torch

from humanaes_core.model.heads import (
    ExpertHead,
    Heads,
    HeadsConfig,
    MetaVoter,
    lm_level_score,
    normalise_lm_score,
)
from humanaes_core.schema import BY_KEY, KEYS, LEAF_KEYS


def test_eq4_on_hand_made_logits():
    # Equal logits: uniform probabilities, expected level 3.
    assert lm_level_score(torch.zeros(5)).item() == pytest.approx(3.0)
    # All mass on 'excellent' and on 'bad'.
    assert lm_level_score(torch.tensor([-1e4, -1e4, -1e4, -1e4, 0.0])).item() == pytest.approx(5.0)
    assert lm_level_score(torch.tensor([0.0, -1e4, -1e4, -1e4, -1e4])).item() == pytest.approx(1.0)
    # Two levels with logits 0 and ln 3: probabilities 1/4 and 3/4 → 0.25*4 + 0.75*5 = 4.75.
    logits = torch.tensor([-1e4, -1e4, -1e4, 0.0, math.log(3.0)])
    assert lm_level_score(logits).item() == pytest.approx(4.75, abs=1e-5)
    # Batched, and the normalisation maps [1, 5] onto [0, 1].
    batch = torch.stack([torch.zeros(5), logits])
    assert torch.allclose(normalise_lm_score(lm_level_score(batch)), torch.tensor([0.5, 0.9375]))


def test_expert_head_outputs_all_twelve_keys():
    head = ExpertHead(hidden_size=16, ffn_hidden=8)
    out = head(torch.randn(3, 16))
    assert list(out) == list(KEYS)
    assert all(v.shape == (3,) for v in out.values())


@pytest.mark.parametrize("parent", ["facial_aesthetic", "general_appearance_aesthetic", "overall"])
def test_parents_depend_only_on_their_children(parent):
    torch.manual_seed(0)
    head = ExpertHead(hidden_size=16, ffn_hidden=8)
    captured = {}
    head.leaves.register_forward_hook(lambda module, args, output: captured.setdefault("leaves", output))
    out = head(torch.randn(1, 16))
    children = BY_KEY[parent].children
    subtree, stack = set(), list(children)
    while stack:
        key = stack.pop()
        subtree.add(key)
        stack.extend(BY_KEY[key].children)
    # Gradient of the parent with respect to the nine leaf outputs: exactly zero outside its subtree.
    (grad,) = torch.autograd.grad(out[parent].sum(), captured["leaves"], retain_graph=True)
    for key, g in zip(LEAF_KEYS, grad[0], strict=True):
        if key in subtree:
            assert g.abs().item() > 0, key
        else:
            assert g.item() == 0.0, key
    # And the parent equals its FFN applied to its children's outputs.
    kids = torch.stack([out[c] for c in children], dim=-1)
    assert torch.allclose(head.parent_from_children(parent, kids), out[parent])


def test_metavoter_is_batch_independent_in_eval():
    torch.manual_seed(0)
    voter = MetaVoter(hidden=8)
    voter.train()
    voter(*torch.rand(3, 32))  # update BatchNorm running statistics
    voter.eval()
    x = torch.rand(3, 6)
    together = voter(x[0], x[1], x[2])
    alone = torch.stack([voter(x[0, i : i + 1], x[1, i : i + 1], x[2, i : i + 1])[0] for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert isinstance(voter.net[1], torch.nn.BatchNorm1d) and isinstance(voter.net[2], torch.nn.ReLU)


def test_heads_config_round_trip():
    cfg = HeadsConfig(hidden_size=32, expert_ffn_hidden=12, expert_activation="relu", metavoter_hidden=4)
    assert HeadsConfig.from_dict(cfg.to_dict()) == cfg
    heads = Heads(cfg)
    assert heads.expert.parents["overall"].fc1.in_features == 3
    assert heads.expert.parents["facial_aesthetic"].fc1.in_features == 5
    assert heads.regression.linear.in_features == 32
