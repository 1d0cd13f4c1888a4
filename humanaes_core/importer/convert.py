"""Import a released HumanAesExpert checkpoint (InternVL 2 original layout) into the native format.

The released checkpoints (`KwaiVGI/HumanAesExpert-1B`, `-8B`) ship their own modelling code for an old
transformers. We never import or run anything from the source directory: only `config.json`, the
tokenizer's data files and the `*.safetensors` tensors are read (pickles are never opened).

What happens:

* the backbone is renamed to transformers' native InternVL layout (vision tower, projector and a Qwen2
  or Llama language model); InternViT's fused `attn.qkv` is split in thirds, InternLM2's fused `wqkv`
  is split by its grouped-query layout (per KV group: the group's query heads, then one key and one
  value head);
* the heads are recognised by name *and* shape and copied into `humanaes_core.model.heads`;
* every source tensor is placed exactly once or the import fails and lists what it could not place,
  what it expected and what was missing: nothing is dropped silently and no head is initialised at
  random and passed off as imported;
* the tokenizer becomes a tokenizers-backed (fast) tokenizer, the chat template a `PromptConfig`;
* the result is written with `save_checkpoint`, so `load_scorer(OUT)` opens it.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from humanaes_core.errors import HumanAesError
from humanaes_core.model import INTERNVL_SYSTEM_MESSAGE, Heads, HeadsConfig, PromptConfig
from humanaes_core.schema import BY_KEY, LEAF_KEYS, PARENT_KEYS

if TYPE_CHECKING:
    from safetensors import safe_open
    from transformers import InternVLConfig, PreTrainedTokenizerBase

    from humanaes_core.model import CheckpointMeta

log = logging.getLogger(__name__)

IMPORTER_VERSION = 1
EXPERT_ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
METAVOTER_MODES = ("auto", "mean")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# The InternVL conversation templates of the released models. All are ChatML (<|im_start|>/<|im_end|>);
# the value is the template's default system message.
INTERNVL2_5_SYSTEM_MESSAGE = (
    "你是书生·万象，英文名是InternVL，"
    "是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
)
TEMPLATES: dict[str, str] = {
    "Hermes-2": INTERNVL_SYSTEM_MESSAGE,
    "internlm2-chat": INTERNVL_SYSTEM_MESSAGE,
    "internvl2_5": INTERNVL2_5_SYSTEM_MESSAGE,
}
# Per template: is there a newline after <|im_end|>, and does the training template start with BOS
# (carried into PromptConfig.turn_sep and PromptConfig.bos).
_TEMPLATE_FORMAT = {
    "Hermes-2": {"newline_after_im_end": False, "bos": False},
    "internlm2-chat": {"newline_after_im_end": False, "bos": True},
    "internvl2_5": {"newline_after_im_end": True, "bos": False},
}

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MAX_LISTED = 40


class ImportFailure(HumanAesError):
    """The source cannot be converted faithfully; the message lists every problem found."""


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the source, as its safetensors header describes it (nothing loaded)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str


@dataclass(frozen=True)
class Placement:
    """Where one source tensor went: the placement table an import reports."""

    source: str
    shape: tuple[int, ...]
    file: str
    targets: tuple[str, ...]
    how: str


@dataclass
class ImportReport:
    """What an import did: the output, every placement and the assumptions it made."""

    out: Path | None
    variant: str
    placements: list[Placement]
    assumptions: list[str]
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out) if self.out else None,
            "variant": self.variant,
            "placements": [
                {
                    "source": p.source,
                    "shape": list(p.shape),
                    "file": p.file,
                    "targets": list(p.targets),
                    "how": p.how,
                }
                for p in self.placements
            ],
            "assumptions": self.assumptions,
        }


# --- reading the source ----------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportFailure(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise ImportFailure(f"{path} is unreadable: {e}") from None
    if not isinstance(data, dict):
        raise ImportFailure(f"{path} does not hold a JSON object")
    return data


def looks_like_original(path: str | Path) -> bool:
    """True for a directory whose config.json is InternVL's original (`llm_config` + `vision_config`)."""
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "llm_config" in data and "vision_config" in data


class _Source:
    """All tensors of the source directory, read lazily from safetensors (headers first, data on demand)."""

    def __init__(self, root: Path) -> None:
        from safetensors import safe_open

        self.root = root
        self.tensors: dict[str, SourceTensor] = {}
        self._handles: dict[str, safe_open] = {}
        files = sorted(p.name for p in root.glob("*.safetensors") if p.is_file())
        index_path = root / "model.safetensors.index.json"
        indexed: dict[str, str] = {}
        if index_path.is_file():
            weight_map = _read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ImportFailure(f"{index_path} has no weight_map")
            indexed = {str(k): str(v) for k, v in weight_map.items()}
            missing_files = sorted(set(indexed.values()) - set(files))
            if missing_files:
                raise ImportFailure(
                    f"{root}: the shard index names files that are not there: {', '.join(missing_files)} "
                    "(an incomplete download? download it again)"
                )
        if not files:
            pickles = sorted(p.name for p in root.iterdir() if p.suffix in _PICKLE_SUFFIXES)
            hint = (
                f" It holds {', '.join(pickles)}, which this importer never opens (pickle can run code); "
                "save the weights as safetensors first."
                if pickles
                else ""
            )
            raise ImportFailure(f"{root} has no *.safetensors files.{hint}")
        duplicates: list[str] = []
        for name in files:
            try:
                handle = safe_open(str(root / name), framework="pt")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise ImportFailure(f"{root / name} is not a readable safetensors file: {e}") from None
            self._handles[name] = handle
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                piece = handle.get_slice(key)
                tensor = SourceTensor(key, tuple(int(d) for d in piece.get_shape()), piece.get_dtype(), name)
                if key in self.tensors:
                    duplicates.append(f"{key} (in {self.tensors[key].file} and {name})")
                    continue
                self.tensors[key] = tensor
        if duplicates:
            raise ImportFailure(f"{root}: tensors stored more than once: {'; '.join(duplicates)}")
        wrong = [
            f"{k} (index: {f}, found in {self.tensors[k].file if k in self.tensors else 'no file'})"
            for k, f in indexed.items()
            if k not in self.tensors or self.tensors[k].file != f
        ]
        if wrong:
            raise ImportFailure(
                f"{index_path} does not match the shard files: {'; '.join(wrong[:_MAX_LISTED])}"
            )

    def load(self, name: str) -> torch.Tensor:
        return self._handles[self.tensors[name].file].get_tensor(name)

    def pickles(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.suffix in _PICKLE_SUFFIXES)


