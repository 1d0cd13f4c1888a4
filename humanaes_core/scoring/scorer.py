"""`load_scorer` / `Scorer.score` / `ScoreCard`: the public scoring API (DESIGN section 7).

A Scorer decodes photos in worker threads ahead of the model, groups them by tile count (so a batch
needs no padding and shares one token layout), and turns each batch's head outputs into one
ScoreCard per photo with every head and all 12 dimensions. It keeps the vision features of recently
scored photos, so scoring a photo again with the other question skips decoding and the vision tower,
and it halves a batch that runs out of GPU memory instead of failing the run. `PRESETS` name the
speed/accuracy trade-offs a photographer can pick (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from humanaes_core.errors import HumanAesError, ImageLoadError
from humanaes_core.model import (
    CheckpointMeta,
    HeadOutputs,
    HumanAesModel,
    Placement,
    TileConfig,
    bnb_4bit_config,
    checkpoint_fingerprint,
    lm_level_score,
    load_model,
    normalise_lm_score,
    preprocess,
    resolve,
    warn_if_slow,
)
from humanaes_core.schema import KEYS, score_to_level
from humanaes_core.scoring.card import CARD_VERSION as CARD_VERSION
from humanaes_core.scoring.card import ScoreCard, ScoreResult, settings_fingerprint
from humanaes_core.scoring.presets import get_preset, resolve_max_tiles, resolve_precision
from humanaes_core.sources import resolve_model

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | Image.Image
HEADS_MODES = ("all", "overall")
DEFAULT_FEATURE_CACHE_BYTES = 256 * 2**20
OOM_REASON = "out of GPU memory at {tiles} tiles; lower max tiles"


def _clamp(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)


@dataclass
class DecodedPhoto:
    """One photo on its way to the model: pixels, or only a key whose features are already cached."""

    index: int
    source: str | None
    pixels: torch.Tensor | None = None
    error: str | None = None
    key: Hashable | None = None  # FeatureCache key (photo identity + tile settings); None: not cacheable
    item: ImageInput | None = None  # kept when decoding was skipped, in case the cached features are gone


def _source_name(item: ImageInput) -> str | None:
    return None if isinstance(item, Image.Image) else os.fspath(item)


def photo_key(item: ImageInput, tiles: TileConfig, hash_pixels: bool = True) -> Hashable | None:
    """Identity of a photo's model input: a file by absolute path, device, inode, size, mtime and ctime
    (a file replaced by another of the same size and mtime, as `cp -p` or `rsync -t` do, still gets a
    new inode or ctime), an in-memory image by a hash of its pixels; None when neither can be had."""
    if isinstance(item, Image.Image):
        if not hash_pixels:
            return None
        try:
            digest = hashlib.blake2b(item.tobytes(), digest_size=16).hexdigest()
        except Exception:  # unreadable pixels: decoding will report why
            return None
        return ("pixels", item.mode, item.size, digest, tiles)
    try:
        path = os.path.abspath(os.fspath(item))
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return ("file", path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, tiles)


class FeatureCache:
    """Projected image features of recently scored photos, least recently used dropped first.

    Bounded by bytes, not entries: a 13-tile photo of an 8B model holds 27 MB, a 1-tile photo of
    the 1B model 0.5 MB. Thread-safe, because decode workers ask whether a photo is cached.
    """

    def __init__(self, max_bytes: int = DEFAULT_FEATURE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: Hashable | None) -> torch.Tensor | None:
        if key is None:
            return None
        with self._lock:
            feats = self._items.get(key)
            if feats is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return feats

    def put(self, key: Hashable, feats: torch.Tensor) -> None:
        """Keep a copy of `feats` on the CPU (GPU memory is for batches)."""
        size = feats.numel() * feats.element_size()
        if size > self.max_bytes:
            return
        kept = feats.detach().to("cpu", copy=True)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.numel() * old.element_size()
            self._items[key] = kept
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= dropped.numel() * dropped.element_size()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


def tile_config_for(
    meta: CheckpointMeta, max_tiles: int, fast_decode: bool, release_decode: bool = False
) -> TileConfig:
    return TileConfig(
        image_size=meta.image.image_size,
        max_tiles=max_tiles,
        use_thumbnail=meta.image.use_thumbnail,
        fast_decode=fast_decode and not release_decode,
        release_decode=release_decode,
        mean=tuple(meta.image.mean),
        std=tuple(meta.image.std),
    )


def _decode_one(
    index: int, item: ImageInput, tiles: TileConfig, features: FeatureCache | None = None
) -> DecodedPhoto:
    """Decode one photo, or skip it when `features` already holds what the vision tower would make."""
    source = _source_name(item)
    key = photo_key(item, tiles, hash_pixels=features is not None)
    if features is not None and key is not None and key in features:
        return DecodedPhoto(index, source, key=key, item=item)
    try:
        return DecodedPhoto(index, source, pixels=preprocess(item, tiles), key=key)
    except ImageLoadError as e:
        return DecodedPhoto(index, source, error=e.reason)
    except (OSError, ValueError) as e:  # anything the loader did not classify still must not stop a scan
        return DecodedPhoto(index, source, error=f"{e.__class__.__name__}: {e}")


def decode_stream(
    images: Iterable[ImageInput],
    tiles: TileConfig,
    workers: int = 2,
    window: int = 16,
    features: FeatureCache | None = None,
) -> Iterator[DecodedPhoto]:
    """Decode and tile photos in threads, up to `window` ahead of the consumer, in input order.

    Pillow releases the GIL while decoding and resizing, so this overlaps with the model's work.
    Photos whose vision features are in `features` are not decoded at all.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="humanaes-decode")
    pending: deque[Future[DecodedPhoto]] = deque()
    try:
        for index, item in enumerate(images):
            pending.append(pool.submit(_decode_one, index, item, tiles, features))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # a consumer that stops early (cancel) must not wait for photos nobody will score
        pool.shutdown(wait=True, cancel_futures=True)


