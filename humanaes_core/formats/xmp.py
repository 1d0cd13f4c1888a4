"""XMP sidecars: the ratings, reject flags and colour labels that Lightroom, darktable and digiKam read.

A culling decision has to reach the photographer's editor without touching the original, so it goes
into an XMP sidecar next to the photo. Sidecars are parsed and serialised by Exiv2 (through pyexiv2,
which bundles libexiv2 and its XMP toolkit): an existing sidecar is read completely, only the decision
fields change, and everything else it held (keywords ``dc:subject``, ``lr:hierarchicalSubject``,
Lightroom/ACR develop settings ``crs:*``, darktable's history, fields of namespaces nobody here knows)
is written back. The new file replaces the old one atomically (temporary file in the same folder, then
``os.replace``), so a crash never leaves half a sidecar; a sidecar that does not parse is left alone and
reported instead of being overwritten, and so is one that is not a regular file (a pipe, a link to a
device), one over ``SIDECAR_MAX_BYTES``, and one made read-only.

Fields written:
- ``xmp:Rating``: 0-5 stars; ``-1`` for a reject (Lightroom Classic, Bridge/ACR, darktable);
- ``xmp:Label``: a colour label by name ("Red", "Yellow", "Green", "Blue", "Purple": Lightroom's default
  label set, and the names darktable maps to its labels);
- with ``digikam=True``: ``digiKam:PickLabel`` (1 rejected, 3 accepted) and ``digiKam:ColorLabel``;
- ``xmp:MetadataDate``, so editors that compare it with their catalogue notice the change;
- who decided, in HumanAes's own namespace (``humanaes``, ``http://ns.humanaes.org/1.0/``):
  ``humanaes:Origin`` (``photographer`` for decisions made in the app, ``humanaes`` for auto-cull and
  ``humanaes-cull``), ``humanaes:Plan`` (the auto-cull plan, for HumanAes's decisions),
  ``humanaes:WrittenRating`` and ``humanaes:WrittenPickLabel`` (what ``xmp:Rating`` and
  ``digiKam:PickLabel`` said after the write) and ``humanaes:WrittenBy`` ("HumanAes 0.1.0").

Reading a sidecar tells whose decision it holds (``Rating.origin``): the recorded origin when HumanAes's
marks are there and ``xmp:Rating`` and ``digiKam:PickLabel`` still say what HumanAes wrote; otherwise
an editor's (no marks: Lightroom, darktable, digiKam, Capture One or a camera wrote it; marks that no
longer match: an editor changed the rating afterwards, or rewrote the file without our namespace). In
a sidecar an editor changed, a decision field still as HumanAes wrote it is HumanAes's and not read as
the editor's (digiKam's reject under the stars an editor set in Lightroom).
The sidecar carries this itself, so HumanAes's own decisions are recognised after a restart, on
another machine or with the library file lost, and training never mistakes them for the
photographer's. The marks are written only with a change of the rating or pick flag, into a sidecar
without any decision, or over HumanAes's own earlier marks: a sidecar whose rating an editor set and
that already says what HumanAes would write keeps reading as the editor's.

``xmp:CreatorTool`` is not written. It names the tool that created the resource the metadata describes
(the camera's firmware, or the editor that made the file): in an editor's sidecar it is the editor's
word, and in a new one "HumanAes" would claim HumanAes made the photo. Recognition therefore relies on
HumanAes's namespace alone, never on ``CreatorTool``.

Sidecar names (``convention``):
- ``name.xmp`` (``IMG_0001.xmp``): Lightroom Classic, Camera Raw/Bridge and Capture One. Lightroom reads
  sidecars for proprietary RAW files only; for JPEG, TIFF, HEIC and DNG it reads XMP embedded in the file.
- ``name.ext.xmp`` (``IMG_0001.CR2.xmp``): darktable and digiKam (their default), for every format.
- ``auto`` (default): ``name.xmp`` for proprietary RAW files, where Lightroom looks, ``name.ext.xmp``
  for everything else (DNG included), which darktable and digiKam read and which never collides when a
  RAW and a JPEG share a name. An existing sidecar always wins over the convention: whichever of the
  two names already exists is updated (both, if both exist), so an editor's own sidecar stays the one
  that holds the decision. ``name.xmp`` belongs to the RAW of a RAW+JPEG pair and is never used for the
  JPEG.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from humanaes_core import __version__
from humanaes_core.errors import HumanAesError
from humanaes_core.files import FileTooLargeError, NotRegularFileError, atomic_write, read_small_file
from humanaes_core.formats.photos import HEIF_SUFFIXES, RAW_SUFFIXES
from humanaes_core.origins import Origin, origin_of

__all__ = [
    "CONVENTIONS",
    "LABELS",
    "NAMESPACE",
    "SIDECAR_MAX_BYTES",
    "Convention",
    "Rating",
    "XmpError",
    "existing_sidecars",
    "read_exif",
    "read_rating",
    "read_sidecar",
    "sidecar_path",
    "write_decision",
]

Convention = Literal["auto", "name.xmp", "name.ext.xmp"]
CONVENTIONS: tuple[str, ...] = ("auto", "name.xmp", "name.ext.xmp")
#: The largest sidecar read or rewritten. Real ones are kilobytes (a long darktable history a few
#: hundred); a bigger file is not a sidecar anyone wrote, and parsing 200 MB costs gigabytes.
SIDECAR_MAX_BYTES = 16 << 20
#: Lightroom's default colour-label names, which darktable also maps to its five labels.
LABELS: tuple[str, ...] = ("Red", "Yellow", "Green", "Blue", "Purple")

_RATING = "Xmp.xmp.Rating"
_LABEL = "Xmp.xmp.Label"
_METADATA_DATE = "Xmp.xmp.MetadataDate"
_SIDECAR_FOR = "Xmp.photoshop.SidecarForExtension"
_DK_PICK = "Xmp.digiKam.PickLabel"
_DK_COLOR = "Xmp.digiKam.ColorLabel"
_DK_REJECTED, _DK_ACCEPTED = "1", "3"
# digiKam's colour-label numbers for the names photographers use.
_DK_COLORS = {
    "red": "1",
    "orange": "2",
    "yellow": "3",
    "green": "4",
    "blue": "5",
    "purple": "6",
    "magenta": "6",
    "gray": "7",
    "grey": "7",
    "black": "8",
    "white": "9",
}
_DK_COLOR_NAMES = {"1": "Red", "2": "Orange", "3": "Yellow", "4": "Green", "5": "Blue", "6": "Purple"}

#: HumanAes's XMP namespace: who made the decision a sidecar holds (see the module's docstring).
NAMESPACE = "http://ns.humanaes.org/1.0/"
_PREFIX = "humanaes"
_HA_ORIGIN = f"Xmp.{_PREFIX}.Origin"
_HA_PLAN = f"Xmp.{_PREFIX}.Plan"
_HA_RATING = f"Xmp.{_PREFIX}.WrittenRating"
_HA_PICK = f"Xmp.{_PREFIX}.WrittenPickLabel"
_HA_WRITTEN_BY = f"Xmp.{_PREFIX}.WrittenBy"

# Photo suffixes that may share a stem with a RAW file (IMG_0001.CR2 + IMG_0001.JPG) and so compete
# for the name.xmp sidecar.
_STEM_SIBLINGS = (
    frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".avif"})
    | RAW_SUFFIXES
    | HEIF_SUFFIXES
)
_LIGHTROOM_RAW = RAW_SUFFIXES - {".dng"}  # DNG carries its XMP inside; Lightroom ignores its sidecars

# An empty XMP packet: the starting point Exiv2 fills in when a photo has no sidecar yet.
_EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>\n'
).encode()

# Exiv2's XMP toolkit keeps process-wide state (namespace registry) and is not documented as
# thread-safe; sidecar work is milliseconds, so one lock serialises it.
_LOCK = threading.RLock()


class XmpError(HumanAesError):
    """A sidecar cannot be read or written (malformed XMP, permission problem, missing photo)."""


@dataclass(frozen=True)
class Rating:
    """A photo's decision as editors store it: stars (None: unrated), reject, pick, colour label.

    ``pick`` is True for digiKam's "accepted", False for a reject, None when no pick flag is stored;
    ``source`` is the sidecar path or "<photo> (embedded)" it came from, None when nothing was found;
    ``origin`` who decided (an editor unless HumanAes's marks say otherwise) and ``plan`` the auto-cull
    plan of a decision HumanAes made.
    """

    stars: int | None = None
    rejected: bool = False
    pick: bool | None = None
    label: str | None = None
    source: str | None = None
    origin: Origin = Origin.EDITOR
    plan: str | None = None


@functools.cache
def _exiv2():
    import pyexiv2

    pyexiv2.set_log_level(3)  # errors only: warnings about odd maker notes would flood a folder scan
    pyexiv2.registerNs(NAMESPACE, _PREFIX)  # Exiv2 writes humanaes:* only once it knows the namespace
    return pyexiv2


# ------------------------------------------------------------------------------------------- naming


def _variants(folder: Path, name: str) -> list[Path]:
    return [folder / f"{name}.xmp", folder / f"{name}.XMP"]


def _first_existing(paths: list[Path]) -> Path | None:
    for p in paths:
        if p.is_file():
            return p
    return None


def _stem_priority(path: Path) -> tuple[int, str]:
    suffix = path.suffix.lower()
    rank = 0 if suffix in _LIGHTROOM_RAW else 1 if suffix in RAW_SUFFIXES else 2
    return rank, path.name


def _owns_stem_sidecar(photo: Path) -> bool:
    """Whether ``name.xmp`` is this photo's: it is, unless a sibling with the same stem ranks higher
    (a proprietary RAW before a DNG before anything else), as in a RAW+JPEG pair."""
    mine = _stem_priority(photo)
    for suffix in _STEM_SIBLINGS:
        for variant in (suffix, suffix.upper()):
            sibling = photo.with_name(photo.stem + variant)
            if sibling.name == photo.name or not sibling.is_file():
                continue
            with contextlib.suppress(OSError):
                if os.path.samefile(sibling, photo):  # case-insensitive file systems
                    continue
            if _stem_priority(sibling) < mine:
                return False
    return True


def _candidates(photo: Path) -> dict[str, Path | None]:
    """The existing sidecar under each convention (None where there is none, or name.xmp is not ours)."""
    ext_side = _first_existing(_variants(photo.parent, photo.name))
    stem_side = _first_existing(_variants(photo.parent, photo.stem))
    if stem_side is not None and not _owns_stem_sidecar(photo):
        stem_side = None
    return {"name.ext.xmp": ext_side, "name.xmp": stem_side}


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def existing_sidecars(photo: str | os.PathLike[str]) -> list[Path]:
    """The photo's own sidecars that exist, most recently modified first (the editor's latest word)."""
    found = [p for p in _candidates(Path(photo)).values() if p is not None]
    return sorted(found, key=_mtime, reverse=True)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"sidecar convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")


def _new_sidecar(photo: Path, convention: str) -> Path:
    wants_stem = convention == "name.xmp" or (convention == "auto" and photo.suffix.lower() in _LIGHTROOM_RAW)
    if wants_stem and _owns_stem_sidecar(photo):
        return photo.with_name(photo.stem + ".xmp")
    return photo.with_name(photo.name + ".xmp")


def sidecar_path(photo: str | os.PathLike[str], convention: Convention | str = "auto") -> Path:
    """Where the photo's decision goes: its newest existing sidecar, else the convention's name."""
    _check_convention(convention)
    existing = existing_sidecars(photo)
    return existing[0] if existing else _new_sidecar(Path(photo), convention)


# ------------------------------------------------------------------------------------------ reading


def _open_image(path: Path):
    """An Exiv2 handle on a file; from memory when the path cannot be passed to Exiv2's narrow API."""
    pyexiv2 = _exiv2()
    encoding = "mbcs" if os.name == "nt" else "utf-8"
    try:
        return pyexiv2.Image(os.fspath(path), encoding=encoding)
    except UnicodeEncodeError:  # undecodable name on POSIX, or outside the ANSI code page on Windows
        return pyexiv2.ImageData(path.read_bytes())


