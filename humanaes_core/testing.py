"""Models the project makes itself: random-initialised native checkpoints built offline.

Tests, benchmarks and CI cannot download the released weights, so they run on these. They have the
real structure (InternViT-style vision tower at 448 px with 256 tokens per tile, Qwen2 language
model, all heads) and a small byte-level BPE tokenizer trained here on the prompt vocabulary.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

from humanaes_core.model import (
    DIMS_QUESTIONS,
    OVERALL_QUESTIONS,
    CheckpointMeta,
    Heads,
    HeadsConfig,
    HumanAesModel,
    PromptConfig,
    dims_answer,
    overall_answer,
    save_checkpoint,
)
from humanaes_core.schema import KEYS

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")

# name: (vision hidden, layers, heads, mlp; text hidden, layers, heads, kv heads, mlp; vocab)
SIZES: dict[str, tuple[int, ...]] = {
    "tiny": (32, 1, 2, 64, 64, 2, 4, 2, 128, 1024),
    "small": (256, 6, 4, 1024, 512, 8, 8, 2, 1536, 4096),
}

_GENERAL_TEXT = (
    "a photo of a person portrait face light shadow skin outfit dress suit body pose smile eyes hair "
    "background street studio wedding bride groom family child camera lens focus sharp blur exposure "
    "colour color warm cool natural indoor outdoor beach park city night day sunset the and of in on with "
    "is are was for to this that it score rating quality human image picture aesthetics evaluate rate "
    "how please can you from different dimensions 0 1 2 3 4 5 6 7 8 9 . , : ; ? ! ' \" ( ) - \n"
)


def build_tokenizer(prompt: PromptConfig, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) trained on the prompts, answers and common words."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [prompt.system_message, prompt.overall_answer_prefix, _GENERAL_TEXT]
    corpus += list(OVERALL_QUESTIONS) + list(DIMS_QUESTIONS)
    for level_score in (0.1, 0.3, 0.5, 0.7, 0.9):
        corpus.append(overall_answer(level_score))
        corpus.append(dims_answer(dict.fromkeys(KEYS, level_score)))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=16384,
    )


def tiny_backbone_config(size: str, vocab_size: int, image_token_id: int) -> InternVLConfig:
    try:
        vh, vl, vheads, vmlp, th, tl, theads, tkv, tmlp, _ = SIZES[size]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}") from None
    vision = InternVLVisionConfig(
        hidden_size=vh,
        num_hidden_layers=vl,
        num_attention_heads=vheads,
        intermediate_size=vmlp,
        image_size=448,
        patch_size=14,
        use_mean_pooling=False,
    )
    text = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=th,
        num_hidden_layers=tl,
        num_attention_heads=theads,
        num_key_value_heads=tkv,
        intermediate_size=tmlp,
        max_position_embeddings=16384,
        tie_word_embeddings=True,
    )
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )


@torch.no_grad()
def _centre_heads(heads: Heads) -> None:
    """Shrink the random output layers and centre them on 0.5.

    A plain random init sends most scores outside [0, 1], where they clamp to 0 or 1 and every photo
    ties; centred, a random model still ranks photos differently, which sorting tests need.
    """
    for linear in (heads.regression.linear, heads.expert.leaves):
        linear.weight.mul_(0.3)
        linear.bias.fill_(0.5)
    for ffn in heads.expert.parents.values():
        ffn.fc2.weight.mul_(0.3)
        ffn.fc2.bias.add_(0.5)
    last = heads.metavoter.net[-1]
    last.weight.mul_(0.3)
    last.bias.fill_(0.5)


def make_tiny_model(path: str | os.PathLike, seed: int = 0, size: str = "tiny") -> Path:
    """Write a random-initialised native checkpoint with tokenizer to `path`, offline.

    "tiny" scores a photo in well under a second on a CPU (for tests); "small" (~30M parameters) is big
    enough that the model's compute dominates a CPU benchmark, with the structure of the real 1B.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    prompt = PromptConfig()
    tokenizer = build_tokenizer(prompt, SIZES[size][-1])
    image_token_id = tokenizer.convert_tokens_to_ids(prompt.img_context)
    config = tiny_backbone_config(size, len(tokenizer), image_token_id)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        backbone = InternVLForConditionalGeneration(config).eval()
        heads_config = HeadsConfig(hidden_size=config.text_config.hidden_size)
        heads = Heads(heads_config).eval()
        _centre_heads(heads)
    finally:
        torch.random.set_rng_state(generator_state)
    model = HumanAesModel(backbone, heads, tokenizer, prompt, num_image_token=256)
    meta = CheckpointMeta(
        heads=heads_config,
        prompt=prompt,
        name=f"humanaes-{size}-random",
        provenance={"source": "humanaes_core.testing.make_tiny_model", "seed": seed, "size": size},
    )
    return save_checkpoint(model, path, meta)


def main(argv: list[str] | None = None) -> int:
    """`python -m humanaes_core.testing OUT [--size tiny|small] [--seed N]`: write a demo model.

    Its weights are random: it exercises the whole pipeline offline, but its scores mean nothing.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m humanaes_core.testing",
        description="Write a random-initialised HumanAes checkpoint (for tests, demos and benchmarks; "
        "its scores are meaningless).",
    )
    parser.add_argument("out", help="directory to write the checkpoint to")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make_tiny_model(args.out, seed=args.seed, size=args.size)
    print(f"wrote a random {args.size} model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
