"""Regenerate `resources/screenshot.png`: the real app on a demo folder, with the detail panel open.

    xvfb-run -s "-screen 0 1920x1200x24" python -m humanaes_desktop.screenshot --out resources/screenshot.png

No released weights are needed (or downloaded): the window scores ~24 demo photos with the core's demo
model (`python -m humanaes_core.testing OUT --demo`), whose scores follow brightness and colourfulness.
The numbers in the picture therefore show what the app looks like, not an aesthetic judgement.
A culling session is shown in progress: the best photos picked and starred, a few rated, the weakest
rejected (dimmed). Everything is written under a scratch folder; the user's cache, settings and
thumbnails are not touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

DEMO_SIZE = (1600, 1040)


def make_demo_photos(folder: Path) -> list[Path]:
    """Portrait variants of skimage's astronaut, a few other real photos, and smooth synthetic scenes."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    astro = Image.fromarray(data.astronaut())
    photos: dict[str, Image.Image] = {
        "portrait_01.jpg": astro,
        "portrait_02.jpg": ImageEnhance.Brightness(astro).enhance(0.45),
        "portrait_03.jpg": ImageEnhance.Brightness(astro).enhance(1.5),
        "portrait_04.jpg": astro.crop((100, 0, 400, 300)).resize((600, 600)),
        "portrait_05.jpg": ImageOps.grayscale(astro).convert("RGB"),
        "portrait_06.jpg": astro.filter(ImageFilter.GaussianBlur(6)),
        "portrait_07.jpg": ImageOps.mirror(astro),
        "portrait_08.jpg": ImageEnhance.Color(astro).enhance(2.0),
        "portrait_09.jpg": astro.crop((0, 0, 512, 300)).resize((960, 563)),
        "portrait_10.jpg": ImageEnhance.Contrast(astro).enhance(0.5),
        "coffee.jpg": Image.fromarray(data.coffee()),
        "chelsea.jpg": Image.fromarray(data.chelsea()),
        "rocket.jpg": Image.fromarray(data.rocket()),
    }
    rng = np.random.default_rng(7)
    for i in range(11):
        w, h = [(900, 600), (600, 900), (800, 800), (1200, 500)][i % 4]
        photos[f"scene_{i + 1:02d}.jpg"] = _smooth_scene(rng, w, h)
    for name, img in photos.items():
        if not (folder / name).exists():
            img.save(folder / name, quality=90)
    return sorted(folder / n for n in photos)


def _smooth_scene(rng: object, w: int, h: int) -> object:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-3, 3, 3)  # type: ignore[attr-defined]
        img[..., c] = 127 + 100 * np.sin(a * x / w + b * y / h + phase)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)  # type: ignore[attr-defined]
        colour = rng.uniform(0, 255, 3)  # type: ignore[attr-defined]
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + colour * blob
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_demo_model(path: Path) -> Path:
    """The core's demo checkpoint (`humanaes_core.testing.make_demo_model`), reused if already there."""
    from humanaes_core.model import is_checkpoint, read_meta
    from humanaes_core.testing import is_demo
    from humanaes_core.testing import make_demo_model as make

    if is_checkpoint(path) and is_demo(read_meta(path)):
        return path
    return make(path)


def _most_telling(window: object) -> Path:
    """A portrait below the folder average through a dimension group (Face or Appearance), with bars of
    both signs, so the sentence reads down to a part and the bars show what pulled it down and what held
    it up."""
    best, best_score = None, -1.0
    for photo in window.model.photos:  # type: ignore[attr-defined]
        if photo.card is None or not photo.path.name.startswith("portrait"):
            continue
        why = window.explanation_for(photo)  # type: ignore[attr-defined]
        if why is None:
            continue
        signs = {n.total > 0 for n in why.walk() if n is not why}
        driver = why.children["expert"].driver()
        through_group = driver is not None and driver.key in (
            "facial_aesthetic",
            "general_appearance_aesthetic",
        )
        score = -why.total * (2.0 if through_group else 1.0) * (1.5 if len(signs) == 2 else 1.0)
        if score > best_score:
            best, best_score = photo.path, score
    assert best is not None, "no scored portrait to show"
    return best


