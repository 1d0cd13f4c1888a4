"""The backbone's tensors: original InternVL names → transformers' native InternVL layout.

The mapping is derived from the native model's own state dict, so every native tensor has exactly one
source (or the import fails naming those it cannot fill). Two original tensors are fused: InternViT's
`attn.qkv` holds q, k and v in thirds; InternLM2's `wqkv` holds, per KV group, the group's query heads,
then one key and one value head.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from humanaes_core.importer.source import (
    ImportFailure,
    SourceFiles,
    TensorPlacement,
    describe,
    listing,
)

if TYPE_CHECKING:
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

# Storage precisions `--dtype` offers besides "auto" (as in the source).
BACKBONE_DTYPES = ("bf16", "fp16", "fp32")
_SAFETENSORS_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}

# native name (regex) -> original name (template), and how a fused original is split ("thirds": InternViT
# qkv, "grouped": InternLM2 wqkv). Group "piece" is q, k or v.
_V, _VL = r"model\.vision_tower\.", r"model\.vision_tower\.encoder\.layer\.(?P<n>\d+)\."
_OV = "vision_model.encoder.layers.\\g<n>."
_P = r"(?P<p>weight|bias)"
_COMMON_RULES: list[tuple[str, str, str | None]] = [
    (_V + r"embeddings\.cls_token", "vision_model.embeddings.class_embedding", None),
    (_V + r"embeddings\.position_embeddings", "vision_model.embeddings.position_embedding", None),
    (
        _V + r"embeddings\.patch_embeddings\.projection\." + _P,
        "vision_model.embeddings.patch_embedding.\\g<p>",
        None,
    ),
    (_VL + r"attention\.(?P<piece>[qkv])_proj\." + _P, _OV + "attn.qkv.\\g<p>", "thirds"),
    (_VL + r"attention\.projection_layer\." + _P, _OV + "attn.proj.\\g<p>", None),
    (_VL + r"lambda_1", _OV + "ls1", None),
    (_VL + r"lambda_2", _OV + "ls2", None),
    (_VL + r"layernorm_before\." + _P, _OV + "norm1.\\g<p>", None),
    (_VL + r"layernorm_after\." + _P, _OV + "norm2.\\g<p>", None),
    (_VL + r"mlp\.(?P<fc>fc1|fc2)\." + _P, _OV + "mlp.\\g<fc>.\\g<p>", None),
    (r"model\.multi_modal_projector\.layer_norm\." + _P, "mlp1.0.\\g<p>", None),
    (r"model\.multi_modal_projector\.linear_1\." + _P, "mlp1.1.\\g<p>", None),
    (r"model\.multi_modal_projector\.linear_2\." + _P, "mlp1.3.\\g<p>", None),
]
_QWEN2_RULES: list[tuple[str, str, str | None]] = [
    (r"model\.language_model\.(?P<rest>.+)", "language_model.model.\\g<rest>", None),
    (r"lm_head\.weight", "language_model.lm_head.weight", None),
]
_LL, _OL = r"model\.language_model\.layers\.(?P<n>\d+)\.", "language_model.model.layers.\\g<n>."
_INTERNLM2_RULES: list[tuple[str, str, str | None]] = [
    (r"model\.language_model\.embed_tokens\.weight", "language_model.model.tok_embeddings.weight", None),
    (_LL + r"self_attn\.(?P<piece>[qkv])_proj\." + _P, _OL + "attention.wqkv.\\g<p>", "grouped"),
    (_LL + r"self_attn\.o_proj\." + _P, _OL + "attention.wo.\\g<p>", None),
    (_LL + r"mlp\.gate_proj\.weight", _OL + "feed_forward.w1.weight", None),
    (_LL + r"mlp\.up_proj\.weight", _OL + "feed_forward.w3.weight", None),
    (_LL + r"mlp\.down_proj\.weight", _OL + "feed_forward.w2.weight", None),
    (_LL + r"input_layernorm\.weight", _OL + "attention_norm.weight", None),
    (_LL + r"post_attention_layernorm\.weight", _OL + "ffn_norm.weight", None),
    (r"model\.language_model\.norm\.weight", "language_model.model.norm.weight", None),
    (r"lm_head\.weight", "language_model.output.weight", None),
]
_PIECES = ("q", "k", "v")
_HOW = {None: "renamed", "thirds": "fused qkv split in thirds", "grouped": "fused wqkv split by KV group"}
# Output layer and embedding, original names, per variant (for tied embeddings).
_OUTPUT_AND_EMBEDDING = {
    "qwen2": ("language_model.lm_head.weight", "language_model.model.embed_tokens.weight"),
    "internlm2": ("language_model.output.weight", "language_model.model.tok_embeddings.weight"),
}


@dataclass
class FusedTensor:
    """One original tensor and the native tensors it becomes (one, or q/k/v pieces of a fused one)."""

    source: str
    split: str | None
    targets: dict[str, str | None] = field(default_factory=dict)  # native name -> piece (q/k/v) or None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # native name -> native shape

    def expected_shape(self) -> tuple[int, ...]:
        if self.split is None:
            return next(iter(self.shapes.values()))
        by_piece = {self.targets[n]: s for n, s in self.shapes.items()}
        rest = by_piece["q"][1:]
        return (sum(by_piece[p][0] for p in _PIECES), *rest)


def _skeleton(config: InternVLConfig) -> InternVLForConditionalGeneration:
    """The native model on the meta device: shapes and names, no memory, no random init."""
    from accelerate import init_empty_weights
    from transformers import InternVLForConditionalGeneration

    with init_empty_weights(include_buffers=False):
        return InternVLForConditionalGeneration(config)


def backbone_plan(config: InternVLConfig, variant: str) -> dict[str, FusedTensor]:
    """Original name -> how it becomes native tensors, derived from the native model's own state dict."""
    native = {k: tuple(v.shape) for k, v in _skeleton(config).state_dict().items()}
    rules = [(re.compile(n), s, k) for n, s, k in _COMMON_RULES]
    rules += [(re.compile(n), s, k) for n, s, k in (_QWEN2_RULES if variant == "qwen2" else _INTERNLM2_RULES)]
    plan: dict[str, FusedTensor] = {}
    unmapped = []
    for name, shape in native.items():
        if name == "lm_head.weight" and config.text_config.tie_word_embeddings:
            continue  # tied to the embedding: filled by tying, not from the source
        for pattern, template, split in rules:
            m = pattern.fullmatch(name)
            if m:
                source = m.expand(template)
                fused = plan.setdefault(source, FusedTensor(source, split))
                fused.targets[name] = m.group("piece") if split else None
                fused.shapes[name] = shape
                break
        else:
            unmapped.append(name)
    if unmapped:
        raise ImportFailure(f"this importer does not know how to fill native tensors: {', '.join(unmapped)}")
    return plan


