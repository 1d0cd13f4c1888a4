"""Reopening a folder whose photos are all scored and thumbnailed: the desktop app's first screen and
`humanaes-score`, each in a fresh process as a photographer would run them.

App: the real main window (offscreen Qt) in a new process, started as `humanaes` starts it (theme,
UI-thread garbage collection, the start-up warm-up thread); once start-up has settled, `open_paths` on
the folder, and the clock stops when the first screen is finished: every photo's card has arrived, no
re-sort is pending, and every tile on screen has its thumbnail in memory and its score, painted once
more. CLI: the `humanaes-score` entry point over the same folder, the whole process.

    python -m bench --only app_open
    python -m bench.app_open FOLDER    # one measurement of the app, a JSON line (the env says where)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .common import Section, median, ms

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120.0
SCREEN = (1920, 1200)
SETTLE_S = 0.3  # start-up work (imports, the first paint) ends before the folder is opened
CLI = "import sys; from humanaes_core.cli import score_main; sys.exit(score_main())"  # the console script


def _env(work: Path) -> dict[str, str]:
    """The app's and the CLI's own files (library, settings, thumbnails) under `work`, and an offscreen
    screen of 1920×1200 (Qt's default offscreen screen is 800×800: it would shrink the window)."""
    screen = work / "screen.json"
    screen.write_text(json.dumps({"screens": [{"name": "bench", "width": SCREEN[0], "height": SCREEN[1]}]}))
    env = dict(os.environ)
    env.update(
        HUMANAES_CACHE=str(work / "library.sqlite"),
        HUMANAES_LIBRARY=str(work / "library.sqlite"),
        HUMANAES_CONFIG_DIR=str(work / "config"),
        HUMANAES_THUMBNAILS=str(work / "thumbnails"),
        QT_QPA_PLATFORM=f"offscreen:configfile={screen}",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


def _cli_args(model: Path, folder: Path, out: Path) -> list[str]:
    # The same scoring settings as the app's (`_write_settings`), so both find the same cards.
    return [str(folder), "--model", str(model), "--device", "cpu", "--max-tiles", "1", "--out", str(out)]


def _write_settings(model: Path, work: Path) -> None:
    from humanaes_desktop.settings import SETTINGS_FILE, AppSettings

    settings = AppSettings(path=work / "config" / SETTINGS_FILE)
    settings.scoring.model = str(model)
    settings.scoring.device = "cpu"
    settings.scoring.max_tiles = 1  # scoring the folder once takes seconds, not minutes
    settings.save()


def prepare(model: Path, paths: list[Path], work: Path) -> float:
    """Score every photo once (through `humanaes-score`) and make its thumbnail; returns the seconds."""
    from .thumbs import _app, _thumbnail_size

    started = time.perf_counter()
    _write_settings(model, work)
    folder = paths[0].parent
    subprocess.run(
        [sys.executable, "-c", CLI, *_cli_args(model, folder, work / "first.csv"), "--quiet"],
        env=_env(work),
        check=True,
        capture_output=True,
        timeout=3600,
    )
    _app()
    from humanaes_desktop.thumbnails import load_thumbnail

    for p in paths:
        load_thumbnail(p, _thumbnail_size(), work / "thumbnails")
    return time.perf_counter() - started


def measure_cli(model: Path, folder: Path, work: Path) -> float:
    """Wall time of one `humanaes-score` process over the cached folder."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI, *_cli_args(model, folder, work / "again.csv"), "--quiet"],
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "0 by the model, model not loaded" not in done.stderr:
        raise AssertionError(f"the CLI rescan was not fully cached: {done.stderr.strip()[-400:]}")
    return seconds


def measure_app(folder: Path, work: Path) -> dict[str, Any]:
    """One fresh app process opening the folder (`_child`); its JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.app_open", str(folder)],
        cwd=REPO,
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the app measurement failed: {done.stderr.strip()[-800:]}")
    report = json.loads(lines[-1])
    if report["model_loaded"] or report["scored"] or report["pending"]:
        raise AssertionError(f"the folder was not fully cached in the app: {report}")
    return report


def first_screen_done(window: Any) -> bool:
    """Every card has arrived and is sorted in, and each tile on screen has its thumbnail and score."""
    model = window.model
    if not model.rowCount() or model.counts()["pending"] or model.resort_pending:
        return False
    on_screen = [model.photo(row) for row in window.grid.visible_rows()]
    return window.tiles_on_screen_ready() and all(p is not None and p.card is not None for p in on_screen)


def _spin(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _child(folder: str) -> dict[str, Any]:
    """In a fresh process: start the app as `humanaes` does, open `folder`, time the first screen."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from humanaes_desktop import theme
    from humanaes_desktop.__main__ import _warm_up
    from humanaes_desktop.background import UiThreadGarbage
    from humanaes_desktop.mainwindow import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply(app)  # type: ignore[arg-type]
    UiThreadGarbage(app)
    warm = threading.Thread(target=_warm_up, daemon=True)
    warm.start()
    window = MainWindow()
    window.show()
    _spin(SETTLE_S)
    while warm.is_alive():
        _spin(0.05)
    _spin(SETTLE_S)
    imported_before = sorted(m for m in ("torch", "transformers") if m in sys.modules)

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(2)
    result: dict[str, float] = {}

    def poll() -> None:
        if first_screen_done(window):
            window.grid.viewport().repaint()  # painted, not only ready to paint
            result["seconds"] = time.perf_counter() - started
            result["cpu"] = time.process_time() - cpu_started
            result["ui_cpu"] = time.thread_time() - ui_started
            loop.quit()

    check.timeout.connect(poll)
    QTimer.singleShot(int(TIMEOUT_S * 1000), loop.quit)
    started, cpu_started, ui_started = time.perf_counter(), time.process_time(), time.thread_time()
    window.open_paths([folder])
    check.start()
    loop.exec()
    check.stop()
    if "seconds" not in result:
        raise TimeoutError(f"the first screen was not finished after {TIMEOUT_S:.0f} s")
    on_screen = len(window.grid.visible_rows())
    grid = window.grid.viewport().size()
    thumbnails_loaded = sum(window.thumbnails.peek(p.path) is not None for p in window.model.photos)
    while window.controller.running:
        _spin(0.05)
    progress = window.last_progress
    counts = window.model.counts()
    report = {
        "seconds": result["seconds"],
        "cpu_seconds": result["cpu"],  # all threads: what a busy machine cannot hide
        "ui_cpu_seconds": result["ui_cpu"],
        "photos": counts["total"],
        "pending": counts["pending"],
        "on_screen": on_screen,
        "grid": [grid.width(), grid.height()],
        "thumbnails_loaded": thumbnails_loaded,
        "cached": progress.cached,
        "scored": progress.scored,
        "model_loaded": window.controller.has_model,
        "imported_before_open": imported_before,
        "imported_after": sorted(m for m in ("torch", "transformers") if m in sys.modules),
    }
    window.close()
    return report


def _runs(seconds: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in seconds) + " s"


def run(model: Path, paths: list[Path], work: Path, repeats: int) -> Section:
    n = len(paths)
    folder = paths[0].parent
    sec = Section(
        "app_open",
        f"Reopening a cached {n}-photo folder: the app's first screen and `humanaes-score`",
        "python -m bench --only app_open",
        ["what", f"median of {repeats}", "runs", "target"],
    )
    try:
        import humanaes_desktop.mainwindow  # noqa: F401
    except ImportError as e:
        sec.skipped = f"the desktop app cannot be imported here ({e})"
        return sec
    work = work / "app-open"
    work.mkdir(parents=True, exist_ok=True)
    prep = prepare(model, paths, work)
    apps = [measure_app(folder, work) for _ in range(repeats)]
    clis = [measure_cli(model, folder, work) for _ in range(repeats)]
    app_s, cli_s = median([a["seconds"] for a in apps]), median(clis)
    sec.row(
        "**app: `open_paths` → first screen of thumbnails and scores**",
        f"**{ms(app_s)}**",
        _runs([a["seconds"] for a in apps]),
        "< 1 s",
    )
    sec.row(
        "app: CPU time of that, all threads (UI thread)",
        f"{ms(median([a['cpu_seconds'] for a in apps]))} ({ms(median([a['ui_cpu_seconds'] for a in apps]))})",
        _runs([a["cpu_seconds"] for a in apps]),
        "",
    )
    sec.row("CLI: `humanaes-score` process over the folder", ms(cli_s), _runs(clis), "< 0.5 s")
    last = apps[-1]
    sec.notes += [
        f"First screen: {last['on_screen']} tiles ({last['grid'][0]}×{last['grid'][1]} px of grid) of the "
        f"default 1440×900 window on a {SCREEN[0]}×{SCREEN[1]} offscreen screen; "
        f"{last['thumbnails_loaded']} thumbnails were in memory when it was finished (of {n} photos). "
        "The model was never loaded (asserted); imported by the app before the folder was opened: "
        f"{', '.join(last['imported_before_open']) or 'neither torch nor transformers'} (the start-up "
        "warm-up, not counted); after: "
        f"{', '.join(last['imported_after']) or 'neither'}.",
        f"Each run is a new process; the app's is started as `humanaes` starts it and given {SETTLE_S:.1f} s "
        "after its start-up imports before the folder is opened. Thumbnails come from the disk cache and "
        f"cards from the library, both made once beforehand ({prep:.0f} s, not counted; scoring settings: "
        "the given model on the CPU, max tiles 1).",
        "CPU time does not grow when other processes compete for the cores; wall time does: on a loaded "
        "machine compare the CPU row.",
        "The CLI figure is the whole process of `humanaes-score FOLDER --model M --device cpu --max-tiles 1 "
        "--out F.csv --quiet` (interpreter start, imports, folder walk, cache lookups, writing the CSV), "
        "through the console script's own code.",
    ]
    sec.checks.append(("app: cached folder to its first screen < 1 s", f"{app_s:.2f} s", app_s < 1.0))
    sec.checks.append(("CLI: cached folder, whole process < 0.5 s", f"{cli_s:.2f} s", cli_s < 0.5))
    return sec


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(json.dumps(_child(sys.argv[1])), flush=True)
    os._exit(0)  # the window is closed; skip tearing down Qt and the lanes' threads at exit
