"""GPU throughput and memory of real-size 1B and 8B architectures (random weights: timing only).

The checkpoints are built here from transformers configs with the released models' dimensions
(InternViT-300M at 448 px + Qwen2-0.5B for 1B; + InternLM2-7B in Llama layout for 8B), saved in the
native format and loaded through `load_scorer`, in 16-bit and in 4-bit NF4, so the timed path is the
product's. Photos are random tiles fed through `Scorer.score_decoded` (the model's share of the work);
an end-to-end row adds decoding camera JPEGs. The released approach (one photo at a time, two passes,
image encoded twice) runs on the same machine for comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from humanaes_core.scoring import DecodedPhoto, Scorer

from . import released
from .common import Section, ratio


@dataclass(frozen=True)
class Arch:
    """Dimensions of one released architecture (vision tower: InternViT-300M-448px for both)."""

    name: str
    text_type: str  # "qwen2" or "llama"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    vision_hidden: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    vision_mlp: int = 4096


ARCHS = {
    "1B": Arch("1B", "qwen2", 896, 24, 14, 2, 4864, 151674),
    "8B": Arch("8B", "llama", 4096, 32, 32, 8, 14336, 92553),
}
#: Same structure, toy sizes: lets the tests run this module's code on a CPU.
TOY = Arch("toy", "qwen2", 64, 2, 4, 2, 128, 2048, 32, 1, 2, 64)

TILES = (1, 6, 12)
BATCHES = (1, 2, 4, 8, 16, 32)


def build_checkpoint(arch: Arch, path: Path, device: str, dtype: torch.dtype) -> Path:
    """A random-initialised native checkpoint with `arch`'s dimensions (initialised on `device`: fast)."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, LlamaConfig, Qwen2Config
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    from humanaes_core.model import (
        CheckpointMeta,
        Heads,
        HeadsConfig,
        HumanAesModel,
        PromptConfig,
        save_checkpoint,
    )
    from humanaes_core.testing import build_tokenizer

    prompt = PromptConfig()
    tokenizer = build_tokenizer(prompt, 4096)
    vision = InternVLVisionConfig(
        hidden_size=arch.vision_hidden,
        num_hidden_layers=arch.vision_layers,
        num_attention_heads=arch.vision_heads,
        intermediate_size=arch.vision_mlp,
        attention_bias=True,
        image_size=448,
        patch_size=14,
        use_mean_pooling=False,
    )
    text_cls = Qwen2Config if arch.text_type == "qwen2" else LlamaConfig
    text = text_cls(
        vocab_size=max(arch.vocab, len(tokenizer)),
        hidden_size=arch.hidden,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads,
        intermediate_size=arch.mlp,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    )
    config = InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(prompt.img_context),
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    with torch.device(device):
        backbone = InternVLForConditionalGeneration._from_config(config, dtype=dtype).eval()
        heads_config = HeadsConfig(hidden_size=arch.hidden)
        heads = Heads(heads_config).eval()
    model = HumanAesModel(backbone, heads, tokenizer, prompt, num_image_token=256)
    meta = CheckpointMeta(heads=heads_config, prompt=prompt, name=f"bench-{arch.name}-random")
    path = save_checkpoint(model, path, meta)
    del model, backbone
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return path


def _throughput(scorer: Scorer, tiles: int, batch: int, photos: int) -> tuple[float, float, bool]:
    """(photos/s, peak memory GiB, ran out of memory) of the model's share for `photos` photos."""
    pixels = torch.randn(tiles, 3, 448, 448)
    items = [DecodedPhoto(i, None, pixels=pixels) for i in range(photos)]
    scorer.batch_limits.clear()
    cuda = scorer.placement.device.type == "cuda"
    list(scorer.score_decoded(items[:batch], batch_size=batch))  # warm-up: kernels, allocator
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results = list(scorer.score_decoded(items, batch_size=batch))
    seconds = time.perf_counter() - start
    oom = bool(scorer.batch_limits) or any(r.error for r in results)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return photos / seconds, peak, oom


def _released(scorer: Scorer, tiles: int, photos: int) -> tuple[float, float]:
    pixels = torch.randn(tiles, 3, 448, 448)
    cuda = scorer.placement.device.type == "cuda"
    released.score_one(scorer.model, pixels.to(scorer.model.device, scorer.model.dtype))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(photos):
        released.score_one(scorer.model, pixels.to(scorer.model.device, scorer.model.dtype))
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return photos / seconds, peak


def _gib(x: float) -> str:
    return "—" if x != x else f"{x:.1f} GiB"