# --- configuration ---------------------------------------------------------------------------------


@dataclass
class _SourceConfig:
    """The parts of InternVL's config.json the conversion needs, validated."""

    raw: dict
    variant: str  # "qwen2" | "internlm2"
    llm: dict
    vision: dict
    image_size: int
    patch_size: int
    downsample_ratio: float
    template: str
    system_message: str
    max_tiles: int
    use_thumbnail: bool


def _llm_variant(llm: dict) -> str:
    archs = llm.get("architectures") or []
    model_type = str(llm.get("model_type", ""))
    if "Qwen2ForCausalLM" in archs or (not archs and model_type == "qwen2"):
        return "qwen2"
    if "InternLM2ForCausalLM" in archs or (not archs and model_type == "internlm2"):
        return "internlm2"
    raise ImportFailure(
        f"unsupported language model {archs or model_type!r} in llm_config; this importer converts "
        "Qwen2ForCausalLM (HumanAesExpert-1B) and InternLM2ForCausalLM (HumanAesExpert-8B)"
    )


def _read_config(root: Path) -> _SourceConfig:
    raw = _read_json(root / "config.json")
    if "llm_config" not in raw or "vision_config" not in raw:
        raise ImportFailure(
            f"{root}/config.json is not InternVL's original layout (it needs llm_config and vision_config)"
        )
    llm, vision = dict(raw["llm_config"]), dict(raw["vision_config"])
    variant = _llm_variant(llm)
    problems: list[str] = []
    if vision.get("qk_normalization", False):
        problems.append(
            "vision_config.qk_normalization is true (InternViT-6B style); only InternViT-300M is supported"
        )
    if vision.get("norm_type", "layer_norm") != "layer_norm":
        problems.append(
            f"vision_config.norm_type is {vision.get('norm_type')!r} (InternViT-6B style); "
            "only layer_norm (InternViT-300M) is supported"
        )
    if str(raw.get("ps_version", "v2")) != "v2":
        problems.append(f"ps_version {raw.get('ps_version')!r}: only the v2 pixel shuffle is supported")
    if int(raw.get("select_layer", -1)) != -1:
        problems.append(
            f"select_layer {raw.get('select_layer')}: only the last vision layer (-1) is supported"
        )
    ratio = float(raw.get("downsample_ratio", 0.5))
    if ratio <= 0 or abs(1 / ratio - round(1 / ratio)) > 1e-6:
        problems.append(f"downsample_ratio {ratio}: 1/ratio must be a whole number")
    template = str(raw.get("template", ""))
    if template not in TEMPLATES:
        problems.append(
            f"conversation template {template!r} is not supported (known: {', '.join(sorted(TEMPLATES))})"
        )
    if problems:
        raise ImportFailure(f"{root}/config.json: " + "; ".join(problems))
    image_size = int(raw.get("force_image_size") or vision.get("image_size", 448))
    patch = vision.get("patch_size", 14)
    patch_size = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    dynamic = bool(raw.get("dynamic_image_size", True))
    return _SourceConfig(
        raw=raw,
        variant=variant,
        llm=llm,
        vision=vision,
        image_size=image_size,
        patch_size=patch_size,
        downsample_ratio=ratio,
        template=template,
        system_message=str(raw.get("system_message") or TEMPLATES[template]),
        max_tiles=int(raw.get("max_dynamic_patch", 12)) if dynamic else 1,
        use_thumbnail=bool(raw.get("use_thumbnail", True)),
    )


def _rope_parameters(llm: dict) -> dict:
    theta = float(llm.get("rope_theta", 10000.0))
    scaling = llm.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = scaling.get("type") or scaling.get("rope_type")
    if kind not in ("linear", "dynamic"):
        raise ImportFailure(
            f"llm_config.rope_scaling {scaling!r}: only linear and dynamic scaling are supported"
        )
    return {"rope_type": kind, "factor": float(scaling["factor"]), "rope_theta": theta}


def _text_config(sc: _SourceConfig, tie: bool) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    llm = sc.llm
    try:
        common = {
            "vocab_size": int(llm["vocab_size"]),
            "hidden_size": int(llm["hidden_size"]),
            "intermediate_size": int(llm["intermediate_size"]),
            "num_hidden_layers": int(llm["num_hidden_layers"]),
            "num_attention_heads": int(llm["num_attention_heads"]),
            "num_key_value_heads": int(llm.get("num_key_value_heads") or llm["num_attention_heads"]),
            "hidden_act": str(llm.get("hidden_act", "silu")),
            "max_position_embeddings": int(llm.get("max_position_embeddings", 32768)),
            "rms_norm_eps": float(llm.get("rms_norm_eps", 1e-6)),
            "rope_parameters": _rope_parameters(llm),
            "tie_word_embeddings": tie,
            "bos_token_id": llm.get("bos_token_id"),
            "eos_token_id": llm.get("eos_token_id"),
            "pad_token_id": llm.get("pad_token_id"),
        }
    except KeyError as e:
        raise ImportFailure(f"llm_config lacks {e.args[0]!r}") from None
    if sc.variant == "qwen2":
        sliding = bool(llm.get("use_sliding_window", False))
        extra = {"use_sliding_window": sliding}
        if sliding:
            extra |= {
                "sliding_window": int(llm["sliding_window"]),
                "max_window_layers": int(llm["max_window_layers"]),
            }
        return Qwen2Config(**common, **extra)
    return LlamaConfig(**common, attention_bias=bool(llm.get("bias", False)), mlp_bias=False)