def tied_output(source: SourceFiles, variant: str, llm: dict) -> tuple[bool, str | None]:
    """Whether lm_head is tied to the embedding, and a stored lm_head that merely repeats it."""
    import torch

    head, embed = _OUTPUT_AND_EMBEDDING[variant]
    tie = bool(llm.get("tie_word_embeddings", variant == "qwen2" and head not in source.tensors))
    if not tie or head not in source.tensors:
        return tie, None
    if embed in source.tensors and torch.equal(source.load(head), source.load(embed)):
        return True, head
    raise ImportFailure(
        f"llm_config ties the output layer to the embeddings, but the source stores a different {head}; "
        "it is unclear which one the released model used"
    )


def place_backbone(
    plan: dict[str, FusedTensor], source: SourceFiles, tied_duplicate: str | None, problems: list[str]
) -> list[TensorPlacement]:
    """One placement per backbone tensor found with the expected shape; the rest become `problems`."""
    placements: list[TensorPlacement] = []
    missing, wrong_shape = [], []
    for name, fused in plan.items():
        expected = fused.expected_shape()
        if name not in source.tensors:
            missing.append(f"{describe(name, expected)} → {', '.join(fused.targets)}")
            continue
        st = source.tensors[name]
        if st.shape != expected:
            wrong_shape.append(f"{describe(name, st.shape)} (expected {list(expected)})")
            continue
        placements.append(TensorPlacement(name, st.shape, st.file, tuple(fused.targets), _HOW[fused.split]))
    if tied_duplicate:
        st = source.tensors[tied_duplicate]
        how = "tied to embed_tokens (verified equal)"
        placements.append(TensorPlacement(tied_duplicate, st.shape, st.file, ("lm_head.weight",), how))
    if missing:
        problems.append(f"{len(missing)} backbone tensors missing from the source:" + listing(missing))
    if wrong_shape:
        problems.append(
            f"{len(wrong_shape)} backbone tensors have shapes that do not match config.json:"
            + listing(wrong_shape)
        )
    return placements


