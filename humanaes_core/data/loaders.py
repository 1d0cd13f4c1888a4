"""Labelled photos for training and evaluation: the three formats of DESIGN section 6, validated.

A data set is a list of `Sample`s, each a photo and some of the 13 labels (the 12 dimensions, of which
`overall` is one). Three sources produce them:

- a **HumanBeauty root** with ``train_label.jsonl`` / ``test_label.jsonl`` (one JSON object a line:
  ``image_name``, ``is_expert``, ``score`` — a float for overall-only lines, 12 floats in the official
  order ``[A,B,C,D,E,F,G,H,I,K,J,L]`` for 12-dimension lines — and ``text_level``); a single such
  ``.jsonl`` file works too, its folder being the root;
- a **CSV** with a ``path`` column and ``overall`` and/or any of the 12 keys (empty cells are missing);
- a **folder the photographer rated**: star ratings and reject flags from XMP sidecars or embedded XMP,
  read as culling reads them (`xmp.read_rating`), mapped to overall scores by `STAR_SCORES`.

Everything is checked before any training starts, and every problem is reported with the file and line
it comes from, so a broken label file costs seconds rather than a failed overnight run. Label files are
read only when they are regular files of at most `MAX_LABEL_BYTES` (a FIFO or /dev/zero fails at
once), a UTF-8 BOM is accepted in both formats, and values are quoted in messages only in part
(`errors.shown`), so a 100 MB label cannot become a 100 MB message.

The data set itself (`Sample`, `DataSet`, the hold-out split) is in `samples`; the question/answer text
a sample is trained with in `qa`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.data.samples import DataError, DataSet, Sample
from humanaes_core.errors import ImageLoadError, shown
from humanaes_core.files import parse_json, read_small_file
from humanaes_core.schema import KEYS, LEVELS, from_official

if TYPE_CHECKING:
    from humanaes_core.formats import Rating

__all__ = [
    "MAX_LABEL_BYTES",
    "REJECT_SCORE",
    "STAR_SCORES",
    "load_csv",
    "load_data",
    "load_label_jsonl",
    "load_rated_folder",
    "rating_score",
]

#: Score given to each star rating: the centre of the matching level (1★ bad … 5★ excellent), so a
#: photographer's stars and the model's level words agree.
STAR_SCORES: Mapping[int, float] = {1: 0.1, 2: 0.3, 3: 0.5, 4: 0.7, 5: 0.9}
#: A rejected photo ranks below one star.
REJECT_SCORE = 0.0

#: The largest label file read (HumanBeauty's 108 000 training lines take 20 MB).
MAX_LABEL_BYTES = 512 << 20
#: Longest image path a label may give (longer ones are refused before any file-system call).
_MAX_PATH_CHARS = 4096
_MAX_ERRORS_SHOWN = 20
_MAX_PROBLEM_CHARS = 300
_JSONL_KEYS = frozenset({"image_name", "is_expert", "score", "text_level"})
_CSV_LABELS = frozenset(KEYS)


class _Problems:
    """Collects problems so that one run reports all of them, not just the first."""

    def __init__(self, what: Path) -> None:
        self.what = what
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        item = f"{where}: {message}"
        self.items.append(item if len(item) <= _MAX_PROBLEM_CHARS else f"{item[: _MAX_PROBLEM_CHARS - 1]}…")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_ERRORS_SHOWN]
        more = len(self.items) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise DataError(
            f"{self.what}: {len(self.items)} problem(s) in the data:\n  " + "\n  ".join(shown) + tail
        )


# ------------------------------------------------------------------------------------------ paths


def _resolve_image(raw: object, root: Path, allow_outside_root: bool) -> tuple[Path | None, str | None]:
    """The photo a label points at, or the reason it may not be used.

    Relative paths are taken from the root and must stay inside it (symlinks are followed, so a link
    leading out of the root counts as outside); absolute paths only when explicitly allowed, because
    a label file from elsewhere should not make training read arbitrary files.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None, "image path is empty or not a string"
    if len(raw) > _MAX_PATH_CHARS or "\0" in raw:
        return None, f"image path {shown(raw)} is not a usable path"
    given = Path(raw)
    if given.is_absolute() and not allow_outside_root:
        return None, f"absolute path {shown(raw)} (allow with --allow-absolute-paths)"
    path = given if given.is_absolute() else root / given
    try:
        if not allow_outside_root and not path.resolve().is_relative_to(root.resolve()):
            outside = f"path {shown(raw)} leads outside the data root {root}"
            return None, f"{outside} (allow with --allow-absolute-paths)"
        if not path.is_file():
            return None, f"image not found: {shown(str(path), 200)}"
    except OSError as e:  # a name too long for the file system, a loop of links
        return None, f"image path {shown(raw)} is not usable ({e.strerror or e.__class__.__name__})"
    return path, None


