"""Miniature released checkpoints in InternVL's original layout, written for the importer's tests.

The released weights cannot be downloaded here, so these have the real key names and config fields
(both the Qwen2 and the InternLM2 language model, with heads and a MetaVoter) at toy sizes. Each source
folder also holds modelling and tokenizer code that would leave a SENTINEL file if it ever ran.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from humanaes_core.model.prompts import (
    DIMS_QUESTIONS,
    INTERNVL_SYSTEM_MESSAGE,
    OVERALL_QUESTIONS,
    dims_answer,
    overall_answer,
)
from humanaes_core.schema import BY_KEY, KEYS, LEAF_KEYS, PARENT_KEYS

SENTINEL = "executed-source-code"
EXTRA_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
VISION = {"hidden": 32, "layers": 2, "heads": 2, "mlp": 64}
FFN_HIDDEN, VOTER_HIDDEN = 6, 4


def corpus() -> list[str]:
    text = [INTERNVL_SYSTEM_MESSAGE, *OVERALL_QUESTIONS, *DIMS_QUESTIONS]
    for s in (0.1, 0.3, 0.5, 0.7, 0.9):
        text += [overall_answer(s), dims_answer(dict.fromkeys(KEYS, s))]
    return [*text, "system user assistant image picture photo  double  spaces 0123456789"]


# --- miniature checkpoints in the original layout -----------------------------------------------------


def qwen2_tokenizer_files(root: Path) -> int:
    """Qwen2 layout: vocab.json + merges.txt (no specials), specials and InternVL tokens added after."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus() * 5, trainer)
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


def sentencepiece_files(root: Path, **options) -> int:
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
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus() * 5), model_writer=buf, **settings)
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
    vocab = qwen2_tokenizer_files(root) if variant == "qwen2" else sentencepiece_files(root)
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


def variant_copy(src: Path, dst: Path, edit) -> Path:
    """A copy of a source directory with its tensors edited (edit(dict) mutates the merged tensors)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    tensors = original_tensors(src)
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst
