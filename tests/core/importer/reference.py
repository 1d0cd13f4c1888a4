"""The reference forward, computed directly from original-layout tensors in plain torch.

This is how InternVL's own code computes it; the imported native model must reproduce it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from humanaes_core.schema import BY_KEY, LEAF_KEYS, PARENT_KEYS


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
