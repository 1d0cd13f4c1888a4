"""The speed presets: time per camera photo end to end, and the accuracy each costs on the synthetic
evaluation task (a tiny model trained at the accurate setting, then evaluated at every preset)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from humanaes_core import load_scorer
from humanaes_core.model import TileConfig, tile_count
from humanaes_core.scoring import PRESETS

from . import released
from .common import Section, ms, race, ratio

ASPECTS = [
    ("3:2", 6000, 4000),
    ("2:3", 4000, 6000),
    ("4:3", 4032, 3024),
    ("16:9", 5472, 3078),
    ("1:1", 4000, 4000),
]


@dataclass
class TrainSize:
    train: int
    test: int
    epochs: int
    image_size: int  # square synthetic photos; 960 px gives 10 / 5 / 1 tiles at the three presets


def speed(model: Path, paths: list[Path], repeats: int, label: str) -> Section:
    """Camera JPEG files to full cards: released recipe vs each preset through `Scorer.score_iter`."""
    sec = Section(
        "presets_speed",
        f"End to end, camera JPEG → full card, per preset — {label} model, {len(paths)} photos",
        "python -m bench --only presets_speed",
        ["approach", "tiles per photo", "per photo", "photos/s", "vs released"],
    )
    n = len(paths)
    accurate = load_scorer(model, device="cpu", preset="accurate", feature_cache_bytes=0)

    def naive() -> None:
        for p in paths:
            px = released.load_image(str(p), accurate.tile_config)
            released.score_one(accurate.model, px)

    scorers = {"accurate": accurate}
    for name in PRESETS:
        if name != "accurate":
            scorers[name] = load_scorer(model, device="cpu", preset=name, feature_cache_bytes=0)
    fns: dict[str, Callable[[], object]] = {"released": naive}
    for name, scorer in scorers.items():
        scorer.score(paths[:1])  # warm-up
        fns[name] = lambda s=scorer: list(s.score_iter(paths))
    t = {k: v / n for k, v in race(fns, repeats).items()}
    t_rel = t["released"]
    sizes = []
    for p in paths:
        with Image.open(p) as img:
            sizes.append(img.size)

    def mean_tiles(max_tiles: int) -> str:
        counts = [tile_count(w, h, TileConfig(max_tiles=max_tiles)) for w, h in sizes]
        return f"{sum(counts) / len(counts):.1f}"

    sec.row(
        "released: decode, then two passes, one photo at a time",
        mean_tiles(12),
        ms(t_rel),
        f"{1 / t_rel:.2f}",
        "1.00×",
    )
    for name, preset in PRESETS.items():
        tiles = mean_tiles(preset.max_tiles)
        sec.row(
            f"ours, preset `{name}` (max {preset.max_tiles} tile{'s' if preset.max_tiles != 1 else ''})",
            tiles,
            ms(t[name]),
            f"{1 / t[name]:.2f}",
            ratio(t_rel, t[name]),
        )
    cols = " | ".join(a for a, _, _ in ASPECTS)
    sec.notes += [
        "Ours: decoding in 2 worker threads overlapping the model, batches by tile count, shared-prefix "
        f"single pass. Photos: {sum(w > h for w, h in sizes)} landscape and {sum(w < h for w, h in sizes)} "
        f"portrait 24 MP JPEGs. Best of {repeats}.",
        f"Tiles per photo at each preset ({cols}): "
        + "; ".join(
            f"{name} "
            + "/".join(str(tile_count(w, h, TileConfig(max_tiles=p.max_tiles))) for _, w, h in ASPECTS)
            for name, p in PRESETS.items()
        )
        + ".",
    ]
    return sec


def _synthetic_root(cache_dir: Path, size: TrainSize) -> Path:
    from humanaes_core.data import write_humanbeauty

    root = cache_dir / f"synthetic-{size.train}-{size.test}-{size.image_size}px"
    if not (root / "test_label.jsonl").is_file():
        write_humanbeauty(root, size.train, size.test, seed=0, size=size.image_size)
    return root


def accuracy(base: Path, cache_dir: Path, work: Path, size: TrainSize) -> Section:
    """Train the tiny model at the accurate preset, evaluate it at each preset."""
    from humanaes_core.data import load_data
    from humanaes_core.evaluation import evaluate_samples
    from humanaes_core.train import TrainConfig, train

    sec = Section(
        "presets_accuracy",
        "Accuracy cost of the presets on the synthetic evaluation task",
        "python -m bench --only presets_accuracy",
        ["model", "preset", "tiles", "SRCC", "PLCC", "MAE", "mean MAE of 12 dims", "eval time / photo"],
    )
    root = _synthetic_root(cache_dir, size)
    out = work / "synthetic-trained"
    started = time.perf_counter()
    train(
        TrainConfig(
            data=str(root),
            base=str(base),
            out=str(out),
            max_tiles=PRESETS["accurate"].max_tiles,
            epochs=size.epochs,
            batch_size=8,
            lr=1e-3,
            head_lr=1e-2,
            lora_rank=8,
            lora_alpha=16,
            lora_dropout=0.0,
            workers=0,
            save_every=0,
            val_fraction=0.0,
            cpu=True,
            quiet=True,
            overwrite=True,
        )
    )
    train_s = time.perf_counter() - started
    test = load_data(root, split="test")
    results = {}
    for model_name, path, presets in (("untrained", base, ["accurate"]), ("trained", out, list(PRESETS))):
        for name in presets:
            scorer = load_scorer(path, device="cpu", preset=name, batch_size=8, feature_cache_bytes=0)
            t0 = time.perf_counter()
            report = evaluate_samples(scorer, test.samples, progress=False)
            per_photo = (time.perf_counter() - t0) / len(test.samples)
            s = report["summary"]
            dims = sum(s["dims_mae"].values()) / len(s["dims_mae"])
            tiles = tile_count(size.image_size, size.image_size, scorer.tile_config)
            results[f"{model_name}/{name}"] = {
                "srcc": s["srcc"],
                "plcc": s["plcc"],
                "mae": s["mae"],
                "dims_mae": dims,
            }
            sec.row(
                model_name,
                name,
                tiles,
                f"{s['srcc']:.3f}",
                f"{s['plcc']:.3f}",
                f"{s['mae']:.4f}",
                f"{dims:.4f}",
                ms(per_photo),
            )
    acc = results["trained/accurate"]
    for name in PRESETS:
        if name != "accurate":
            r = results[f"trained/{name}"]
            sec.notes.append(
                f"`{name}` vs `accurate`: SRCC {r['srcc'] - acc['srcc']:+.3f}, "
                f"MAE {r['mae'] - acc['mae']:+.4f}, 12-dimension MAE {r['dims_mae'] - acc['dims_mae']:+.4f}."
            )
    sec.notes += [
        f"Tiny random model fine-tuned as tests/test_train.py does (LoRA + heads, {size.epochs} "
        f"epochs, {size.train} photos of {size.image_size} px, at the accurate preset, {train_s:.0f} s), "
        f"evaluated on {size.test} held-out photos with `humanaes_core.evaluation` at each preset. Labels "
        "are fixed functions of the drawn figure (`humanaes_core.data.synthetic`).",
        "Read with care: the synthetic figures have no fine detail, so they show whether fewer tiles break "
        "the model, not what they cost on real skin, eyes and hair at 24 MP. Measure that on your own rated "
        "photos: `humanaes-eval --data FOLDER --model M --max-tiles 1|4|12`.",
    ]
    (work / "presets_accuracy.json").write_text(json.dumps(results, indent=1))
    return sec
