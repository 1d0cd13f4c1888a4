"""Personal taste reaches the hierarchy: ratings that follow Environment move Overall's weighting toward
Environment, the explanation then names it, and nothing below Overall changes."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from humanaes_core import load_scorer
from humanaes_core.attribution import explain_card
from humanaes_core.data import load_data
from humanaes_core.model.meta import HEADS_FILE, META_FILE
from humanaes_core.train import train
from humanaes_core.train.taste import TasteReport, fit_overall_weighting, taste_applies
from tests.conftest import train_config


def test_taste_is_for_a_photographers_ratings_only():
    assert taste_applies("auto", {"overall_only": 26, "twelve_dim": 0, "partial_dims": 0})
    assert not taste_applies("auto", {"overall_only": 100, "twelve_dim": 50, "partial_dims": 0})
    assert taste_applies("on", {"overall_only": 0, "twelve_dim": 50})
    assert not taste_applies("off", {"overall_only": 26})
    with pytest.raises(ValueError):
        taste_applies("always", {})


def test_the_fit_changes_only_the_overall_ffn(learned):
    expert = learned["result"].model.heads.expert
    import copy

    head = copy.deepcopy(expert).float()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    children = torch.rand(32, 3, generator=torch.Generator().manual_seed(0))
    fit_overall_weighting(head, children, children[:, 2], steps=50, lr=1e-2, seed=0)
    after = head.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("parents.overall.") for k in changed)


@pytest.fixture(scope="module")
def personal(learned, tmp_path_factory):
    """A photographer whose stars follow Environment: the trained tiny model fine-tuned on 80 ratings
    equal to each photo's Environment label (overall-only, like stars)."""
    folder = tmp_path_factory.mktemp("personal")
    labelled = [*load_data(learned["root"], split="test").samples, *load_data(learned["root"]).samples]
    samples = [s for s in labelled if "environment" in s.labels][:80]
    assert len(samples) == 80
    ratings = folder / "ratings.csv"
    with ratings.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "overall"])
        for s in samples:
            writer.writerow([str(s.path), f"{s.labels['environment']:.4f}"])
    base = learned["result"].output
    config = train_config(
        ratings, base, folder / "mine", epochs=1, lora_rank=0, val_fraction=0.25, allow_absolute_paths=True
    )
    return {"base": base, "result": train(config), "photos": [s.path for s in samples]}


def test_ratings_that_follow_environment_move_the_weighting_toward_it(personal):
    report = personal["result"].taste
    assert isinstance(report, TasteReport)
    print("\n" + "\n".join(report.lines()))
    env_before, env_after = report.weights_before["environment"], report.weights_after["environment"]
    assert env_after - env_before > 0.1
    assert max(report.weights_after, key=report.weights_after.get) == "environment"
    assert sum(report.weights_after.values()) == pytest.approx(1.0)
    assert report.held_out == 20 and report.rated == 60
    assert report.after["srcc"] > report.before["srcc"]
    text = " ".join(report.lines())
    assert "Environment" in text and "lean more on Environment" in text
    meta = json.loads((personal["result"].output / META_FILE).read_text())
    assert meta["provenance"]["taste"]["weights_after"] == pytest.approx(report.weights_after)


def test_nothing_below_overall_changes(personal):
    base = load_file(str(personal["base"] / HEADS_FILE))
    mine = load_file(str(personal["result"].output / HEADS_FILE))
    for key, value in base.items():
        if key.startswith("expert.") and not key.startswith("expert.parents.overall."):
            assert torch.equal(value, mine[key]), key
    root = "expert.parents.overall.fc1.weight"
    assert not torch.equal(base[root], mine[root])


def test_the_explanation_then_speaks_of_environment(personal):
    # Environment's part of what Face, Appearance and Environment explain of each photo's score.
    def env_share(model) -> float:
        cards = load_scorer(model, device="cpu", max_tiles=1).score(personal["photos"][:40])
        shares = []
        for card in cards:
            parts = explain_card(card, cards, model).children["expert"].children
            total = sum(abs(n.total) for n in parts.values())
            shares.append(abs(parts["environment"].total) / total if total else 0.0)
        return sum(shares) / len(shares)

    before, after = env_share(personal["base"]), env_share(personal["result"].output)
    print(f"\nEnvironment's part of the breakdown's explanation: before {before:.0%}, after {after:.0%}")
    assert after > before + 0.1


def test_the_paper_recipe_leaves_the_weighting_alone(learned):
    # HumanBeauty's 12-dimension labels supervise Overall directly: no taste fit, no report.
    assert learned["result"].taste is None