def _parse_packet(data: bytes, where: str) -> tuple[Any, dict[str, Any]]:
    """Exiv2 handle and fields of an XMP sidecar's bytes; XmpError when they are not XMP."""
    pyexiv2 = _exiv2()
    try:
        img = pyexiv2.ImageData(data if data.strip() else _EMPTY_PACKET)
    except RuntimeError as exc:
        raise XmpError(f"{where}: not a readable XMP sidecar ({exc})") from exc
    try:
        if img.get_mime_type() != "application/rdf+xml":
            raise XmpError(f"{where}: not an XMP sidecar")
        fields = img.read_xmp()
    except RuntimeError as exc:
        img.close()
        raise XmpError(f"{where}: not a readable XMP sidecar ({exc})") from exc
    except BaseException:
        img.close()
        raise
    return img, fields


def _sidecar_bytes(path: Path, *, to_rewrite: bool = False) -> bytes | None:
    """A sidecar's bytes; None when there is none. Only a regular file of at most SIDECAR_MAX_BYTES is
    read (a pipe would block forever, ``/dev/zero`` never end), and with `to_rewrite` only a writable
    one: a sidecar made read-only is the photographer's "leave this alone"."""
    try:
        data = read_small_file(path, SIDECAR_MAX_BYTES)
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotRegularFileError:
        raise XmpError(f"{path}: not a regular file (a folder, pipe or device); not touched") from None
    except FileTooLargeError:
        raise XmpError(
            f"{path}: larger than the {SIDECAR_MAX_BYTES >> 20} MB a sidecar may have; not touched"
        ) from None
    except OSError as exc:
        raise XmpError(f"{path}: {exc.strerror or exc}") from exc
    if to_rewrite and (not mode & 0o222 or not os.access(path, os.W_OK)):
        raise XmpError(f"{path}: the sidecar is read-only; left as it is")
    return data


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All fields of one sidecar, keyed the Exiv2 way (``Xmp.xmp.Rating``, ``Xmp.dc.subject``, ...)."""
    path = Path(path)
    data = _sidecar_bytes(path)
    if data is None:
        raise XmpError(f"{path}: no such sidecar")
    with _LOCK:
        img, fields = _parse_packet(data, str(path))
        img.close()
    return fields


def _int(value: Any) -> int | None:
    try:
        return round(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


def _rating_from(fields: dict[str, Any], source: str) -> Rating | None:
    """The decision held by one set of XMP fields, or None when it has no decision field at all."""
    origin, plan = _origin(fields)
    if _HA_ORIGIN in fields and not _written_by_us(fields):
        fields = _editors_part(fields)
    stars_raw = _int(fields.get(_RATING)) if _RATING in fields else None
    pick_raw = str(fields.get(_DK_PICK, "")).strip()
    label = fields.get(_LABEL)
    if not isinstance(label, str) or not label.strip():
        label = _DK_COLOR_NAMES.get(str(fields.get(_DK_COLOR, "")).strip())
    if stars_raw is None and pick_raw not in (_DK_REJECTED, _DK_ACCEPTED) and label is None:
        return None
    rejected = (stars_raw is not None and stars_raw < 0) or pick_raw == _DK_REJECTED
    stars = stars_raw if stars_raw is not None and 0 <= stars_raw <= 5 else None
    pick = False if rejected else True if pick_raw == _DK_ACCEPTED else None
    return Rating(
        stars=stars,
        rejected=rejected,
        pick=pick,
        label=label.strip() if label else None,
        source=source,
        origin=origin,
        plan=plan,
    )


def _same(a: Any, b: Any) -> bool:
    """Two rating or pick-label values say the same (both absent counts; "4" and "4.0" agree)."""
    return _int(a) == _int(b)


def _written_by_us(fields: dict[str, Any]) -> bool:
    """HumanAes's marks are there and the rating and pick flag still say what HumanAes wrote."""
    return (
        _HA_ORIGIN in fields
        and _same(fields.get(_RATING), fields.get(_HA_RATING))
        and _same(fields.get(_DK_PICK), fields.get(_HA_PICK))
    )


