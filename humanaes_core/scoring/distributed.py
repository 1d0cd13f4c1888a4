"""Scoring on a Ray cluster: many GPUs in one machine or many machines, through Ray Data.

`RayScoring` is `CachedScoring` with the model on a cluster. The driver hashes the files and looks them
up in the library exactly as the single-process path does; only the photos the library lacks go to Ray.
A Ray Dataset of their paths is decoded and tiled by CPU tasks (the same `decode_stream` as on one
machine), then scored by a pool of actors, one per GPU (or per CPU worker on a cluster without GPUs),
each loading the model once. The driver iterates the results as they arrive and `CachedScoring` writes
every card into the library at once, so a job that is killed resumes where the library says: the
photos already stored are not sent again. Photos that cannot be decoded come back with their reason,
as on one machine.

On a cluster without GPUs Ray fuses the decode step into the model actors (both ask only for CPUs),
which saves moving the pixels between processes; with GPUs the decode tasks run on the CPUs beside them.
Each actor reports how many photos it scored and how long its model took: `RayScoring.workers`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ray
import ray.data  # before the level is set below: importing it configures its loggers
from ray.exceptions import RayError

from humanaes_core.errors import HumanAesError
from humanaes_core.scoring.card import HasLabel, ScoreCard, ScoreResult
from humanaes_core.scoring.scan import CachedScoring, placement_for

if TYPE_CHECKING:
    from humanaes_core.model import TileConfig
    from humanaes_core.scoring.scorer import Scorer

#: Photos per decode task: small, so the first cards arrive early and the work spreads evenly.
PHOTOS_PER_DECODE_TASK = 4
#: Devices a cluster run accepts: Ray, not the user, picks which GPU each actor gets.
CLUSTER_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ClusterPlacement:
    """The placement the cluster's GPU actors load the model with, as a GPU worker resolved it."""

    label: str


@dataclass
class WorkerStats:
    """One model actor's share of a run: photos scored and the seconds its model took for them."""

    name: str
    photos: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Photos per second of model time (decoding runs beside it)."""
        return self.photos / self.seconds if self.seconds > 0 else 0.0


@ray.remote
def _gpu_placement_label(precision: str, quantize: str | None) -> str:
    """Resolve the placement on a GPU worker: whether bf16 is supported is the GPU's answer, not the
    driver's, which may have no GPU at all."""
    from humanaes_core.model import resolve

    return resolve("cuda", precision, quantize).label


def decode_batch(batch: dict[str, np.ndarray], tiles: TileConfig) -> dict[str, np.ndarray]:
    """A CPU task: decode and tile photos with the single-process decoder; a bad file keeps its reason."""
    from humanaes_core.scoring.scorer import decode_stream

    paths = [os.fsdecode(bytes(p)) for p in batch["path"]]
    empty = np.zeros((0, 3, tiles.image_size, tiles.image_size), np.float32)
    pixels, errors = [], []
    for photo in decode_stream(paths, tiles, workers=1, window=1):
        errors.append(photo.error or "")
        pixels.append(empty if photo.pixels is None else photo.pixels.numpy())
    return {"index": batch["index"], "pixels": pixels, "error": np.array(errors, dtype=object)}


