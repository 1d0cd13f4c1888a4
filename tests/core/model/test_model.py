"""The shared-prefix forward pass: same numbers as the released two-pass approach, far fewer tokens."""

import pytest
import torch

from humanaes_core.model.modeling import tree_attention_mask
from humanaes_core.schema import KEYS


@pytest.fixture(scope="module")
def model(scorer):
    return scorer.model


@pytest.mark.parametrize("n_tiles", [1, 3])
def test_shared_prefix_equals_two_full_passes(model, n_tiles):
    torch.manual_seed(n_tiles)
    pixels = torch.randn(2 * n_tiles, 3, 448, 448)
    shared = model.score_batch(pixels, n_tiles, shared_prefix=True)
    separate = model.score_batch(pixels, n_tiles, shared_prefix=False)
    assert torch.allclose(shared.level_logits, separate.level_logits, atol=1e-4)
    assert torch.allclose(shared.regression, separate.regression, atol=1e-4)
    assert torch.allclose(shared.metavoter, separate.metavoter, atol=1e-4)
    for key in KEYS:
        assert torch.allclose(shared.expert[key], separate.expert[key], atol=1e-4), key


def test_overall_path_matches_full_card_heads(model):
    pixels = torch.randn(2, 3, 448, 448)
    full = model.score_batch(pixels, 1)
    quick = model.score_batch(pixels, 1, heads="overall")
    assert quick.expert is None and quick.metavoter is None
    assert torch.allclose(full.level_logits, quick.level_logits, atol=1e-4)
    assert torch.allclose(full.regression, quick.regression, atol=1e-4)


def test_batch_results_equal_single_results(model):
    pixels = torch.randn(3, 3, 448, 448)
    batch = model.score_batch(pixels, 1)
    for i in range(3):
        one = model.score_batch(pixels[i : i + 1], 1)
        assert torch.allclose(one.metavoter, batch.metavoter[i : i + 1], atol=1e-4)
        assert torch.allclose(one.level_logits, batch.level_logits[i : i + 1], atol=1e-4)


def test_layout_shares_the_image_and_costs_little_more_than_one_pass(model):
    for n_tiles in (1, 7, 13):
        lay = model.layout(n_tiles)
        image_tokens = 256 * n_tiles
        assert lay.image_slice.stop - lay.image_slice.start == image_tokens
        assert lay.image_slice.stop <= len(lay.prefix_ids)  # the image is in the shared prefix
        one_card = len(lay.prefix_ids) + len(lay.overall_ids) + len(lay.dims_ids)
        overall_only = len(lay.prefix_ids) + len(lay.overall_ids)
        released = 2 * len(lay.prefix_ids) + len(lay.overall_ids) + len(lay.dims_ids)
        assert one_card / overall_only < 1.1  # tokens through the language model
        assert released / overall_only > 1.9


def test_prompt_text_is_the_internvl_template(model):
    ids, image = model.prompt_ids(1, model.prompt.overall_questions[0])
    text = model.tokenizer.decode(ids[: image.start])
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_end|><|im_start|>user\n<img>")  # Hermes-2: nothing between turns
    tail = model.tokenizer.decode(ids[image.stop :])
    assert (
        tail == "</img>\nCan you evaluate the aesthetics of the human image?<|im_end|><|im_start|>assistant\n"
    )
    words = [model.tokenizer.decode([i]).strip() for i in model.level_token_ids]
    assert words == ["bad", "poor", "fair", "good", "excellent"]


def test_tree_mask_blocks_only_the_other_branch():
    mask = tree_attention_mask(3, 2, 2, torch.float32, torch.device("cpu"))[0, 0]
    allowed = mask == 0
    assert allowed[:3, :3].equal(torch.ones(3, 3, dtype=torch.bool).tril())
    assert allowed[3:5, :3].all() and allowed[5:7, :3].all()  # both branches see the prefix
    assert not allowed[5:7, 3:5].any()  # branch b never sees branch a
    assert not allowed[3:5, 5:7].any()  # nor a the future b
    assert allowed[6, 5] and not allowed[5, 6]  # causal inside a branch
