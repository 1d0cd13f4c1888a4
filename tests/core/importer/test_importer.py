"""The importer: released HumanAesExpert checkpoints (InternVL 2 original layout) → native checkpoints.

The released weights cannot be downloaded here, so miniature checkpoints are written in the original
layout (the real key names and config fields, both the Qwen2 and the InternLM2 language model, with
heads and a MetaVoter). The reference forward below is computed directly from those original-layout
tensors in plain torch, the way InternVL's own code computes it, and the imported native model must
reproduce it.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from humanaes_core.errors import ModelNotAvailableError
from humanaes_core.importer.convert import (
    ImportFailure,
    import_checkpoint,
    looks_like_original,
    mean_metavoter_state,
    plan_import,
    sentencepiece_tokenizer,
)
from humanaes_core.model.prompts import (
    DIMS_QUESTIONS,
    INTERNVL_SYSTEM_MESSAGE,
    OVERALL_QUESTIONS,
    PromptConfig,
    dims_answer,
    overall_answer,
)
from humanaes_core.schema import BY_KEY, KEYS, LEAF_KEYS, PARENT_KEYS
from tests.conftest import synthetic_photo

SENTINEL = "executed-source-code"
EXTRA_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
VISION = {"hidden": 32, "layers": 2, "heads": 2, "mlp": 64}
FFN_HIDDEN, VOTER_HIDDEN = 6, 4


def _corpus() -> list[str]:
    text = [INTERNVL_SYSTEM_MESSAGE, *OVERALL_QUESTIONS, *DIMS_QUESTIONS]
    for s in (0.1, 0.3, 0.5, 0.7, 0.9):
        text += [overall_answer(s), dims_answer(dict.fromkeys(KEYS, s))]
    return [*text, "system user assistant image picture photo  double  spaces 0123456789"]


# --- miniature checkpoints in the original layout -----------------------------------------------------


def _qwen2_tokenizer_files(root: Path) -> int:
    """Qwen2 layout: vocab.json + merges.txt (no specials), specials and InternVL tokens added after."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_corpus() * 5, trainer)
    model = json.loads(tok.to_str())["model"]
    (root / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (root / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    n = len(model["vocab"])
    added = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *EXTRA_TOKENS]
    decoder = {
        str(n + i): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False}
        for i, t in enumerate(added)
    }
    (root / "added_tokens.json").write_text(json.dumps({t: n + i for i, t in enumerate(added)}))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
        "added_tokens_decoder": decoder,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 8192,
    }
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return n + len(added)


def _sentencepiece_files(root: Path, **options) -> int:
    """InternLM2 layout: a BPE sentencepiece model whose reserved pieces are renamed by the config."""
    import sentencepiece as spm

    buf = io.BytesIO()
    settings = {
        "model_type": "bpe",
        "vocab_size": 700,
        "byte_fallback": True,
        "normalization_rule_name": "identity",
        "add_dummy_prefix": True,
        "remove_extra_whitespaces": False,
        "split_digits": True,
        "user_defined_symbols": ["[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_146]"],
        "hard_vocab_limit": False,
        "character_coverage": 1.0,
        "minloglevel": 2,
    } | options
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_corpus() * 5), model_writer=buf, **settings)
    (root / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    n = sp.get_piece_size()
    decoder = {"0": "<unk>", "1": "<s>", "2": "</s>"}
    decoder[str(sp.piece_to_id("[UNUSED_TOKEN_146]"))] = "<|im_start|>"
    decoder[str(sp.piece_to_id("[UNUSED_TOKEN_145]"))] = "<|im_end|>"
    decoder |= {str(n + i): t for i, t in enumerate(EXTRA_TOKENS)}
    config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
        "added_tokens_decoder": {
            k: {"content": v, "special": True, "lstrip": False, "rstrip": False, "normalized": False}
            for k, v in decoder.items()
        },
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
    }
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return n + len(EXTRA_TOKENS)


def _llm_config(variant: str, vocab: int) -> dict:
    if variant == "qwen2":
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "num_hidden_layers": 2,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "max_position_embeddings": 32768,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": 21,
            "tie_word_embeddings": False,
            "vocab_size": vocab + 3,
            "torch_dtype": "bfloat16",
        }
    return {
        "architectures": ["InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "auto_map": {"AutoModel": "modeling_internlm2.InternLM2ForCausalLM"},
        "attn_implementation": "eager",
        "bias": False,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "vocab_size": vocab,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    }


def _config(variant: str, vocab: int) -> dict:
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": 448,
        "max_dynamic_patch": 12,
        "min_dynamic_patch": 1,
        "ps_version": "v2",
        "select_layer": -1,
        "template": "Hermes-2" if variant == "qwen2" else "internlm2-chat",
        "use_thumbnail": True,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "torch_dtype": "bfloat16",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": VISION["hidden"],
            "num_hidden_layers": VISION["layers"],
            "num_attention_heads": VISION["heads"],
            "intermediate_size": VISION["mlp"],
            "image_size": 448,
            "patch_size": 14,
            "num_channels": 3,
            "qkv_bias": True,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "drop_path_rate": 0.0,
            "initializer_factor": 1.0,
            "use_flash_attn": False,
        },
        "llm_config": _llm_config(variant, vocab),
    }


