"""`load_scorer` / `Scorer.score` / `ScoreCard`: the public scoring API (DESIGN section 7).

A Scorer decodes photos in worker threads ahead of the model, groups them by tile count (so a batch
needs no padding and shares one token layout), and turns each batch's head outputs into one
ScoreCard per photo with every head and all 12 dimensions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image

from . import checkpoint as ckpt
from .devices import Placement, bnb_4bit_config, resolve, warn_if_slow
from .errors import HumanAesError, ImageLoadError
from .heads import lm_level_score, normalise_lm_score
from .model import HeadOutputs, HumanAesModel
from .preprocess import TileConfig, preprocess
from .schema import KEYS, score_to_level
from .sources import resolve_model

ImageInput = str | os.PathLike | Image.Image
HEADS_MODES = ("all", "overall")
CARD_VERSION = 1


def _clamp(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)


@dataclass
class ScoreCard:
    """Everything the model says about one photo.

    `dims` holds all 12 keys for a full card (`heads="all"`): the leaves and parents from the expert
    head, and `overall` from the MetaVoter, the paper's final score. A quick card (`heads="overall"`)
    holds only `overall`, the mean of the normalised LM score and the regression score. Values are
    clamped to [0, 1]; `expert_raw` keeps the expert head's unclamped outputs for attribution.
    """

    dims: dict[str, float]
    heads: dict[str, float]
    level: str
    lm_probs: list[float]
    tiles: int
    mode: str
    model: str = ""
    source: str | None = None
    expert_raw: dict[str, float] | None = None
    version: int = CARD_VERSION

    @property
    def levels(self) -> dict[str, str]:
        """Rating word of every dimension present."""
        return {k: score_to_level(v) for k, v in self.dims.items()}

    def to_dict(self) -> dict:
        """JSON-ready; `ScoreCard.from_dict` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ScoreCard:
        return cls(**data)


@dataclass
class ScoreResult:
    """One input's outcome from `Scorer.score_iter`: a card, or the reason it could not be scored."""

    index: int
    source: str | None
    card: ScoreCard | None = None
    error: str | None = None


@dataclass
class _Decoded:
    index: int
    source: str | None
    pixels: torch.Tensor | None = None
    error: str | None = None


def _source_name(item: ImageInput) -> str | None:
    return None if isinstance(item, Image.Image) else os.fspath(item)


def tile_config_for(meta: ckpt.CheckpointMeta, max_tiles: int, fast_decode: bool) -> TileConfig:
    return TileConfig(
        image_size=meta.image.image_size,
        max_tiles=max_tiles,
        use_thumbnail=meta.image.use_thumbnail,
        fast_decode=fast_decode,
    )


def _decode_one(index: int, item: ImageInput, tiles: TileConfig) -> _Decoded:
    source = _source_name(item)
    try:
        return _Decoded(index, source, pixels=preprocess(item, tiles))
    except ImageLoadError as e:
        return _Decoded(index, source, error=e.reason)
    except (OSError, ValueError) as e:  # anything the loader did not classify still must not stop a scan
        return _Decoded(index, source, error=f"{e.__class__.__name__}: {e}")


def decode_stream(
    images: Iterable[ImageInput], tiles: TileConfig, workers: int = 2, window: int = 16
) -> Iterator[_Decoded]:
    """Decode and tile photos in threads, up to `window` ahead of the consumer, in input order.

    Pillow releases the GIL while decoding and resizing, so this overlaps with the model's work.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="humanaes-decode")
    pending: deque[Future[_Decoded]] = deque()
    try:
        for index, item in enumerate(images):
            pending.append(pool.submit(_decode_one, index, item, tiles))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # a consumer that stops early (cancel) must not wait for photos nobody will score
        pool.shutdown(wait=True, cancel_futures=True)


def settings_fingerprint(
    *, heads: str, max_tiles: int, question_index: int, placement: Placement, fast_decode: bool
) -> str:
    """Hash of the scoring settings; computable without loading the model, so cache hits skip loading."""
    settings = {
        "card": CARD_VERSION,
        "heads": heads,
        "max_tiles": max_tiles,
        "question": question_index,
        "placement": placement.label,
        "fast_decode": fast_decode,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def cards_from_outputs(out: HeadOutputs, tiles: int, model_fp: str, mode: str) -> list[ScoreCard]:
    """Turn one batch's raw head outputs into cards (all conversions of Eq. 4 and the clamping live here)."""
    probs = torch.softmax(out.level_logits, dim=-1)
    lm_norm = normalise_lm_score(lm_level_score(out.level_logits))
    cards = []
    for i in range(out.level_logits.shape[0]):
        heads = {"lm": _clamp(lm_norm[i]), "regression": _clamp(out.regression[i])}
        expert_raw = None
        if out.expert is not None and out.metavoter is not None:
            expert_raw = {k: float(out.expert[k][i]) for k in KEYS}
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
            )
        )
    return cards