class ModelWorker:
    """A Ray actor: loads the model once, at its first decoded photo (a batch of broken files never
    loads it), and turns decoded photos into cards (as JSON text)."""

    def __init__(self, model: str, fingerprint: str, load_args: dict, placement: str, heads: str) -> None:
        self.load = (model, fingerprint, load_args, placement)
        self.scorer: Scorer | None = None
        self.load_seconds = 0.0
        self.heads = heads
        gpus = ray.get_gpu_ids()
        where = f"GPU {gpus[0]}" if gpus else f"CPU worker {ray.get_runtime_context().get_actor_id()[:8]}"
        self.name = f"{ray.util.get_node_ip_address()} {where}"

    def _scorer(self) -> Scorer:
        if self.scorer is None:
            from humanaes_core.scoring.scorer import load_scorer

            model, fingerprint, load_args, placement = self.load
            started = time.perf_counter()
            scorer = load_scorer(model, feature_cache_bytes=0, **load_args)
            if scorer.fingerprint != fingerprint:
                raise HumanAesError(
                    f"the worker {self.name} has another checkpoint for {model} than the command: give "
                    "every machine the same model folder"
                )
            if scorer.placement.label != placement:
                raise HumanAesError(
                    f"the worker {self.name} loads the model as {scorer.placement.label}, the run "
                    f"expects {placement}: give --precision"
                )
            self.scorer = scorer
            self.load_seconds = time.perf_counter() - started
        return self.scorer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from humanaes_core.scoring.scorer import DecodedPhoto

        decoded = [
            DecodedPhoto(int(i), None, error=e) if e else DecodedPhoto(int(i), None, pixels=torch.tensor(p))
            for i, p, e in zip(batch["index"], batch["pixels"], batch["error"], strict=True)
        ]
        if all(d.error for d in decoded):
            results = [ScoreResult(d.index, None, error=d.error) for d in decoded]
            seconds = 0.0
        else:
            scorer = self._scorer()
            started = time.perf_counter()
            results = list(scorer.score_decoded(decoded, heads=self.heads))
            seconds = time.perf_counter() - started
        scored = sum(r.card is not None for r in results)
        return {
            "index": np.array([r.index for r in results], dtype=np.int64),
            "card": np.array([json.dumps(r.card.to_dict()) if r.card else "" for r in results], dtype=object),
            "error": np.array([r.error or "" for r in results], dtype=object),
            "worker": np.array([self.name] * len(results), dtype=object),
            "seconds": np.array([seconds / scored if r.card else 0.0 for r in results]),
            "load_seconds": np.full(len(results), self.load_seconds),
        }


