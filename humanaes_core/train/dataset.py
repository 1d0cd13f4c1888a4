"""What training feeds the model: photos as tiles, questions and answers, loss targets, batches.

`TrainingSet` turns labelled samples into stage 1's inputs; `EpochSampler` orders them reproducibly;
`head_scores` precomputes stage 2's inputs (the three head scores of every training photo, and F, J, K
for the taste fit) with the
scoring pass itself, so the MetaVoter is trained on exactly what it will combine when scoring.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from humanaes_core.data import DataError, Sample, build_qa
from humanaes_core.errors import HumanAesError
from humanaes_core.model import (
    HumanAesModel,
    PromptConfig,
    TileConfig,
    preprocess,
)
from humanaes_core.schema import BY_KEY, KEYS
from humanaes_core.scoring import decode_stream

__all__ = ["ROOT_CHILDREN", "EpochSampler", "TrainingSet", "collate", "head_scores"]

#: F, J, K: what the expert head's Overall is computed from (columns 3-5 of `head_scores`).
ROOT_CHILDREN: tuple[str, ...] = BY_KEY["overall"].children


class TrainingSet(torch.utils.data.Dataset):
    """Samples → tiles, question, answer and loss targets. The paraphrase is drawn from (seed, epoch,
    index), not from a global RNG, so a resumed run sees exactly the questions an uninterrupted one would."""

    def __init__(self, samples: Sequence[Sample], tiles: TileConfig, prompt: PromptConfig, seed: int) -> None:
        self.samples = list(samples)
        self.tiles = tiles
        self.prompt = prompt
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        q = int(
            np.random.default_rng([self.seed, self.epoch, index]).integers(len(self.prompt.overall_questions))
        )
        qa = build_qa(sample, self.prompt, q)
        try:
            pixels = preprocess(sample.path, self.tiles)
        except HumanAesError as e:
            raise DataError(f"{sample.origin}: {e}") from None
        dims = torch.tensor([sample.labels.get(k, 0.0) for k in KEYS], dtype=torch.float32)
        dims_mask = torch.tensor([float(sample.is_dims and k in sample.labels) for k in KEYS])
        return {
            "pixel_values": pixels,
            "question": qa.question,
            "answer": qa.answer,
            "overall": torch.tensor(sample.overall if sample.overall is not None else 0.0),
            "is_overall": torch.tensor(0.0 if sample.is_dims else 1.0),
            "dims": dims,
            "dims_mask": dims_mask,
        }


def collate(items: list[dict]) -> dict:
    """Tiles of all images concatenated (tile counts may differ); texts as lists; targets stacked."""
    return {
        "pixel_values": torch.cat([it["pixel_values"] for it in items]),
        "tiles": [int(it["pixel_values"].shape[0]) for it in items],
        "questions": [it["question"] for it in items],
        "answers": [it["answer"] for it in items],
        "overall": torch.stack([it["overall"] for it in items]).float(),
        "is_overall": torch.stack([it["is_overall"] for it in items]),
        "dims": torch.stack([it["dims"] for it in items]),
        "dims_mask": torch.stack([it["dims_mask"] for it in items]),
    }


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation that depends only on (seed, epoch): reproducible, and identical on every process
    (accelerate then gives each process its own share of every batch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


@torch.inference_mode()
def head_scores(
    model: HumanAesModel, samples: Sequence[Sample], tiles: TileConfig, batch_size: int
) -> torch.Tensor:
    """[N, 6] per sample, unclamped, from the scoring pass itself: the MetaVoter inputs (S'_LM, S_reg,
    S_exp) and the expert head's F, J, K (the children of S_exp, for the taste fit)."""
    out = torch.empty(len(samples), 3 + len(ROOT_CHILDREN))
    buckets: dict[int, list[tuple[int, torch.Tensor]]] = {}

    def run(n_tiles: int) -> None:
        items = buckets.pop(n_tiles)
        o = model.score_batch(torch.cat([p for _, p in items]), n_tiles)
        assert o.expert is not None
        lm = model.heads.lm_input(o.level_logits)  # S'_LM as the MetaVoter reads it (OpenFields)
        scores = torch.stack(
            [lm, o.regression, o.expert["overall"], *(o.expert[k] for k in ROOT_CHILDREN)], dim=-1
        )
        for row, (index, _) in enumerate(items):
            out[index] = scores[row]

    for item in decode_stream([s.path for s in samples], tiles):
        if item.error is not None or item.pixels is None:
            raise DataError(f"{samples[item.index].origin}: {samples[item.index].path}: {item.error}")
        n = int(item.pixels.shape[0])
        buckets.setdefault(n, []).append((item.index, item.pixels))
        if len(buckets[n]) >= batch_size:
            run(n)
    for n in list(buckets):
        run(n)
    return out