@dataclass
class Scorer:
    """A loaded model plus the settings it scores with. Create it with `load_scorer`."""

    model: HumanAesModel
    meta: ckpt.CheckpointMeta
    placement: Placement
    model_path: Path
    fingerprint: str
    max_tiles: int = 12
    batch_size: int = 8
    decode_workers: int = 2
    fast_decode: bool = True
    tile_config: TileConfig = field(init=False)

    def __post_init__(self) -> None:
        self.tile_config = tile_config_for(self.meta, self.max_tiles, self.fast_decode)

    def settings_fingerprint(self, heads: str = "all") -> str:
        """Identity of everything besides the weights that changes a card (cache key)."""
        return settings_fingerprint(
            heads=heads,
            max_tiles=self.max_tiles,
            question_index=self.model.prompt.question_index,
            placement=self.placement,
            fast_decode=self.fast_decode,
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
        stream = decode_stream(images, self.tile_config, self.decode_workers, window=2 * size)
        return self.score_decoded(stream, heads=heads, batch_size=size)

    def score_decoded(
        self, decoded: Iterable[_Decoded], heads: str = "all", batch_size: int | None = None
    ) -> Iterator[ScoreResult]:
        """Score an already-decoding stream: photos wait in per-tile-count buckets until one fills
        (a batch then needs no padding) or too many photos are waiting."""
        if heads not in HEADS_MODES:
            raise ValueError(f"heads must be one of {HEADS_MODES}, got {heads!r}")
        size = batch_size or self.batch_size
        buckets: dict[int, list[_Decoded]] = {}
        waiting = 0
        for item in decoded:
            if item.error is not None:
                yield ScoreResult(item.index, item.source, error=item.error)
                continue
            assert item.pixels is not None
            tiles = item.pixels.shape[0]
            buckets.setdefault(tiles, []).append(item)
            waiting += 1
            if len(buckets[tiles]) < size:
                if waiting < 2 * size:
                    continue
                tiles = max(buckets, key=lambda t: len(buckets[t]))  # too many waiting: run the fullest
            batch = buckets.pop(tiles)
            waiting -= len(batch)
            yield from self._run(batch, tiles, heads)
        for tiles, batch in sorted(buckets.items()):
            yield from self._run(batch, tiles, heads)

    def _run(self, batch: list[_Decoded], tiles: int, heads: str) -> Iterator[ScoreResult]:
        pixels = torch.cat([b.pixels for b in batch if b.pixels is not None])
        out = self.model.score_batch(pixels, tiles, heads=heads)
        cards = cards_from_outputs(out, tiles, self.fingerprint, heads)
        for item, card in zip(batch, cards, strict=True):
            card.source = item.source
            yield ScoreResult(item.index, item.source, card=card)


def load_scorer(
    model: str | os.PathLike,
    device: str = "auto",
    quantize: str | None = None,
    max_tiles: int = 12,
    *,
    precision: str = "auto",
    batch_size: int = 8,
    fast_decode: bool = True,
    progress: type | None = None,
) -> Scorer:
    """Load a checkpoint directory or hub id for scoring (DESIGN section 7)."""
    if not 1 <= max_tiles <= 40:
        raise HumanAesError(f"max_tiles must be between 1 and 40, got {max_tiles}")
    path = resolve_model(model, progress=progress)
    placement = resolve(device, precision, quantize)
    warn_if_slow(placement)
    qconfig = bnb_4bit_config(placement) if placement.quantize == "4bit" else None
    loaded, meta = ckpt.load_model(
        path, device=placement.device, dtype=placement.dtype, quantization_config=qconfig
    )
    return Scorer(
        model=loaded,
        meta=meta,
        placement=placement,
        model_path=path,
        fingerprint=ckpt.fingerprint(path),
        max_tiles=max_tiles,
        batch_size=batch_size,
        fast_decode=fast_decode,
    )