def measure_arch(
    arch: Arch,
    work: Path,
    sec: Section,
    *,
    device: str = "cuda",
    precisions: tuple[str, ...] = ("16bit", "4bit"),
    tiles: tuple[int, ...] = TILES,
    batches: tuple[int, ...] = BATCHES,
    photos: int = 32,
    camera: list[Path] | None = None,
) -> None:
    """Rows of `sec` for one architecture: each precision × tile count, ours at batch 1 and best batch,
    and the released approach (one photo at a time, two passes) with the same weights."""
    from humanaes_core import load_scorer

    dtype_name = "fp32" if device == "cpu" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    path = build_checkpoint(arch, work / f"gpu-{arch.name}", device, dtype)
    for precision in precisions:
        quantize = "4bit" if precision == "4bit" else None
        if quantize:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                sec.notes.append(f"{arch.name} 4-bit rows not measured: bitsandbytes is not installed.")
                continue
        scorer = load_scorer(
            path, device=device, precision=dtype_name, quantize=quantize, batch_size=1, feature_cache_bytes=0
        )
        label = f"{dtype_name} + NF4 LM" if quantize else dtype_name
        for t in tiles:
            one, mem_one, _ = _throughput(scorer, t, 1, max(4, photos // 4))
            best, best_b, mem_best = one, 1, mem_one
            for b in batches[1:]:
                rate, mem, oom = _throughput(scorer, t, b, max(photos, 2 * b))
                if oom:
                    break
                if rate > best:
                    best, best_b, mem_best = rate, b, mem
                elif rate < 0.97 * best:
                    break
            cells = [
                arch.name,
                label,
                t,
                f"{one:.2f}",
                _gib(mem_one),
                f"{best:.2f} (batch {best_b})",
                _gib(mem_best),
            ]
            rel, mem_rel = _released(scorer, t, max(4, photos // 4))
            cells += [f"{rel:.2f}", _gib(mem_rel), ratio(1 / rel, 1 / best)]
            sec.row(*cells)
        if camera and not quantize:
            _end_to_end(scorer, camera, sec, arch.name, label)
        del scorer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _end_to_end(scorer: Scorer, paths: list[Path], sec: Section, arch: str, label: str) -> None:
    """Camera JPEGs to cards: decoding included, at the scorer's preset (accurate: 7 tiles for 3:2)."""
    list(scorer.score_iter(paths[:2]))
    start = time.perf_counter()
    list(scorer.score_iter(paths, batch_size=8))
    ours = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    for p in paths:
        px = released.load_image(str(p), scorer.tile_config)
        released.score_one(scorer.model, px.to(scorer.model.device, scorer.model.dtype))
    rel = len(paths) / (time.perf_counter() - start)
    sec.notes.append(
        f"End to end, {len(paths)} camera JPEGs (24 MP, 7 tiles), {arch} {label}: ours {ours:.2f} photos/s "
        f"({scorer.decode_workers} decode threads, batch 8) vs released {rel:.2f} photos/s: "
        f"{ratio(1 / rel, 1 / ours)}."
    )


def run(archs: list[str], work: Path, camera: list[Path] | None, photos: int = 32) -> Section:
    sec = Section(
        "gpu",
        "GPU: real-size architectures, random weights",
        "python -m bench --only gpu [--gpu-archs 1B,8B]",
        [
            "model",
            "precision",
            "tiles",
            "ours batch 1 (photos/s)",
            "peak memory",
            "ours best batch (photos/s)",
            "peak memory",
            "released (photos/s)",
            "peak memory",
            "best vs released",
        ],
    )
    if not torch.cuda.is_available():
        sec.skipped = (
            "no CUDA device on this machine (none was lent to this run). The section builds real-size 1B "
            "and 8B checkpoints with random weights and measures photos/s and peak memory at 1, 6 and 12 "
            "tiles, 16-bit and 4-bit, batch 1 and the best batch, beside the released one-at-a-time "
            "two-pass approach; run `python -m bench --only gpu` on a CUDA machine to fill it in."
        )
        return sec
    for name in archs:
        measure_arch(ARCHS[name], work, sec, photos=photos, camera=camera if name == archs[0] else None)
    sec.notes += [
        "Peak memory: `torch.cuda.max_memory_allocated` (weights included). 4-bit: NF4 language model, "
        "16-bit vision tower, projector and LM head (`humanaes_core.model.devices.bnb_4bit_config`).",
        "Best batch: the fastest of batch 1, 2, 4 … 32 before throughput stops improving or memory runs out.",
    ]
    return sec
