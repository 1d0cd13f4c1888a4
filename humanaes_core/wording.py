"""Counts in words, one rule for the CLIs and the app: "1 photo", "3 photos", never "1 photos"."""

from __future__ import annotations

__all__ = ["count"]


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun` in the right number; `plural` for nouns that do not just take an "s"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