def demo_decisions(window: object) -> None:
    """A culling session in progress, so the tiles show stars, picks and dimmed rejects: the best
    photos picked and starred, the weakest rejected, a few in between rated."""
    from humanaes_core.store import Flag

    ranked = sorted(
        (p for p in window.model.photos if p.card is not None),  # type: ignore[attr-defined]
        key=lambda p: -p.overall,
    )
    plan = [
        (ranked[:2], {"flag": Flag.PICK, "stars": 5}),
        (ranked[2:5], {"flag": Flag.PICK, "stars": 4}),
        (ranked[7:9], {"stars": 3}),
        (ranked[-4:], {"flag": Flag.REJECT}),
    ]
    for photos, fields in plan:
        items = [(p.content_hash, p.path) for p in photos if p.content_hash]
        window.decisions.update(items, "demo", **fields)  # type: ignore[attr-defined]


def save_small_png(image: object, out: Path, max_bytes: int = 500_000) -> None:
    """PNG under `max_bytes` for the README: lossless if it fits, else 256 colours with dithering."""
    import io

    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[attr-defined]
    data = bytes(buffer.data().data())
    if len(data) > max_bytes:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        palette = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small = io.BytesIO()
        img.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(small, "PNG", optimize=True)
        data = small.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m humanaes_desktop.screenshot", description=__doc__)
    parser.add_argument("--out", default="resources/screenshot.png")
    parser.add_argument(
        "--icon", default="resources/icon.png", help="also write the app icon here ('' to skip)"
    )
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "humanaes-screenshot"))
    parser.add_argument(
        "--select", default="auto", help="photo shown in the detail panel (auto: the most telling portrait)"
    )
    args = parser.parse_args(argv)
    work = Path(args.work)
    os.environ["HUMANAES_CONFIG_DIR"] = str(work / "config")
    os.environ["HUMANAES_CACHE"] = str(work / "cache.sqlite")
    os.environ["HUMANAES_THUMBNAILS"] = str(work / "thumbnails")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for stale in work.glob("cache.sqlite*"):  # score afresh (the status bar shows a real scoring run), no
        stale.unlink()  # decisions left from an earlier run
    make_demo_photos(work / "photos")
    model = make_demo_model(work / "HumanAes-demo-tiny")

    from PySide6.QtWidgets import QApplication

    from . import theme
    from .mainwindow import MainWindow
    from .settings import AppSettings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply(app)  # type: ignore[arg-type]
    settings = AppSettings.load()
    settings.scoring.model = str(model)
    settings.scoring.device = "cpu"
    settings.scoring.max_tiles = 2
    settings.geometry = settings.splitter = ""
    settings.tile_size = 150  # six columns: the whole demo folder, picks at the top and rejects at the bottom
    window = MainWindow(settings)
    window.resize(*DEMO_SIZE)
    window.show()
    window.open_paths([str(work / "photos")])

    def pump(seconds: float, until: object = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            if until is not None and until():  # type: ignore[operator]
                return
            time.sleep(0.01)

    pump(120, lambda: not window.controller.running and window.model.photos)
    pump(30, lambda: all(p.content_hash for p in window.model.photos) and not window.decisions.busy)
    demo_decisions(window)
    pump(30, lambda: not window.decisions.busy and not window.scanner.busy)
    window.set_sort("overall", True)
    pump(1.0)
    window.select_path(work / "photos" / args.select if args.select != "auto" else _most_telling(window))
    pump(30, lambda: not window.thumbnails.busy and not window.previews.busy)
    pump(0.5)
    window.statusBar().clearMessage()  # the demo decisions' notices
    pump(0.2)
    save_small_png(window.grab().toImage(), Path(args.out))
    if args.icon:
        theme.app_icon().pixmap(256, 256).save(args.icon, "PNG")
    window.close()
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
