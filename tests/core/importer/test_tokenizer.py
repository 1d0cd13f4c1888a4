"""InternLM2's sentencepiece tokenizer as a fast tokenizer: the same ids as sentencepiece itself."""

from __future__ import annotations

import json

import pytest

from humanaes_core.importer.tokenizer import sentencepiece_tokenizer
from humanaes_core.model.prompts import DIMS_QUESTIONS, PromptConfig
from tests.core.importer.originals import sentencepiece_files


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

    sentencepiece_files(tmp_path, remove_extra_whitespaces=True, add_dummy_prefix=False)
    tok = sentencepiece_tokenizer(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    for text in ("  Rate   the aesthetics  ", "How is the aesthetics of this human image?"):
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text)


def test_a_converter_that_encodes_differently_fails_the_import(tmp_path, monkeypatch):
    """The converted tokenizer is checked against sentencepiece itself: different ids stop the import."""
    from tokenizers.models import BPE

    from humanaes_core.importer import ImportFailure
    from humanaes_core.importer import tokenizer as conversion

    build = conversion._backend

    def without_merges(proto, vocab):
        tok = build(proto, vocab)
        tok.model = BPE(vocab, [], unk_token="<unk>", fuse_unk=True, byte_fallback=True)
        return tok

    sentencepiece_files(tmp_path)
    sentencepiece_tokenizer(tmp_path)  # the real converter passes
    monkeypatch.setattr(conversion, "_backend", without_merges)
    with pytest.raises(ImportFailure, match="sentencepiece as"):
        sentencepiece_tokenizer(tmp_path)


def test_unreadable_tokenizer_model_is_refused(tmp_path):
    from humanaes_core.importer import ImportFailure

    sentencepiece_files(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(ImportFailure, match="not a readable sentencepiece model"):
        sentencepiece_tokenizer(tmp_path)
    sentencepiece_files(tmp_path, model_type="unigram")
    with pytest.raises(ImportFailure, match="not a BPE sentencepiece model"):
        sentencepiece_tokenizer(tmp_path)
