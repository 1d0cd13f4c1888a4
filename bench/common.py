"""What every benchmark section shares: timing, machine facts, result tables and the random models."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best of `repeats` wall-clock runs, in seconds.

    The minimum, not the mean: on a shared machine other processes only ever add time, so the fastest
    run is the closest to what the code itself costs.
    """
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def race(fns: dict[str, Callable[[], object]], repeats: int = 1) -> dict[str, float]:
    """Best wall time of each function, run in turns (A B C, A B C, …).

    Taking turns makes a burst of load from other processes hit every contender alike instead of
    whichever happened to run during it, so the ratios between them stay meaningful on a busy machine.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def rate(hits: int, total: int) -> str:
    """A share with its counts: 'hits/total = 0.xx' ('—' for nothing counted)."""
    return f"{hits}/{total} = {hits / total:.2f}" if total else "—"


def ratio(naive: float, ours: float) -> str:
    """How many times faster ours is: 'x.xx×'."""
    return f"{naive / ours:.2f}×" if ours > 0 else "—"


@dataclass
class Section:
    """One benchmark's results: a Markdown table plus notes, the command that reproduces it, and the
    target checks it makes (name, measured text, met)."""

    key: str
    title: str
    command: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, str, bool | None]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None  # reason, when the section could not run here

    def row(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        out = [f"## {self.title}", "", f"`{self.command}`", ""]
        if self.skipped:
            out += [f"**Not measured:** {self.skipped}", ""]
        if self.rows:
            out.append("| " + " | ".join(self.columns) + " |")
            out.append("|" + "|".join("---" for _ in self.columns) + "|")
            out += ["| " + " | ".join(r) + " |" for r in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        return "\n".join(out)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """The facts a reader needs to compare these figures with their own machine's."""
    import PIL
    import torch
    import transformers
    from PIL import features

    info = {
        "CPU": f"{cpu_name()}, {os.cpu_count()} logical cores (torch uses {torch.get_num_threads()} threads)",
        "GPU": "none (no CUDA device)",
        "Python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "Pillow": f"{PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo') or 'no'})",
        "OS": f"{platform.system()} {platform.release()}",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["GPU"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    try:
        load = os.getloadavg()
        info["load at start"] = f"{load[0]:.2f} (1 min average; other processes add noise above 0)"
    except OSError:
        pass
    return info


def cached_model(cache_dir: Path, size: str) -> Path:
    """The random "tiny" or "small" checkpoint, built once per bench cache folder."""
    from humanaes_core.model import is_checkpoint
    from humanaes_core.testing import make_tiny_model

    path = cache_dir / "models" / size
    if not is_checkpoint(path):
        make_tiny_model(path, seed=0, size=size)
    return path
