"""The Ray engine (`humanaes-score --engine ray`): 1 vs 2 CPU workers on a local cluster, and 1 GPU
worker vs every GPU when the machine has more than one.

Each run scores the same camera JPEGs into a fresh library, as `humanaes-score --engine ray` does: the
time includes starting the workers and loading the model in each (not starting the Ray cluster, which
the section does once), decoding, scoring and storing every card. The single-process path runs on the
same photos beside it, and every Ray run must give its cards exactly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from humanaes_core.scoring import CachedScoring, RayScoring
from humanaes_core.store import ScoreCache

from .common import Section, ratio, secs


def _cards(engine: CachedScoring, files: list[Path]) -> tuple[float, dict[str, dict | str | None]]:
    started = time.perf_counter()
    cards = {r.source: r.card.to_dict() if r.card else r.error for r in engine.run(files)}
    return time.perf_counter() - started, cards


def _same(cards: dict, reference: dict, *, exact: bool) -> bool:
    """Exactly the same cards on the CPU; on GPUs within 16-bit rounding (batches are made differently)."""
    if exact or cards.keys() != reference.keys():
        return cards == reference
    for path, card in cards.items():
        ref = reference[path]
        if isinstance(card, dict) != isinstance(ref, dict):
            return False
        if isinstance(card, dict) and abs(card["dims"]["overall"] - ref["dims"]["overall"]) > 0.02:
            return False
    return True


def _decode(files: list[Path]) -> None:
    from PIL import Image

    for path in files:
        with Image.open(path) as image:
            image.draft("RGB", (image.width // 4, image.height // 4))
            image.load()


def _headroom(files: list[Path], repeats: int) -> float:
    """How much faster 2 processes decode `files` than 1 on this machine now: the most 2 CPU workers
    can gain here (other processes may hold the cores). Best of `repeats`, taken in turns."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    fork = multiprocessing.get_context("fork")  # before Ray starts: Pillow only, nothing to re-import
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(max(1, repeats)):
        for n in best:
            with ProcessPoolExecutor(n, mp_context=fork) as pool:
                pool.submit(int).result()  # the processes exist before the clock starts
                started = time.perf_counter()
                list(pool.map(_decode, [files[i::n] for i in range(n)]))
                best[n] = min(best[n], time.perf_counter() - started)
    return best[1] / best[2]


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "—"


def _ray_run(model: Path, files: list[Path], path: Path, device: str, count: int, reference) -> tuple:
    """(seconds, the workers' photos/s, load after) of one run into a fresh library at `path`."""
    path.unlink(missing_ok=True)
    cache = ScoreCache(path)
    engine = RayScoring(model, cache=cache, device=device, workers=count)
    try:
        seconds, cards = _cards(engine, files)
    finally:
        engine.close()
        cache.close()
    if not _same(cards, reference, exact=device == "cpu"):
        raise AssertionError(f"the Ray engine with {count} {device} workers gave other cards")
    rates = ", ".join(f"{w.rate:.1f}" for w in sorted(engine.workers.values(), key=lambda w: w.name))
    return seconds, rates, _load()


def _ray_rows(
    sec: Section,
    model: Path,
    files: list[Path],
    work: Path,
    device: str,
    counts: tuple[int, ...],
    reference,
    repeats: int,
) -> None:
    """One row per worker count, the best of `repeats` runs taken in turns (1, 2, 1, 2: a burst of load
    from other processes hits both alike); the first count is the one the others are compared with."""
    best: dict[int, tuple] = {}
    for _ in range(max(1, repeats)):
        for count in counts:
            run = _ray_run(model, files, work / f"scale-{device}-{count}.sqlite", device, count, reference)
            if count not in best or run[0] < best[count][0]:
                best[count] = run
    kind = "GPU" if device == "cuda" else "CPU"
    for count in counts:
        seconds, rates, load = best[count]
        sec.row(
            f"Ray, {count} {kind} worker{'s' if count > 1 else ''}",
            secs(seconds),
            f"{len(files) / seconds:.2f}",
            rates,
            ratio(best[counts[0]][0], seconds),
            load,
        )


def run(model: Path, photos: list[Path], work: Path, repeats: int = 1) -> Section:
    """`model` (the tiny one) on CPU workers; a real-size 1B checkpoint on the GPUs when there are several."""
    import ray
    import torch

    from .gpu import ARCHS, build_checkpoint

    n = len(photos)
    sec = Section(
        "scale",
        f"Scale: the Ray engine on {n} photos, 1 vs 2 workers",
        "python -m bench --only scale",
        [
            "engine",
            "total",
            "photos/s",
            "each worker (photos/s of model time)",
            "vs 1 worker",
            "load (1 min)",
        ],
    )
    headroom = _headroom(photos[:16], repeats)
    runs = [_cards(CachedScoring(model, cache=None, device="cpu"), photos) for _ in range(max(1, repeats))]
    seconds, reference = min(runs, key=lambda run: run[0])
    sec.row("single process (today's path)", secs(seconds), f"{n / seconds:.2f}", "—", "—", _load())
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False)
    try:
        _ray_rows(sec, model, photos, work, "cpu", (1, 2), reference, repeats)
    finally:
        ray.shutdown()
    gpus = torch.cuda.device_count()
    if gpus > 1:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        gpu_model = build_checkpoint(ARCHS["1B"], work / "scale-1B", "cuda", dtype)
        ray.init(address="local", num_gpus=gpus, include_dashboard=False)
        try:
            seconds, reference = _cards(CachedScoring(gpu_model, cache=None, device="cuda"), photos)
            sec.row("single process, 1 GPU", secs(seconds), f"{n / seconds:.2f}", "—", "—", _load())
            _ray_rows(sec, gpu_model, photos, work, "cuda", (1, gpus), reference, repeats)
        finally:
            ray.shutdown()
    sec.notes += [
        f"A local Ray cluster of 2 CPUs and the random tiny model at the default 12 tiles, so the time is "
        f"mostly decoding {n} camera JPEGs: on a cluster without GPUs Ray fuses decoding into each model "
        "worker, so 2 workers decode and score two photos at once. Each Ray run includes starting its "
        "workers and loading the model in each (about 5 s here); the cluster is started once before them.",
        "Every Ray run's cards equal the single-process cards exactly (the section fails otherwise). "
        "The single-process path already decodes in 2 threads beside the model.",
        f"Best of {max(1, repeats)} runs of each (the Ray rows taken in turns). The machine is shared: "
        "the load column is the 1-minute load average after the run shown.",
        f"Control, same run: decoding {min(16, n)} of these JPEGs (Pillow alone) in 2 processes is "
        f"{headroom:.2f}× as fast as in 1, which is about what 2 CPU workers can gain on this machine now.",
    ]
    if gpus > 1:
        sec.notes.append(
            f"GPU rows: the real-size 1B architecture with random weights on {gpus} GPUs, 1 worker vs one "
            "per GPU, decoding on the CPUs beside them."
        )
    else:
        sec.notes.append(
            "GPU rows: not measured here (this machine has "
            f"{'one CUDA device' if gpus == 1 else 'no CUDA device'}). On a machine with several GPUs, "
            "`python -m bench --only scale` adds the single-process path on one GPU, 1 Ray GPU worker and "
            "one per GPU, with the real-size 1B architecture (random weights); on a cluster of machines "
            "run `humanaes-score --engine ray --address auto` as docs/scale.md says and read the "
            "per-worker photos/s it prints."
        )
    return sec