def batch_size_for(device: torch.device) -> int:
    """Photos per forward pass when the caller does not say.

    A GPU needs batches to stay busy. A CPU does not: one photo's matrix products already fill it, and
    larger batches measured no faster, sometimes slower (BENCHMARKS.md), so photos go one at a time,
    which also shows each result as soon as it exists.
    """
    return 1 if device.type == "cpu" else 8


def decode_workers_for(device: torch.device) -> int:
    """Decode threads to run ahead of the model on `device`.

    On the CPU the model already uses every core, and two threads keep it fed. A GPU scores a 24 MP photo
    faster than one thread decodes it (about 0.1 s even in draft mode), so more threads keep it busy:
    Pillow releases the GIL while decoding and resizing, so they run in parallel.
    """
    if device.type == "cpu":
        return 2
    return max(2, min(8, (os.cpu_count() or 2) - 1))


def cards_from_outputs(
    out: HeadOutputs, tiles: int, model_fp: str, mode: str, lm_normalisation: str = "linear"
) -> list[ScoreCard]:
    """Turn one batch's raw head outputs into cards (all conversions of Eq. 4 and the clamping live here).

    `lm_normalisation` is the checkpoint's (OpenFields): how the MetaVoter read S_LM, recorded on the
    card with the other two vote inputs so explanations add up to the shown score.
    """
    probs = torch.softmax(out.level_logits, dim=-1)
    s_lm = lm_level_score(out.level_logits)
    lm_norm = normalise_lm_score(s_lm)
    lm_input = normalise_lm_score(s_lm, lm_normalisation)
    cards = []
    for i in range(out.level_logits.shape[0]):
        heads = {"lm": _clamp(lm_norm[i]), "regression": _clamp(out.regression[i])}
        expert_raw = voter = None
        if out.expert is not None and out.metavoter is not None:
            expert_raw = {k: float(out.expert[k][i]) for k in KEYS}
            voter = {
                "lm": float(lm_input[i]),
                "regression": float(out.regression[i]),
                "expert": expert_raw["overall"],
            }
            heads["expert"] = _clamp(expert_raw["overall"])
            heads["metavoter"] = _clamp(out.metavoter[i])
            dims = {k: _clamp(expert_raw[k]) for k in KEYS}
            dims["overall"] = heads["metavoter"]
        else:
            dims = {"overall": _clamp((float(lm_norm[i]) + float(out.regression[i])) / 2.0)}
        cards.append(
            ScoreCard(
                dims=dims,
                heads=heads,
                level=score_to_level(dims["overall"]),
                lm_probs=[float(p) for p in probs[i]],
                tiles=tiles,
                mode=mode,
                model=model_fp,
                expert_raw=expert_raw,
                voter_inputs=voter,
            )
        )
    return cards


