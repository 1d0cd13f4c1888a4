"""The paper's evaluation (section 5, Tables 2 and 3): small registered metrics, standard and paper-style.

Every metric is a function ``(pred, target) -> float`` over 1-D arrays, registered by name with its
table label and direction, in the spirit of pyiqa's metric registry. Two families:

- **standard**: ``mse``, ``rmse``, ``mae``, ``plcc``, ``srcc``, ``krcc`` (signed), computed the
  textbook way with numpy and scipy.stats;
- **paper-compatible** (prefix ``paper_``): what the official evaluation script reports under the
  names MSE and MAE — ``sqrt(mean((x−y)²) + 1e-8)`` and ``sqrt(mean(|x−y|) + 1e-8)`` — and the
  *absolute* values of the correlations. Only these can be compared with the paper's numbers.

Both families share the classification metrics on the five rating levels (scores mapped with
`score_to_level`): ``accuracy`` and macro ``precision``/``recall``/``f1`` from scikit-learn, averaged
over the levels present in the ground truth or the predictions (scikit-learn's default), with 0 for a
level never predicted.

Per dimension (Table 3) the MAE of each of the 12 dimensions is reported over the photos that have
that label; the paper's Table 3 uses its "MAE" (its overall-aesthetic column equals Table 2's MAE).

Two protocols (`PROTOCOLS`): "standard" scores with the checkpoint's own settings and maps every
ground-truth score to its level; "paper" follows the release's eval_HumanAesExpert.py: the "release"
preset (its load_image pixels, its question "Rate the aesthetics of this human picture.", fp16 on
CUDA) and, for the level metrics, the data's own `text_level` where a line has one (the 58K
overall-only samples of HumanBeauty), the level of the score elsewhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from humanaes_core.data import DataSet, Sample
from humanaes_core.formats import write_csv as write_rows_csv
from humanaes_core.outputs import open_output
from humanaes_core.schema import BY_KEY, HEAD_NAMES, KEYS, LEVELS, score_to_level

MetricFn = Callable[[np.ndarray, np.ndarray], float]

PAPER_EPS = 1e-8  # the official script adds this inside the square root


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # column header in the tables
    fn: MetricFn
    higher_is_better: bool
    doc: str


METRICS: dict[str, Metric] = {}


def register(name: str, label: str, higher_is_better: bool) -> Callable[[MetricFn], MetricFn]:
    """Add a metric to `METRICS` under `name` (the key used in JSON and CSV output)."""

    def deco(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, label, fn, higher_is_better, (fn.__doc__ or "").strip())
        return fn

    return deco


PROTOCOLS = ("standard", "paper")


def _levels(scores: np.ndarray) -> np.ndarray:
    return np.array([LEVELS.index(score_to_level(float(s))) for s in scores], dtype=np.int64)


def _correlation(fn: Callable, pred: np.ndarray, target: np.ndarray) -> float:
    """NaN when undefined (fewer than two points or a constant input) instead of a warning."""
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return math.nan
    return float(fn(pred, target)[0])


# --- standard --------------------------------------------------------------------------------------


@register("mse", "MSE", higher_is_better=False)
def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error."""
    return float(np.mean((pred - target) ** 2))


@register("rmse", "RMSE", higher_is_better=False)
def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((pred - target) ** 2)))


@register("mae", "MAE", higher_is_better=False)
def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(pred - target)))


