"""Bursts and near-duplicates: photos taken moments apart that look almost the same.

A burst of ten frames should be culled as one decision ("keep the best of these"), not as ten photos
competing with the rest of the shoot. Two cues find them, and a pair must pass both:
- capture time (EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal``, file modification time when the
  file has none): frames of a burst are seconds apart;
- a perceptual hash (``imagehash.phash`` of a small decode): near-identical frames differ in a few of
  its 64 bits, different pictures in about half of them.

Linking is sequential in time: each photo joins the open group whose recent frames it is closest to
(within ``max_gap_s`` of the group's last frame and ``max_hamming`` bits of one of its last few
frames), else starts a new group. Comparing with a group's last few frames rather than only the
previous photo keeps a burst together when the photographer alternates between two subjects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from humanaes_core.culling.rules import frame_key
from humanaes_core.formats import is_raw

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MAX_HAMMING",
    "Fingerprint",
    "best_of",
    "capture_time",
    "group_photos",
    "hamming",
    "parse_exif_datetime",
    "photo_fingerprint",
]

#: Largest phash distance (bits of 64) between frames of one group. Near-identical frames (small
#: shifts, sensor noise, a blink) measure 0-6; different pictures of a similar scene 20 and more.
DEFAULT_MAX_HAMMING = 10
#: Largest time between consecutive frames of one group, seconds: bursts run at 3-20 frames per
#: second, and a photographer re-taking "the same shot" does it within a second or two.
DEFAULT_MAX_GAP_S = 2.0
HASH_SIZE = 8  # 8x8 DCT bits = 64-bit hash
_DECODE_SIZE = 128  # phash works on 32x32 pixels; a 128 px decode (JPEG draft, RAW preview) is plenty
_LINK_WINDOW = 4  # a new frame is compared with this many of a group's most recent frames

_EXIF_IFD = 0x8769
# (date-time, sub-seconds, UTC offset) tags in the EXIF IFD, preferred first
_PIL_TIME_TAGS = ((0x9003, 0x9291, 0x9011), (0x9004, 0x9292, 0x9012))
_EXIV2_TIME_TAGS = (
    ("Exif.Photo.DateTimeOriginal", "Exif.Photo.SubSecTimeOriginal", "Exif.Photo.OffsetTimeOriginal"),
    ("Exif.Image.DateTimeOriginal", "Exif.Photo.SubSecTimeOriginal", "Exif.Photo.OffsetTimeOriginal"),
    ("Exif.Photo.DateTimeDigitized", "Exif.Photo.SubSecTimeDigitized", "Exif.Photo.OffsetTimeDigitized"),
)
_DATETIME = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")

HashLike = str | int | Any  # hex string, integer, or imagehash.ImageHash


@dataclass(frozen=True)
class Fingerprint:
    """What grouping needs to know about one photo; small and JSON-friendly so callers can cache it.

    ``hash`` is the phash as hex; ``time_source`` says where ``capture_time`` came from ("exif",
    "mtime") so a UI can warn that grouping by file times is approximate.
    """

    path: Path
    capture_time: float | None
    time_source: str
    hash: str

    def item(self) -> tuple[Path, float | None, str]:
        """The (path, capture_time, hash) triple ``group_photos`` takes."""
        return self.path, self.capture_time, self.hash


def parse_exif_datetime(value: Any, subsec: Any = None, offset: Any = None) -> float | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (+ sub-seconds, + "+HH:MM") as seconds; None when absent or invalid.

    Without an offset the wall-clock time is read as if it were UTC: only differences between photos
    matter for grouping, and photos of one camera share its clock.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    m = _DATETIME.match(value.replace("\x00", ""))
    if m is None:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()), tzinfo=UTC)
    except ValueError:  # "0000:00:00 00:00:00" from cameras whose clock was never set
        return None
    if isinstance(offset, str) and (om := _OFFSET.match(offset)) is not None:
        sign = 1 if om.group(1) == "+" else -1
        delta = timedelta(hours=int(om.group(2)), minutes=int(om.group(3)))
        dt = dt.replace(tzinfo=timezone(sign * delta))
    seconds = dt.timestamp()
    if isinstance(subsec, bytes):
        subsec = subsec.decode("ascii", "replace")
    if isinstance(subsec, str):
        digits = re.sub(r"\D", "", subsec)
        if digits:
            seconds += int(digits) / 10 ** len(digits)
    return seconds


def _pillow_time(path: Path) -> float | None:
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # not a Pillow format, or broken metadata: try Exiv2, then the file time
        return None
    for dt_tag, ss_tag, off_tag in _PIL_TIME_TAGS:
        t = parse_exif_datetime(sub.get(dt_tag), sub.get(ss_tag), sub.get(off_tag))
        if t is not None:
            return t
    return None


def _exiv2_time(path: Path) -> float | None:
    from humanaes_core.formats import read_exif

    exif = read_exif(path)
    for dt_key, ss_key, off_key in _EXIV2_TIME_TAGS:
        t = parse_exif_datetime(exif.get(dt_key), exif.get(ss_key), exif.get(off_key))
        if t is not None:
            return t
    return None


def capture_time(path: str | os.PathLike[str]) -> tuple[float | None, str]:
    """(seconds, source): EXIF capture time ("exif"), else the file's modification time ("mtime"),
    else (None, "none") for a file that cannot even be stat'ed."""
    path = Path(path)
    t = None if is_raw(path) else _pillow_time(path)
    if t is None:
        t = _exiv2_time(path)
    if t is not None:
        return t, "exif"
    try:
        return path.stat().st_mtime, "mtime"
    except OSError:
        return None, "none"


