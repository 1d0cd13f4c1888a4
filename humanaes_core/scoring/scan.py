"""Scoring many files with the cache: what `humanaes-score` and the desktop app both run.

Cached photos come back first and without loading the model; the model is loaded only when some
photo actually needs scoring, and every new card is written to the cache as soon as it exists, so
an interrupted run loses at most the batch in flight.

A folder is not a snapshot: photos are deleted, renamed over or rewritten while a scan runs (an editor
saving, a sync client, a card reader). A card is cached under the content hash only when the file's
signature (size, mtime, ctime, inode) after decoding is the one it had before it was hashed; otherwise
the bytes decoded may not be the bytes hashed, so the photo is hashed and scored once more, and reported
with a reason if it keeps changing or disappears. Folder walking never follows symlinked folders (no
loops) and reports broken links, link loops and non-regular files by name instead of failing.

Every card also carries the photo checks (``card.faces``, ``card.checks``: closed eyes, focus, blur,
exposure, misfires), read from the library or computed on the CPU in worker threads while the cards are
read or scored (``photo_checks.ScanChecks``); ``checks=False`` leaves them None.

When the cache cannot store a card (the disk filled up, the library turned read-only), the run ends:
the cards of that batch are still yielded, then the store's error (one line) is raised. Every card
committed before stays in the library, and a caller that collected the results can still write them.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.errors import HumanAesError
from humanaes_core.formats import Skipped, os_reason
from humanaes_core.model import checkpoint_fingerprint, read_meta
from humanaes_core.scoring.card import HasLabel, ScoreCard, ScoreResult, settings_fingerprint
from humanaes_core.scoring.photo_checks import ScanChecks
from humanaes_core.scoring.presets import get_preset, resolve_precision
from humanaes_core.sources import resolve_model
from humanaes_core.store import FileSignature, HashedFile, ScoreCache, file_signature

if TYPE_CHECKING:
    from humanaes_core.model import Placement
    from humanaes_core.scoring.scorer import Scorer

#: Reason for a photo whose file changed again while it was being scored a second time.
KEPT_CHANGING = "the file kept changing while it was being scored"
#: Reason for a photo deleted (or moved away) after it was found.
VANISHED = "file not found (it was removed during the scan)"


#: Device nodes through which torch could see a GPU as "cuda": NVIDIA, AMD ROCm, WSL2.
_GPU_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg", "/proc/driver/nvidia")


@dataclass(frozen=True)
class CpuPlacement:
    """The CPU placement, known without importing torch (see `placement_for`)."""

    precision: str

    @property
    def label(self) -> str:
        return f"cpu/{self.precision}"


def placement_for(device: str, precision: str, quantize: str | None) -> Placement | CpuPlacement:
    """Where the model would run. A machine without any GPU device node (or ``device="cpu"``) runs
    on the CPU: that is answered without importing torch, which costs seconds, so a folder whose
    photos are all cached never imports it. Everything else asks torch (``model.resolve``)."""
    on_cpu = device == "cpu" or (device == "auto" and not any(map(os.path.exists, _GPU_NODES)))
    if on_cpu and quantize is None and precision in ("auto", "fp32", "fp16", "bf16"):
        return CpuPlacement("fp32" if precision == "auto" else precision)
    from humanaes_core.model import resolve

    return resolve(device, precision, quantize)


def _is_cuda(placement: HasLabel) -> bool:
    return placement.label.startswith("cuda/")


def load_scorer(path: str | os.PathLike, **kwargs: object) -> Scorer:
    """``scorer.load_scorer``, imported only when called: it brings torch and transformers."""
    from humanaes_core.scoring.scorer import load_scorer as load

    return load(path, **kwargs)


def _now(path: Path) -> FileSignature | OSError:
    try:
        return file_signature(path)
    except OSError as e:
        return e


@dataclass
class RunStats:
    total: int = 0
    cached: int = 0
    scored: int = 0
    failed: int = 0
    model_loaded: bool = False
    load_seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)


class CachedScoring:
    """Scores files through the cache; loads the model only for photos the cache does not have."""

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        cache: ScoreCache | None,
        device: str = "auto",
        precision: str = "auto",
        quantize: str | None = None,
        max_tiles: int = 12,
        batch_size: int | None = None,
        heads: str = "all",
        fast_decode: bool = True,
        progress: type | None = None,
        on_model_load: Callable[[bool], None] | None = None,
        preset: str | None = None,
        checks: bool = True,
    ) -> None:
        """`on_model_load(True)` is called before the model starts loading and `(False)` after, so a UI
        can say "Loading the model…"; it loads lazily, only when some photo is not in the cache.
        `preset="release"` scores with the released code's pixels and question (`load_scorer`).
        `checks` runs the photo checks and puts them on every card (stored beside the cards)."""
        self.on_model_load = on_model_load
        self.model_path = resolve_model(model, progress=progress)
        self.model_fp = checkpoint_fingerprint(self.model_path)
        meta = read_meta(self.model_path)
        release = get_preset(preset).release_parity
        if release:
            on_cuda = _is_cuda(self._placement_for(device, "auto", None))
            precision = resolve_precision(preset, precision, on_cuda)
        self.placement = self._placement_for(device, precision, quantize)
        self.settings_fp = settings_fingerprint(
            heads=heads,
            max_tiles=max_tiles,
            question_index=meta.prompt.release_question_index() if release else meta.prompt.question_index,
            placement=self.placement,
            fast_decode=fast_decode,
            release_decode=release,
        )
        self.cache = cache
        self.heads = heads
        self._tiles = (meta, max_tiles, fast_decode, release)
        self._batch_size = batch_size  # None: batch_size_for the device, once the model is needed
        self._load_args = {
            "device": device,
            "precision": precision,
            "quantize": quantize,
            "max_tiles": max_tiles,
            "batch_size": self._batch_size,
            "fast_decode": fast_decode,
            "preset": preset if release else None,
        }
        self.scorer: Scorer | None = None
        self.stats = RunStats()
        self.checks: ScanChecks | None = None
        if checks:
            self.checks = ScanChecks(cache.path if cache is not None else None)

    def _placement_for(self, device: str, precision: str, quantize: str | None) -> HasLabel:
        """Where the model will run, as the settings fingerprint names it (a cluster engine asks its
        workers instead)."""
        return placement_for(device, precision, quantize)

    def _torch_placement(self) -> Placement:
        """The placement as torch has it (the CPU one of `placement_for` turned into torch's)."""
        if isinstance(self.placement, CpuPlacement):
            from humanaes_core.model import resolve

            return resolve("cpu", self.placement.precision, None)
        return self.placement

    def _scorer(self) -> Scorer:
        if self.scorer is None:
            if self.on_model_load is not None:
                self.on_model_load(True)
            start = time.perf_counter()
            try:
                self.scorer = load_scorer(self.model_path, **self._load_args)
            finally:
                if self.on_model_load is not None:
                    self.on_model_load(False)
            self.stats.model_loaded = True
            self.stats.load_seconds = time.perf_counter() - start
        return self.scorer

    def _fail(self, path: Path, reason: str) -> ScoreResult:
        self.stats.failed += 1
        self.stats.skipped.append(Skipped(str(path), reason))
        return ScoreResult(-1, str(path), error=reason)

    def run(
        self, files: Sequence[Path], hashed: Mapping[Path, HashedFile | OSError] | None = None
    ) -> Iterator[ScoreResult]:
        """Results for every file: cache hits first, then newly scored photos as their batches finish.

        `hashed`: what `ScoreCache.hash_files(files)` returned to a caller that needed the hashes first
        (the app shows decisions by them), so the folder is not stat'ed and looked up twice.
        """
        self.stats.total += len(files)
        try:
            yield from self._run(files, last_try=False, hashed=hashed)
        finally:
            if self.checks is not None:
                self.checks.close()

    def _run(
        self,
        files: Sequence[Path],
        *,
        last_try: bool,
        hashed: Mapping[Path, HashedFile | OSError] | None = None,
    ) -> Iterator[ScoreResult]:
        if self.cache is None:
            todo: dict[str, list[Path]] = {str(p): [p] for p in files}
            signatures: dict[Path, FileSignature] = {}
            if self.checks is not None:
                self.checks.prefetch({k: paths[0] for k, paths in todo.items()})
        else:
            todo = {}
            signatures = {}
            if hashed is None:
                hashed = self.cache.hash_files(files)
            for path in files:
                h = hashed[Path(path)]
                if isinstance(h, OSError):
                    yield self._fail(path, os_reason(h, path))
                    continue
                assert isinstance(h, HashedFile)
                todo.setdefault(h.content_hash, []).append(path)
                signatures[Path(path)] = h.signature
            if self.checks is not None:
                self.checks.prefetch({k: paths[0] for k, paths in todo.items()})
            hits = self.cache.get_many(list(todo), self.model_fp, self.settings_fp)
            for h, card_dict in hits.items():
                for path in todo.pop(h):
                    card = self._with_checks(h, ScoreCard.from_dict(card_dict))
                    card.source = str(path)
                    self.stats.cached += 1
                    yield ScoreResult(-1, str(path), card=card)
        if not todo:
            return
        keys = list(todo)
        firsts = [todo[k][0] for k in keys]  # identical photos are scored once
        changed: list[Path] = []
        scoring = self._score_lazily(firsts)
        try:
            yield from self._collect(scoring, keys, todo, signatures, changed, last_try=last_try)
        finally:
            scoring.close()  # stops the decode workers at once when the run ends early
        if changed:
            yield from self._run(changed, last_try=True)

    def _collect(
        self,
        scoring: Iterator[ScoreResult],
        keys: list[str],
        todo: dict[str, list[Path]],
        signatures: dict[Path, FileSignature],
        changed: list[Path],
        *,
        last_try: bool,
    ) -> Iterator[ScoreResult]:
        """Cache and yield each new card; files that changed while being scored go into ``changed``."""
        for result in scoring:
            key = keys[result.index]
            if result.card is None:
                first = Path(todo[key][0])
                now = _now(first) if first in signatures and not last_try else None
                if isinstance(now, FileSignature) and now != signatures[first]:
                    changed.extend(todo[key])  # e.g. still being copied in when it was read: once more
                    continue
                for path in todo[key]:
                    yield self._fail(path, result.error or "unknown error")
                continue
            if self.cache is not None:
                # The decoder read the file after it was hashed: cache the card only if it still is
                # the file that was hashed, else the card could belong to other bytes than the key.
                scored = Path(todo[key][0])
                now = _now(scored)
                if now != signatures[scored]:
                    if isinstance(now, OSError):
                        for path in todo[key]:
                            yield self._fail(path, VANISHED if now.errno == errno.ENOENT else os_reason(now))
                    elif last_try:
                        for path in todo[key]:
                            yield self._fail(path, KEPT_CHANGING)
                    else:
                        changed.extend(todo[key])
                    continue
            stored = self._store(key, result.card)
            for path in todo[key]:
                card = self._with_checks(key, ScoreCard.from_dict(result.card.to_dict()))
                card.source = str(path)
                self.stats.scored += 1
                yield ScoreResult(-1, str(path), card=card)
            if stored is not None:
                raise stored

    def _with_checks(self, key: str, card: ScoreCard) -> ScoreCard:
        return card if self.checks is None else self.checks.attach(key, card)

    def _store(self, key: str, card: ScoreCard) -> HumanAesError | None:
        """Put the card in the cache; the store's error if it cannot (raised once the card is out). The
        checks are not part of the cached card: they have their own table (``store.CheckStore``)."""
        if self.cache is None:
            return None
        data = card.to_dict()
        data.pop("faces", None)
        data.pop("checks", None)
        try:
            self.cache.put(key, self.model_fp, self.settings_fp, data)
        except HumanAesError as e:  # the disk is full, the file read-only: nothing later can be kept
            return e
        return None

    def _score_lazily(self, files: Sequence[Path]) -> Generator[ScoreResult, None, None]:
        """Decode first, load the model when a photo decodes: a folder of broken files never loads it."""
        from humanaes_core.scoring.scorer import (  # torch: only once some photo needs the model
            batch_size_for,
            decode_stream,
            decode_workers_for,
            tile_config_for,
        )

        placement = self._torch_placement()
        batch_size = self._batch_size or batch_size_for(placement.device)
        self._load_args["batch_size"] = batch_size
        meta, max_tiles, fast_decode, release = self._tiles
        tiles = tile_config_for(meta, max_tiles, fast_decode, release_decode=release)
        workers = decode_workers_for(placement.device)
        stream = decode_stream(files, tiles, workers=workers, window=2 * batch_size)
        for item in stream:
            if item.error is not None:
                yield ScoreResult(item.index, item.source, error=item.error)
                continue
            yield from self._scorer().score_decoded(itertools.chain([item], stream), heads=self.heads)
            return
