"""Hostile original-layout sources (issue 16, items 10 and 12): special files, absurd sizes and malformed
settings end in one ImportFailure line, at once, before anything is allocated or a reader blocks."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from humanaes_core.importer import ImportFailure, looks_like_original, plan_import
from humanaes_core.model import MAX_TOKENIZER_BYTES

FAST_S = 10.0


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run `call` in a daemon thread: what it raised, or a failure if it is still running (a hang)."""
    raised: list[BaseException | None] = [None]

    def target() -> None:
        try:
            call()
        except BaseException as e:  # handed to the test
            raised[0] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s (a FIFO read blocks?)"
    return raised[0]


def _config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        data = json.loads((root / "config.json").read_text(encoding="utf-8"))
        change(data)
        (root / "config.json").write_text(json.dumps(data), encoding="utf-8")

    return apply


def _special(name: str, kind: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / name).unlink()
        if kind == "fifo":
            os.mkfifo(root / name)
        else:
            os.symlink("/dev/zero", root / name)

    return apply


def _sparse(name: str, size: int) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        with open(root / name, "r+b") as f:
            f.truncate(size)

    return apply


# name: (variant, mutation, what the message says)
CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "config.json a FIFO": ("qwen2", _special("config.json", "fifo"), "not a regular file"),
    "config.json /dev/zero": ("qwen2", _special("config.json", "zero"), "not a regular file"),
    "vocab.json a FIFO": ("qwen2", _special("vocab.json", "fifo"), "vocab.json is not a regular file"),
    "merges.txt /dev/zero": ("qwen2", _special("merges.txt", "zero"), "merges.txt is not a regular file"),
    "tokenizer.model a FIFO": ("internlm2", _special("tokenizer.model", "fifo"), "not a regular file"),
    "tokenizer_config.json a FIFO": (
        "internlm2",
        _special("tokenizer_config.json", "fifo"),
        "tokenizer_config.json is not a regular file",
    ),
    "huge vocab.json": ("qwen2", _sparse("vocab.json", MAX_TOKENIZER_BYTES + 1), "a tokenizer file may have"),
    "huge tokenizer.model": (
        "internlm2",
        _sparse("tokenizer.model", MAX_TOKENIZER_BYTES + 1),
        "a tokenizer file may have",
    ),
    "1e6 layers": (
        "qwen2",
        _config(lambda c: c["llm_config"].update(num_hidden_layers=1_000_000)),
        "llm_config.num_hidden_layers is 1000000",
    ),
    "1e9 heads": (
        "qwen2",
        _config(lambda c: c["llm_config"].update(num_attention_heads=10**9)),
        "num_attention_heads is 1000000000",
    ),
    "1e6 vision layers": (
        "internlm2",
        _config(lambda c: c["vision_config"].update(num_hidden_layers=1_000_000)),
        "vision_config.num_hidden_layers is 1000000",
    ),
    "image_size 100000": (
        "qwen2",
        _config(lambda c: c.update(force_image_size=100_000)),
        "image_size is 100000",
    ),
    "1e9 vocabulary": (
        "internlm2",
        _config(lambda c: c["llm_config"].update(vocab_size=10**9)),
        "vocab_size is 1000000000",
    ),
    "1000 tiles": ("qwen2", _config(lambda c: c.update(max_dynamic_patch=1000)), "max_dynamic_patch is 1000"),
    "nested config": (
        "qwen2",
        lambda root: (root / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        "JSON nested too deeply",
    ),
    "select_layer a word": (
        "qwen2",
        _config(lambda c: c.update(select_layer="last")),
        "a setting has the wrong type",
    ),
    "architectures a number": (
        "qwen2",
        _config(lambda c: c["llm_config"].update(architectures=5)),
        "a setting has the wrong type",
    ),
    "rope_scaling a number": (
        "internlm2",
        _config(lambda c: c["llm_config"].update(rope_scaling=5)),
        "rope_scaling is 5, not a JSON object",
    ),
    "added token id a word": (
        "internlm2",
        lambda root: (root / "added_tokens.json").write_text(json.dumps({"<x>": "seven"})),
        "cannot convert the tokenizer",
    ),
    "vocab.json not JSON": (
        "qwen2",
        lambda root: (root / "vocab.json").write_text("{bad"),
        "cannot convert the tokenizer",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_source_fails_in_one_line_at_once(sources, tmp_path, name):
    variant, mutate, message = CASES[name]
    root = Path(shutil.copytree(sources[variant], tmp_path / "src"))
    mutate(root)
    start = time.perf_counter()
    error = _within(FAST_S, lambda: plan_import(root))
    assert isinstance(error, ImportFailure), f"{name}: {error!r}"
    assert message in str(error) and "\n" not in str(error) and len(str(error)) < 1000
    assert time.perf_counter() - start < FAST_S


def test_a_config_that_is_a_fifo_is_not_original_layout(sources, tmp_path):
    root = Path(shutil.copytree(sources["qwen2"], tmp_path / "src"))
    _special("config.json", "fifo")(root)
    found: list[bool] = []
    assert _within(FAST_S, lambda: found.append(looks_like_original(root))) is None
    assert found == [False]