def _editors_part(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a sidecar an editor changed after HumanAes wrote it, without the decision fields that
    still say what HumanAes wrote: those are HumanAes's (digiKam's reject under an editor's new stars from
    Lightroom, or Rating -1 under digiKam's new "accepted"), not the editor's."""
    ours = {_RATING: _HA_RATING, _DK_PICK: _HA_PICK}
    return {k: v for k, v in fields.items() if k not in ours or not _same(v, fields.get(ours[k]))}


def _origin(fields: dict[str, Any]) -> tuple[Origin, str | None]:
    """Who decided what these fields hold, and HumanAes's plan; an editor unless our marks still hold."""
    if not _written_by_us(fields):
        return Origin.EDITOR, None
    origin = origin_of(str(fields[_HA_ORIGIN]).strip(), default=Origin.EDITOR)
    plan = fields.get(_HA_PLAN) if origin == Origin.HUMANAES else None
    return origin, plan if isinstance(plan, str) and plan.strip() else None


def _embedded_fields(photo: Path) -> dict[str, Any]:
    try:
        with _LOCK:
            img = _open_image(photo)
            try:
                return img.read_xmp()
            finally:
                img.close()
    except (OSError, RuntimeError, ValueError):  # no metadata Exiv2 understands: simply no rating
        return {}


def read_rating(photo: str | os.PathLike[str]) -> Rating:
    """The photo's decision: its newest own sidecar, else XMP embedded in the file, else an empty Rating.

    Sidecars beat embedded XMP because editors update sidecars while cameras embed; an unreadable
    sidecar is skipped here (writing refuses to overwrite it).
    """
    photo = Path(photo)
    for sidecar in existing_sidecars(photo):
        try:
            fields = read_sidecar(sidecar)
        except XmpError:
            continue
        rating = _rating_from(fields, str(sidecar))
        if rating is not None:
            return rating
    rating = _rating_from(_embedded_fields(photo), f"{photo} (embedded)")
    return rating if rating is not None else Rating()


def read_exif(photo: str | os.PathLike[str]) -> dict[str, str]:
    """EXIF fields via Exiv2 (``Exif.Photo.DateTimeOriginal``, ...), for RAW files Pillow cannot parse;
    empty when the file has none or Exiv2 cannot read it."""
    try:
        with _LOCK:
            img = _open_image(Path(photo))
            try:
                return {k: v for k, v in img.read_exif().items() if isinstance(v, str)}
            finally:
                img.close()
    except (OSError, RuntimeError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------ writing


def _validate(stars: int | None, label: str | None) -> None:
    if stars is not None and (isinstance(stars, bool) or not isinstance(stars, int) or not 0 <= stars <= 5):
        raise ValueError(f"stars must be an integer 0-5 or None, got {stars!r}")
    if label is not None and not isinstance(label, str):
        raise ValueError(f"label must be a string, got {label!r}")


def _changes(
    fields: dict[str, Any],
    *,
    stars: int | None,
    rejected: bool,
    label: str | None,
    pick: bool | None,
    digikam: bool,
) -> dict[str, str | None]:
    """The fields to set (str) or remove (None) so the sidecar says what the decision says; only real
    changes, so rewriting an up-to-date sidecar is a no-op."""
    wanted: dict[str, str | None] = {}
    wanted[_RATING] = "-1" if rejected else None if stars is None else str(stars)
    if label is not None:
        name = label.strip()
        wanted[_LABEL] = name or None
        if digikam:
            code = _DK_COLORS.get(name.lower())
            if not name:
                wanted[_DK_COLOR] = None
            elif code is not None:
                wanted[_DK_COLOR] = code
    if digikam:
        current = str(fields.get(_DK_PICK, "")).strip()
        if rejected:
            wanted[_DK_PICK] = _DK_REJECTED
        elif pick:
            wanted[_DK_PICK] = _DK_ACCEPTED
        elif current in (_DK_REJECTED, _DK_ACCEPTED):
            wanted[_DK_PICK] = None  # un-flagged: drop our flag, keep digiKam's "pending"
    changes: dict[str, str | None] = {}
    for key, value in wanted.items():
        present = fields.get(key)
        if value is None:
            if key in fields:
                changes[key] = None
        elif key == _RATING and present is not None and _int(present) == int(value):
            continue
        elif present != value:
            changes[key] = value
    return changes


def _marks(
    fields: dict[str, Any], changes: dict[str, str | None], origin: Origin, plan: str | None
) -> dict[str, str | None]:
    """HumanAes's marks for a write of `changes` (see the module's docstring): none when the rating and
    pick flag stay and were someone else's, so an editor's decision is never claimed."""
    decides = _RATING in changes or _DK_PICK in changes
    held = any(k in fields for k in (_RATING, _DK_PICK, _LABEL, _DK_COLOR))
    if not decides and held and not _written_by_us(fields):
        return {}
    after = {**fields, **changes}
    wanted = {
        _HA_ORIGIN: origin.value,
        _HA_PLAN: plan if origin == Origin.HUMANAES and plan else None,
        _HA_RATING: after.get(_RATING),
        _HA_PICK: after.get(_DK_PICK),
        _HA_WRITTEN_BY: f"HumanAes {__version__}",
    }
    return {
        k: None if v is None else str(v)
        for k, v in wanted.items()
        if (v is None and k in fields) or (v is not None and fields.get(k) != str(v))
    }


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _update(sidecar: Path, photo: Path, changes_for: Any) -> bool:
    """Read-modify-write one sidecar under the lock; True when the file was (re)written."""
    data = _sidecar_bytes(sidecar, to_rewrite=True) or b""
    img, fields = _parse_packet(data, str(sidecar))
    try:
        changes = changes_for(fields)
        is_new = not data.strip()
        if not changes and not is_new:
            return False
        changes[_METADATA_DATE] = _now_iso()
        if is_new and sidecar.name.lower() == (photo.stem + ".xmp").lower():
            changes[_SIDECAR_FOR] = photo.suffix.lstrip(".").upper()  # as Lightroom writes it
        try:
            # Exiv2 mirrors a sidecar's XMP into EXIF and IPTC when reading it and copies those back
            # when writing, which resurrects removed fields (a deleted xmp:Rating of -1 comes back as
            # 65535 through the unsigned EXIF Rating). The sidecar's truth is its XMP: drop the mirrors.
            img.clear_exif()
            img.clear_iptc()
            img.modify_xmp(changes)
            out = img.get_bytes()
        except RuntimeError as exc:
            raise XmpError(f"{sidecar}: cannot update the XMP ({exc})") from exc
    finally:
        img.close()
    try:
        with atomic_write(sidecar, "wb") as fh:
            fh.write(out)
    except OSError as exc:
        raise XmpError(f"{sidecar}: cannot write ({exc.strerror or exc})") from exc
    return True


def write_decision(
    photo: str | os.PathLike[str],
    stars: int | None,
    rejected: bool = False,
    label: str | None = None,
    *,
    pick: bool | None = None,
    convention: Convention | str = "auto",
    digikam: bool = True,
    origin: Origin | str = Origin.PHOTOGRAPHER,
    plan: str | None = None,
) -> list[Path]:
    """Merge a decision into the photo's sidecar(s); returns the sidecars that now hold it.

    ``stars``: 0-5, or None for "unrated" (``xmp:Rating`` removed); ``rejected`` writes Rating -1
    whatever ``stars`` says. ``label``: None leaves the colour label as it is, "" removes it, a name
    sets it. ``pick``: digiKam's "accepted" flag (rejects always get digiKam's "rejected"). Every
    existing sidecar of the photo is updated (both names if both exist); otherwise a new one is made
    under ``convention``. The photo itself is never opened for writing. ``origin`` and ``plan`` say
    who decided (HumanAes's auto-cull passes ``Origin.HUMANAES`` and its plan), recorded in HumanAes's
    namespace so that reading the sidecar tells it again.
    """
    _check_convention(convention)
    _validate(stars, label)
    origin = Origin(origin)
    photo = Path(photo)
    if not photo.is_file():
        raise XmpError(f"{photo}: photo not found, no sidecar written")
    if photo.suffix.lower() == ".xmp":
        raise XmpError(f"{photo}: is a sidecar, not a photo")

    def changes_for(fields: dict[str, Any]) -> dict[str, str | None]:
        changes = _changes(fields, stars=stars, rejected=rejected, label=label, pick=pick, digikam=digikam)
        return {**changes, **_marks(fields, changes, origin, plan)}

    with _LOCK:
        targets = existing_sidecars(photo) or [_new_sidecar(photo, convention)]
        for sidecar in targets:
            _update(sidecar, photo, changes_for)
    return targets
