"""Reading a released checkpoint's folder: its JSON files and the headers and data of its safetensors.

Nothing in the folder is executed and pickle files are never opened (unpickling can run code): only
JSON and safetensors are read. JSON and tokenizer files are read only when they are regular files
within their size limits (`humanaes_core.files.read_small_file`, the limits of `humanaes_core.model`):
a FIFO or a link to /dev/zero fails at once instead of hanging or filling memory. Everything the
importer reports about a tensor starts here, so the failure type and the listing helpers live here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.errors import HumanAesError, shown
from humanaes_core.files import read_json_file, read_small_file
from humanaes_core.model import MAX_METADATA_BYTES, MAX_TOKENIZER_BYTES

if TYPE_CHECKING:
    import torch
    from safetensors import safe_open

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_LISTED = 40


class ImportFailure(HumanAesError):
    """The source cannot be converted faithfully; the message lists every problem found."""


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the source, as its safetensors header describes it (nothing loaded)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    file: str


@dataclass(frozen=True)
class TensorPlacement:
    """Where one source tensor went: a row of the placement table an import reports."""

    source: str
    shape: tuple[int, ...]
    file: str
    targets: tuple[str, ...]
    how: str

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "shape": list(self.shape),
            "file": self.file,
            "targets": list(self.targets),
            "how": self.how,
        }


def describe(name: str, shape: tuple[int, ...]) -> str:
    """A tensor as messages name it: `name [d0, d1]`."""
    return f"{name} {list(shape)}"


def listing(items: list[str]) -> str:
    """An indented list for a failure message, cut after MAX_LISTED items."""
    shown = items[:MAX_LISTED]
    more = f"\n    … and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return "\n    " + "\n    ".join(shown) + more


def read_json(path: Path, limit: int = MAX_METADATA_BYTES) -> dict:
    """A JSON object from the source, or ImportFailure saying why not."""
    try:
        data = read_json_file(path, limit)
    except FileNotFoundError:
        raise ImportFailure(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise ImportFailure(f"{path} is unreadable: {e}") from None
    if not isinstance(data, dict):
        raise ImportFailure(f"{path} does not hold a JSON object")
    return data


def read_tokenizer_file(path: Path) -> bytes:
    """A tokenizer file's bytes (regular, at most MAX_TOKENIZER_BYTES), or ImportFailure saying why not."""
    try:
        return read_small_file(path, MAX_TOKENIZER_BYTES)
    except OSError as e:
        raise ImportFailure(f"{path} is unreadable: {e}") from None


def check_tokenizer_files(root: Path, names: tuple[str, ...]) -> None:
    """Refuse tokenizer files a third-party reader would open that are not small regular files."""
    for name in names:
        path = root / name
        if not os.path.lexists(path):
            continue
        try:
            st = path.stat()
        except OSError as e:
            raise ImportFailure(f"{path} is unreadable: {e}") from None
        if not path.is_file():
            raise ImportFailure(f"{path} is not a regular file; not read")
        if st.st_size > MAX_TOKENIZER_BYTES:
            raise ImportFailure(
                f"{path} is {st.st_size:,} bytes, more than the {MAX_TOKENIZER_BYTES:,} a tokenizer "
                "file may have"
            )


def looks_like_original(path: str | Path) -> bool:
    """True for a directory whose config.json is InternVL's original (`llm_config` + `vision_config`)."""
    config = Path(path) / "config.json"
    try:
        data = read_json_file(config, MAX_METADATA_BYTES)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "llm_config" in data and "vision_config" in data


def pickle_files(root: Path) -> list[str]:
    """Names of the pickle files in `root`: never opened, only named in hints."""
    return sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES)


class SourceFiles:
    """All tensors of the source directory, read lazily from safetensors (headers first, data on demand)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tensors: dict[str, SourceTensor] = {}
        self._handles: dict[str, safe_open] = {}
        files = sorted(p.name for p in root.glob("*.safetensors") if p.is_file())
        index_path = root / "model.safetensors.index.json"
        indexed = _shard_index(index_path, files) if index_path.is_file() else {}
        if not files:
            pickles = pickle_files(root)
            hint = (
                f" It holds {', '.join(pickles)}, which this importer never opens (pickle can run code); "
                "save the weights as safetensors first."
                if pickles
                else ""
            )
            raise ImportFailure(f"{root} has no *.safetensors files.{hint}")
        self._read_headers(files)
        wrong = [
            f"{k} (index: {f}, found in {self.tensors[k].file if k in self.tensors else 'no file'})"
            for k, f in indexed.items()
            if k not in self.tensors or self.tensors[k].file != f
        ]
        if wrong:
            raise ImportFailure(
                f"{index_path} does not match the shard files: {'; '.join(wrong[:MAX_LISTED])}"
            )

    def _read_headers(self, files: list[str]) -> None:
        from safetensors import safe_open

        duplicates: list[str] = []
        for name in files:
            try:
                handle = safe_open(str(self.root / name), framework="pt")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise ImportFailure(f"{self.root / name} is not a readable safetensors file: {e}") from None
            self._handles[name] = handle
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                piece = handle.get_slice(key)
                tensor = SourceTensor(key, tuple(int(d) for d in piece.get_shape()), piece.get_dtype(), name)
                if key in self.tensors:
                    duplicates.append(f"{key} (in {self.tensors[key].file} and {name})")
                    continue
                self.tensors[key] = tensor
        if duplicates:
            raise ImportFailure(f"{self.root}: tensors stored more than once: {'; '.join(duplicates)}")

    def load(self, name: str) -> torch.Tensor:
        """The data of one tensor, read from its file now."""
        return self._handles[self.tensors[name].file].get_tensor(name)


def _shard_index(index_path: Path, files: list[str]) -> dict[str, str]:
    """Tensor name → shard file from the index, checked to name only files that are there."""
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ImportFailure(f"{index_path} has no weight_map")
    indexed = {str(k): str(v) for k, v in weight_map.items()}
    missing_files = sorted(set(indexed.values()) - set(files))
    if missing_files:
        raise ImportFailure(
            f"{index_path.parent}: the shard index names files that are not there: "
            f"{', '.join(shown(f) for f in missing_files[:MAX_LISTED])} (an incomplete download? "
            "download it again)"
        )
    return indexed