@dataclass
class Scorer:
    """A loaded model plus the settings it scores with. Create it with `load_scorer`."""

    model: HumanAesModel
    meta: CheckpointMeta
    placement: Placement
    model_path: Path
    fingerprint: str
    max_tiles: int = 12
    batch_size: int = 8
    decode_workers: int = 2
    fast_decode: bool = True
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES
    release_decode: bool = False  # decode as the release's load_image (the "release" preset)
    question_index: int | None = None  # which question to ask; None: the checkpoint's
    tile_config: TileConfig = field(init=False)
    features: FeatureCache | None = field(init=False)
    #: Largest batch that fitted in GPU memory, per tile count, once a larger one ran out of it.
    batch_limits: dict[int, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.tile_config = tile_config_for(self.meta, self.max_tiles, self.fast_decode, self.release_decode)
        if self.question_index is None:
            self.question_index = self.model.prompt.question_index
        self.features = FeatureCache(self.feature_cache_bytes) if self.feature_cache_bytes > 0 else None

    def settings_fingerprint(self, heads: str = "all") -> str:
        """Identity of everything besides the weights that changes a card (cache key)."""
        return settings_fingerprint(
            heads=heads,
            max_tiles=self.max_tiles,
            question_index=self.question_index,
            placement=self.placement,
            fast_decode=self.fast_decode,
            release_decode=self.release_decode,
        )

    def score(
        self, images: Sequence[ImageInput] | ImageInput, heads: str = "all", batch_size: int | None = None
    ) -> list[ScoreCard]:
        """One card per photo (paths or PIL images), in input order; a bad file raises ImageLoadError."""
        if isinstance(images, str | os.PathLike | Image.Image):
            images = [images]
        results = sorted(self.score_iter(images, heads=heads, batch_size=batch_size), key=lambda r: r.index)
        for r in results:
            if r.error is not None:
                raise ImageLoadError(r.source or f"image #{r.index}", r.error)
        return [r.card for r in results if r.card is not None]

    def score_iter(
        self, images: Iterable[ImageInput], heads: str = "all", batch_size: int | None = None
    ) -> Iterator[ScoreResult]:
        """Stream results as batches finish (not in input order); bad files come back with a reason."""
        size = batch_size or self.batch_size
        window = max(2 * size, 2 * self.decode_workers)
        stream = decode_stream(images, self.tile_config, self.decode_workers, window, features=self.features)
        return self.score_decoded(stream, heads=heads, batch_size=size)

    def score_decoded(
        self, decoded: Iterable[DecodedPhoto], heads: str = "all", batch_size: int | None = None
    ) -> Iterator[ScoreResult]:
        """Score an already-decoding stream: photos wait in per-tile-count buckets until one fills
        (a batch then needs no padding) or too many photos are waiting."""
        if heads not in HEADS_MODES:
            raise ValueError(f"heads must be one of {HEADS_MODES}, got {heads!r}")
        size = batch_size or self.batch_size
        buckets: dict[int, list[tuple[DecodedPhoto, torch.Tensor | None]]] = {}
        waiting = 0
        for item in decoded:
            feats = None if self.features is None else self.features.get(item.key)
            if item.error is None and item.pixels is None and feats is None:
                # decoding was skipped for cached features that have been dropped since: decode now
                assert item.item is not None
                item = _decode_one(item.index, item.item, self.tile_config)
            if item.error is not None:
                yield ScoreResult(item.index, item.source, error=item.error)
                continue
            if feats is not None:
                tiles = feats.shape[0] // self.model.num_image_token
            else:
                assert item.pixels is not None
                tiles = item.pixels.shape[0]
            buckets.setdefault(tiles, []).append((item, feats))
            waiting += 1
            if len(buckets[tiles]) < min(size, self.batch_limits.get(tiles, size)):
                if waiting < 2 * size:
                    continue
                tiles = max(buckets, key=lambda t: len(buckets[t]))  # too many waiting: run the fullest
            batch = buckets.pop(tiles)
            waiting -= len(batch)
            yield from self._run(batch, tiles, heads)
        for tiles, batch in sorted(buckets.items()):
            yield from self._run(batch, tiles, heads)

    def _run(
        self, batch: list[tuple[DecodedPhoto, torch.Tensor | None]], tiles: int, heads: str
    ) -> Iterator[ScoreResult]:
        """Score one batch; on CUDA out-of-memory score it in halves, down to one photo at a time."""
        try:
            results = self._forward(batch, tiles, heads)
        except torch.cuda.OutOfMemoryError:
            results = None  # handled outside the except block, so the failed batch's tensors are freed
        if results is not None:
            yield from results
            return
        _release_gpu_memory()
        if len(batch) == 1:
            item = batch[0][0]
            log.warning("%s: out of GPU memory at %d tiles", item.source or f"image #{item.index}", tiles)
            yield ScoreResult(item.index, item.source, error=OOM_REASON.format(tiles=tiles))
            return
        half = (len(batch) + 1) // 2
        if half < self.batch_limits.get(tiles, self.batch_size + 1):
            log.warning(
                "out of GPU memory with %d photos of %d tiles; scoring at most %d at a time now",
                len(batch),
                tiles,
                half,
            )
            self.batch_limits[tiles] = half
        yield from self._run(batch[:half], tiles, heads)
        yield from self._run(batch[half:], tiles, heads)

    def _forward(
        self, batch: list[tuple[DecodedPhoto, torch.Tensor | None]], tiles: int, heads: str
    ) -> list[ScoreResult]:
        """Vision tower for the photos without cached features, then the language model for all."""
        todo = [i for i, (_, feats) in enumerate(batch) if feats is None]
        new: torch.Tensor | None = None
        if todo:
            pixels = torch.cat([batch[i][0].pixels for i in todo])  # type: ignore[misc]
            with torch.inference_mode():
                new = self.model.encode_images(pixels, tiles)
            if self.features is not None:
                for j, i in enumerate(todo):
                    key = batch[i][0].key
                    if key is not None:
                        self.features.put(key, new[j])
        if new is not None and len(todo) == len(batch):
            feats = new
        else:
            device = self.model.device
            made = iter([] if new is None else new.unbind(0))
            feats = torch.stack([next(made) if f is None else f.to(device) for _, f in batch])
        out = self.model.score_batch(
            None, tiles, heads=heads, question_index=self.question_index, image_features=feats
        )
        cards = cards_from_outputs(
            out, tiles, self.fingerprint, heads, self.model.heads.fields.lm_normalisation
        )
        results = []
        for (item, _), card in zip(batch, cards, strict=True):
            card.source = item.source
            results.append(ScoreResult(item.index, item.source, card=card))
        return results


def _release_gpu_memory() -> None:
    """Return the failed batch's blocks to the driver so the halves start from a clean allocator."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_scorer(
    model: str | os.PathLike,
    device: str = "auto",
    quantize: str | None = None,
    max_tiles: int | None = None,
    *,
    preset: str | None = None,
    precision: str = "auto",
    batch_size: int | None = None,
    fast_decode: bool = True,
    feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
    progress: type | None = None,
) -> Scorer:
    """Load a checkpoint directory or hub id for scoring (DESIGN section 7).

    `preset` ("accurate", "balanced", "fast"; see `PRESETS`) or `max_tiles` sets how many tiles a
    photo is cut into; neither means "accurate" (12). `preset="release"` reproduces the released
    code's inputs instead: its load_image's pixels, its question, fp16 on CUDA (fp32 on the CPU); the
    template stays the checkpoint's (`prompt.template`, an open field of the release).
    `feature_cache_bytes` bounds the CPU memory that keeps vision features for re-scoring a photo
    with the other question (0: off). `batch_size` None picks one for the device (`batch_size_for`).
    """
    max_tiles = resolve_max_tiles(preset, max_tiles)
    if not 1 <= max_tiles <= 40:
        raise HumanAesError(f"max_tiles must be between 1 and 40, got {max_tiles}")
    release = get_preset(preset).release_parity
    path = resolve_model(model, progress=progress)
    if release:
        precision = resolve_precision(preset, precision, resolve(device).device.type == "cuda")
    placement = resolve(device, precision, quantize)
    warn_if_slow(placement)
    qconfig = bnb_4bit_config(placement) if placement.quantize == "4bit" else None
    loaded, meta = load_model(
        path, device=placement.device, dtype=placement.dtype, quantization_config=qconfig
    )
    return Scorer(
        model=loaded,
        meta=meta,
        placement=placement,
        model_path=path,
        fingerprint=checkpoint_fingerprint(path),
        max_tiles=max_tiles,
        batch_size=batch_size or batch_size_for(placement.device),
        decode_workers=decode_workers_for(placement.device),
        fast_decode=fast_decode,
        feature_cache_bytes=feature_cache_bytes,
        release_decode=release,
        question_index=_release_question(meta) if release else None,
    )


def _release_question(meta: CheckpointMeta) -> int:
    """The index of the release's question among the checkpoint's, or a one-line error."""
    try:
        return meta.prompt.release_question_index()
    except ValueError as e:
        raise HumanAesError(f"preset 'release': {e}") from None