def photo_fingerprint(path: str | os.PathLike[str]) -> Fingerprint:
    """Capture time and perceptual hash of one photo (raises ImageLoadError when it cannot be read)."""
    import imagehash

    from humanaes_core.model import load_image

    path = Path(path)
    img = load_image(path, target=(_DECODE_SIZE, _DECODE_SIZE), fast_decode=True)
    digest = str(imagehash.phash(img, hash_size=HASH_SIZE))
    when, source = capture_time(path)
    return Fingerprint(path, when, source, digest)


def _as_int(h: HashLike) -> int:
    if isinstance(h, int):
        return h
    if isinstance(h, str):
        return int(h, 16)
    bits = getattr(h, "hash", None)  # imagehash.ImageHash: a boolean array
    if bits is None:
        raise TypeError(f"not a hash: {h!r}")
    value = 0
    for bit in bits.flatten():
        value = (value << 1) | int(bool(bit))
    return value


def hamming(a: HashLike, b: HashLike) -> int:
    """Number of differing bits between two hashes (hex strings, integers or ImageHash objects)."""
    return (_as_int(a) ^ _as_int(b)).bit_count()


@dataclass
class _Frame:
    path: Path
    time: float | None
    hash: int
    order: int


def _link(frames: Sequence[_Frame], max_hamming: int, max_gap_s: float | None) -> list[list[_Frame]]:
    """Sequential linking; ``max_gap_s=None`` ignores time (frames without a capture time)."""
    groups: list[list[_Frame]] = []
    open_ids: list[int] = []
    for frame in frames:
        if max_gap_s is not None and frame.time is not None:
            open_ids = [
                gi
                for gi in open_ids
                if groups[gi][-1].time is not None and frame.time - groups[gi][-1].time <= max_gap_s
            ]
        best: tuple[int, int] | None = None
        for gi in open_ids:
            d = min((frame.hash ^ m.hash).bit_count() for m in groups[gi][-_LINK_WINDOW:])
            if d <= max_hamming and (best is None or d < best[0]):
                best = (d, gi)
        if best is not None:
            groups[best[1]].append(frame)
        else:
            groups.append([frame])
            open_ids.append(len(groups) - 1)
        if max_gap_s is None:
            open_ids = open_ids[-_LINK_WINDOW:]  # untimed photos: only neighbours in name order
    return groups


def group_photos(
    items: Iterable[tuple[str | os.PathLike[str], float | None, HashLike]],
    max_hamming: int = DEFAULT_MAX_HAMMING,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> list[list[Path]]:
    """Partition photos into bursts/near-duplicate groups (singletons included), in capture order.

    ``items`` are (path, capture time in seconds or None, hash). A photo joins a group when its time
    gap to the group's last frame is at most ``max_gap_s`` and its hash is within ``max_hamming`` bits
    of one of the group's last few frames. Photos without a capture time are grouped among themselves
    by hash alone, in file-name order, and only with their neighbours.
    """
    if max_hamming < 0 or max_gap_s < 0:
        raise ValueError("max_hamming and max_gap_s must not be negative")
    frames = [_Frame(Path(p), t, _as_int(h), i) for i, (p, t, h) in enumerate(items)]
    timed = sorted((f for f in frames if f.time is not None), key=lambda f: (f.time, str(f.path)))
    untimed = sorted((f for f in frames if f.time is None), key=lambda f: str(f.path))
    groups = _link(timed, max_hamming, max_gap_s) + _link(untimed, max_hamming, None)
    return [[f.path for f in g] for g in groups]


def _lookup(cards: Mapping[Any, Any], path: Path) -> Any:
    for key in (path, str(path)):
        if key in cards:
            return cards[key]
    return None


def best_of(group: Sequence[str | os.PathLike[str]], cards: Mapping[Any, Any]) -> Path | None:
    """The best frame (ScoreCards or their dicts, keyed by path or str): fewest closed eyes, then the
    sharpest eyes, then the highest overall score (``rules.frame_key``); ties go to the earlier frame;
    None when no member has a score."""
    scored = []
    for order, member in enumerate(group):
        path = Path(member)
        card = _lookup(cards, path)
        if card is not None and _has_overall(card):
            scored.append((frame_key(card), order, path))
    return min(scored)[2] if scored else None


def _has_overall(card: Any) -> bool:
    dims = card.get("dims") if isinstance(card, Mapping) else getattr(card, "dims", None)
    return isinstance(dims, Mapping) and isinstance(dims.get("overall"), (int, float))