def backbone_dtype(plan: dict[str, FusedTensor], source: SourceFiles, dtype: str) -> torch.dtype:
    """The storage precision: `dtype` (one of BACKBONE_DTYPES), or with "auto" the source's own."""
    import torch

    torch_dtypes = dict(zip(BACKBONE_DTYPES, (torch.bfloat16, torch.float16, torch.float32), strict=True))
    if dtype != "auto":
        if dtype not in torch_dtypes:
            raise ImportFailure(f"--dtype must be auto or one of {', '.join(BACKBONE_DTYPES)}, not {dtype!r}")
        return torch_dtypes[dtype]
    common = Counter(source.tensors[n].dtype for n in plan).most_common(1)[0][0]
    if common not in _SAFETENSORS_DTYPES:
        raise ImportFailure(f"backbone tensors are {common}; pass --dtype bf16, fp16 or fp32")
    return torch_dtypes[_SAFETENSORS_DTYPES[common]]


def split_fused(t: torch.Tensor, fused: FusedTensor, config: InternVLConfig) -> dict[str, torch.Tensor]:
    """Cut a fused original tensor into its native pieces (clones: no shared storage in the output)."""
    if fused.split is None:
        (name,) = fused.targets
        return {name: t}
    rest = t.shape[1:]
    if fused.split == "thirds":  # InternViT: rows are [q heads..., k heads..., v heads...]
        parts = dict(zip(_PIECES, t.reshape(3, -1, *rest).unbind(0), strict=True))
    else:  # InternLM2: per KV group, [its q heads..., one k head, one v head]
        text = config.text_config
        groups, head_dim = text.num_key_value_heads, text.head_dim
        per = text.num_attention_heads // groups
        g = t.reshape(groups, per + 2, head_dim, *rest)
        parts = {
            "q": g[:, :per].reshape(-1, *rest),
            "k": g[:, per].reshape(-1, *rest),
            "v": g[:, per + 1].reshape(-1, *rest),
        }
    return {name: parts[piece].clone() for name, piece in fused.targets.items() if piece is not None}


def build_backbone(
    config: InternVLConfig,
    plan: dict[str, FusedTensor],
    source: SourceFiles,
    dtype: torch.dtype,
    progress: Callable[[int, int], None] | None = None,
) -> InternVLForConditionalGeneration:
    """The native InternVL model with every tensor streamed from the source (no random init kept)."""

    backbone = _skeleton(config)
    state: dict[str, torch.Tensor] = {}
    order = sorted(plan.values(), key=lambda f: (source.tensors[f.source].file, f.source))
    for i, fused in enumerate(order):
        tensor = source.load(fused.source)
        for name, piece in split_fused(tensor, fused, config).items():
            state[name] = piece.to(dtype).contiguous()
        del tensor
        if progress is not None:
            progress(i + 1, len(order))
    result = backbone.load_state_dict(state, strict=False, assign=True)
    tied = config.text_config.tie_word_embeddings
    missing = set(result.missing_keys) - ({"lm_head.weight"} if tied else set())
    if missing or result.unexpected_keys:
        raise ImportFailure(
            f"internal mapping error: missing {sorted(missing)}, unexpected {result.unexpected_keys}"
        )
    if tied:
        backbone.lm_head.weight = backbone.model.language_model.embed_tokens.weight
    on_meta = [n for n, p in backbone.named_parameters() if p.device.type == "meta"]
    if on_meta:
        raise ImportFailure(f"internal mapping error: parameters left uninitialised: {on_meta}")
    return backbone.eval()
