"""A corpus of hostile inputs for the scanner, and the table of how each one ended.

Everything a real disk and a real user throw at a photo scanner, generated here (no downloads): empty and
truncated files, wrong suffixes, decompression bombs, extreme sizes, every odd pixel mode, animations,
random bytes behind HEIC/RAW suffixes, broken symlinks and link loops, pipes and devices with photo names,
folders named like photos, non-UTF-8 names, a 1,200-level folder tree, and the dynamic cases: files
deleted or replaced while the scan runs, a slow decode and a decoder that hangs.

``tests/test_hostile.py`` asserts every row. To print the table yourself, from the repository root::

    python -m tests.reliability.hostile_corpus
"""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

SCORED = "scored"
IGNORED = "ignored"  # not a photo to the scanner: neither scored nor reported (a folder, a link to one)
REPORTED = "(any reason)"
#: Deeper than Python's default recursion limit (1,000): recursive walkers and shutil.rmtree fail here.
DEEP_LEVELS = 1200  # reported with some reason; which one depends on the decoder's version


@dataclass
class Case:
    """One hostile input and what must become of it: ``SCORED``, ``IGNORED`` or the start of a reason."""

    name: str
    path: Path
    expect: str
    note: str = ""


@dataclass
class Outcome:
    case: Case
    got: str  # SCORED, IGNORED, or the reason reported
    card: object | None = None

    @property
    def ok(self) -> bool:
        if self.case.expect in (SCORED, IGNORED):
            return self.got == self.case.expect
        if self.case.expect == REPORTED:
            return self.got not in (SCORED, IGNORED)
        return self.got.startswith(self.case.expect)


@dataclass
class Corpus:
    root: Path
    cases: list[Case] = field(default_factory=list)

    def add(self, name: str, path: Path, expect: str, note: str = "") -> Path:
        self.cases.append(Case(name, path, expect, note))
        return path


# ------------------------------------------------------------------------------------------ pictures


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth, deterministic RGB 'photo' (gradients), cheap at any size."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    chans = [127 + 100 * np.sin(a * 6 * x + b * 6 * y + c) for a, b, c in rng.uniform(-1, 1, (3, 3))]
    return Image.fromarray(np.stack(chans, -1).clip(0, 255).astype(np.uint8), "RGB")


def encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height (greyscale) but holds a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is patched to claim width × height."""
    data = bytearray(encoded(picture(1, (64, 48)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen and first image descriptor claim width × height."""
    data = bytearray(encoded(Image.new("P", (8, 8)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    desc = data.index(b"\x2c", 13)
    struct.pack_into("<HH", data, desc + 5, width, height)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """An uncompressed greyscale TIFF whose IFD claims width × height over 16 bytes of strip data."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets: right after the header
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_at = 8 + 16
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_at) + b"\x80" * 16)
    out += struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack("<HHI", tag, kind, count)
        out += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    out += struct.pack("<I", 0)
    return bytes(out)


def webp_claiming(width: int, height: int) -> bytes:
    """A WebP with an extended (VP8X) header claiming a width × height canvas and no image data."""
    vp8x = struct.pack("<B3x", 0) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def animated(fmt: str) -> bytes:
    """Two frames: red, then green. The scanner must score the first one."""
    frames = [Image.new("RGB", (96, 64), (220, 30, 30)), Image.new("RGB", (96, 64), (30, 220, 30))]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def bad_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block is garbage: the photo must still be shown as stored."""
    exif = b"Exif\0\0" + b"MM\0*" + b"\xff" * 60
    data = encoded(picture(5, (120, 90)), "JPEG", quality=85)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:]


def text_bomb_png() -> bytes:
    """A PNG with a compressed text chunk that inflates to 64 MB (Pillow refuses text chunks that large)."""
    good = encoded(picture(6, (64, 64)), "PNG")
    ztxt = b"Comment\0\0" + zlib.compress(b"a" * (64 << 20), 9)
    at = good.index(b"IDAT") - 4
    return good[:at] + png_chunk(b"zTXt", ztxt) + good[at:]


def many_frames_gif(n: int = 2000) -> bytes:
    frames = [Image.new("P", (16, 16), i % 256) for i in range(n)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------- corpus


def build(root: Path) -> Corpus:
    """Create the static corpus under ``root`` (a fresh folder) and list every case with its expectation."""
    c = Corpus(root)
    root.mkdir(parents=True, exist_ok=True)
    good_jpeg = encoded(picture(1, (320, 240)), "JPEG", quality=85)
    good_png = encoded(picture(2, (240, 320)), "PNG")

    # empty, truncated, wrong content
    c.add("zero-byte .jpg", write(root / "empty.jpg", b""), "not an image (empty file)")
    c.add("zero-byte .png", write(root / "empty.png", b""), "not an image (empty file)")
    c.add(
        "truncated JPEG (1/3)",
        write(root / "cut.jpg", good_jpeg[: len(good_jpeg) // 3]),
        "truncated or corrupt",
    )
    c.add(
        "truncated PNG (1/2)", write(root / "cut.png", good_png[: len(good_png) // 2]), "truncated or corrupt"
    )
    c.add(
        "JPEG cut inside its header", write(root / "cut-header.jpg", good_jpeg[:120]), "truncated or corrupt"
    )
    c.add("text named .jpg", write(root / "notes.jpg", b"just some notes\n" * 40), "not an image")
    rnd = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    c.add("random bytes .jpg", write(root / "noise.jpg", rnd), "not an image")
    c.add(
        "PNG text-chunk bomb (64 MB)", write(root / "textbomb.png", text_bomb_png()), "truncated or corrupt"
    )

    # wrong suffixes: the content decides
    c.add("PNG named .jpg", write(root / "png-inside.jpg", good_png), SCORED)
    c.add("JPEG named .png", write(root / "jpeg-inside.png", good_jpeg), SCORED)
    c.add("JPEG named .tif", write(root / "jpeg-inside.tif", encoded(picture(3, (200, 150)), "JPEG")), SCORED)
    c.add(
        "JPEG named .CR2 (RAW suffix)",
        write(root / "jpeg-inside.CR2", encoded(picture(4, (160, 120)), "JPEG")),
        SCORED,
    )

    # decompression bombs: headers claiming 60,000 × 60,000 (3.6 gigapixels)
    c.add("PNG claiming 60000×60000", write(root / "bomb.png", png_claiming(60000, 60000)), "too large")
    c.add("JPEG claiming 60000×60000", write(root / "bomb.jpg", jpeg_claiming(60000, 60000)), "too large")
    c.add("GIF claiming 60000×60000", write(root / "bomb.gif", gif_claiming(60000, 60000)), "too large")
    c.add("TIFF claiming 60000×60000", write(root / "bomb.tif", tiff_claiming(60000, 60000)), "too large")
    c.add("WebP claiming 60000×60000", write(root / "bomb.webp", webp_claiming(60000, 60000)), REPORTED)
    c.add(
        "PNG claiming 12000×12000, no data",
        write(root / "big-empty.png", png_claiming(12000, 12000)),
        "truncated",
    )

    # extreme sizes
    c.add("1×1 PNG", write(root / "dot.png", encoded(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")), SCORED)
    c.add(
        "1×1 JPEG", write(root / "dot.jpg", encoded(Image.new("RGB", (1, 1), (9, 99, 199)), "JPEG")), SCORED
    )
    c.add(
        "20000×150 panorama PNG", write(root / "strip.png", encoded(picture(7, (20000, 150)), "PNG")), SCORED
    )
    c.add(
        "150×20000 tower JPEG", write(root / "tower.jpg", encoded(picture(8, (150, 20000)), "JPEG")), SCORED
    )

    # pixel modes
    base = picture(9, (200, 150))
    c.add("CMYK JPEG", write(root / "cmyk.jpg", encoded(base.convert("CMYK"), "JPEG")), SCORED)
    c.add("CMYK TIFF", write(root / "cmyk.tif", encoded(base.convert("CMYK"), "TIFF")), SCORED)
    grey16 = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    c.add("16-bit greyscale PNG", write(root / "grey16.png", encoded(grey16, "PNG")), SCORED)
    c.add("16-bit greyscale TIFF", write(root / "grey16.tif", encoded(grey16, "TIFF")), SCORED)
    c.add("32-bit float TIFF", write(root / "float.tif", encoded(base.convert("F"), "TIFF")), SCORED)
    c.add("palette PNG", write(root / "palette.png", encoded(base.convert("P"), "PNG")), SCORED)
    pal_t = base.convert("P")
    c.add(
        "palette PNG with transparency",
        write(root / "palette-t.png", encoded(pal_t, "PNG", transparency=0)),
        SCORED,
    )
    c.add("RGBA PNG", write(root / "rgba.png", encoded(base.convert("RGBA"), "PNG")), SCORED)
    c.add("LA PNG", write(root / "la.png", encoded(base.convert("LA"), "PNG")), SCORED)
    c.add("1-bit PNG", write(root / "bw.png", encoded(base.convert("1"), "PNG")), SCORED)
    c.add("RGBA WebP", write(root / "rgba.webp", encoded(base.convert("RGBA"), "WEBP")), SCORED)
    c.add("JPEG with garbage EXIF", write(root / "bad-exif.jpg", bad_exif_jpeg()), SCORED)
    c.add("JPEG with junk after EOI", write(root / "trailing.jpg", good_jpeg + b"\0junk" * 100), SCORED)

    # animations and multi-page files: the first frame
    c.add("animated GIF (2 frames)", write(root / "anim.gif", animated("GIF")), SCORED, "first frame")
    c.add("animated WebP (2 frames)", write(root / "anim.webp", animated("WEBP")), SCORED, "first frame")
    c.add("animated PNG (2 frames)", write(root / "anim.png", animated("PNG")), SCORED, "first frame")
    c.add("GIF with 2,000 frames", write(root / "long.gif", many_frames_gif()), SCORED, "first frame")
    pages = [picture(20 + i, (120, 90)) for i in range(5)]
    tiff_pages = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    c.add("5-page TIFF", write(root / "pages.tif", tiff_pages), SCORED, "first page")

    # HEIC / RAW suffixes (each with bytes of its own: identical files are decoded once, one outcome)
    gen = np.random.default_rng(1)
    for suffix in (".heic", ".HEIF"):
        noise = gen.integers(0, 256, 8192, dtype=np.uint8).tobytes()
        c.add(f"random bytes {suffix}", write(root / f"noise{suffix}", noise), "not an image")
    for suffix in (".cr2", ".NEF", ".arw", ".dng", ".raf", ".cr3"):
        noise = gen.integers(0, 256, 8192, dtype=np.uint8).tobytes()
        c.add(
            f"random bytes {suffix}", write(root / f"noise{suffix}", noise), "not a supported camera RAW file"
        )
    note = "same bytes as the other empty files: decoded once, one reason for all"
    c.add("zero-byte .heic", write(root / "empty.heic", b""), "not an image (empty file)", note)
    c.add("zero-byte .nef", write(root / "empty.nef", b""), "not an image (empty file)", note)
    c.add("truncated TIFF-based .dng", write(root / "cut.dng", encoded(base, "TIFF")[:300]), REPORTED)
    try:
        heic = encoded(picture(10, (240, 160)), "HEIF", quality=80)
    except (KeyError, OSError, ValueError):
        heic = b""
    if heic:
        c.add("real HEIC", write(root / "phone.heic", heic), SCORED)

    # the file system
    link_dir = root / "links"
    link_dir.mkdir()
    target = write(link_dir / "real.jpg", encoded(picture(11, (180, 120)), "JPEG"))
    os.symlink("real.jpg", link_dir / "alias.jpg")
    c.add("symlink to a photo", link_dir / "alias.jpg", SCORED)
    c.add("(its target)", target, SCORED)
    os.symlink("does-not-exist.jpg", link_dir / "dangling.jpg")
    c.add("broken symlink", link_dir / "dangling.jpg", "broken symbolic link")
    os.symlink("loop-b.jpg", link_dir / "loop-a.jpg")
    os.symlink("loop-a.jpg", link_dir / "loop-b.jpg")
    c.add("symlink loop a → b → a", link_dir / "loop-a.jpg", "symbolic link loop")
    os.symlink("self.jpg", link_dir / "self.jpg")
    c.add("symlink to itself", link_dir / "self.jpg", "symbolic link loop")
    os.symlink(".", link_dir / "cycle")
    c.add("symlinked folder back to its parent", link_dir / "cycle" / "real.jpg", IGNORED, "not followed")
    folder_photo = root / "folder.jpg"
    inner = write(folder_photo / "inside.jpg", encoded(picture(12, (160, 120)), "JPEG"))
    c.add("folder named folder.jpg", folder_photo, IGNORED, "walked as a folder")
    c.add("(a photo inside it)", inner, SCORED)
    os.symlink("folder.jpg", root / "dirlink.png")
    c.add("symlink to a folder, named .png", root / "dirlink.png", "is a directory")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.jpg")
        c.add("named pipe named pipe.jpg", root / "pipe.jpg", "not a regular file")
    if os.path.exists("/dev/zero"):
        os.symlink("/dev/zero", root / "zero.jpg")
        c.add("symlink to /dev/zero named .jpg", root / "zero.jpg", "not a regular file")
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads anything
        locked = write(root / "locked.jpg", good_jpeg)
        locked.chmod(0)
        c.add("unreadable file (mode 000)", locked, "permission denied")

    # names
    raw_root = os.fsencode(root)
    for raw_name, data, expect in (
        (b"caf\xe9 portrait.jpg", encoded(picture(13, (150, 200)), "JPEG"), SCORED),
        (b"\xff\xfe broken.png", b"not a png", "not an image"),
    ):
        with open(os.path.join(raw_root, raw_name), "wb") as fh:
            fh.write(data)
        shown = raw_name.decode("latin-1")
        c.add(f"non-UTF-8 name {shown!r}", Path(os.fsdecode(os.path.join(raw_root, raw_name))), expect)
    c.add("emoji and RTL name", write(root / "😀 صورة.jpg", encoded(picture(14, (120, 160)), "JPEG")), SCORED)
    c.add(
        "name of 250 bytes",
        write(root / ("n" * 246 + ".jpg"), encoded(picture(15, (100, 80)), "JPEG")),
        SCORED,
    )
    # dates: nanoseconds since 1970 beyond int64 (after April 2262), as a wrong clock or a restore leaves
    future = write(root / "dated-3000.jpg", encoded(picture(17, (120, 90)), "JPEG"))
    os.utime(future, ns=(32_503_680_000 * 10**9, 32_503_680_000 * 10**9))
    c.add("dated after 2262 (mtime beyond int64 ns)", future, SCORED)
    deep = root / "deep"
    deep.mkdir()
    for _ in range(DEEP_LEVELS):  # one level at a time: os.makedirs and Path.mkdir recurse per level
        deep = deep / "d"
        deep.mkdir()
    bottom = deep / "bottom.jpg"
    bottom.write_bytes(encoded(picture(16, (100, 80)), "JPEG"))
    c.add(f"{DEEP_LEVELS:,} nested folders", bottom, SCORED, "deeper than Python's recursion limit")
    return c


# ---------------------------------------------------------------------------------------- scanning


def scan(
    cases: list[Case],
    roots: Iterable[Path],
    model: Path,
    cache_path: Path,
    *,
    hook: Callable[[Iterable], Iterable] | None = None,
    stream_hook: Callable[[Iterator], Iterator] | None = None,
) -> tuple[list[Outcome], float]:
    """Collect and score ``roots`` like ``humanaes-score`` does; the outcome of every case and the time.

    ``hook`` wraps the files on their way into the decoders, ``stream_hook`` the decoded stream on its
    way to the model: the dynamic cases change the disk at those moments.
    """
    from humanaes_core.formats import collect_photos
    from humanaes_core.scoring import scan as scan_mod
    from humanaes_core.scoring import scorer as scorer_mod  # where the scan takes decode_stream from
    from humanaes_core.store.scores import ScoreCache

    files, skipped = collect_photos(list(roots))
    results: dict[str, tuple[str, object | None]] = {s.path: (s.reason, None) for s in skipped}
    real = scorer_mod.decode_stream

    def hooked(items: Iterable, tiles: object, workers: int = 2, window: int = 16) -> Iterator:
        stream = real(hook(items) if hook else items, tiles, workers=workers, window=window)
        return stream_hook(stream) if stream_hook else stream

    started = time.perf_counter()
    scorer_mod.decode_stream = hooked
    try:
        with ScoreCache(cache_path) as cache:
            runner = scan_mod.CachedScoring(model, cache=cache, device="cpu", max_tiles=2, batch_size=4)
            for r in runner.run(files):
                results[str(r.source)] = (SCORED, r.card) if r.card is not None else (r.error or "?", None)
    finally:
        scorer_mod.decode_stream = real
    elapsed = time.perf_counter() - started
    outcomes = []
    for case in cases:
        got, card = results.get(str(case.path), (IGNORED, None))
        outcomes.append(Outcome(case, got, card))
    return outcomes, elapsed


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


def _on_item(target: Path, action: Callable[[], None]) -> Callable[[Iterable], Iterator]:
    """A hook that runs ``action`` (once) just before ``target`` is handed to a decoder."""
    action = _once(action)

    def hook(items: Iterable) -> Iterator:
        for item in items:
            if Path(item) == target:
                action()
            yield item

    return hook


def _after_decoded(target: Path, action: Callable[[], None]) -> Callable[[Iterator], Iterator]:
    """A stream hook that runs ``action`` (once) when ``target`` has been decoded, before the model runs."""
    action = _once(action)

    def hook(stream: Iterator) -> Iterator:
        for item in stream:
            if item.source is not None and Path(item.source) == target:
                action()
            yield item

    return hook


class _Hang(ImageFile.ImageFile):
    """A Pillow format whose decoder never returns (until released): a decoder stuck in C code."""

    format = "HANGTEST"
    release = threading.Event()

    def _open(self) -> None:
        _Hang.release.wait()
        raise SyntaxError("released")


@contextmanager
def _hanging_decoder() -> Iterator[None]:
    Image.register_open(_Hang.format, _Hang, lambda prefix: prefix[:8] == b"HANGHANG")
    _Hang.release.clear()
    try:
        yield
    finally:
        _Hang.release.set()
        Image.OPEN.pop(_Hang.format, None)
        if _Hang.format in Image.ID:
            Image.ID.remove(_Hang.format)


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def dynamic_cases(work: Path, model: Path) -> list[Outcome]:
    """Files deleted or replaced during a scan, a slow decode and a hanging decoder, each in its own scan."""
    from humanaes_core.model.preprocessing import DECODE_TIMEOUT_ENV

    outcomes: list[Outcome] = []
    old = encoded(picture(30, (200, 150)), "JPEG")
    new = encoded(picture(31, (150, 200)), "JPEG")

    def scenario(dirname: str) -> tuple[Path, Path]:
        folder = work / dirname
        photo = write(folder / "photo.jpg", old)
        write(folder / "neighbour.jpg", encoded(picture(32, (120, 90)), "JPEG"))
        return folder, photo

    def run_one(name: str, expect: str, folder: Path, photo: Path, **hooks: object) -> None:
        case = Case(name, photo, expect)
        got, _ = scan([case], [folder], model, work / f"{folder.name}.sqlite", **hooks)  # type: ignore[arg-type]
        outcomes.extend(got)

    folder, photo = scenario("deleted-early")
    hook = _on_item(photo, photo.unlink)
    run_one("deleted after hashing, before decoding", "file not found", folder, photo, hook=hook)
    folder, photo = scenario("deleted-late")
    stream_hook = _after_decoded(photo, photo.unlink)
    run_one(
        "deleted after decoding, before caching", "file not found", folder, photo, stream_hook=stream_hook
    )
    folder, photo = scenario("replaced-early")
    hook = _on_item(photo, lambda: _replace(photo, new))
    run_one("replaced after hashing, before decoding", SCORED, folder, photo, hook=hook)
    folder, photo = scenario("replaced-late")
    stream_hook = _after_decoded(photo, lambda: _replace(photo, new))
    run_one("replaced after decoding, before caching", SCORED, folder, photo, stream_hook=stream_hook)
    folder, photo = scenario("rewritten")
    hook = _on_item(photo, lambda: _rewrite(photo, new))
    run_one("rewritten in place, mtime kept, before decoding", SCORED, folder, photo, hook=hook)

    slow = work / "slow"
    big = write(slow / "huge-flat.png", encoded(Image.new("L", (11000, 11000), 128), "PNG"))
    with _env(DECODE_TIMEOUT_ENV, "0.05"):
        run_one("121-megapixel PNG, limit 0.05 s", "decoding took too long", slow, big)
    hang_dir = work / "hang"
    hang = write(hang_dir / "hang.jpg", b"HANGHANG" + b"\0" * 100)
    write(hang_dir / "fine.jpg", old)
    with _hanging_decoder(), _env(DECODE_TIMEOUT_ENV, "1"):
        run_one("decoder that never returns, limit 1 s", "decoding took too long", hang_dir, hang)
    return outcomes


def _replace(path: Path, data: bytes) -> None:
    """Replace the file the way editors save: write a sibling, then rename it over (a new inode)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # even the mtime is kept: only the inode tells
    os.replace(tmp, path)


def _rewrite(path: Path, data: bytes) -> None:
    """Overwrite the bytes in place (same inode) and restore the mtime: only size or ctime change."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def remove_tree(top: Path) -> None:
    """Delete a folder tree of any depth without recursion (``shutil.rmtree`` recurses once per level)."""
    top_fd_path = os.fsencode(top)
    if not os.path.lexists(top_fd_path):
        return
    pending = [top_fd_path]
    folders: list[bytes] = []
    while pending:
        folder = pending.pop()
        os.chmod(folder, stat.S_IRWXU)
        folders.append(folder)
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


# ------------------------------------------------------------------------------------------- table


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a text table: case, expected, what happened, OK."""
    rows = [("case", "expected", "outcome", "ok")]
    for o in outcomes:
        expect = o.case.expect
        got = o.got + (f" ({o.case.note})" if o.case.note and o.got in (SCORED, IGNORED) else "")
        rows.append((o.case.name, expect, got, "yes" if o.ok else "NO"))
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(cell[:48].ljust(w) for cell, w in zip(r, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    counts: dict[str, int] = {}
    for o in outcomes:
        kind = o.got if o.got in (SCORED, IGNORED) else "reported with a reason"
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    failed = sum(not o.ok for o in outcomes)
    lines.append(f"\n{len(outcomes)} hostile cases: {summary}; {failed} not as expected.")
    return "\n".join(lines)


def main() -> int:
    from humanaes_core.testing import make_tiny_model

    work = Path(tempfile.mkdtemp(prefix="humanaes-hostile-"))
    try:
        model = make_tiny_model(work / "model", seed=0, size="tiny")
        corpus = build(work / "corpus")
        outcomes, elapsed = scan(corpus.cases, [corpus.root], model, work / "cache.sqlite")
        outcomes += dynamic_cases(work / "dynamic", model)
        print(table(outcomes))
        print(f"static corpus scanned in {elapsed:.1f} s")
        return 0 if all(o.ok for o in outcomes) else 1
    finally:
        remove_tree(work)


if __name__ == "__main__":
    sys.exit(main())