def _linear(g: torch.Generator, out: int, inp: int, scale: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(out, inp, generator=g) * scale, torch.randn(out, generator=g) * scale


def _backbone_tensors(config: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    vc, llm = config["vision_config"], config["llm_config"]
    c, n_patch = vc["hidden_size"], (448 // 14) ** 2
    t: dict[str, torch.Tensor] = {
        "vision_model.embeddings.class_embedding": torch.randn(1, 1, c, generator=g) * 0.1,
        "vision_model.embeddings.patch_embedding.weight": torch.randn(c, 3, 14, 14, generator=g) * 0.05,
        "vision_model.embeddings.patch_embedding.bias": torch.randn(c, generator=g) * 0.1,
        "vision_model.embeddings.position_embedding": torch.randn(1, n_patch + 1, c, generator=g) * 0.1,
    }
    for i in range(vc["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        t[p + "attn.qkv.weight"], t[p + "attn.qkv.bias"] = _linear(g, 3 * c, c, 0.2)
        t[p + "attn.proj.weight"], t[p + "attn.proj.bias"] = _linear(g, c, c, 0.2)
        t[p + "ls1"], t[p + "ls2"] = torch.rand(c, generator=g), torch.rand(c, generator=g)
        for norm in ("norm1", "norm2"):
            t[f"{p}{norm}.weight"] = 1 + torch.randn(c, generator=g) * 0.1
            t[f"{p}{norm}.bias"] = torch.randn(c, generator=g) * 0.1
        t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = _linear(g, vc["intermediate_size"], c, 0.2)
        t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = _linear(g, c, vc["intermediate_size"], 0.2)
    h, proj_in = llm["hidden_size"], c * 4
    t["mlp1.0.weight"], t["mlp1.0.bias"] = (
        1 + torch.randn(proj_in, generator=g) * 0.1,
        torch.randn(proj_in, generator=g) * 0.1,
    )
    t["mlp1.1.weight"], t["mlp1.1.bias"] = _linear(g, h, proj_in, 0.2)
    t["mlp1.3.weight"], t["mlp1.3.bias"] = _linear(g, h, h, 0.2)
    nh, nkv, inter, vocab = (
        llm["num_attention_heads"],
        llm["num_key_value_heads"],
        llm["intermediate_size"],
        llm["vocab_size"],
    )
    hd = h // nh
    qwen = llm["model_type"] == "qwen2"
    m = "language_model.model."
    t[m + ("embed_tokens.weight" if qwen else "tok_embeddings.weight")] = torch.randn(vocab, h, generator=g)
    for i in range(llm["num_hidden_layers"]):
        p = f"{m}layers.{i}."
        if qwen:
            t[p + "self_attn.q_proj.weight"], t[p + "self_attn.q_proj.bias"] = _linear(g, nh * hd, h, 0.2)
            t[p + "self_attn.k_proj.weight"], t[p + "self_attn.k_proj.bias"] = _linear(g, nkv * hd, h, 0.2)
            t[p + "self_attn.v_proj.weight"], t[p + "self_attn.v_proj.bias"] = _linear(g, nkv * hd, h, 0.2)
            t[p + "self_attn.o_proj.weight"] = _linear(g, h, nh * hd, 0.2)[0]
            t[p + "mlp.gate_proj.weight"] = _linear(g, inter, h, 0.2)[0]
            t[p + "mlp.up_proj.weight"] = _linear(g, inter, h, 0.2)[0]
            t[p + "mlp.down_proj.weight"] = _linear(g, h, inter, 0.2)[0]
            t[p + "input_layernorm.weight"] = 1 + torch.randn(h, generator=g) * 0.1
            t[p + "post_attention_layernorm.weight"] = 1 + torch.randn(h, generator=g) * 0.1
        else:
            t[p + "attention.wqkv.weight"] = _linear(g, (nh + 2 * nkv) * hd, h, 0.2)[0]
            t[p + "attention.wo.weight"] = _linear(g, h, nh * hd, 0.2)[0]
            t[p + "feed_forward.w1.weight"] = _linear(g, inter, h, 0.2)[0]
            t[p + "feed_forward.w3.weight"] = _linear(g, inter, h, 0.2)[0]
            t[p + "feed_forward.w2.weight"] = _linear(g, h, inter, 0.2)[0]
            t[p + "attention_norm.weight"] = 1 + torch.randn(h, generator=g) * 0.1
            t[p + "ffn_norm.weight"] = 1 + torch.randn(h, generator=g) * 0.1
    t[m + "norm.weight"] = 1 + torch.randn(h, generator=g) * 0.1
    t["language_model.lm_head.weight" if qwen else "language_model.output.weight"] = (
        torch.randn(vocab, h, generator=g) * 0.2
    )
    return t


def _expert_tensors(layout: str, hidden: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The expert head in one of the accepted layouts (leaves Linear, then FFNs face, general, overall)."""
    leaves_w, leaves_b = _linear(g, len(LEAF_KEYS), hidden, 0.3)
    ffns = []
    for key in PARENT_KEYS:
        n = len(BY_KEY[key].children)
        ffns.append((*_linear(g, FFN_HIDDEN, n, 0.5), *_linear(g, 1, FFN_HIDDEN, 0.5)))
    if layout == "indexed":  # language_model.expert_head.{0..3}, FFN layers .0/.2
        names = ["language_model.expert_head.0"] + [f"language_model.expert_head.{i}" for i in (1, 2, 3)]
        inner = ("0", "2")
    else:  # language_model.expert_head (leaves) + expert_head{1..3}, FFN layers fc1/fc2
        names = ["language_model.expert_head"] + [f"language_model.expert_head{i}" for i in (1, 2, 3)]
        inner = ("fc1", "fc2")
    t = {f"{names[0]}.weight": leaves_w, f"{names[0]}.bias": leaves_b}
    for name, (w1, b1, w2, b2) in zip(names[1:], ffns, strict=True):
        t |= {
            f"{name}.{inner[0]}.weight": w1,
            f"{name}.{inner[0]}.bias": b1,
            f"{name}.{inner[1]}.weight": w2,
            f"{name}.{inner[1]}.bias": b2,
        }
    return t


def _metavoter_tensors(prefix: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    w0, b0 = _linear(g, VOTER_HIDDEN, 3, 0.8)
    w3, b3 = _linear(g, 1, VOTER_HIDDEN, 0.8)
    return {
        f"{prefix}.0.weight": w0,
        f"{prefix}.0.bias": b0,
        f"{prefix}.1.weight": 1 + torch.randn(VOTER_HIDDEN, generator=g) * 0.1,
        f"{prefix}.1.bias": torch.randn(VOTER_HIDDEN, generator=g) * 0.1,
        f"{prefix}.1.running_mean": torch.randn(VOTER_HIDDEN, generator=g) * 0.1,
        f"{prefix}.1.running_var": 1 + torch.rand(VOTER_HIDDEN, generator=g),
        f"{prefix}.1.num_batches_tracked": torch.tensor(1234, dtype=torch.long),
        f"{prefix}.3.weight": w3,
        f"{prefix}.3.bias": b3,
    }


def write_original(
    root: Path,
    variant: str,
    *,
    sharded: bool,
    expert_layout: str,
    metavoter: str | None,
    separate_metavoter: bool,
    seed: int = 0,
) -> Path:
    """A miniature released checkpoint in InternVL's original layout (config, tokenizer, safetensors)."""
    root.mkdir(parents=True)
    vocab = _qwen2_tokenizer_files(root) if variant == "qwen2" else _sentencepiece_files(root)
    config = _config(variant, vocab)
    (root / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("modeling_internvl_chat.py", "tokenization_evil.py", "configuration_internvl_chat.py"):
        (root / name).write_text(f"open({str(root / SENTINEL)!r}, 'w').write('ran')\n")
    g = torch.Generator().manual_seed(seed)
    tensors = _backbone_tensors(config, g)
    hidden = config["llm_config"]["hidden_size"]
    w, b = _linear(g, 1, hidden, 0.3)
    tensors |= {"language_model.lm_regression_head.weight": w, "language_model.lm_regression_head.bias": b}
    tensors |= _expert_tensors(expert_layout, hidden, g)
    voter = _metavoter_tensors(metavoter, g) if metavoter else {}
    if separate_metavoter:
        save_file(voter, str(root / "metavoter.safetensors"))
    else:
        tensors |= voter
    if sharded:
        names = sorted(tensors)
        shards = [names[: len(names) // 2], names[len(names) // 2 :]]
        weight_map = {}
        for i, part in enumerate(shards, start=1):
            file = f"model-{i:05d}-of-00002.safetensors"
            save_file({n: tensors[n] for n in part}, str(root / file), metadata={"format": "pt"})
            weight_map |= dict.fromkeys(part, file)
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (root / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    return root


def original_tensors(root: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(root.glob("*.safetensors")):
        out |= load_file(str(f))
    return out


# --- the reference forward, from original-layout tensors ---------------------------------------------


def ref_vision(w: dict, cfg: dict, pixels: torch.Tensor) -> torch.Tensor:
    """InternViT-300M: patch conv + CLS + positions, pre-norm blocks with layer scale (ls1, ls2)."""
    vc = cfg["vision_config"]
    c, heads, eps = vc["hidden_size"], vc["num_attention_heads"], vc["layer_norm_eps"]
    hd = c // heads
    x = F.conv2d(
        pixels,
        w["vision_model.embeddings.patch_embedding.weight"],
        w["vision_model.embeddings.patch_embedding.bias"],
        stride=14,
    )
    x = x.flatten(2).transpose(1, 2)
    cls = w["vision_model.embeddings.class_embedding"].expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], 1) + w["vision_model.embeddings.position_embedding"]
    b, n, _ = x.shape
    for i in range(vc["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        h = F.layer_norm(x, (c,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-2, -1) * hd**-0.5, dim=-1) @ v
        att = F.linear(
            att.transpose(1, 2).reshape(b, n, c), w[p + "attn.proj.weight"], w[p + "attn.proj.bias"]
        )
        x = x + att * w[p + "ls1"]
        h = F.layer_norm(x, (c,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
        h = F.linear(
            F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
            w[p + "mlp.fc2.weight"],
            w[p + "mlp.fc2.bias"],
        )
        x = x + h * w[p + "ls2"]
    return x


def ref_pixel_shuffle(x: torch.Tensor, scale: float) -> torch.Tensor:
    """InternVL's pixel_shuffle, ps_version v2."""
    n, wd, ht, c = x.size()
    x = x.view(n, wd, int(ht * scale), int(c / scale)).permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(ht * scale), int(wd * scale), int(c / (scale * scale)))
    return x.permute(0, 2, 1, 3).contiguous()


def ref_image_features(w: dict, cfg: dict, pixels: torch.Tensor) -> torch.Tensor:
    """InternVLChatModel.extract_feature: drop CLS, pixel shuffle, mlp1 (LayerNorm, Linear, GELU, Linear)."""
    x = ref_vision(w, cfg, pixels)[:, 1:]
    side = int(x.shape[1] ** 0.5)
    x = ref_pixel_shuffle(x.reshape(x.shape[0], side, side, -1), cfg["downsample_ratio"])
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    x = F.layer_norm(x, (x.shape[-1],), w["mlp1.0.weight"], w["mlp1.0.bias"], 1e-5)
    x = F.gelu(F.linear(x, w["mlp1.1.weight"], w["mlp1.1.bias"]))
    return F.linear(x, w["mlp1.3.weight"], w["mlp1.3.bias"])


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding with rotate_half (Qwen2 and InternLM2), positions 0..L-1; x: [B, heads, L, hd]."""
    hd, length = x.shape[-1], x.shape[-2]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    half = hd // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * emb.cos() + rotated * emb.sin()


def ref_language_model(w: dict, llm: dict, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2 or InternLM2 decoder (causal, GQA, RoPE) from original names; returns (hidden, logits)."""
    qwen = llm["model_type"] == "qwen2"
    h, nh, nkv = llm["hidden_size"], llm["num_attention_heads"], llm["num_key_value_heads"]
    hd, per, eps, theta = h // nh, nh // nkv, llm["rms_norm_eps"], float(llm["rope_theta"])
    x = embeds
    b, n, _ = x.shape
    causal = torch.full((n, n), float("-inf")).triu(1)
    m = "language_model.model."
    for i in range(llm["num_hidden_layers"]):
        p = f"{m}layers.{i}."
        if qwen:
            y = _rms(x, w[p + "input_layernorm.weight"], eps)
            q = F.linear(y, w[p + "self_attn.q_proj.weight"], w[p + "self_attn.q_proj.bias"]).view(
                b, n, nh, hd
            )
            k = F.linear(y, w[p + "self_attn.k_proj.weight"], w[p + "self_attn.k_proj.bias"]).view(
                b, n, nkv, hd
            )
            v = F.linear(y, w[p + "self_attn.v_proj.weight"], w[p + "self_attn.v_proj.bias"]).view(
                b, n, nkv, hd
            )
        else:  # InternLM2: wqkv rows grouped per KV head as [q_1..q_per, k, v]
            y = _rms(x, w[p + "attention_norm.weight"], eps)
            qkv = F.linear(y, w[p + "attention.wqkv.weight"]).view(b, n, nkv, per + 2, hd)
            q = qkv[..., :per, :].reshape(b, n, nh, hd)
            k, v = qkv[..., -2, :], qkv[..., -1, :]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q, k = _rope(q, theta), _rope(k, theta)
        k, v = k.repeat_interleave(per, dim=1), v.repeat_interleave(per, dim=1)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd) + causal, dim=-1) @ v
        att = att.transpose(1, 2).reshape(b, n, nh * hd)
        x = x + F.linear(att, w[p + ("self_attn.o_proj.weight" if qwen else "attention.wo.weight")])
        if qwen:
            y = _rms(x, w[p + "post_attention_layernorm.weight"], eps)
            gate, up, down = (w[p + f"mlp.{k}_proj.weight"] for k in ("gate", "up", "down"))
        else:
            y = _rms(x, w[p + "ffn_norm.weight"], eps)
            gate, up, down = (w[p + f"feed_forward.{k}.weight"] for k in ("w1", "w3", "w2"))
        x = x + F.linear(F.silu(F.linear(y, gate)) * F.linear(y, up), down)
    x = _rms(x, w[m + "norm.weight"], eps)
    return x, F.linear(x, w["language_model.lm_head.weight" if qwen else "language_model.output.weight"])


def ref_expert(w: dict, hidden: torch.Tensor, layout: str) -> dict[str, torch.Tensor]:
    if layout == "indexed":
        leaves, ffns, inner = (
            "language_model.expert_head.0",
            [f"language_model.expert_head.{i}" for i in (1, 2, 3)],
            ("0", "2"),
        )
    else:
        leaves, ffns, inner = (
            "language_model.expert_head",
            [f"language_model.expert_head{i}" for i in (1, 2, 3)],
            ("fc1", "fc2"),
        )
    out = F.linear(hidden, w[leaves + ".weight"], w[leaves + ".bias"])
    scores = {k: out[..., i] for i, k in enumerate(LEAF_KEYS)}
    for key, name in zip(PARENT_KEYS, ffns, strict=True):
        x = torch.stack([scores[c] for c in BY_KEY[key].children], -1)
        x = F.gelu(F.linear(x, w[f"{name}.{inner[0]}.weight"], w[f"{name}.{inner[0]}.bias"]))
        scores[key] = F.linear(x, w[f"{name}.{inner[1]}.weight"], w[f"{name}.{inner[1]}.bias"]).squeeze(-1)
    return scores


def ref_metavoter(w: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    y = F.linear(x, w[f"{prefix}.0.weight"], w[f"{prefix}.0.bias"])
    y = (y - w[f"{prefix}.1.running_mean"]) / torch.sqrt(w[f"{prefix}.1.running_var"] + 1e-5)
    y = torch.relu(y * w[f"{prefix}.1.weight"] + w[f"{prefix}.1.bias"])
    return F.linear(y, w[f"{prefix}.3.weight"], w[f"{prefix}.3.bias"]).squeeze(-1)


# --- fixtures -----------------------------------------------------------------------------------------

CASES = {
    # Qwen2 (1B-like): two shards + index, MetaVoter in its own file, expert_head + expert_head{1..3}
    "qwen2": {
        "sharded": True,
        "expert_layout": "numbered",
        "metavoter": "metavoter",
        "separate_metavoter": True,
    },
    # InternLM2 (8B-like): one file, MetaVoter inside under another prefix, expert_head.{0..3}
    "internlm2": {
        "sharded": False,
        "expert_layout": "indexed",
        "metavoter": "language_model.meta_voter.net",
        "separate_metavoter": False,
    },
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("original")
    return {v: write_original(root / v, v, **opts) for v, opts in CASES.items()}


@pytest.fixture(scope="module")
def imported(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("native")
    return {v: (import_checkpoint(src, root / v), root / v) for v, src in sources.items()}


def _variant_copy(src: Path, dst: Path, edit) -> Path:
    """A copy of a source directory with its tensors edited (edit(dict) mutates the merged tensors)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    tensors = original_tensors(src)
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


# --- tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(CASES))
def test_every_source_tensor_is_placed_exactly_once(variant, sources, imported):
    report, out = imported[variant]
    placed = [p.source for p in report.placements]
    assert sorted(placed) == sorted(original_tensors(sources[variant]))
    assert len(placed) == len(set(placed))
    targets = [t for p in report.placements for t in p.targets]
    assert len(targets) == len(set(targets))
    if variant == "internlm2":
        wqkv = next(p for p in report.placements if p.source.endswith("layers.0.attention.wqkv.weight"))
        assert [t.rsplit(".", 2)[-2] for t in wqkv.targets] == ["q_proj", "k_proj", "v_proj"]
    from humanaes_core.model.checkpoint import load_model

    model, _ = load_model(out, device=torch.device("cpu"), dtype=torch.float32)
    native = set(model.backbone.state_dict()) | {f"heads.{k}" for k in model.heads.state_dict()}
    assert set(targets) == native
    assert not (sources[variant] / SENTINEL).exists(), "code from the source directory was executed"
    meta = json.loads((out / "humanaes.json").read_text())
    assert meta["provenance"]["tensors_placed"] == len(placed)
    assert meta["provenance"]["metavoter"]["source"] == "imported"


@pytest.mark.parametrize("variant", list(CASES))
def test_native_model_matches_the_original_layout_forward(variant, sources, imported):
    from humanaes_core.model.checkpoint import load_model

    _, out = imported[variant]
    w = original_tensors(sources[variant])
    cfg = json.loads((sources[variant] / "config.json").read_text())
    model, meta = load_model(out, device=torch.device("cpu"), dtype=torch.float32)
    ids, image_slice = model.prompt_ids(1, model.prompt.overall_questions[0])
    pixels = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        feats = ref_image_features(w, cfg, pixels)
        embed_name = "embed_tokens" if variant == "qwen2" else "tok_embeddings"
        embeds = w[f"language_model.model.{embed_name}.weight"][torch.tensor(ids)][None].clone()
        embeds[0, image_slice] = feats[0]
        ref_hidden, ref_logits = ref_language_model(w, cfg["llm_config"], embeds)

        native_feats = model.encode_images(pixels, 1)
        out_native = model.backbone(
            input_ids=torch.tensor([ids]), pixel_values=pixels, output_hidden_states=True
        )
    torch.testing.assert_close(native_feats, feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_native.hidden_states[-1], ref_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_native.logits, ref_logits, atol=1e-5, rtol=1e-5)

    hidden = torch.randn(3, cfg["llm_config"]["hidden_size"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reg = F.linear(
            hidden, w["language_model.lm_regression_head.weight"], w["language_model.lm_regression_head.bias"]
        )
        torch.testing.assert_close(model.heads.regression(hidden), reg.squeeze(-1), atol=1e-6, rtol=1e-6)
        expert = model.heads.expert(hidden)
        ref = ref_expert(w, hidden, CASES[variant]["expert_layout"])
        for key in KEYS:
            torch.testing.assert_close(expert[key], ref[key], atol=1e-6, rtol=1e-6)
        x = torch.rand(5, 3, generator=torch.Generator().manual_seed(4))
        voted = model.heads.metavoter(x[:, 0], x[:, 1], x[:, 2])
        torch.testing.assert_close(
            voted, ref_metavoter(w, CASES[variant]["metavoter"], x), atol=1e-6, rtol=1e-6
        )
    assert meta.heads.expert_ffn_hidden == FFN_HIDDEN and meta.heads.metavoter_hidden == VOTER_HIDDEN
    assert meta.image.image_size == 448 and meta.image.max_tiles == 12


def test_imported_checkpoint_scores_end_to_end(imported):
    from humanaes_core import load_scorer

    _, out = imported["qwen2"]
    scorer = load_scorer(out, device="cpu", max_tiles=2, batch_size=2)
    cards = scorer.score([synthetic_photo(1, (500, 300)), synthetic_photo(2, (300, 300))])
    assert len(cards) == 2
    for card in cards:
        assert set(card.dims) == set(KEYS)
        assert all(0.0 <= v <= 1.0 for v in card.dims.values())
        assert set(card.heads) == {"lm", "regression", "expert", "metavoter"}


def test_sentencepiece_tokenizer_matches_the_slow_tokenizer(sources):
    """Added tokens are split off, then each text piece is encoded by sentencepiece on its own."""
    import re

    import sentencepiece as spm

    root = sources["internlm2"]
    tok = sentencepiece_tokenizer(root)
    sp = spm.SentencePieceProcessor(model_file=str(root / "tokenizer.model"))
    declared = json.loads((root / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    added = {v["content"]: int(k) for k, v in declared.items()}
    pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")")
    prompt = PromptConfig()
    texts = [
        prompt.text_before_image()
        + "<img><IMG_CONTEXT><IMG_CONTEXT></img>"
        + prompt.text_after_image(DIMS_QUESTIONS[1]),
        "The aesthetics of the human image is excellent",
        "  leading spaces, 2024 digits, 你好 Ω unseen characters\n\nand blank lines  ",
    ]
    for text in texts:
        expected = []
        for part in pattern.split(text):
            if part in added:
                expected.append(added[part])
            elif part:
                expected += sp.encode(part)
        assert tok.encode(text, add_special_tokens=False) == expected
    for text in texts[1:]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.encode("Rate")[0] == tok.convert_tokens_to_ids("<s>")
    assert tok.convert_tokens_to_ids("<|im_start|>") == added["<|im_start|>"]


def test_sentencepiece_whitespace_normalisation(tmp_path):
    import sentencepiece as spm

    _sentencepiece_files(tmp_path, remove_extra_whitespaces=True, add_dummy_prefix=False)
    tok = sentencepiece_tokenizer(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    for text in ("  Rate   the aesthetics  ", "How is the aesthetics of this human image?"):
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text)


def _refused(src: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(ImportFailure) as err:
        plan_import(src, **kwargs)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_extra_tensor_is_refused_by_name(sources, tmp_path):
    def add(t):
        t["language_model.mystery_probe.weight"] = torch.zeros(7, 5)

    src = _variant_copy(sources["qwen2"], tmp_path / "extra", add)
    _refused(src, "could not be placed", "language_model.mystery_probe.weight [7, 5]", "the importer places")


def test_wrongly_shaped_expert_head_is_refused_by_name(sources, tmp_path):
    def shrink(t):
        t["language_model.expert_head.weight"] = t["language_model.expert_head.weight"][:8]
        t["language_model.expert_head.bias"] = t["language_model.expert_head.bias"][:8]

    src = _variant_copy(sources["qwen2"], tmp_path / "shape", shrink)
    _refused(src, "expert head not recognised", "language_model.expert_head.weight [8, 64]", "Linear(64 → 9)")


def test_wrongly_shaped_regression_head_is_refused_by_name(sources, tmp_path):
    def widen(t):
        t["language_model.lm_regression_head.weight"] = torch.zeros(2, 64)

    src = _variant_copy(sources["internlm2"], tmp_path / "reg", widen)
    _refused(src, "regression head has the wrong shape", "language_model.lm_regression_head.weight [2, 64]")


def test_unrecognised_expert_structure_is_refused(sources, tmp_path):
    def rename(t):
        t["language_model.expert_head.4.weight"] = t.pop("language_model.expert_head.3.0.weight")

    src = _variant_copy(sources["internlm2"], tmp_path / "struct", rename)
    _refused(src, "expert head not recognised", "language_model.expert_head.4.weight", "expert_head{1..4}")


def test_missing_tensor_is_refused_by_name(sources, tmp_path):
    def drop(t):
        del t["language_model.model.layers.1.attention.wqkv.weight"]

    src = _variant_copy(sources["internlm2"], tmp_path / "missing", drop)
    _refused(src, "missing from the source", "language_model.model.layers.1.attention.wqkv.weight [96, 64]")


def test_missing_metavoter_fails_unless_mean_is_asked_for(sources, tmp_path):
    src = tmp_path / "no-voter"
    shutil.copytree(sources["qwen2"], src)
    (src / "metavoter.safetensors").unlink()
    (src / "metavoter.pt").write_bytes(b"pickle")
    message = _refused(src, "no MetaVoter found", "--metavoter mean", "metavoter.pt")
    assert "Linear(3 → h)" in message
    report = import_checkpoint(src, tmp_path / "out", metavoter="mean", expert_activation="relu")
    meta = json.loads((tmp_path / "out" / "humanaes.json").read_text())
    assert meta["provenance"]["metavoter"]["source"].startswith("mean")
    assert meta["heads"]["expert_activation"] == "relu"
    assert any("--metavoter mean" in a for a in report.assumptions)
    with pytest.raises(ImportFailure, match="drop --metavoter mean"):
        plan_import(sources["qwen2"], metavoter="mean")


def test_mean_metavoter_is_the_mean_of_its_inputs():
    from humanaes_core.model.heads import MetaVoter

    voter = MetaVoter(2)
    voter.load_state_dict({k.removeprefix("metavoter."): v for k, v in mean_metavoter_state().items()})
    voter.eval()
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.2, 0.5, 0.9], [-0.3, 0.1, 0.05]])
    torch.testing.assert_close(voter(x[:, 0], x[:, 1], x[:, 2]), x.mean(-1), atol=1e-7, rtol=0)


def test_unsupported_configs_fail_clearly(sources, tmp_path):
    for field, value, fragment in [
        (("vision_config", "qk_normalization"), True, "InternViT-6B"),
        (("template",), "vicuna_v1.1", "template 'vicuna_v1.1' is not supported"),
        (("ps_version",), "v1", "pixel shuffle"),
        (("llm_config", "architectures"), ["Phi3ForCausalLM"], "Phi3ForCausalLM"),
    ]:
        src = tmp_path / fragment.split()[0].strip("'")
        shutil.copytree(sources["qwen2"], src)
        cfg = json.loads((src / "config.json").read_text())
        target = cfg
        for key in field[:-1]:
            target = target[key]
        target[field[-1]] = value
        (src / "config.json").write_text(json.dumps(cfg))
        _refused(src, fragment)


def test_cli_help_and_import(sources, tmp_path, capsys):
    from humanaes_core.cli import imports
    from humanaes_core.cli.imports import main
    from humanaes_core.importer import convert as importer

    assert imports.METAVOTER_MODES == importer.METAVOTER_MODES
    assert imports.EXPERT_ACTIVATIONS == importer.EXPERT_ACTIVATIONS
    assert ("auto", *importer.DTYPES) == imports.DTYPE_CHOICES

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "humanaes-import" in capsys.readouterr().out
    out = tmp_path / "cli-out"
    assert main([str(sources["internlm2"]), str(out), "--quiet"]) == 0
    assert (out / "humanaes.json").is_file()
    assert main([str(sources["internlm2"]), str(out)]) == 2  # exists: refuses without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert main([str(sources["qwen2"]), str(tmp_path / "dry"), "--dry-run", "--report", str(report)]) == 0
    assert not (tmp_path / "dry").exists()
    assert len(json.loads(report.read_text())["placements"]) == len(original_tensors(sources["qwen2"]))
    bad = _variant_copy(sources["qwen2"], tmp_path / "bad", lambda t: t.pop("mlp1.3.bias"))
    assert main([str(bad), str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "mlp1.3.bias" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_hub_snapshot_is_imported_on_first_use(sources, tmp_path, monkeypatch):
    """An original-layout snapshot in the hub cache becomes a cached native checkpoint, once."""
    from humanaes_core.model import sources as src_mod
    from humanaes_core.model.checkpoint import is_checkpoint

    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    repo = "KwaiVGI/HumanAesExpert-1B"
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub" / "models--KwaiVGI--HumanAesExpert-1B"
    shutil.copytree(sources["qwen2"], cache / "snapshots" / commit)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    assert looks_like_original(cache / "snapshots" / commit)

    path = src_mod.resolve_model(repo)
    assert path == tmp_path / "converted" / f"KwaiVGI--HumanAesExpert-1B--{commit}"
    assert is_checkpoint(path)
    meta = json.loads((path / "humanaes.json").read_text())
    assert meta["provenance"]["hub_id"] == repo and meta["provenance"]["revision"] == commit

    def no_second_import(*args, **kwargs):
        raise AssertionError("imported twice")

    monkeypatch.setattr("humanaes_core.importer.convert.import_checkpoint", no_second_import)
    assert src_mod.resolve_model(repo) == path


def test_hub_snapshot_that_cannot_be_imported_says_how_to_fix(sources, tmp_path, monkeypatch):
    from humanaes_core.model import sources as src_mod

    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    cache = tmp_path / "hub" / "models--KwaiVGI--HumanAesExpert-8B"
    shutil.copytree(sources["internlm2"], cache / "snapshots" / commit)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    snapshot = cache / "snapshots" / commit
    save_file({"x": torch.zeros(1)}, str(snapshot / "stray.safetensors"))
    with pytest.raises(ModelNotAvailableError) as err:
        src_mod.resolve_model("KwaiVGI/HumanAesExpert-8B")
    assert "humanaes-import" in str(err.value) and "stray.safetensors" in str(err.value)
    assert not (tmp_path / "converted" / f"KwaiVGI--HumanAesExpert-8B--{commit}").exists()


def _tied_copy(src: Path, dst: Path, edit) -> Path:
    _variant_copy(src, dst, edit)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["llm_config"]["tie_word_embeddings"] = True
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_tied_output_layer(sources, tmp_path):
    """Qwen2-0.5B ties lm_head to the embeddings: a stored copy must equal them, or the import refuses."""
    from humanaes_core.model.checkpoint import load_model

    embed = "language_model.model.embed_tokens.weight"

    def same(t):
        t["language_model.lm_head.weight"] = t[embed].clone()

    report = import_checkpoint(_tied_copy(sources["qwen2"], tmp_path / "same", same), tmp_path / "out")
    tied = next(p for p in report.placements if p.source == "language_model.lm_head.weight")
    assert tied.targets == ("lm_head.weight",) and "tied" in tied.how
    model, _ = load_model(tmp_path / "out", device=torch.device("cpu"), dtype=torch.float32)
    torch.testing.assert_close(model.backbone.lm_head.weight, original_tensors(tmp_path / "same")[embed])

    plan = plan_import(
        _tied_copy(sources["qwen2"], tmp_path / "absent", lambda t: t.pop("language_model.lm_head.weight"))
    )
    assert plan.config.text_config.tie_word_embeddings

    _refused(_tied_copy(sources["qwen2"], tmp_path / "differs", lambda t: None), "ties the output layer")


@pytest.mark.parametrize("variant", list(CASES))
def test_prompt_follows_the_source_template(variant, imported):
    """Hermes-2 (1B) and internlm2-chat (8B) join turns without a newline; the 8B starts with BOS."""
    from humanaes_core.model.checkpoint import read_meta

    _, out = imported[variant]
    prompt = read_meta(out).prompt
    assert prompt.turn_sep == ""
    assert prompt.text_before_image().startswith(prompt.bos + "<|im_start|>system\n")
    assert "<|im_end|><|im_start|>user\n" in prompt.text_before_image()
    assert prompt.bos == ("<s>" if variant == "internlm2" else "")
