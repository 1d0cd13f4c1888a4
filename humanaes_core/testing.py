"""Models the project makes itself: random-initialised native checkpoints built offline.

Tests, benchmarks and CI cannot download the released weights, so they run on these. They have the
real structure (InternViT-style vision tower at 448 px with 256 tokens per tile, Qwen2 language
model, all heads) and a small byte-level BPE tokenizer trained here on the prompt vocabulary.
"""

from __future__ import annotations

import logging
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


DEMO_NAME = "HumanAes demo model"
_DEMO_TILES = (1, 4)  # fit on one tile and on several, so the calibration holds for any tile setting


def demo_property(image: object) -> float:
    """What the demo model's scores follow: 0.8 × mean brightness + 0.2 × colourfulness, in [0, 1].

    Mean brightness is the mean of the RGB channels and colourfulness the mean channel range (max − min),
    both over the whole image. A visible property, so nobody mistakes the scores for a judgement.
    """
    import numpy as np

    rgb = np.asarray(image.convert("RGB").resize((224, 224)), dtype=np.float64) / 255.0  # type: ignore[attr-defined]
    return float(0.8 * rgb.mean() + 0.2 * (rgb.max(-1) - rgb.min(-1)).mean())


def demo_target(prop: float | torch.Tensor) -> float | torch.Tensor:
    """The demo model's overall score for a `demo_property`: stretched around 0.45 so everyday photos
    spread over the levels (clamped to [0, 1] by the scorer)."""
    return 0.5 + 1.5 * (prop - 0.45)


def demo_images(count: int = 48, seed: int = 3) -> list[object]:
    """Generated images from dark to bright and grey to colourful, with varied shapes and sizes: the fixed
    calibration set of the demo model (no photos needed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        w, h = [(320, 240), (240, 320), (288, 288), (400, 200)][i % 4]
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        texture = np.zeros((h, w, 3))
        for c in range(3):
            a, b, phase = rng.uniform(-6, 6, 3)
            texture[..., c] = np.sin(a * x / w + b * y / h + phase)
        for _ in range(3):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
            texture = texture * (1 - blob) + rng.uniform(-1, 1, 3) * blob
        luma, chroma = texture.mean(-1, keepdims=True), texture - texture.mean(-1, keepdims=True)
        brightness, colour = 0.1 + 0.8 * i / (count - 1), rng.uniform(0.0, 0.5)
        pixels = brightness + rng.uniform(0.05, 0.2) * luma + colour * chroma
        images.append(Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)))
    return images


def make_demo_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo checkpoint: the tiny random model with heads calibrated so that its scores follow
    `demo_property` (brightness and colourfulness), never an aesthetic judgement.

    Leaves and regression head are least-squares fits on the hidden states of `demo_images`; each parent
    is fitted to a weighted mean of its children and the MetaVoter to the mean of the regression and
    expert heads (the random LM head carries no signal). Deterministic; humanaes.json says `demo: true`.
    """
    from humanaes_core.model import load_model
    from humanaes_core.scoring import load_scorer

    path = make_tiny_model(path, seed=seed)
    images = demo_images()
    prop = torch.tensor([demo_property(img) for img in images], dtype=torch.float64)
    hidden: dict[str, list[torch.Tensor]] = {"leaves": [], "regression": []}
    model, meta = load_model(path, device=torch.device("cpu"), dtype=torch.float32)
    quiet = logging.getLogger("humanaes_core.model.devices")  # the "no CUDA GPU" notice: CPU is intended
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for tiles in _DEMO_TILES:
            scorer = load_scorer(path, device="cpu", max_tiles=tiles, precision="fp32")
            heads = scorer.model.heads
            hooks = [
                heads.expert.leaves.register_forward_pre_hook(_recorder(hidden["leaves"])),
                heads.regression.linear.register_forward_pre_hook(_recorder(hidden["regression"])),
            ]
            try:
                scorer.score(images)
            finally:
                for hook in hooks:
                    hook.remove()
    quiet.setLevel(level)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        target = demo_target(prop.repeat(len(_DEMO_TILES)))
        _calibrate_demo(model.heads, torch.cat(hidden["leaves"]), torch.cat(hidden["regression"]), target)
    meta.name = DEMO_NAME
    meta.provenance = {
        "source": "humanaes_core.testing.make_demo_model",
        "seed": seed,
        "size": "tiny",
        "demo": True,
        "scores_follow": "0.8 x mean brightness + 0.2 x colourfulness; not an aesthetic judgement",
    }
    return save_checkpoint(model, path, meta)


