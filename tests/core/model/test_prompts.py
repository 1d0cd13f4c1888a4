"""The prompt as data: the answer prefix tokenised in its turn, the release's question, the template.

Issue #12, definite differences 1-3. The InternLM2 (8B) tokenizer is a real sentencepiece model built
here; the reference tokenisation is sentencepiece itself on the whole chat string, the way the slow
InternLM2 tokenizer InternVL uses encodes it (added tokens split off, each text run encoded on its own).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from humanaes_core.errors import CheckpointError
from humanaes_core.model import HumanAesModel, OpenFields, PromptConfig, read_meta, write_manifest
from humanaes_core.model.prompts import (
    INTERNVL_SYSTEM_MESSAGE,
    OVERALL_ANSWER_PREFIX,
    SWIFT_SYSTEM_MESSAGE,
)
from humanaes_core.schema import LEVELS

RELEASE_QUESTION = "Rate the aesthetics of this human picture."
TOKENS_PER_TILE = 4  # a stand-in for 256: the count of context tokens cannot change the text's ids


def tokenisation_model(tokenizer, prompt: PromptConfig) -> HumanAesModel:
    """A HumanAesModel with only what tokenisation needs (no backbone weights, no heads)."""
    image_token_id = tokenizer.convert_tokens_to_ids(prompt.img_context)
    backbone = SimpleNamespace(config=SimpleNamespace(image_token_id=image_token_id))
    heads = SimpleNamespace(fields=OpenFields())
    return HumanAesModel(backbone, heads, tokenizer, prompt, TOKENS_PER_TILE)  # type: ignore[arg-type]


def internlm2(root: Path, dummy_prefix: bool = True):
    """An InternLM2-style sentencepiece checkpoint tokenizer, converted as the importer converts it, and
    a reference: sentencepiece on the whole string with the added tokens split off, BOS in front."""
    import sentencepiece as spm

    from humanaes_core.importer.tokenizer import sentencepiece_tokenizer
    from tests.core.importer.originals import sentencepiece_files

    root.mkdir(parents=True, exist_ok=True)
    sentencepiece_files(root, add_dummy_prefix=dummy_prefix)
    sp = spm.SentencePieceProcessor(model_file=str(root / "tokenizer.model"))
    declared = json.loads((root / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    added = {v["content"]: int(k) for k, v in declared.items()}
    split = re.compile("(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")")

    def reference(text: str) -> list[int]:
        ids = [added["<s>"]]
        for part in split.split(text):
            ids += [added[part]] if part in added else (sp.encode(part) if part else [])
        return ids

    return sentencepiece_tokenizer(root), reference


def chat_string(system: str, question: str, newlines: int, answer: str = "") -> str:
    """InternVL's conversation (Hermes-2 / internlm2-chat): turns joined by <|im_end|> with nothing
    between, the image placeholder replaced by <img>, its context tokens and </img>."""
    image = "<img>" + "<IMG_CONTEXT>" * TOKENS_PER_TILE + "</img>"
    return (
        f"<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{image}{chr(10) * newlines}{question}"
        f"<|im_end|><|im_start|>assistant\n{answer}"
    )


# ----------------------------------------------------------------- definite difference 1: answer prefix


@pytest.mark.parametrize("dummy_prefix", [True, False])
def test_internlm2_answer_prefix_is_tokenised_in_its_turn(tmp_path, dummy_prefix):
    tokenizer, reference = internlm2(tmp_path / "tok", dummy_prefix)
    model = tokenisation_model(tokenizer, PromptConfig(bos="<s>"))
    text = chat_string(INTERNVL_SYSTEM_MESSAGE, RELEASE_QUESTION, 1)
    scored = model.layout(1)
    assert scored.prefix_ids + scored.overall_ids == reference(text + OVERALL_ANSWER_PREFIX)
    for level, token in zip(LEVELS, model.level_token_ids, strict=True):
        answer = reference(text + f"{OVERALL_ANSWER_PREFIX} {level}")
        assert answer[len(reference(text + OVERALL_ANSWER_PREFIX))] == token, level
    answer = f"{OVERALL_ANSWER_PREFIX} good"
    ids, _, plen = model.training_ids(1, RELEASE_QUESTION, answer)
    assert ids == reference(text + answer + "<|im_end|>") and ids[:plen] == reference(text)
    assert model.answer_ids(answer) == ids[plen:]
    alone = tokenizer.encode(OVERALL_ANSWER_PREFIX, add_special_tokens=False)
    first = tokenizer.convert_ids_to_tokens(ids[plen])
    assert not first.startswith("▁")  # never '▁The': no dummy-prefix space inside the turn
    if dummy_prefix:  # what the answer tokenised on its own gives (the code before the fix used it)
        assert tokenizer.convert_ids_to_tokens(alone[0]) == "▁The" and alone != ids[plen : plen + len(alone)]


def test_answer_tokenised_alone_is_a_setting(tmp_path):
    """swift encodes a response on its own; a checkpoint that says so gets '▁The' on purpose."""
    tokenizer, _ = internlm2(tmp_path / "tok")
    model = tokenisation_model(tokenizer, PromptConfig(bos="<s>", answer_tokenisation="alone"))
    answer = f"{OVERALL_ANSWER_PREFIX} good"
    ids, _, plen = model.training_ids(1, RELEASE_QUESTION, answer)
    assert ids[plen:-1] == tokenizer.encode(answer, add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids[plen]) == "▁The"
    lay, prefix = model.layout(1), tokenizer.encode(OVERALL_ANSWER_PREFIX, add_special_tokens=False)
    assert lay.overall_ids[-len(prefix) :] == prefix == ids[plen : plen + len(prefix)]


@pytest.mark.parametrize("kind", ["tiny", "qwen2"])
def test_qwen2_ids_are_unchanged(tmp_path, kind):
    """Byte-level BPE (the 1B) encodes the answer prefix alike on its own and in its turn: the fix
    changes nothing there (the ids equal the pieces concatenated as the code before the fix did)."""
    if kind == "tiny":
        from humanaes_core.testing import build_tokenizer

        tokenizer = build_tokenizer(PromptConfig(), 1024)
    else:
        from humanaes_core.importer.tokenizer import convert_tokenizer
        from tests.core.importer.originals import qwen2_tokenizer_files

        qwen2_tokenizer_files(tmp_path)
        tokenizer = convert_tokenizer(tmp_path, "qwen2")
    prompt = PromptConfig()
    model = tokenisation_model(tokenizer, prompt)

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    for q in range(len(prompt.overall_questions)):
        lay = model.layout(2, q)
        image = enc(prompt.img_start) + enc(prompt.img_context) * 2 * TOKENS_PER_TILE + enc(prompt.img_end)
        before = enc(prompt.text_before_image()) + image
        old = before + enc(prompt.text_after_image(prompt.overall_questions[q]))
        assert lay.prefix_ids + lay.overall_ids == old + enc(prompt.overall_answer_prefix)
        dims = enc(prompt.text_after_image(prompt.dims_questions[q]))
        assert lay.prefix_ids + lay.dims_ids == before + dims
    answer = f"{OVERALL_ANSWER_PREFIX} excellent"
    assert model.answer_ids(answer) == [*enc(answer), *enc(prompt.im_end)]
    old_levels = [enc(f"{OVERALL_ANSWER_PREFIX} {lv}")[len(enc(OVERALL_ANSWER_PREFIX))] for lv in LEVELS]
    assert model.level_token_ids == old_levels


# ------------------------------------------------------ definite differences 2 and 3: question, template


def test_defaults_ask_the_release_question_with_internvl_chat():
    prompt = PromptConfig()
    assert prompt.overall_questions[prompt.question_index] == RELEASE_QUESTION
    assert prompt.dims_questions[prompt.question_index] == (
        "Rate the aesthetics of this human picture from 12 different dimensions."
    )
    assert (prompt.template, prompt.system_message, prompt.query_newlines) == (
        "internvl_chat",
        INTERNVL_SYSTEM_MESSAGE,
        1,
    )
    assert prompt.release_question_index() == 1


def test_swift_template_follows_from_its_name():
    prompt = PromptConfig.from_dict({"template": "swift_internvl2"})
    assert prompt.system_message == SWIFT_SYSTEM_MESSAGE and prompt.query_newlines == 2
    assert prompt.text_after_image("Q?").startswith("\n\nQ?<|im_end|>")
    assert PromptConfig.from_dict(prompt.to_dict()) == prompt
    # switching a checkpoint's template takes the template's system message and newlines with it
    assert PromptConfig(bos="<s>").with_template("swift_internvl2") == PromptConfig(
        template="swift_internvl2", bos="<s>"
    )
    with pytest.raises(ValueError, match="unknown prompt template"):
        PromptConfig(template="llama")


def _checkpoint(tmp_path: Path, tiny_model: Path, change) -> Path:
    path = Path(shutil.copytree(tiny_model, tmp_path / "ckpt"))
    data = json.loads((path / "humanaes.json").read_text(encoding="utf-8"))
    change(data["prompt"])
    (path / "humanaes.json").write_text(json.dumps(data), encoding="utf-8")
    write_manifest(path)
    return path


def test_old_checkpoint_without_template_keeps_its_prompt(tmp_path, tiny_model):
    """A humanaes.json written before the template existed (question 0 stored, no template fields)
    loads with today's behaviour: its system message, one newline, its question."""

    def old(prompt: dict) -> None:
        for key in ("template", "query_newlines", "answer_tokenisation"):
            prompt.pop(key, None)
        prompt["question_index"] = 0

    prompt = read_meta(_checkpoint(tmp_path, tiny_model, old)).prompt
    assert prompt.template == "internvl_chat" and prompt.query_newlines == 1
    assert prompt.system_message == INTERNVL_SYSTEM_MESSAGE and prompt.question_index == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"template": "chatml"}, "prompt.template 'chatml' is not one of"),
        ({"query_newlines": 0}, "prompt.query_newlines"),
        ({"answer_tokenisation": "split"}, "prompt.answer_tokenisation"),
    ],
)
def test_bad_template_fields_are_one_line(tmp_path, tiny_model, change, message):
    path = _checkpoint(tmp_path, tiny_model, lambda p: p.update(change))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        read_meta(path)


def test_stored_template_drives_scoring_and_training(tmp_path, tiny_model):
    from humanaes_core.model import load_model

    def swift(prompt: dict) -> None:  # what the importer writes for the template (its own fields follow)
        prompt.update(PromptConfig.from_dict(prompt).with_template("swift_internvl2").to_dict())

    path = _checkpoint(tmp_path, tiny_model, swift)
    model, meta = load_model(path, device=torch.device("cpu"), dtype=torch.float32)
    assert meta.prompt.template == "swift_internvl2"
    lay = model.layout(1)
    text = model.tokenizer.decode(lay.prefix_ids + lay.overall_ids)
    assert text.startswith(f"<|im_start|>system\n{SWIFT_SYSTEM_MESSAGE}<|im_end|>")
    assert f"</img>\n\n{RELEASE_QUESTION}<|im_end|><|im_start|>assistant\n" in text
    ids, _, plen = model.training_ids(1, RELEASE_QUESTION, f"{OVERALL_ANSWER_PREFIX} good")
    assert ids[:plen] == lay.prefix_ids + lay.overall_ids[: lay.overall_reg_offset + 1]