def _native_config(sc: _SourceConfig, image_token_id: int, tie: bool) -> InternVLConfig:
    from transformers import InternVLConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    v = sc.vision
    try:
        vision = InternVLVisionConfig(
            hidden_size=int(v["hidden_size"]),
            num_hidden_layers=int(v["num_hidden_layers"]),
            num_attention_heads=int(v["num_attention_heads"]),
            intermediate_size=int(v["intermediate_size"]),
            hidden_act=str(v.get("hidden_act", "gelu")),
            layer_norm_eps=float(v.get("layer_norm_eps", 1e-6)),
            attention_bias=bool(v.get("qkv_bias", True)),
            use_qk_norm=False,
            norm_type="layer_norm",
            image_size=sc.image_size,
            patch_size=sc.patch_size,
            num_channels=int(v.get("num_channels", 3)),
            use_mean_pooling=True,  # InternViT has no final norm: this makes the native one an Identity
            use_absolute_position_embeddings=True,
        )
    except KeyError as e:
        raise ImportFailure(f"vision_config lacks {e.args[0]!r}") from None
    text = _text_config(sc, tie)
    tokens = int((sc.image_size // sc.patch_size) ** 2 * sc.downsample_ratio**2)
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        image_seq_length=tokens,
        downsample_ratio=sc.downsample_ratio,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=tie,
    )


# --- tokenizer -------------------------------------------------------------------------------------


def _token_content(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("content"))
    return str(value)


def _declared_added_tokens(root: Path) -> dict[int, dict]:
    """Added tokens the source declares: tokenizer_config.json (added_tokens_decoder), added_tokens.json."""
    declared: dict[int, dict] = {}
    cfg_path = root / "tokenizer_config.json"
    if cfg_path.is_file():
        for key, entry in (_read_json(cfg_path).get("added_tokens_decoder") or {}).items():
            declared[int(key)] = dict(entry) if isinstance(entry, dict) else {"content": str(entry)}
    added_path = root / "added_tokens.json"
    if added_path.is_file():
        for content, idx in _read_json(added_path).items():
            entry = declared.setdefault(int(idx), {"content": content, "special": True})
            if entry["content"] != content:
                raise ImportFailure(
                    f"{root}: token id {idx} is {entry['content']!r} in tokenizer_config.json but "
                    f"{content!r} in added_tokens.json"
                )
    return declared


def _check_added_ids(tokenizer: PreTrainedTokenizerBase, declared: dict[int, dict], root: Path) -> None:
    wrong = []
    for idx, entry in sorted(declared.items()):
        got = tokenizer.convert_tokens_to_ids(entry["content"])
        if got != idx:
            wrong.append(f"{entry['content']!r}: declared id {idx}, converted tokenizer gives {got}")
    if wrong:
        raise ImportFailure(f"{root}: the converted tokenizer disagrees with the source: {'; '.join(wrong)}")


def _qwen2_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """Qwen2's byte-level BPE from vocab.json/merges.txt (or tokenizer.json); auto_map is ignored."""
    from transformers import Qwen2Tokenizer

    try:
        tokenizer = Qwen2Tokenizer.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ImportFailure(f"{root}: cannot read the Qwen2 tokenizer files: {e}") from None
    _check_added_ids(tokenizer, _declared_added_tokens(root), root)
    return tokenizer


# SentencePiece's ModelProto, as far as we need it (field numbers from sentencepiece_model.proto).
_SP_NORMAL, _SP_UNKNOWN, _SP_CONTROL, _SP_USER_DEFINED, _SP_UNUSED, _SP_BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class SentencePieceModel:
    """The data of a sentencepiece `.model` file, parsed without sentencepiece or protobuf installed."""

    pieces: list[tuple[str, float, int]]  # (piece, score, type)
    model_type: int = 1  # 1 unigram, 2 BPE
    byte_fallback: bool = False
    unk_id: int = 0
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True
    precompiled_charsmap: bytes = b""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, value) pairs; varints as int, the rest as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 1:
            out.append((number, buf[pos : pos + 8]))
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            out.append((number, buf[pos : pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
    return out


def read_sentencepiece(path: Path) -> SentencePieceModel:
    """Parse a sentencepiece model file (pieces, scores, types, trainer and normalizer settings)."""
    try:
        top = _fields(path.read_bytes())
        model = SentencePieceModel(pieces=[])
        for number, value in top:
            if number == 1 and isinstance(value, bytes):
                piece, score, kind = "", 0.0, _SP_NORMAL
                for n, v in _fields(value):
                    if n == 1 and isinstance(v, bytes):
                        piece = v.decode("utf-8")
                    elif n == 2 and isinstance(v, bytes):
                        score = struct.unpack("<f", v)[0]
                    elif n == 3 and isinstance(v, int):
                        kind = v
                model.pieces.append((piece, score, kind))
            elif number == 2 and isinstance(value, bytes):
                for n, v in _fields(value):
                    if n == 3 and isinstance(v, int):
                        model.model_type = v
                    elif n == 35 and isinstance(v, int):
                        model.byte_fallback = bool(v)
                    elif n == 40 and isinstance(v, int):
                        model.unk_id = v
            elif number == 3 and isinstance(value, bytes):
                for n, v in _fields(value):
                    if n == 2 and isinstance(v, bytes):
                        model.precompiled_charsmap = v
                    elif n == 3 and isinstance(v, int):
                        model.add_dummy_prefix = bool(v)
                    elif n == 4 and isinstance(v, int):
                        model.remove_extra_whitespaces = bool(v)
                    elif n == 5 and isinstance(v, int):
                        model.escape_whitespaces = bool(v)
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as e:
        raise ImportFailure(f"{path} is not a readable sentencepiece model: {e}") from None
    if not model.pieces:
        raise ImportFailure(f"{path} holds no sentencepiece vocabulary")
    return model


def _bpe_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """BPE merges equivalent to sentencepiece's: a merge's rank is the score of the piece it makes."""
    merges: list[tuple[float, int, str, str]] = []
    for piece, score in scores.items():
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in scores and right in scores:
                merges.append((-score, vocab[piece], left, right))
    merges.sort()
    return [(left, right) for _, _, left, right in merges]


def sentencepiece_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """A fast tokenizer equivalent to InternLM2's sentencepiece tokenizer, built from `tokenizer.model`.

    Like the slow tokenizer the released model was trained with, added tokens are split off first and
    each remaining piece of text is encoded on its own (the dummy prefix goes before each piece).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    sp = read_sentencepiece(root / "tokenizer.model")
    if sp.model_type != 2:
        raise ImportFailure(f"{root}/tokenizer.model is not a BPE sentencepiece model (InternLM2's is BPE)")
    declared = _declared_added_tokens(root)
    pieces = list(sp.pieces)
    for idx, entry in declared.items():  # InternLM2 renames reserved pieces, e.g. to <|im_start|>
        if idx < len(pieces):
            pieces[idx] = (entry["content"], pieces[idx][1], _SP_CONTROL)
    vocab: dict[str, int] = {}
    for i, (piece, _, _) in enumerate(pieces):
        if piece in vocab:
            raise ImportFailure(
                f"{root}/tokenizer.model: piece {piece!r} appears twice (ids {vocab[piece]}, {i})"
            )
        vocab[piece] = i
    scores = {piece: score for piece, score, kind in pieces if kind == _SP_NORMAL}
    unk = pieces[sp.unk_id][0]
    tok = Tokenizer(
        BPE(vocab, _bpe_merges(vocab, scores), unk_token=unk, fuse_unk=True, byte_fallback=sp.byte_fallback)
    )
    steps = []
    if sp.precompiled_charsmap:
        steps.append(normalizers.Precompiled(sp.precompiled_charsmap))
    if sp.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if sp.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    if sp.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = None
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if sp.add_dummy_prefix:
        decode.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(decode)

    specials = [
        AddedToken(piece, special=kind == _SP_CONTROL, normalized=False)
        for piece, _, kind in pieces
        if kind in (_SP_CONTROL, _SP_USER_DEFINED)
    ]
    tok.add_special_tokens([t for t in specials if t.special])
    tok.add_tokens([t for t in specials if not t.special])
    beyond = sorted(i for i in declared if i >= len(pieces))
    if beyond and beyond != list(range(len(pieces), len(pieces) + len(beyond))):
        raise ImportFailure(
            f"{root}: added token ids {beyond} do not directly follow the {len(pieces)} sentencepiece pieces"
        )
    for idx in beyond:
        entry = declared[idx]
        token = AddedToken(
            entry["content"],
            special=bool(entry.get("special", True)),
            normalized=False,
            lstrip=bool(entry.get("lstrip", False)),
            rstrip=bool(entry.get("rstrip", False)),
            single_word=bool(entry.get("single_word", False)),
        )
        tok.add_special_tokens([token]) if token.special else tok.add_tokens([token])

    cfg = _read_json(root / "tokenizer_config.json") if (root / "tokenizer_config.json").is_file() else {}
    smap = (
        _read_json(root / "special_tokens_map.json") if (root / "special_tokens_map.json").is_file() else {}
    )

    def special(name: str, default: str | None) -> str | None:
        return _token_content(cfg.get(name)) or _token_content(smap.get(name)) or default

    bos, eos = special("bos_token", "<s>"), special("eos_token", "</s>")
    if cfg.get("add_bos_token", True) and bos in vocab:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        unk_token=special("unk_token", unk),
        pad_token=special("pad_token", eos),
        model_max_length=int(cfg.get("model_max_length", 32768)),
        clean_up_tokenization_spaces=False,
    )
    _check_added_ids(tokenizer, declared, root)
    return tokenizer


def convert_tokenizer(root: Path, variant: str) -> PreTrainedTokenizerBase:
    """The source's tokenizer as a fast tokenizer, without running the source's tokenizer code."""
    if (root / "vocab.json").is_file() and (root / "merges.txt").is_file():
        return _qwen2_tokenizer(root)
    if (root / "tokenizer.model").is_file():
        return sentencepiece_tokenizer(root)
    if variant == "qwen2" and (root / "tokenizer.json").is_file():
        return _qwen2_tokenizer(root)
    raise ImportFailure(
        f"{root}: no tokenizer found (expected vocab.json + merges.txt for Qwen2, "
        "tokenizer.model for InternLM2)"
    )


# --- backbone name mapping -------------------------------------------------------------------------

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


@dataclass
class _Fused:
    """One original tensor and the native tensors it becomes."""

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


def _backbone_plan(
    config: InternVLConfig, variant: str
) -> tuple[dict[str, _Fused], dict[str, tuple[int, ...]]]:
    """Original name -> how it becomes native tensors, derived from the native model's own state dict."""
    from accelerate import init_empty_weights
    from transformers import InternVLForConditionalGeneration

    with init_empty_weights(include_buffers=False):
        skeleton = InternVLForConditionalGeneration(config)
    native = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    del skeleton
    rules = [(re.compile(n), s, k) for n, s, k in _COMMON_RULES]
    rules += [(re.compile(n), s, k) for n, s, k in (_QWEN2_RULES if variant == "qwen2" else _INTERNLM2_RULES)]
    plan: dict[str, _Fused] = {}
    unmapped = []
    for name, shape in native.items():
        if name == "lm_head.weight" and config.text_config.tie_word_embeddings:
            continue  # tied to the embedding: filled by tying, not from the source
        for pattern, template, split in rules:
            m = pattern.fullmatch(name)
            if m:
                source = m.expand(template)
                fused = plan.setdefault(source, _Fused(source, split))
                fused.targets[name] = m.group("piece") if split else None
                fused.shapes[name] = shape
                break
        else:
            unmapped.append(name)
    if unmapped:
        raise ImportFailure(f"this importer does not know how to fill native tensors: {', '.join(unmapped)}")
    return plan, native


def _split(t: torch.Tensor, fused: _Fused, config: InternVLConfig) -> dict[str, torch.Tensor]:
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


# --- heads -----------------------------------------------------------------------------------------

_EXPERT_NAME = re.compile(
    r"(?:language_model\.)?expert_head"
    r"(?:(?P<digit>[1-4])|\.(?:layers\.)?(?P<index>[0-3]))?"
    r"\.(?:(?:(?:net|layers|ffn|mlp)\.)?(?P<layer>0|2|fc1|fc2)\.)?(?P<param>weight|bias)"
)
_EXPERT_ANY = re.compile(r"(?:language_model\.)?expert_head")
_REGRESSION_NAME = re.compile(r"(?:language_model\.)?(?:lm_)?regression_head\.(?P<param>weight|bias)")
EXPERT_STRUCTURE = (
    "a Linear(hidden → 9) for the leaves A B C D E G H I K and three FFNs Linear(n → h) → act → "
    "Linear(h → 1) "
    "for facial aesthetic (5 inputs), general appearance (3) and overall (3), in that order; named "
    "expert_head.{0..3}, expert_head.layers.{0..3}, expert_head (leaves) + expert_head{1..3}, or "
    "expert_head{1..4}, optionally under language_model.; FFN layers named 0/2 or fc1/fc2, optionally "
    "under net./layers./ffn./mlp."
)
METAVOTER_STRUCTURE = (
    "Linear(3 → h) + BatchNorm1d(h) (weight, bias, running_mean, running_var[, num_batches_tracked]) + "
    "Linear(h → 1), as sibling modules under one prefix (e.g. metavoter.0/1/3), in any *.safetensors in SRC"
)


def _fmt(name: str, shape: tuple[int, ...]) -> str:
    return f"{name} {list(shape)}"


def _listing(items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    … and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return "\n    " + "\n    ".join(shown) + more


@dataclass
class _HeadsPlan:
    regression: dict[str, str]  # native heads key -> source name
    expert: dict[str, str]
    metavoter: dict[str, str]
    ffn_hidden: int
    metavoter_hidden: int
    expert_layout: str
    metavoter_prefix: str | None


def _plan_regression(names: dict[str, SourceTensor], hidden: int, problems: list[str]) -> dict[str, str]:
    found = {m.group("param"): n for n in names if (m := _REGRESSION_NAME.fullmatch(n))}
    expected = {"weight": (1, hidden), "bias": (1,)}
    if set(found) != set(expected) or len({n.rsplit(".", 1)[0] for n in found.values()}) != 1:
        listed = [_fmt(n, names[n].shape) for n in found.values()]
        problems.append(
            "regression head: expected language_model.lm_regression_head.weight "
            f"{list(expected['weight'])} and .bias [1]; found" + (_listing(listed) if listed else " nothing")
        )
        return {}
    bad = [
        _fmt(found[p], names[found[p]].shape)
        for p, shape in expected.items()
        if names[found[p]].shape != shape
    ]
    if bad:
        problems.append(
            f"regression head has the wrong shape (expected weight [1, {hidden}], bias [1]):" + _listing(bad)
        )
        return {}
    return {f"regression.linear.{p}": n for p, n in found.items()}


def _plan_expert(
    names: dict[str, SourceTensor], hidden: int, problems: list[str]
) -> tuple[dict[str, str], int, str]:
    """Recognise the expert head by names and shapes (see EXPERT_STRUCTURE); anything else fails.

    The released names are not public, so this accepts a small explicit set of layouts and assumes,
    as the paper describes the head: the first sub-module is the leaf Linear whose 9 outputs are in the
    official label order without the parents (A B C D E G H I K = LEAF_KEYS), and the three FFNs follow
    in the order facial aesthetic (F), general appearance (J), overall (L). The shapes confirm what they
    can (9 outputs; 5, 3 and 3 inputs); the order of J and L, both with 3 inputs, is the assumption.
    """
    candidates = sorted(n for n in names if _EXPERT_ANY.match(n))
    listing = _listing([_fmt(n, names[n].shape) for n in candidates]) if candidates else " nothing"
    units: dict[tuple[int, str], dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    unparsed = []
    for n in candidates:
        m = _EXPERT_NAME.fullmatch(n)
        if not m:
            unparsed.append(n)
            continue
        if m.group("digit"):
            unit = (int(m.group("digit")), "expert_head{N}")
        elif m.group("index"):
            unit = (int(m.group("index")), "expert_head.{N}")
        else:
            unit = (-1, "expert_head")
        units[unit][m.group("layer") or ""][m.group("param")] = n

    def fail(why: str) -> tuple[dict[str, str], int, str]:
        problems.append(f"expert head not recognised ({why}); expected {EXPERT_STRUCTURE}; found{listing}")
        return {}, 0, ""

    if not candidates:
        return fail("no expert_head tensors")
    if unparsed:
        return fail(f"names outside the accepted patterns: {', '.join(unparsed)}")
    order = sorted(units)
    layouts = {
        "expert_head.{N}": [(i, "expert_head.{N}") for i in range(4)],
        "expert_head{N}": [(i, "expert_head{N}") for i in range(1, 5)],
        "expert_head + expert_head{N}": [(-1, "expert_head")] + [(i, "expert_head{N}") for i in range(1, 4)],
    }
    layout = next((k for k, v in layouts.items() if v == order), None)
    if layout is None:
        got = ", ".join(style.replace("{N}", str(i)) for i, style in order)
        return fail(f"sub-modules {got} do not form one of the accepted layouts")

    def linear(parts: dict[str, str]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        if set(parts) != {"weight", "bias"}:
            return None
        return names[parts["weight"]].shape, names[parts["bias"]].shape

    leaves_unit, *ffn_units = order
    leaves = units[leaves_unit]
    shapes = linear(leaves.get("", {})) if set(leaves) == {""} else None
    if shapes != ((len(LEAF_KEYS), hidden), (len(LEAF_KEYS),)):
        return fail(f"the first sub-module must be a Linear({hidden} → {len(LEAF_KEYS)}) with bias")
    mapping = {"expert.leaves.weight": leaves[""]["weight"], "expert.leaves.bias": leaves[""]["bias"]}
    hiddens = set()
    for key, unit in zip(PARENT_KEYS, ffn_units, strict=True):
        layers = units[unit]
        pairs = [("0", "2"), ("fc1", "fc2")]
        pair = next((p for p in pairs if set(layers) == set(p)), None)
        if pair is None:
            return fail(f"sub-module {unit[0]} is not a two-layer FFN (layers {sorted(layers)})")
        first, second = linear(layers[pair[0]]), linear(layers[pair[1]])
        n_in = len(BY_KEY[key].children)
        if first is None or second is None:
            return fail(f"sub-module {unit[0]} needs weight and bias in both layers")
        h = first[0][0]
        if first != ((h, n_in), (h,)) or second != ((1, h), (1,)):
            return fail(
                f"sub-module {unit[0]} ({key}) must be Linear({n_in} → h) → Linear(h → 1); "
                f"got weights {list(first[0])} and {list(second[0])}"
            )
        hiddens.add(h)
        for src_layer, dst_layer in zip(pair, ("fc1", "fc2"), strict=True):
            for param in ("weight", "bias"):
                mapping[f"expert.parents.{key}.{dst_layer}.{param}"] = layers[src_layer][param]
    if len(hiddens) != 1:
        return fail(f"the three FFNs have different hidden sizes {sorted(hiddens)}")
    return mapping, hiddens.pop(), layout


_BN_PARAMS = {"weight", "bias", "running_mean", "running_var"}


def _plan_metavoter(
    names: dict[str, SourceTensor], problems: list[str]
) -> tuple[dict[str, str], int, str | None]:
    """Find Linear(3,h)+BatchNorm1d(h)+Linear(h,1) among sibling modules under any one prefix."""
    modules: dict[str, dict[str, str]] = defaultdict(dict)
    for n in names:
        mod, _, param = n.rpartition(".")
        modules[mod][param] = n
    children: dict[str, list[str]] = defaultdict(list)
    for mod in modules:
        children[mod.rpartition(".")[0]].append(mod)
    found = []
    for parent, mods in children.items():
        if len(mods) != 3:
            continue
        shapes = {m: {p: names[n].shape for p, n in modules[m].items()} for m in mods}
        bns = [
            m
            for m in mods
            if set(shapes[m]) in (_BN_PARAMS, _BN_PARAMS | {"num_batches_tracked"})
            and len(shapes[m]["weight"]) == 1
            and all(shapes[m][p] == shapes[m]["weight"] for p in _BN_PARAMS)
        ]
        if len(bns) != 1:
            continue
        bn = bns[0]
        h = shapes[bn]["weight"][0]
        linears = {m: shapes[m] for m in mods if m != bn and set(shapes[m]) == {"weight", "bias"}}
        lin_in = [m for m, s in linears.items() if s == {"weight": (h, 3), "bias": (h,)}]
        lin_out = [m for m, s in linears.items() if s == {"weight": (1, h), "bias": (1,)}]
        if len(lin_in) != 1 or len(lin_out) != 1:
            continue
        tails = [m.rpartition(".")[2] for m in (lin_in[0], bn, lin_out[0])]
        if all(t.isdigit() for t in tails) and not int(tails[0]) < int(tails[1]) < int(tails[2]):
            continue  # numbered, but not Linear → BatchNorm → Linear
        found.append((parent, lin_in[0], bn, lin_out[0], h))
    if not found:
        return {}, 0, None
    if len(found) > 1:
        problems.append(
            "more than one MetaVoter-shaped set of tensors: "
            + ", ".join(repr(f[0] or "(top level)") for f in found)
        )
        return {}, 0, None
    parent, lin_in, bn, lin_out, h = found[0]
    mapping = {f"metavoter.net.0.{p}": modules[lin_in][p] for p in ("weight", "bias")}
    mapping |= {f"metavoter.net.1.{p}": n for p, n in modules[bn].items()}
    mapping |= {f"metavoter.net.3.{p}": modules[lin_out][p] for p in ("weight", "bias")}
    return mapping, h, parent


def mean_metavoter_state(eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """MetaVoter weights (hidden 2) whose output is the mean of its three inputs, for any real inputs.

    Hidden unit 0 is the mean, unit 1 its negative; ReLU(u0) − ReLU(u1) = mean. The BatchNorm is an
    identity in eval: running_var = 1 − eps so that var + eps is exactly 1 in float32.
    """
    third = 1.0 / 3.0
    var = torch.tensor(1.0, dtype=torch.float32) - torch.tensor(eps, dtype=torch.float32)
    if float(var + torch.tensor(eps, dtype=torch.float32)) != 1.0:
        var = torch.tensor(1.0, dtype=torch.float32)
    return {
        "metavoter.net.0.weight": torch.tensor([[third] * 3, [-third] * 3]),
        "metavoter.net.0.bias": torch.zeros(2),
        "metavoter.net.1.weight": torch.ones(2),
        "metavoter.net.1.bias": torch.zeros(2),
        "metavoter.net.1.running_mean": torch.zeros(2),
        "metavoter.net.1.running_var": var.repeat(2),
        "metavoter.net.1.num_batches_tracked": torch.tensor(0, dtype=torch.long),
        "metavoter.net.3.weight": torch.tensor([[1.0, -1.0]]),
        "metavoter.net.3.bias": torch.zeros(1),
    }


# --- the plan --------------------------------------------------------------------------------------


@dataclass
class ImportPlan:
    """Everything decided before any tensor data is read: configs, tokenizer, placements, assumptions."""

    root: Path
    source_config: _SourceConfig
    config: InternVLConfig
    tokenizer: PreTrainedTokenizerBase
    prompt: PromptConfig
    backbone: dict[str, _Fused]
    heads: _HeadsPlan
    heads_config: HeadsConfig
    placements: list[Placement]
    assumptions: list[str]
    tied_duplicate: str | None
    metavoter_mode: str
    source: _Source


def _tie(source: _Source, variant: str, llm: dict) -> tuple[bool, str | None]:
    """Whether lm_head is tied to the embedding, and a stored lm_head that merely repeats it."""
    if variant == "qwen2":
        head, embed = "language_model.lm_head.weight", "language_model.model.embed_tokens.weight"
    else:
        head, embed = "language_model.output.weight", "language_model.model.tok_embeddings.weight"
    tie = bool(llm.get("tie_word_embeddings", variant == "qwen2" and head not in source.tensors))
    if not tie or head not in source.tensors:
        return tie, None
    if embed in source.tensors and torch.equal(source.load(head), source.load(embed)):
        return True, head
    raise ImportFailure(
        f"llm_config ties the output layer to the embeddings, but the source stores a different {head}; "
        "it is unclear which one the released model used"
    )


def plan_import(
    src: str | Path, *, expert_activation: str | None = None, metavoter: str = "auto"
) -> ImportPlan:
    """Read config, tokenizer and tensor headers of `src` and decide every placement, or fail listing why."""
    root = Path(src).expanduser()
    if not root.is_dir():
        raise ImportFailure(f"{root} is not a directory")
    if metavoter not in METAVOTER_MODES:
        raise ImportFailure(f"--metavoter must be one of {', '.join(METAVOTER_MODES)}, not {metavoter!r}")
    if expert_activation is not None and expert_activation not in EXPERT_ACTIVATIONS:
        raise ImportFailure(
            f"--expert-activation must be one of {', '.join(EXPERT_ACTIVATIONS)}, not {expert_activation!r}"
        )
    sc = _read_config(root)
    source = _Source(root)
    tokenizer = convert_tokenizer(root, sc.variant)
    fmt = _TEMPLATE_FORMAT[sc.template]
    prompt = PromptConfig(
        system_message=sc.system_message,
        turn_sep="\n" if fmt["newline_after_im_end"] else "",
        bos=(tokenizer.bos_token or "") if fmt["bos"] else "",
    )
    ids = tokenizer.encode(prompt.img_context, add_special_tokens=False)
    if len(ids) != 1:
        raise ImportFailure(f"the tokenizer has no single {prompt.img_context} token (got ids {ids})")
    vocab_size = int(sc.llm.get("vocab_size", 0))
    if len(tokenizer) > vocab_size:
        raise ImportFailure(
            f"the tokenizer has {len(tokenizer)} tokens but the language model only {vocab_size}"
        )
    tie, tied_duplicate = _tie(source, sc.variant, sc.llm)
    config = _native_config(sc, ids[0], tie)
    hidden = config.text_config.hidden_size
    backbone, _ = _backbone_plan(config, sc.variant)

    problems: list[str] = []
    placements: list[Placement] = []
    claimed: set[str] = set()
    missing, wrong_shape = [], []
    for name, fused in backbone.items():
        expected = fused.expected_shape()
        if name not in source.tensors:
            missing.append(f"{_fmt(name, expected)} → {', '.join(fused.targets)}")
            continue
        st = source.tensors[name]
        if st.shape != expected:
            wrong_shape.append(f"{_fmt(name, st.shape)} (expected {list(expected)})")
            continue
        claimed.add(name)
        placements.append(Placement(name, st.shape, st.file, tuple(fused.targets), _HOW[fused.split]))
    if tied_duplicate:
        st = source.tensors[tied_duplicate]
        claimed.add(tied_duplicate)
        placements.append(
            Placement(
                tied_duplicate,
                st.shape,
                st.file,
                ("lm_head.weight",),
                "tied to embed_tokens (verified equal)",
            )
        )
    if missing:
        problems.append(f"{len(missing)} backbone tensors missing from the source:" + _listing(missing))
    if wrong_shape:
        problems.append(
            f"{len(wrong_shape)} backbone tensors have shapes that do not match config.json:"
            + _listing(wrong_shape)
        )

    rest = {n: t for n, t in source.tensors.items() if n not in claimed}
    regression = _plan_regression(rest, hidden, problems)
    rest = {n: t for n, t in rest.items() if n not in regression.values()}
    expert, ffn_hidden, layout = _plan_expert(rest, hidden, problems)
    rest = {n: t for n, t in rest.items() if not _EXPERT_ANY.match(n)}
    voter, voter_hidden, voter_prefix = _plan_metavoter(rest, problems)
    if metavoter == "mean" and voter:
        problems.append(
            f"a MetaVoter is stored in the source (under {voter_prefix or '(top level)'!r}); "
            "drop --metavoter mean so that it is imported instead of replaced"
        )
    if metavoter == "auto" and not voter:
        pickles = source.pickles()
        hint = (
            f" SRC also holds {', '.join(pickles)}, which is never opened (pickle); if the MetaVoter is in "
            "there, save it as safetensors in SRC."
            if pickles
            else ""
        )
        problems.append(
            f"no MetaVoter found: expected {METAVOTER_STRUCTURE}.{hint} To import without it, pass "
            "--metavoter mean: the final score is then the mean of the LM, regression and expert scores "
            "(recorded in the checkpoint's provenance)."
        )
    rest = {n: t for n, t in rest.items() if n not in voter.values()}
    if rest:
        problems.append(
            f"{len(rest)} source tensors could not be placed:"
            + _listing([f"{_fmt(n, t.shape)} in {t.file}" for n, t in sorted(rest.items())])
            + "\n  the importer places: vision_model.* (InternViT-300M), mlp1.{0,1,3}, language_model.* "
            f"({'Qwen2' if sc.variant == 'qwen2' else 'InternLM2'}), language_model.lm_regression_head, "
            f"language_model.expert_head* ({EXPERT_STRUCTURE}) and a MetaVoter ({METAVOTER_STRUCTURE})"
        )
    if problems:
        raise ImportFailure(f"cannot import {root}:\n- " + "\n- ".join(problems))

    activation = expert_activation or "gelu"
    heads_config = HeadsConfig(
        hidden_size=hidden,
        expert_ffn_hidden=ffn_hidden,
        expert_activation=activation,
        metavoter_hidden=voter_hidden if voter else 2,
    )
    for target, name in {**regression, **expert, **voter}.items():
        st = source.tensors[name]
        placements.append(Placement(name, st.shape, st.file, (f"heads.{target}",), "head, copied"))
    assumptions = [
        f"expert head layout {layout}: the leaf Linear's 9 outputs are in the official label order without "
        "the parents (A B C D E G H I K); the FFNs are facial aesthetic, general appearance, overall, "
        "in that order",
        f"expert FFN activation {activation!r} "
        + ("(from --expert-activation)" if expert_activation else "(default: not stored in the weights)"),
    ]
    if voter:
        assumptions.append(
            f"MetaVoter found under {voter_prefix or '(top level)'!r}: Linear → BatchNorm1d(eps 1e-5) → "
            "ReLU → Linear, inputs in the order (normalised LM score, regression, expert overall)"
        )
    else:
        assumptions.append(
            "MetaVoter replaced by the mean of its three inputs (--metavoter mean), not trained"
        )
    heads_plan = _HeadsPlan(
        regression, expert, voter, ffn_hidden, heads_config.metavoter_hidden, layout, voter_prefix
    )
    return ImportPlan(
        root=root,
        source_config=sc,
        config=config,
        tokenizer=tokenizer,
        prompt=prompt,
        backbone=backbone,
        heads=heads_plan,
        heads_config=heads_config,
        placements=placements,
        assumptions=assumptions,
        tied_duplicate=tied_duplicate,
        metavoter_mode=metavoter,
        source=source,
    )


# --- building and writing --------------------------------------------------------------------------


def _backbone_dtype(plan: ImportPlan, dtype: str) -> torch.dtype:
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ImportFailure(f"--dtype must be auto or one of {', '.join(DTYPES)}, not {dtype!r}")
        return DTYPES[dtype]
    counts = Counter(plan.source.tensors[n].dtype for n in plan.backbone)
    names = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    common = counts.most_common(1)[0][0]
    if common not in names:
        raise ImportFailure(f"backbone tensors are {common}; pass --dtype bf16, fp16 or fp32")
    return names[common]


def build_backbone(plan: ImportPlan, dtype: torch.dtype, progress: Callable[[int, int], None] | None = None):
    """The native InternVL model with every tensor streamed from the source (no random init kept)."""
    from accelerate import init_empty_weights
    from transformers import InternVLForConditionalGeneration

    with init_empty_weights(include_buffers=False):
        backbone = InternVLForConditionalGeneration(plan.config)
    state: dict[str, torch.Tensor] = {}
    order = sorted(plan.backbone.values(), key=lambda f: (plan.source.tensors[f.source].file, f.source))
    for i, fused in enumerate(order):
        tensor = plan.source.load(fused.source)
        for name, piece in _split(tensor, fused, plan.config).items():
            state[name] = piece.to(dtype).contiguous()
        del tensor
        if progress is not None:
            progress(i + 1, len(order))
    result = backbone.load_state_dict(state, strict=False, assign=True)
    tied = plan.config.text_config.tie_word_embeddings
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


def build_heads(plan: ImportPlan) -> Heads:
    heads = Heads(plan.heads_config)
    state = {
        target: plan.source.load(name).float()
        for target, name in {**plan.heads.regression, **plan.heads.expert, **plan.heads.metavoter}.items()
    }
    if "metavoter.net.1.num_batches_tracked" in state:
        state["metavoter.net.1.num_batches_tracked"] = state["metavoter.net.1.num_batches_tracked"].long()
    if not plan.heads.metavoter:
        state |= mean_metavoter_state()
    state.setdefault("metavoter.net.1.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    heads.load_state_dict(state, strict=True)
    return heads.eval()


def _meta(plan: ImportPlan, name: str | None, provenance: dict | None) -> CheckpointMeta:
    from humanaes_core.model import CheckpointMeta, ImageConfig

    sc = plan.source_config
    files = {p.name: p.stat().st_size for p in sorted(plan.root.glob("*.safetensors"))}
    record = {
        "source": "humanaes_core.importer.convert",
        "importer_version": IMPORTER_VERSION,
        "source_name": plan.root.name,
        "source_files": files,
        "variant": sc.variant,
        "llm_architectures": sc.llm.get("architectures"),
        "template": sc.template,
        "template_format": _TEMPLATE_FORMAT[sc.template],
        "tensors_placed": len(plan.placements),
        "expert_head": {
            "layout": plan.heads.expert_layout,
            "activation": plan.heads_config.expert_activation,
        },
        "metavoter": (
            {"source": "imported", "prefix": plan.heads.metavoter_prefix}
            if plan.heads.metavoter
            else {"source": "mean of the three heads (--metavoter mean)"}
        ),
        "assumptions": plan.assumptions,
    } | (provenance or {})
    return CheckpointMeta(
        heads=plan.heads_config,
        prompt=plan.prompt,
        image=ImageConfig(image_size=sc.image_size, max_tiles=sc.max_tiles, use_thumbnail=sc.use_thumbnail),
        name=name or (provenance or {}).get("hub_id", "").rpartition("/")[2] or plan.root.name,
        provenance=record,
    )


def import_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    expert_activation: str | None = None,
    metavoter: str = "auto",
    dtype: str = "auto",
    overwrite: bool = False,
    name: str | None = None,
    provenance: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Convert the original-layout checkpoint in `src` into a native checkpoint at `out`.

    Fails (ImportFailure) before writing anything when a tensor cannot be placed, a head is not
    recognised or a MetaVoter is missing (unless `metavoter="mean"`).
    """
    from humanaes_core.model import HumanAesModel, is_checkpoint, save_checkpoint

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ImportFailure(f"{out} is a file; OUT must be a new folder")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        what = "a HumanAes checkpoint" if is_checkpoint(out) else "not empty"
        raise ImportFailure(f"{out} already exists and is {what}; choose another OUT or pass --overwrite")
    plan = plan_import(src, expert_activation=expert_activation, metavoter=metavoter)
    if plan.root.resolve() == out.resolve():
        raise ImportFailure("OUT must differ from SRC")
    target_dtype = _backbone_dtype(plan, dtype)
    log.info("importing %s (%s) into %s", plan.root, plan.source_config.variant, out)
    backbone = build_backbone(plan, target_dtype, progress)
    heads = build_heads(plan)
    num_image_token = int(plan.config.image_seq_length)
    model = HumanAesModel(backbone, heads, plan.tokenizer, plan.prompt, num_image_token)
    meta = _meta(plan, name, provenance)
    save_checkpoint(model, out, meta)
    return ImportReport(out, plan.source_config.variant, plan.placements, plan.assumptions, meta.provenance)