class RayScoring(CachedScoring):
    """`CachedScoring` whose model runs on a Ray cluster (`address`; None: the one `ray.init` finds or
    starts on this machine). `workers` model actors: default one per GPU of the cluster, or, without
    GPUs, one per CPU. Ray is connected when the engine is made (the cluster's GPUs decide the cards'
    settings) and shut down by `close` if this engine started it."""

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        address: str | None = None,
        workers: int | None = None,
        **kwargs: object,
    ) -> None:
        self._address = address
        self._wanted = workers
        # what the workers load: a folder by its absolute path (their working folder is not ours), a hub
        # id as such (each machine downloads and converts it once; the fingerprint check catches a
        # different conversion)
        local = Path(model).expanduser()
        self._worker_model = str(local.resolve()) if local.exists() else str(model)
        self._started_ray = False
        self._cluster_gpus = 0
        self.workers: dict[str, WorkerStats] = {}
        super().__init__(model, **kwargs)  # type: ignore[arg-type]

    def _connect(self) -> dict[str, float]:
        if not ray.is_initialized():
            try:
                ray.init(address=self._address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self._address or "this machine"
                hint = ""
                if self._address and "RAY_AUTH_MODE" not in os.environ:
                    # a driver joining a cluster sends Ray's token only when told to (Ray 2.5x)
                    hint = "; a cluster begun with `ray start` wants RAY_AUTH_MODE=token (docs/scale.md)"
                raise HumanAesError(f"cannot start or reach the Ray cluster at {where}: {e}{hint}") from None
            self._started_ray = True
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset started
        ray.data.DataContext.get_current().enable_progress_bars = False
        return ray.cluster_resources()

    def close(self) -> None:
        """Shut down the Ray instance this engine started (a cluster it only joined keeps running)."""
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    def _placement_for(self, device: str, precision: str, quantize: str | None) -> HasLabel:
        """CPU actors when asked for or when the cluster has no GPU, else the GPU workers' placement."""
        if device not in CLUSTER_DEVICES:
            raise HumanAesError(
                f"--device {device} with the Ray engine: Ray gives each worker its GPU; use "
                f"{', '.join(CLUSTER_DEVICES)}"
            )
        resources = self._connect()
        gpus = int(resources.get("GPU", 0))
        if device == "cpu" or (device == "auto" and gpus == 0):
            self._cluster_gpus = 0
            return placement_for("cpu", precision, quantize)
        if gpus == 0:
            raise HumanAesError("--device cuda: the Ray cluster has no GPU")
        self._cluster_gpus = gpus
        ref = _gpu_placement_label.options(num_gpus=1).remote(precision, quantize)
        try:
            return ClusterPlacement(ray.get(ref))
        except RayError as e:
            raise _job_error(e) from None

    def _plan(self) -> tuple[int, dict[str, float]]:
        """Model actors and each one's resources; a cluster too small for them is a clear error."""
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if self._cluster_gpus:
            count = self._wanted or self._cluster_gpus
            if count > self._cluster_gpus:
                raise HumanAesError(f"--workers {count}: the Ray cluster has {self._cluster_gpus} GPUs")
            if cpus < 1:
                raise HumanAesError("the Ray cluster has no CPU to decode photos on")
            return count, {"num_gpus": 1}  # the actor holds no CPU: they all decode
        count = self._wanted or cpus
        if not 1 <= count <= cpus:
            raise HumanAesError(f"--workers {count}: the Ray cluster has {cpus} CPUs, one per CPU worker")
        return count, {"num_cpus": 1}

    def _score_lazily(self, files: Sequence[Path]) -> Generator[ScoreResult, None, None]:
        """The photos the library lacks, through the cluster; results as each actor's batch finishes."""
        import torch

        from humanaes_core.scoring.scorer import batch_size_for, tile_config_for

        count, resources = self._plan()
        device = "cuda" if self.placement.label.startswith("cuda/") else "cpu"
        batch_size = self._batch_size or batch_size_for(torch.device(device))
        load_args = {**self._load_args, "device": device, "batch_size": batch_size}
        meta, max_tiles, fast_decode, release = self._tiles
        tiles = tile_config_for(meta, max_tiles, fast_decode, release_decode=release)
        items = [{"index": i, "path": os.fsencode(p)} for i, p in enumerate(files)]
        blocks = -(-len(items) // PHOTOS_PER_DECODE_TASK)  # one per decode task, so every actor gets work
        count = min(count, blocks)
        dataset = (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(
                decode_batch, batch_size=PHOTOS_PER_DECODE_TASK, num_cpus=1, fn_kwargs={"tiles": tiles}
            )
            .map_batches(
                ModelWorker,
                batch_size=2 * batch_size,
                compute=ray.data.ActorPoolStrategy(size=count),
                fn_constructor_kwargs={
                    "model": self._worker_model,
                    "fingerprint": self.model_fp,
                    "load_args": load_args,
                    "placement": self.placement.label,
                    "heads": self.heads,
                },
                **resources,
            )
        )
        try:
            yield from self._results(dataset.iter_rows())
        except RayError as e:
            raise _job_error(e) from None

    def _results(self, rows: Iterator[dict]) -> Iterator[ScoreResult]:
        for row in rows:
            if not row["card"]:
                yield ScoreResult(int(row["index"]), None, error=row["error"])
                continue
            stats = self.workers.setdefault(row["worker"], WorkerStats(row["worker"]))
            stats.load_seconds = float(row["load_seconds"])
            self.stats.model_loaded = True
            self.stats.load_seconds = max(self.stats.load_seconds, stats.load_seconds)
            stats.photos += 1
            stats.seconds += float(row["seconds"])
            yield ScoreResult(int(row["index"]), None, card=ScoreCard.from_dict(json.loads(row["card"])))


def _job_error(error: RayError) -> HumanAesError:
    """A worker's own one-line error when it raised one (a wrong placement), else Ray's first line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, HumanAesError):
        return cause
    return HumanAesError(f"the Ray job failed: {str(error).strip().splitlines()[0]}")