@register("plcc", "PLCC", higher_is_better=True)
def plcc(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson linear correlation (signed)."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, pred, target)


@register("srcc", "SRCC", higher_is_better=True)
def srcc(pred: np.ndarray, target: np.ndarray) -> float:
    """Spearman rank correlation (signed)."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, pred, target)


@register("krcc", "KRCC", higher_is_better=True)
def krcc(pred: np.ndarray, target: np.ndarray) -> float:
    """Kendall rank correlation, tau-b (signed)."""
    from scipy.stats import kendalltau

    return _correlation(kendalltau, pred, target)


# --- rating levels (shared by both families) -------------------------------------------------------


@register("accuracy", "Accuracy", higher_is_better=True)
def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Share of photos whose predicted level equals the ground-truth level."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_levels(target), _levels(pred)))


def _macro(which: int, pred: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_fscore_support

    values = precision_recall_fscore_support(_levels(target), _levels(pred), average="macro", zero_division=0)
    return float(values[which])


@register("precision", "Precision", higher_is_better=True)
def precision(pred: np.ndarray, target: np.ndarray) -> float:
    """Macro-averaged precision over the five levels."""
    return _macro(0, pred, target)


@register("recall", "Recall", higher_is_better=True)
def recall(pred: np.ndarray, target: np.ndarray) -> float:
    """Macro-averaged recall over the five levels."""
    return _macro(1, pred, target)


@register("f1", "F1 Score", higher_is_better=True)
def f1(pred: np.ndarray, target: np.ndarray) -> float:
    """Macro-averaged F1 over the five levels."""
    return _macro(2, pred, target)


# --- paper-compatible ------------------------------------------------------------------------------


@register("paper_mse", "MSE*", higher_is_better=False)
def paper_mse(pred: np.ndarray, target: np.ndarray) -> float:
    """The official script's "MSE": sqrt(mean((x − y)²) + 1e-8), i.e. an RMSE."""
    return float(np.sqrt(np.mean((pred - target) ** 2) + PAPER_EPS))


@register("paper_mae", "MAE*", higher_is_better=False)
def paper_mae(pred: np.ndarray, target: np.ndarray) -> float:
    """The official script's "MAE": sqrt(mean(|x − y|) + 1e-8)."""
    return float(np.sqrt(np.mean(np.abs(pred - target)) + PAPER_EPS))


@register("paper_plcc", "PLCC*", higher_is_better=True)
def paper_plcc(pred: np.ndarray, target: np.ndarray) -> float:
    """|PLCC|, as the official script reports it."""
    return abs(plcc(pred, target))


@register("paper_srcc", "SRCC*", higher_is_better=True)
def paper_srcc(pred: np.ndarray, target: np.ndarray) -> float:
    """|SRCC|, as the official script reports it."""
    return abs(srcc(pred, target))


@register("paper_krcc", "KRCC*", higher_is_better=True)
def paper_krcc(pred: np.ndarray, target: np.ndarray) -> float:
    """|KRCC|, as the official script reports it."""
    return abs(krcc(pred, target))


LEVEL_METRICS = ("accuracy", "precision", "recall", "f1")
STANDARD = ("mse", "rmse", "mae", "plcc", "srcc", "krcc", *LEVEL_METRICS)
PAPER = ("paper_mse", "paper_mae", "paper_plcc", "paper_srcc", "paper_krcc", *LEVEL_METRICS)
#: Heads in report order: the final (MetaVoter) score first, then each head's own, as in the paper's ablation.
REPORT_HEADS = ("metavoter", *(h for h in HEAD_NAMES if h != "metavoter"))


def compute(names: Sequence[str], pred: Sequence[float], target: Sequence[float]) -> dict[str, float]:
    """The named metrics of one prediction/target pair (NaN for all when there are no points)."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"pred and target must be 1-D of equal length, got {p.shape} and {t.shape}")
    if len(p) == 0:
        return dict.fromkeys(names, math.nan)
    return {name: METRICS[name].fn(p, t) for name in names}


def level_metrics(pred: Sequence[float], target_levels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 of the predicted scores' levels against given level words
    (the paper protocol's `text_level`), computed as the registered level metrics are."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if not len(pred):
        return dict.fromkeys(LEVEL_METRICS, math.nan)
    p = _levels(np.asarray(pred, dtype=np.float64))
    t = np.array([LEVELS.index(level) for level in target_levels], dtype=np.int64)
    prf = precision_recall_fscore_support(t, p, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(t, p)), "precision": float(prf[0]), "recall": float(prf[1]),
            "f1": float(prf[2])}  # fmt: skip


def overall_metrics(
    pred: Sequence[float], target: Sequence[float], target_levels: Sequence[str] | None = None
) -> dict:
    """Table 2 for one predictor: {"n", "standard": {...}, "paper_compatible": {...}}; with
    `target_levels` the level metrics compare with those words instead of the targets' levels."""
    out = {
        "n": len(pred),
        "standard": compute(STANDARD, pred, target),
        "paper_compatible": compute(PAPER, pred, target),
    }
    if target_levels is not None:
        levels = level_metrics(pred, target_levels)
        out["standard"].update(levels)
        out["paper_compatible"].update(levels)
    return out


def dimension_metrics(pred: Mapping[str, Sequence[float]], target: Mapping[str, Sequence[float]]) -> dict:
    """Table 3: per dimension, MAE (standard) and the paper's MAE over the photos labelled with it."""
    out = {}
    for key in KEYS:
        values = compute(("mae", "paper_mae"), pred.get(key, []), target.get(key, []))
        out[key] = {"n": len(target.get(key, [])), **values}
    return out


# --- running a model over a data set -----------------------------------------------------------------


def evaluate_samples(
    scorer, samples: Sequence[Sample], progress: bool = True, text_levels: bool = False
) -> dict:
    """Score every sample (all heads) and compute Tables 2 and 3.

    The final overall score is the card's (the MetaVoter); each head's own overall score is evaluated
    too, as in the paper's ablation. Photos that cannot be read are left out and listed with the reason.
    `text_levels` (the paper protocol): the level metrics use a sample's `text_level` where it has one.
    """
    from tqdm import tqdm

    by_path: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_path.setdefault(str(s.path), []).append(i)
    paths = list(by_path)
    cards: dict[str, object] = {}
    skipped: list[dict] = []
    with tqdm(total=len(paths), unit="photo", disable=not progress, desc="scoring") as bar:
        for result in scorer.score_iter(paths, heads="all"):
            if result.card is None:
                skipped.append({"path": result.source, "reason": result.error})
            else:
                cards[paths[result.index]] = result.card
            bar.update(1)
    overall_target: list[float] = []
    target_levels: list[str] = []
    heads_pred: dict[str, list[float]] = {h: [] for h in REPORT_HEADS}
    dim_pred: dict[str, list[float]] = {k: [] for k in KEYS}
    dim_target: dict[str, list[float]] = {k: [] for k in KEYS}
    for s in samples:
        card = cards.get(str(s.path))
        if card is None:
            continue
        if s.overall is not None:
            overall_target.append(s.overall)
            target_levels.append(s.level if text_levels and s.level else score_to_level(s.overall))
            for h in REPORT_HEADS:
                heads_pred[h].append(card.dims["overall"] if h == "metavoter" else card.heads[h])
        for key, value in s.labels.items():
            dim_target[key].append(value)
            dim_pred[key].append(card.dims[key])
    levels = target_levels if text_levels else None
    heads = {h: overall_metrics(heads_pred[h], overall_target, levels) for h in REPORT_HEADS}
    dims = dimension_metrics(dim_pred, dim_target)
    summary = {
        "n": len(overall_target),
        **{k: v for k, v in heads["metavoter"]["standard"].items()},
        **{k: v for k, v in heads["metavoter"]["paper_compatible"].items()},
        "dims_mae": {k: v["mae"] for k, v in dims.items() if v["n"]},
    }
    return {
        "overall": heads["metavoter"],
        "heads": heads,
        "dimensions": dims,
        "summary": summary,
        "scored": len(cards),
        "skipped": skipped,
        "levels_from_text_level": sum(1 for s in samples if text_levels and s.level and str(s.path) in cards),
    }


def evaluate(
    data: DataSet,
    model: str | os.PathLike,
    *,
    device: str = "auto",
    precision: str = "auto",
    quantize: str | None = None,
    max_tiles: int = 12,
    batch_size: int = 8,
    progress: bool = True,
    protocol: str = "standard",
) -> dict:
    """Load a model and evaluate it on a data set: the report `humanaes-eval` writes.

    `protocol="paper"`: the release's evaluation (the "release" preset, its question, `text_level`
    ground truth where the data has it); `max_tiles` must then be the release's 12.
    """
    from humanaes_core import load_scorer

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    paper = protocol == "paper"
    scorer = load_scorer(
        model,
        device=device,
        quantize=quantize,
        max_tiles=max_tiles,
        precision=precision,
        batch_size=batch_size,
        preset="release" if paper else None,
    )
    report = evaluate_samples(scorer, data.samples, progress=progress, text_levels=paper)
    report["model"] = {
        "path": str(scorer.model_path),
        "name": scorer.meta.name,
        "fingerprint": scorer.fingerprint,
    }
    report["data"] = {
        "path": str(data.source),
        "format": data.format,
        "fingerprint": data.labels_fingerprint(),
        **data.counts(),
        "skipped_while_loading": [{"path": p, "reason": r} for p, r in data.skipped],
    }
    question = (
        scorer.question_index if scorer.question_index is not None else scorer.model.prompt.question_index
    )
    report["settings"] = {
        "protocol": protocol,
        "preset": "release" if paper else None,
        "max_tiles": max_tiles,
        "placement": scorer.placement.label,
        "question": scorer.model.prompt.overall_questions[question],
        "ground_truth_levels": "text_level where given, else the score's level"
        if paper
        else "the score's level",
    }
    return report


# --- tables --------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def table2(report: Mapping, name: str = "model") -> str:
    """Overall metrics shaped like the paper's Table 2: one row per head, paper-compatible then standard."""
    blocks = []
    for family, names, title in (
        (
            "paper_compatible",
            PAPER,
            "Table 2, paper-compatible (official script: MSE* = sqrt(MSE+1e-8), "
            "MAE* = sqrt(MAE+1e-8), |correlations|)",
        ),
        ("standard", STANDARD, "Table 2, standard definitions"),
    ):
        header = [
            "Method",
            *(METRICS[n].label + (" ↑" if METRICS[n].higher_is_better else " ↓") for n in names),
        ]
        rows = []
        for head in REPORT_HEADS:
            entry = report["heads"][head]
            label = name if head == "metavoter" else f"  {head} head"
            rows.append([label, *(_fmt(entry[family][n]) for n in names)])
        blocks.append(f"{title} — n = {report['overall']['n']}\n" + _table(header, rows))
    return "\n\n".join(blocks)


def table3(report: Mapping, name: str = "model") -> str:
    """Per-dimension MAE shaped like the paper's Table 3 (two rows of six dimensions), both families."""
    dims = report["dimensions"]
    blocks = []
    for family, title in (("paper_mae", "Table 3, paper-compatible MAE*"), ("mae", "Table 3, standard MAE")):
        parts = []
        for chunk in (KEYS[:6], KEYS[6:]):
            header = ["Method", *(BY_KEY[k].name for k in chunk)]
            row = [name, *(_fmt(dims[k][family]) if dims[k]["n"] else "   n/a" for k in chunk)]
            counts = ["n", *(str(dims[k]["n"]) for k in chunk)]
            parts.append(_table(header, [row, counts]))
        blocks.append(title + "\n" + "\n".join(parts))
    return "\n\n".join(blocks)


def report_rows(report: Mapping) -> list[dict]:
    """Long-format rows (section, name, metric, value, n) for CSV output."""
    rows = []
    for head, entry in report["heads"].items():
        for family in ("standard", "paper_compatible"):
            for metric, value in entry[family].items():
                rows.append(
                    {
                        "section": f"overall/{family}",
                        "name": head,
                        "metric": metric,
                        "value": value,
                        "n": entry["n"],
                    }
                )
    for key, entry in report["dimensions"].items():
        for metric in ("mae", "paper_mae"):
            rows.append(
                {
                    "section": "dimension",
                    "name": key,
                    "metric": metric,
                    "value": entry[metric],
                    "n": entry["n"],
                }
            )
    return rows


def json_safe(value: object) -> object:
    """NaN (an undefined correlation) becomes None: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_csv(report: Mapping, path: str | os.PathLike, flag: str = "--csv") -> None:
    """The report's long-format rows (`report_rows`) as a CSV file, through the output guard (replaced
    atomically; never a photo, a sidecar or a database)."""
    with open_output(path, flag, newline="") as fh:
        write_rows_csv(report_rows(report), fh, ["section", "name", "metric", "value", "n"])