def _check_readable(path: Path) -> str | None:
    """Read the header only (cheap): catches non-images and undecodable files before training.

    Camera RAW files are checked by LibRaw and HEIC by pillow-heif (both through `formats`), exactly
    the decoders `preprocess` will use.
    """
    from PIL import Image, UnidentifiedImageError

    from humanaes_core.formats import decoders as formats

    try:
        if formats.is_raw(path):
            formats.raw_size(path)
        else:
            with Image.open(path) as img:
                img.size  # noqa: B018  (the header parse is the check)
    except ImageLoadError as e:
        return e.reason
    except UnidentifiedImageError:
        return "not an image this program can read"
    except (OSError, ValueError) as e:
        return f"unreadable image ({e.__class__.__name__}: {e})"
    return None


def _score(value: object) -> tuple[float | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"score {shown(value)} is not a number"
    try:
        x = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None, f"score {shown(value)} is outside [0, 1]"
    if not math.isfinite(x):
        return None, f"score {shown(value)} is not finite"
    if not 0.0 <= x <= 1.0:
        return None, f"score {x} is outside [0, 1]"
    return x, None


def _read_labels(path: Path, what: str) -> str:
    """A label file's text (UTF-8, a BOM allowed): a regular file of at most MAX_LABEL_BYTES."""
    try:
        return read_small_file(path, MAX_LABEL_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the {what} ({e})") from None


# ------------------------------------------------------------------------------- HumanBeauty JSONL


def load_label_jsonl(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    allow_outside_root: bool = False,
    allow_unknown_keys: bool = False,
    check_images: bool = True,
) -> DataSet:
    """A HumanBeauty label file; image names are relative to `root` (default: the file's folder)."""
    path = Path(path)
    root_path = Path(root) if root is not None else path.parent
    problems = _Problems(path)
    samples: list[Sample] = []
    lines = _read_labels(path, "label file").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = parse_json(line)
        except ValueError as e:
            problems.add(where, f"not valid JSON ({e})")
            continue
        if not isinstance(row, dict):
            problems.add(where, "a line must be a JSON object")
            continue
        sample = _jsonl_sample(row, where, root_path, problems, allow_outside_root, allow_unknown_keys)
        if sample is not None:
            samples.append(sample)
    if check_images:
        _check_images(samples, problems)
    problems.raise_if_any()
    if not samples:
        raise DataError(f"{path}: no labelled samples")
    return DataSet(samples, root_path, "jsonl", path)


def _jsonl_sample(
    row: dict,
    where: str,
    root: Path,
    problems: _Problems,
    allow_outside_root: bool,
    allow_unknown_keys: bool,
) -> Sample | None:
    n_before = len(problems.items)
    unknown = sorted(set(row) - _JSONL_KEYS)
    if unknown and not allow_unknown_keys:
        problems.add(
            where,
            f"unknown key(s) {', '.join(k[:40] for k in unknown[:5])}; expected "
            f"{', '.join(sorted(_JSONL_KEYS))} (ignore extra keys with --allow-unknown-keys)",
        )
    for key in ("image_name", "score"):
        if key not in row:
            problems.add(where, f"missing {key!r}")
    if len(problems.items) > n_before:
        return None
    image, reason = _resolve_image(row["image_name"], root, allow_outside_root)
    if reason:
        problems.add(where, reason)
    raw = row["score"]
    is_expert = row.get("is_expert", isinstance(raw, list))
    if not isinstance(is_expert, bool):
        problems.add(where, f"is_expert must be true or false, got {shown(is_expert)}")
        return None
    labels: dict[str, float] = {}
    if is_expert:
        if not isinstance(raw, list) or len(raw) != len(KEYS):
            got = f"a list of {len(raw)}" if isinstance(raw, list) else shown(raw)
            problems.add(where, f"is_expert is true, so score must be a list of 12 numbers; got {got}")
            return None
        values = []
        for i, v in enumerate(raw):
            x, why = _score(v)
            if why:
                problems.add(where, f"score[{i}]: {why}")
            values.append(x)
        if any(v is None for v in values):
            return None
        labels = from_official([float(v) for v in values if v is not None])
    else:
        if isinstance(raw, list):
            problems.add(where, "is_expert is false, so score must be one number, got a list")
            return None
        x, why = _score(raw)
        if why:
            problems.add(where, why)
            return None
        labels = {"overall": float(x)}  # type: ignore[arg-type]
    level = row.get("text_level")
    if level is not None:
        if not isinstance(level, str) or level.strip().lower() not in LEVELS:
            problems.add(where, f"text_level {shown(level)} is not one of {', '.join(LEVELS)}")
            return None
        level = level.strip().lower()
    if image is None:
        return None
    return Sample(image, labels, where, level)


def _check_images(samples: Sequence[Sample], problems: _Problems) -> None:
    for s in samples:
        why = _check_readable(s.path)
        if why:
            problems.add(s.origin, f"{s.path}: {why}")


# -------------------------------------------------------------------------------------------- CSV


def load_csv(
    path: str | os.PathLike,
    *,
    allow_outside_root: bool = False,
    check_images: bool = True,
) -> DataSet:
    """A CSV with ``path`` and any of ``overall`` and the 12 keys; paths are relative to the CSV's folder."""
    path = Path(path)
    root = path.parent
    problems = _Problems(path)
    samples: list[Sample] = []
    text = _read_labels(path, "CSV")
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if "path" not in header:
                raise DataError(
                    f"{path}:1: the header needs a 'path' column (got {(', '.join(header) or 'none')[:200]})"
                )
            unknown = [h for h in header if h != "path" and h not in _CSV_LABELS]
            if unknown:
                raise DataError(
                    f"{path}:1: unknown column(s) {', '.join(unknown)[:200]}; columns are 'path' plus "
                    f"any of {', '.join(KEYS)}"
                )
            if len(set(header)) != len(header):
                raise DataError(f"{path}:1: duplicate column names")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    problems.add(where, f"{len(row)} cells, the header has {len(header)}")
                    continue
                sample = _csv_sample(
                    dict(zip(header, row, strict=True)), where, root, problems, allow_outside_root
                )
                if sample is not None:
                    samples.append(sample)
    except csv.Error as e:
        raise DataError(f"{path}: cannot read the CSV ({e})") from None
    if check_images:
        _check_images(samples, problems)
    problems.raise_if_any()
    if not samples:
        raise DataError(f"{path}: no labelled rows")
    return DataSet(samples, root, "csv", path)


def _csv_sample(
    cells: dict[str, str], where: str, root: Path, problems: _Problems, allow_outside_root: bool
) -> Sample | None:
    image, reason = _resolve_image(cells.pop("path").strip(), root, allow_outside_root)
    if reason:
        problems.add(where, reason)
    labels: dict[str, float] = {}
    ok = True
    for key, cell in cells.items():
        if not cell.strip():
            continue
        try:
            value: object = float(cell)
        except ValueError:
            value = cell
        x, why = _score(value)
        if why:
            problems.add(where, f"{key}: {why}")
            ok = False
        else:
            labels[key] = float(x)  # type: ignore[arg-type]
    if ok and not labels:
        problems.add(where, "no label in this row (need overall and/or dimension scores)")
        ok = False
    if image is None or not ok:
        return None
    return Sample(image, {k: labels[k] for k in KEYS if k in labels}, where)


# -------------------------------------------------------------------------------------- XMP ratings


def rating_score(rating: Rating) -> float | None:
    """Overall score for a rating: reject → 0.0, 1★ → 0.1 … 5★ → 0.9; None for unrated (0 stars)."""
    if rating.rejected:
        return REJECT_SCORE
    if not rating.stars:
        return None
    return STAR_SCORES[rating.stars]


def load_rated_folder(
    folder: str | os.PathLike,
    *,
    recursive: bool = True,
    check_images: bool = True,
    allow_outside_root: bool = False,
) -> DataSet:
    """Photos with star ratings or reject flags as overall-only samples; unrated photos are skipped.

    Ratings are read by `xmp.read_rating`, the reader culling uses: the photo's own sidecar
    (``name.ext.xmp`` or ``name.xmp``, the newest first), else XMP embedded in the file. A photo that
    is a symlink leading out of the folder is skipped, like a label path leading out of a data root.
    Ratings HumanAes wrote itself (``humanaes-cull --write-xmp``, the app's auto-cull: ``Rating.origin``)
    are skipped with the reason: training learns the photographer's and editors' ratings, never its own.
    """
    from humanaes_core.formats import collect_photos, read_rating
    from humanaes_core.origins import untrainable_reason

    folder = Path(folder)
    files, skipped_files = collect_photos([folder], recursive=recursive)
    skipped = [(s.path, s.reason) for s in skipped_files]
    samples: list[Sample] = []
    ours = 0  # photos whose rating HumanAes wrote
    for photo in files:
        if not allow_outside_root:
            _, why = _resolve_image(os.path.relpath(photo, folder), folder, allow_outside_root=False)
            if why is not None:
                skipped.append((str(photo), why))
                continue
        rating = read_rating(photo)
        score = rating_score(rating)
        if score is not None and (why := untrainable_reason(rating.origin, rating.plan)):
            skipped.append((str(photo), why))
            ours += 1
        elif score is None:
            why = (
                f"0 stars (unrated) in {rating.source}"
                if rating.stars == 0
                else "no star rating or reject flag in an XMP sidecar or embedded XMP"
            )
            skipped.append((str(photo), why))
        elif check_images and (why := _check_readable(photo)):
            skipped.append((str(photo), why))
        else:
            samples.append(Sample(photo, {"overall": score}, rating.source))
    if not samples:
        raise DataError(
            f"{folder}: no rated photos found ({len(files)} photos, none with stars 1-5 or a reject flag "
            "in an XMP sidecar or embedded XMP"
            + (f" that you or an editor set; {ours} rated by HumanAes itself are not used" if ours else "")
            + ")"
        )
    return DataSet(samples, folder, "rated-folder", folder, skipped)


# ---------------------------------------------------------------------------------------- dispatch


def load_data(
    path: str | os.PathLike,
    *,
    split: str = "train",
    allow_outside_root: bool = False,
    allow_unknown_keys: bool = False,
    check_images: bool = True,
) -> DataSet:
    """Any of the three formats: a HumanBeauty root (its `split`), a .jsonl, a .csv or a rated folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return load_csv(path, allow_outside_root=allow_outside_root, check_images=check_images)
        if suffix in (".jsonl", ".json"):
            return load_label_jsonl(
                path,
                allow_outside_root=allow_outside_root,
                allow_unknown_keys=allow_unknown_keys,
                check_images=check_images,
            )
        raise DataError(f"{path}: data must be a folder, a .csv or a .jsonl label file")
    if not path.is_dir():
        raise DataError(f"{path}: not a regular file or a folder (a device, FIFO or socket); not read")
    labels = path / f"{split}_label.jsonl"
    if labels.is_file():
        data = load_label_jsonl(
            labels,
            path,
            allow_outside_root=allow_outside_root,
            allow_unknown_keys=allow_unknown_keys,
            check_images=check_images,
        )
        data.format = "humanbeauty"
        data.source = path
        return data
    others = sorted(p.name for p in path.glob("*_label.jsonl"))
    if others:
        raise DataError(f"{path}: no {labels.name} in this HumanBeauty root (found {', '.join(others)})")
    return load_rated_folder(path, check_images=check_images, allow_outside_root=allow_outside_root)
