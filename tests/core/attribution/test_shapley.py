"""Exact Shapley values against a point and against a reference set, checked against the textbook
definition (the mean marginal contribution over every order of adding the inputs)."""

import itertools
import math

import pytest
import torch

from humanaes_core.attribution import coalition_shapley, coalition_values, shapley_over_set, shapley_values


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


def _mlp(n: int, seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(n, 16), torch.nn.GELU(), torch.nn.Linear(16, 1)).double()
    return lambda z: net(z).squeeze(-1).detach()


def test_against_a_set_is_the_mean_over_the_set_of_the_game_against_each_member():
    # v(S) = mean_r f(x_S, r_rest) is linear in the game, so the Shapley values against a set are the
    # mean of the Shapley values against each reference point (the permutation definition for each).
    f = _mlp(4, 5)
    x = [0.8, 0.2, 0.6, 0.4]
    refs = torch.tensor(
        [[0.1, 0.9, 0.3, 0.5], [0.5, 0.5, 0.5, 0.5], [0.7, 0.1, 0.2, 0.9]], dtype=torch.float64
    )
    each = [_shapley_by_permutations(f, x, r.tolist()) for r in refs]
    expected = [sum(col) / len(each) for col in zip(*each, strict=True)]
    assert shapley_over_set(f, x, refs) == pytest.approx(expected, abs=1e-12)
    gap = float(f(torch.tensor([x], dtype=torch.float64))[0] - f(refs).mean())
    assert sum(shapley_over_set(f, x, refs)) == pytest.approx(gap, abs=1e-12)


def test_end_values_given_by_the_caller_set_the_sum():
    f = _mlp(3, 6)
    refs = torch.tensor([[0.2, 0.4, 0.6], [0.6, 0.4, 0.2]], dtype=torch.float64)
    phis = shapley_over_set(f, [0.5, 0.5, 0.9], refs, start=0.31, end=0.77)
    assert sum(phis) == pytest.approx(0.77 - 0.31, abs=1e-12)
    values = coalition_values(f, [0.5, 0.5, 0.9], refs, start=0.31, end=0.77)
    assert values[0] == 0.31 and values[-1] == 0.77 and len(values) == 8


def test_coalition_shapley_needs_every_coalition():
    with pytest.raises(ValueError, match="8 coalition values"):
        coalition_shapley([0.0, 1.0], 3)
