"""The source's tokenizer as a fast (tokenizers-backed) tokenizer, without running the source's code.

The released checkpoints name their own tokenizer classes in `auto_map`; those are ignored. Qwen2's
byte-level BPE is read by transformers' `Qwen2Tokenizer` from vocab.json/merges.txt. InternLM2's
`tokenizer.model` is read as data by the `sentencepiece` package's protobuf schema and turned into a
fast tokenizer by transformers' sentencepiece converter; the result is checked against sentencepiece
itself on the text the model is prompted with, so a converter that encodes differently fails the
import instead of shifting token ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from humanaes_core.importer.config import TEMPLATES
from humanaes_core.importer.source import ImportFailure, check_tokenizer_files, read_json, read_tokenizer_file

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

# sentencepiece's ModelProto enums (sentencepiece_model.proto): TrainerSpec.ModelType, SentencePiece.Type
_SP_BPE = 2
_SP_CONTROL, _SP_USER_DEFINED = 3, 4


#: Every file transformers' tokenizer loading may open in the source folder: each must be a regular
#: file within MAX_TOKENIZER_BYTES before it is handed to a reader that has no limit.
TOKENIZER_READS = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
)


def convert_tokenizer(root: Path, variant: str) -> PreTrainedTokenizerBase:
    """The source's tokenizer as a fast tokenizer, without running the source's tokenizer code.

    Any failure of the readers (tokenizers raises plain ``Exception``, protobuf its ``DecodeError``, a
    malformed id a ``ValueError``) is an ImportFailure naming the folder; only running out of memory
    is left as it is.
    """
    check_tokenizer_files(root, TOKENIZER_READS)
    try:
        if (root / "vocab.json").is_file() and (root / "merges.txt").is_file():
            return _qwen2_tokenizer(root)
        if (root / "tokenizer.model").is_file():
            return sentencepiece_tokenizer(root)
        if variant == "qwen2" and (root / "tokenizer.json").is_file():
            return _qwen2_tokenizer(root)
    except (ImportFailure, MemoryError):
        raise
    except Exception as e:
        first = next(iter(str(e).strip().splitlines()), "") or e.__class__.__name__
        raise ImportFailure(f"{root}: cannot convert the tokenizer: {first[:300]}") from None
    raise ImportFailure(
        f"{root}: no tokenizer found (expected vocab.json + merges.txt for Qwen2, "
        "tokenizer.model for InternLM2)"
    )


def _qwen2_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """Qwen2's byte-level BPE from vocab.json/merges.txt (or tokenizer.json); auto_map is ignored."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer.from_pretrained(str(root), trust_remote_code=False, local_files_only=True)
    _check_added_ids(tokenizer, _declared_added_tokens(root), root)
    return tokenizer


def sentencepiece_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """A fast tokenizer equivalent to InternLM2's sentencepiece tokenizer, built from `tokenizer.model`.

    Like the slow tokenizer the released model was trained with, added tokens are split off first and
    each remaining piece of text is encoded on its own (the dummy prefix goes before each piece).
    """
    from transformers import PreTrainedTokenizerFast

    path = root / "tokenizer.model"
    data, proto = _read_sentencepiece(path)
    declared = _declared_added_tokens(root)
    vocab = _renamed_vocab(proto, declared, path)
    tok = _backend(proto, vocab)
    _add_tokens(tok, proto, vocab, declared, root)
    cfg = _read_optional_json(root / "tokenizer_config.json")
    specials = _special_tokens(cfg, _read_optional_json(root / "special_tokens_map.json"))
    unk = next(name for name, i in vocab.items() if i == proto.trainer_spec.unk_id)
    bos, eos = specials.get("bos_token", "<s>"), specials.get("eos_token", "</s>")
    if cfg.get("add_bos_token", True) and bos in vocab:
        from tokenizers import processors

        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        unk_token=specials.get("unk_token", unk),
        pad_token=specials.get("pad_token", eos),
        model_max_length=int(cfg.get("model_max_length", 32768)),
        clean_up_tokenization_spaces=False,
    )
    _check_added_ids(tokenizer, declared, root)
    _check_against_sentencepiece(tokenizer, data, path)
    return tokenizer


def _read_sentencepiece(path: Path) -> tuple[bytes, Any]:
    """The file's bytes and its parsed ModelProto (protobuf data: nothing in it can run)."""
    try:
        from google.protobuf.message import DecodeError
        from sentencepiece import sentencepiece_model_pb2
    except Exception as e:  # ImportError, or protobuf's VersionError: older than sentencepiece's schema
        raise ImportFailure(
            f"reading {path} needs sentencepiece and a protobuf at least as new as its schema: {e}"
        ) from None
    proto = sentencepiece_model_pb2.ModelProto()
    data = read_tokenizer_file(path)
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise ImportFailure(f"{path} is not a readable sentencepiece model: {e}") from None
    if not proto.pieces:
        raise ImportFailure(f"{path} holds no sentencepiece vocabulary")
    if proto.trainer_spec.model_type != _SP_BPE:
        raise ImportFailure(f"{path} is not a BPE sentencepiece model (InternLM2's is BPE)")
    return data, proto


