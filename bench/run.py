"""`python -m bench`: run every benchmark, naive and ours side by side, and write BENCHMARKS.md.

    python -m bench                 # full run (< 15 min on 2 CPU cores), writes BENCHMARKS.md
    python -m bench --quick         # smoke run with tiny sizes (figures not meaningful), writes BENCHMARKS.md
    python -m bench --only decode,rescan    # some sections, Markdown to stdout (or --out FILE)

Large inputs (24 MP JPEGs, the synthetic data set) are generated once into a cache folder
(`--cache-dir`, default: the user cache dir); models and everything else live in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import Section, machine_info
from .photos import PhotoSpec
from .presets import TrainSize

REPO = Path(__file__).resolve().parent.parent
SECTIONS = (
    "decode",
    "one_card",
    "batching",
    "feature_cache",
    "presets_speed",
    "presets_accuracy",
    "rescan",
    "thumbnails",
    "app_open",
    "checks_accuracy",
    "eyes_real",
    "checks_cost",
    "gpu",
    "scale",
)


@dataclass
class Config:
    """Sizes of one run."""

    name: str
    photos: PhotoSpec
    folder: int  # files in the large-JPEG folder (thumbnails, rescan)
    decode_photos: int
    model: str  # random model for the CPU model sections: "small" (benchmark) or "tiny" (smoke)
    one_card: list[tuple[int, tuple[int, int], int]]  # (photos, (w, h), expected tiles)
    batching_photos: int
    feature_photos: int
    speed_photos: int
    thumbs_naive_sample: int
    app_photos: PhotoSpec  # the folder the app and the CLI reopen (its photos are scored once first)
    train: TrainSize
    gpu_photos: int
    repeats: int
    repeats_app: int  # fresh processes per app and CLI figure (the median is reported)
    scale_photos: int
    gpu_archs: list[str] = field(default_factory=lambda: ["1B", "8B"])


FULL = Config(
    name="full",
    photos=PhotoSpec(6000, 4000, 92),
    folder=1000,
    decode_photos=12,
    model="small",
    one_card=[(12, (448, 448), 1), (3, (1344, 896), 7)],
    batching_photos=9,
    feature_photos=3,
    speed_photos=4,
    thumbs_naive_sample=60,
    app_photos=PhotoSpec(1200, 800, 90),
    train=TrainSize(train=128, test=64, epochs=3, image_size=960),
    gpu_photos=32,
    repeats=2,
    repeats_app=5,
    scale_photos=200,
)

QUICK = Config(
    name="quick",
    photos=PhotoSpec(3000, 2000, 90),
    folder=24,
    decode_photos=4,
    model="tiny",
    one_card=[(4, (448, 448), 1), (2, (1344, 896), 7)],
    batching_photos=8,
    feature_photos=2,
    speed_photos=2,
    thumbs_naive_sample=8,
    app_photos=PhotoSpec(1200, 800, 90),
    train=TrainSize(train=16, test=8, epochs=1, image_size=960),
    gpu_photos=4,
    repeats=1,
    repeats_app=1,
    scale_photos=8,
)


class Bench:
    """Runs the sections of one configuration; inputs are made on first use and shared."""

    def __init__(self, config: Config, cache_dir: Path, work: Path) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.work = work
        self._models: dict[str, Path] = {}
        self._photos: list[Path] | None = None

    def model(self, size: str) -> Path:
        from humanaes_core.testing import make_tiny_model

        if size not in self._models:
            self._models[size] = make_tiny_model(self.work / f"model-{size}", seed=0, size=size)
        return self._models[size]

    def photos(self) -> list[Path]:
        from .photos import photo_folder

        if self._photos is None:
            self._photos = photo_folder(self.cache_dir, self.config.folder, self.config.photos)
        return self._photos

    def section(self, key: str) -> Section:
        from . import app_open, checks, decode, eyes_real, gpu, model_cpu, presets, rescan, scale, thumbs
        from .photos import photo_folder

        c = self.config
        label = f'"{c.model}"'
        mp = c.photos.megapixels
        runs: dict[str, Callable[[], Section]] = {
            "decode": lambda: decode.run(self.photos()[: c.decode_photos], c.repeats, mp),
            "one_card": lambda: model_cpu.one_card(self.model(c.model), c.one_card, c.repeats, label),
            "batching": lambda: model_cpu.batching(self.model(c.model), c.batching_photos, c.repeats, label),
            "feature_cache": lambda: model_cpu.feature_cache(
                self.model(c.model), self.photos()[: c.feature_photos], 1, label
            ),
            "presets_speed": lambda: presets.speed(
                self.model(c.model), self.photos()[: c.speed_photos], c.repeats, label
            ),
            "presets_accuracy": lambda: presets.accuracy(
                self.model("tiny"), self.cache_dir, self.work, c.train
            ),
            "rescan": lambda: rescan.run(self.model("tiny"), self.photos()[0].parent, self.work),
            "thumbnails": lambda: thumbs.run(self.photos(), self.work, c.thumbs_naive_sample),
            "app_open": lambda: app_open.run(
                self.model("tiny"),
                photo_folder(self.cache_dir / f"app-{c.folder}", c.folder, c.app_photos),
                self.work,
                c.repeats_app,
            ),
            "checks_accuracy": checks.accuracy,
            "eyes_real": lambda: eyes_real.run(self.cache_dir),
            "checks_cost": lambda: checks.cost(
                photo_folder(self.cache_dir, 6, c.photos), self.work, c.repeats
            ),
            "gpu": lambda: gpu.run(c.gpu_archs, self.work, self.photos()[:16], c.gpu_photos),
            "scale": lambda: scale.run(
                self.model("tiny"),
                photo_folder(self.cache_dir, c.scale_photos, c.photos),
                self.work,
                c.repeats,
            ),
        }
        started = time.perf_counter()
        try:
            sec = runs[key]()
        except Exception as e:
            traceback.print_exc()
            sec = Section(key, key, f"python -m bench --only {key}")
            sec.skipped = f"the benchmark failed: {e.__class__.__name__}: {e}"
        sec.seconds = time.perf_counter() - started
        return sec


def render(
    config: Config, sections: list[Section], info: dict[str, str], total_s: float, argv: list[str]
) -> str:
    command = "python -m bench" + (" " + " ".join(argv) if argv else "")
    quick = config.name == "quick"
    out = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {dt.date.today().isoformat()} in {total_s / 60:.1f} min"
        + (
            " — **quick smoke run: tiny sizes and the tiny model, the figures are not the benchmark.**"
            if quick
            else "."
        ),
        "Every figure is measured next to the naive (released) approach in the same run. Reproduce with "
        "`python -m bench` (full, under 15 minutes on 2 CPU cores; `--only SECTION` for one table).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in info.items()]
    out += [
        "| dtype | float32 on the CPU (all CPU rows); the GPU section states its own |",
        f"| photos | {config.photos.long_side}×{config.photos.short_side} JPEGs "
        f"({config.photos.megapixels:.0f} MP, quality {config.photos.quality}, EXIF), "
        "generated by `bench/photos.py` |",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for sec in sections:
        for name, value, met in sec.checks:
            out.append(f"| {name} | {value} | {'yes' if met else 'no' if met is not None else '—'} |")
        if sec.key == "gpu":
            state = "measured, see below" if sec.rows else "not measured, see the GPU section"
            out.append(f"| GPU rows (photos/s, peak memory, 1B and 8B) | {state} | — |")
    out.append("")
    for sec in sections:
        out.append(sec.markdown())
        out.append(f"_({sec.seconds:.0f} s)_")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _default_cache() -> Path:
    env = os.environ.get("HUMANAES_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("humanaes-bench", appauthor=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every section")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--out", default=None, help="Markdown file (default BENCHMARKS.md; stdout with --only)"
    )
    parser.add_argument("--cache-dir", default=None, help="where generated photos and data sets are kept")
    parser.add_argument("--gpu-archs", default="1B,8B", help="architectures for the GPU section")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    config.gpu_archs = [a.strip() for a in args.gpu_archs.split(",") if a.strip()]
    only = SECTIONS if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = args.out or (None if args.only else str(REPO / "BENCHMARKS.md"))
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else _default_cache()
    cache_dir.mkdir(parents=True, exist_ok=True)

    logging.getLogger("humanaes_core.model.devices").setLevel(logging.ERROR)  # "no GPU in use", once per load
    started = time.perf_counter()
    info = machine_info()
    sections: list[Section] = []
    saved = {k: os.environ.get(k) for k in ("HUMANAES_MODELS", "HUMANAES_CACHE")}
    with tempfile.TemporaryDirectory(prefix="humanaes-bench-") as tmp:
        work = Path(tmp)
        # the product's own caches go to the temporary folder, not to the user's
        os.environ["HUMANAES_MODELS"] = str(work / "hub")
        os.environ["HUMANAES_CACHE"] = str(work / "cache.sqlite")
        try:
            bench = Bench(config, cache_dir, work)
            for key in SECTIONS:
                if key in only:
                    print(f"[bench] {key} ...", file=sys.stderr, flush=True)
                    sec = bench.section(key)
                    print(f"[bench] {key}: {sec.seconds:.0f} s", file=sys.stderr, flush=True)
                    sections.append(sec)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    with contextlib.suppress(OSError):
        info["load at end"] = f"{os.getloadavg()[1]:.2f} (5 min average)"
    text = render(
        config,
        sections,
        info,
        time.perf_counter() - started,
        list(argv if argv is not None else sys.argv[1:]),
    )
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"[bench] wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    failed = [s.key for s in sections if s.skipped and s.skipped.startswith("the benchmark failed")]
    return 1 if failed else 0
