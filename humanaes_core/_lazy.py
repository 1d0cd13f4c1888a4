"""Lazy re-exports for sub-package ``__init__`` files (PEP 562).

A sub-package names its public API in ``__init__``, but importing the package must not import what it
does not need: ``import humanaes_core.store`` should not pay for torch because another module of the
package needs it. Each public name maps to the module that defines it and is imported on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for `package`, where `exports` maps a public name to its submodule."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