def _renamed_vocab(proto: Any, declared: dict[int, dict], path: Path) -> dict[str, int]:
    """Piece → id, with the pieces the config renames (InternLM2: reserved pieces → <|im_start|> …)."""
    vocab: dict[str, int] = {}
    for i, piece in enumerate(proto.pieces):
        name = declared[i]["content"] if i in declared else piece.piece
        if name in vocab:
            raise ImportFailure(f"{path}: piece {name!r} appears twice (ids {vocab[name]}, {i})")
        vocab[name] = i
    return vocab


def _backend(proto: Any, vocab: dict[str, int]) -> Tokenizer:
    """transformers' converter: BPE ranked by piece score, sentencepiece's normalizer and decoder."""
    from transformers.convert_slow_tokenizer import SpmConverter

    return SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)


def _add_tokens(
    tok: Tokenizer, proto: Any, vocab: dict[str, int], declared: dict[int, dict], root: Path
) -> None:
    """Control and user-defined pieces, renamed ones and the declared tokens beyond the vocabulary."""
    from tokenizers import AddedToken

    renamed = {i for i in declared if i < len(proto.pieces)}
    by_id = {i: name for name, i in vocab.items()}
    pieces = [
        AddedToken(by_id[i], special=i in renamed or p.type == _SP_CONTROL, normalized=False)
        for i, p in enumerate(proto.pieces)
        if i in renamed or p.type in (_SP_CONTROL, _SP_USER_DEFINED)
    ]
    tok.add_special_tokens([t for t in pieces if t.special])
    tok.add_tokens([t for t in pieces if not t.special])
    beyond = sorted(i for i in declared if i >= len(proto.pieces))
    if beyond and beyond != list(range(len(proto.pieces), len(proto.pieces) + len(beyond))):
        raise ImportFailure(
            f"{root}: added token ids {beyond} do not directly follow the {len(proto.pieces)} "
            "sentencepiece pieces"
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


def _read_optional_json(path: Path) -> dict:
    return read_json(path) if os.path.lexists(path) else {}


def _special_tokens(cfg: dict, special_tokens_map: dict) -> dict[str, str]:
    """bos/eos/unk/pad token text as tokenizer_config.json, else special_tokens_map.json, names it."""
    found: dict[str, str] = {}
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        for source in (cfg, special_tokens_map):
            value = source.get(name)
            text = value.get("content") if isinstance(value, dict) else value
            if text:
                found[name] = str(text)
                break
    return found


def _declared_added_tokens(root: Path) -> dict[int, dict]:
    """Added tokens the source declares: tokenizer_config.json (added_tokens_decoder), added_tokens.json."""
    declared: dict[int, dict] = {}
    for key, entry in (
        _read_optional_json(root / "tokenizer_config.json").get("added_tokens_decoder") or {}
    ).items():
        declared[int(key)] = dict(entry) if isinstance(entry, dict) else {"content": str(entry)}
    for content, idx in _read_optional_json(root / "added_tokens.json").items():
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


def _prompt_texts() -> list[str]:
    """The plain text HumanAes feeds the model: system messages, questions and answers at every level."""
    from humanaes_core.model import DIMS_QUESTIONS, OVERALL_QUESTIONS, dims_answer, overall_answer
    from humanaes_core.schema import KEYS

    levels = (0.1, 0.3, 0.5, 0.7, 0.9)
    answers = [overall_answer(s) for s in levels] + [dims_answer(dict.fromkeys(KEYS, s)) for s in levels]
    return [*TEMPLATES.values(), *OVERALL_QUESTIONS, *DIMS_QUESTIONS, *answers]


def _check_against_sentencepiece(tokenizer: PreTrainedTokenizerBase, data: bytes, path: Path) -> None:
    """Fail unless the converted tokenizer gives sentencepiece's own ids for the prompt texts."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=data)
    for text in _prompt_texts():
        ours, theirs = tokenizer.encode(text, add_special_tokens=False), sp.encode(text)
        if ours != theirs:
            raise ImportFailure(
                f"{path}: the converted tokenizer encodes {text!r} as {ours[:12]}…, sentencepiece as "
                f"{theirs[:12]}…; update transformers (its sentencepiece converter) and import again"
            )