def _recorder(into: list[torch.Tensor]) -> object:
    """A forward pre-hook that keeps a head's input hidden states, [rows, hidden] in float64."""

    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        into.append(args[0].detach().double().reshape(-1, args[0].shape[-1]))

    return hook


def _ridge(
    features: torch.Tensor, targets: torch.Tensor, lam: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [out, in] and bias [out] of the least-squares linear map features → targets [N, out]."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-8)
    z = (features - mean) / std
    x = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    beta = torch.linalg.solve(x.T @ x + lam * len(z) * torch.eye(x.shape[1], dtype=z.dtype), x.T @ targets)
    weight = (beta[:-1] / std[:, None]).T
    bias = beta[-1] - weight @ mean
    return weight, bias


@torch.no_grad()
def _set_linear(linear: torch.nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    linear.weight.copy_(weight.to(linear.weight.dtype))
    linear.bias.copy_(bias.to(linear.bias.dtype))


def _calibrate_demo(
    heads: Heads, leaves_in: torch.Tensor, reg_in: torch.Tensor, target: torch.Tensor
) -> None:
    """Fit every head of `heads` so each score ≈ `target` (per leaf with a small fixed offset, so the
    dimensions differ a little and the explanation panel has something to show)."""
    from humanaes_core.schema import BY_KEY, PARENT_KEYS

    gen = torch.Generator().manual_seed(11)
    n_leaves = heads.expert.leaves.out_features
    offsets = 0.12 * (torch.rand(n_leaves, generator=gen, dtype=torch.float64) - 0.5)
    slopes = 0.8 + 0.4 * torch.rand(n_leaves, generator=gen, dtype=torch.float64)
    leaf_targets = 0.5 + (target[:, None] - 0.5) * slopes + offsets
    _set_linear(heads.expert.leaves, *_ridge(leaves_in, leaf_targets))
    width = heads.regression.linear.out_features
    _set_linear(heads.regression.linear, *_ridge(reg_in, target[:, None].expand(-1, width)))
    for parent in PARENT_KEYS:
        n = len(BY_KEY[parent].children)
        mix = torch.distributions.Dirichlet(torch.full((n,), 2.0)).sample()
        _fit(heads.expert.parents[parent], lambda x, mix=mix: x @ mix, n)
    _fit(heads.metavoter, lambda x: (x[:, 1] + x[:, 2]) / 2, 3, metavoter=True)


def _fit(module: torch.nn.Module, target: object, n_in: int, metavoter: bool = False) -> None:
    """Train a small head on random inputs in [0, 1]^n_in to reproduce `target(x)` (uses torch's RNG)."""
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    module.train()
    with torch.enable_grad():
        for _ in range(600):
            x = torch.rand(256, n_in)
            pred = module(x[:, 0], x[:, 1], x[:, 2]) if metavoter else module(x)
            loss = torch.nn.functional.mse_loss(pred, target(x))  # type: ignore[operator]
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()


def is_demo(meta: CheckpointMeta) -> bool:
    """Whether a checkpoint's metadata marks it as the demo model (its scores are not judgements)."""
    return bool(meta.provenance.get("demo"))


def main(argv: list[str] | None = None) -> int:
    """`python -m humanaes_core.testing OUT [--demo] [--size tiny|small] [--seed N]`: write a test model.

    Its weights are random: it exercises the whole pipeline offline, but its scores mean nothing. With
    --demo the heads are calibrated so scores follow brightness and colourfulness (see `make_demo_model`).
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
    parser.add_argument(
        "--demo",
        action="store_true",
        help="tiny demo model whose scores follow brightness and colourfulness (not a judgement)",
    )
    args = parser.parse_args(argv)
    if args.demo:
        if args.size != "tiny":
            parser.error("--demo makes a tiny model; leave out --size")
        path = make_demo_model(args.out, seed=args.seed)
        print(f"wrote the demo model to {path}: its scores follow brightness and colourfulness")
        return 0
    path = make_tiny_model(args.out, seed=args.seed, size=args.size)
    print(f"wrote a random {args.size} model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
