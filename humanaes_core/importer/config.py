"""InternVL's original config.json → transformers' native `InternVLConfig` and our `PromptConfig`.

Only what the released HumanAesExpert models use is accepted (InternViT-300M, pixel shuffle v2, the last
vision layer, a ChatML template); anything else fails with the reason instead of converting into a
model that computes something different.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from humanaes_core.errors import shown
from humanaes_core.importer.source import ImportFailure, read_json
from humanaes_core.model import (
    INTERNVL_SYSTEM_MESSAGE,
    MAX_TILES,
    PromptConfig,
    language_size_problems,
    vision_size_problems,
)

if TYPE_CHECKING:
    from transformers import InternVLConfig

MAX_PROBLEMS = 8

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
TEMPLATE_FORMAT = {
    "Hermes-2": {"newline_after_im_end": False, "bos": False},
    "internlm2-chat": {"newline_after_im_end": False, "bos": True},
    "internvl2_5": {"newline_after_im_end": True, "bos": False},
}


@dataclass
class SourceConfig:
    """The parts of InternVL's config.json the conversion needs, validated."""

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


def read_config(root: Path) -> SourceConfig:
    """`root/config.json`, validated: every unsupported setting is named in one ImportFailure.

    Sizes are held to the native checkpoint's limits (`humanaes_core.model`) here, before anything
    is allocated: the importer builds the model a config describes.
    """
    raw = read_json(root / "config.json")
    llm, vision = raw.get("llm_config"), raw.get("vision_config")
    if not isinstance(llm, dict) or not isinstance(vision, dict):
        raise ImportFailure(
            f"{root}/config.json is not InternVL's original layout (it needs llm_config and vision_config)"
        )
    try:
        variant = _llm_variant(llm)
        problems = _unsupported(raw, vision) + _size_problems(raw, llm, vision)
        if problems:
            raise ImportFailure(f"{root}/config.json: " + "; ".join(problems[:MAX_PROBLEMS]))
        template = str(raw["template"])
        patch = vision.get("patch_size", 14)
        dynamic = bool(raw.get("dynamic_image_size", True))
        return SourceConfig(
            variant=variant,
            llm=dict(llm),
            vision=dict(vision),
            image_size=int(raw.get("force_image_size") or vision.get("image_size", 448)),
            patch_size=int(patch[0] if isinstance(patch, (list, tuple)) else patch),
            downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
            template=template,
            system_message=str(raw.get("system_message") or TEMPLATES[template]),
            max_tiles=int(raw.get("max_dynamic_patch", 12)) if dynamic else 1,
            use_thumbnail=bool(raw.get("use_thumbnail", True)),
        )
    except (TypeError, ValueError, OverflowError) as e:
        raise ImportFailure(f"{root}/config.json: a setting has the wrong type ({str(e)[:200]})") from None


def _size_problems(raw: dict, llm: dict, vision: dict) -> list[str]:
    """Sizes beyond the native checkpoint's limits (layers, widths, heads, vocabulary, tiles)."""
    tile = {
        **vision,
        "image_size": raw.get("force_image_size") or vision.get("image_size", 448),
        "patch_size": vision.get("patch_size", 14),
    }
    problems = language_size_problems(llm, "llm_config") + vision_size_problems(tile, "vision_config")
    tiles = raw.get("max_dynamic_patch", 12)
    if isinstance(tiles, bool) or not isinstance(tiles, int) or not 1 <= tiles <= MAX_TILES:
        problems.append(
            f"max_dynamic_patch is {shown(tiles)}; it must be a whole number from 1 to {MAX_TILES}"
        )
    return problems


def _unsupported(raw: dict, vision: dict) -> list[str]:
    """What in config.json the native model would compute differently (empty: all supported)."""
    problems: list[str] = []
    if vision.get("qk_normalization", False):
        problems.append(
            "vision_config.qk_normalization is true (InternViT-6B style); only InternViT-300M is supported"
        )
    if vision.get("norm_type", "layer_norm") != "layer_norm":
        problems.append(
            f"vision_config.norm_type is {shown(vision.get('norm_type'))} (InternViT-6B style); "
            "only layer_norm (InternViT-300M) is supported"
        )
    if str(raw.get("ps_version", "v2")) != "v2":
        problems.append(f"ps_version {shown(raw.get('ps_version'))}: only the v2 pixel shuffle is supported")
    if int(raw.get("select_layer", -1)) != -1:
        problems.append(
            f"select_layer {shown(raw.get('select_layer'))}: only the last vision layer (-1) is supported"
        )
    ratio = float(raw.get("downsample_ratio", 0.5))
    if ratio <= 0 or abs(1 / ratio - round(1 / ratio)) > 1e-6:
        problems.append(f"downsample_ratio {ratio}: 1/ratio must be a whole number")
    template = str(raw.get("template", ""))
    if template not in TEMPLATES:
        problems.append(
            f"conversation template {shown(template)} is not supported "
            f"(known: {', '.join(sorted(TEMPLATES))})"
        )
    return problems


def _llm_variant(llm: dict) -> str:
    archs = llm.get("architectures") or []
    model_type = str(llm.get("model_type", ""))
    if "Qwen2ForCausalLM" in archs or (not archs and model_type == "qwen2"):
        return "qwen2"
    if "InternLM2ForCausalLM" in archs or (not archs and model_type == "internlm2"):
        return "internlm2"
    raise ImportFailure(
        f"unsupported language model {shown(archs or model_type)} in llm_config; this importer converts "
        "Qwen2ForCausalLM (HumanAesExpert-1B) and InternLM2ForCausalLM (HumanAesExpert-8B)"
    )


def source_prompt(sc: SourceConfig, bos_token: str | None) -> PromptConfig:
    """The source's chat template as a PromptConfig (system message, turn separator, BOS)."""
    fmt = TEMPLATE_FORMAT[sc.template]
    return PromptConfig(
        system_message=sc.system_message,
        turn_sep="\n" if fmt["newline_after_im_end"] else "",
        bos=(bos_token or "") if fmt["bos"] else "",
    )


def _rope_parameters(llm: dict) -> dict:
    theta = float(llm.get("rope_theta", 10000.0))
    scaling = llm.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    if not isinstance(scaling, dict):
        raise ImportFailure(f"llm_config.rope_scaling is {shown(scaling)}, not a JSON object")
    kind = scaling.get("type") or scaling.get("rope_type")
    if kind not in ("linear", "dynamic"):
        raise ImportFailure(
            f"llm_config.rope_scaling {scaling!r}: only linear and dynamic scaling are supported"
        )
    return {"rope_type": kind, "factor": float(scaling["factor"]), "rope_theta": theta}


def _text_config(sc: SourceConfig, tie: bool) -> Any:
    """Qwen2 stays Qwen2; InternLM2 is a Llama once its fused wqkv is split (see weights.py)."""
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
    except (TypeError, ValueError, OverflowError) as e:
        raise ImportFailure(f"llm_config: a setting has the wrong type ({str(e)[:200]})") from None
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


def native_config(sc: SourceConfig, image_token_id: int, tie: bool) -> InternVLConfig:
    """The native InternVL configuration that computes what the source's modelling code computed."""
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
