"""Processes for the crash and concurrency tests: real ``humanaes-score`` runs, the app, and kill -9.

Starting a fresh interpreter costs seconds here (torch and transformers imports), so most trials fork
their children from a ``multiprocessing`` forkserver that has HumanAes preloaded: each child then runs
``humanaes-score``'s own ``main`` (or an app-like writer) from its first line, in a process of its own,
and is killed with SIGKILL like any other. A few trials per test also start the installed console script
and the desktop app as plain subprocesses, so the real entry points are covered too.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

PRELOAD = [
    "tests.procs",
    "humanaes_core.cli.score",
    "humanaes_core.cli.cull",
    "humanaes_core.culling.actions",
    "humanaes_core.scoring.scan",
    "humanaes_core.store.decisions",
    "transformers.models.internvl.modeling_internvl",
    "transformers.models.auto.tokenization_auto",
    "tqdm",
]

_context: mp.context.BaseContext | None = None
#: Whether this platform can run these tests (forkserver and SIGKILL are POSIX things).
SUPPORTED = "forkserver" in mp.get_all_start_methods() and hasattr(signal, "SIGKILL")


def context() -> mp.context.BaseContext:
    """The forkserver context (started on first use, with HumanAes and transformers preloaded)."""
    global _context
    if _context is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def child_env(cache: Path, models: Path) -> dict[str, str]:
    """What every child needs: its own library file and model dir, offline, quiet tokenizers, offscreen Qt."""
    return {
        "HUMANAES_LIBRARY": str(cache),
        "HUMANAES_MODELS": str(models),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "QT_QPA_PLATFORM": "offscreen",
    }


# ------------------------------------------------------------------------------------ child targets


def _enter_child(env: dict[str, str], log: str) -> None:
    """Environment and output file of a forked child; tqdm gets a thread lock instead of its default
    cross-process semaphore, which a SIGKILL (or ``os._exit``) would leave behind for the tracker."""
    import threading

    from tqdm import tqdm

    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    tqdm.set_lock(threading.RLock())


def _exit_with(work: Callable[[], int]) -> None:
    """Run a child's `work` and leave with its exit code (1 and the traceback in the log if it raised),
    through ``os._exit``: nothing of the parent's clean-up runs in the child."""
    code = 1
    try:
        code = work()
    except BaseException:
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def score_child(argv: list[str], env: dict[str, str], log: str) -> None:
    """``humanaes-score ARGV`` in this (forked) process; exits with its exit code."""
    _enter_child(env, log)
    from humanaes_core.cli import score_main

    _exit_with(lambda: score_main(argv))


def cull_child(argv: list[str], env: dict[str, str], log: str) -> None:
    """``humanaes-cull ARGV`` in this (forked) process; exits with its exit code."""
    _enter_child(env, log)
    from humanaes_core.cli.cull import main as cull_main

    _exit_with(lambda: cull_main(argv))


def app_like_child(
    model: str, folder: str, db: str, seed: int, steps: int, env: dict[str, str], log: str
) -> None:
    """What the desktop app does to the database, without Qt: score through the cache (worker thread's
    CachedScoring) while key presses write decisions, undo and redo (DecisionStore), and the grid reads."""
    _enter_child(env, log)
    _exit_with(lambda: app_like_writer(Path(model), Path(folder), Path(db), seed, steps))


def app_like_writer(model: Path, folder: Path, db: Path, seed: int, steps: int) -> int:
    from humanaes_core.formats.photos import collect_photos
    from humanaes_core.scoring.scan import CachedScoring
    from humanaes_core.store.decisions import DecisionStore, Flag
    from humanaes_core.store.scores import ScoreCache

    rng = random.Random(seed)
    files, _ = collect_photos([folder])
    with ScoreCache(db) as cache, DecisionStore(db) as store:
        runner = CachedScoring(model, cache=cache, device="cpu", max_tiles=1, batch_size=4)
        hashes = cache.content_hashes(files)
        items = [(h, p) for p, h in hashes.items() if isinstance(h, str)]
        done = 0

        def key_press(i: int) -> None:
            batch = rng.sample(items, k=min(len(items), rng.randint(1, 4)))
            what = rng.random()
            if what < 0.4:
                store.set_stars(batch, rng.randint(0, 5))
            elif what < 0.7:
                store.set_flag(batch, rng.choice([Flag.PICK, Flag.REJECT, Flag.NONE]))
            elif what < 0.85:
                store.undo()
            else:
                store.redo()
            cache.get_many([h for h, _ in items], runner.model_fp, runner.settings_fp)
            store.get_many([h for h, _ in items])

        for result in runner.run(files):
            done += result.card is not None
            key_press(done)
        for i in range(steps):
            key_press(i)
        print(json.dumps({"scored": done, "decisions": store.count()}))
    return 0


def hammer_child(db: str, seed: int, seconds: float, env: dict[str, str], log: str) -> None:
    """Tight loops of small writes and reads on the cache and the decisions: the worst case for locks."""
    _enter_child(env, log)

    def work() -> int:
        from humanaes_core.store.decisions import DecisionStore, Flag
        from humanaes_core.store.scores import ScoreCache

        rng = random.Random(seed)
        ops = 0
        with ScoreCache(db) as cache, DecisionStore(db) as store:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                h = f"{rng.randrange(200):040x}"
                kind = rng.random()
                if kind < 0.4:
                    cache.put(h, "m", "s", {"writer": seed, "n": ops})
                elif kind < 0.6:
                    cache.put_many([(f"{rng.randrange(200):040x}", {"w": seed}) for _ in range(20)], "m", "s")
                elif kind < 0.85:
                    decision = None if rng.random() < 0.2 else _decision(rng, Flag)
                    store.apply([(h, f"/p/{h}.jpg", decision)], f"w{seed}-{ops}")
                elif kind < 0.92:
                    store.undo()
                else:
                    cache.get_many([f"{i:040x}" for i in range(200)], "m", "s")
                ops += 1
        print(json.dumps({"ops": ops}))
        return 0

    _exit_with(work)


def shared_writer_child(db: str, seed: int, n: int, env: dict[str, str], log: str) -> None:
    """One editor on a shared library: ``n`` cards (half of them also written by the other writers) and
    ``n`` decision steps, each on its own photo and on a photo every writer rates; prints its revisions."""
    _enter_child(env, log)

    def work() -> int:
        from humanaes_core.store.decisions import DecisionStore, PhotoDecision
        from humanaes_core.store.scores import ScoreCache

        with ScoreCache(db) as cache, DecisionStore(db, max_history=100_000) as store:
            for i in range(n):
                shared, own = f"{i:040x}", f"{seed + 1:08x}{i:032x}"
                cache.put_many([(shared, {"writer": seed}), (own, {"writer": seed})], "m", "s")
                step = [
                    (own, f"/w{seed}/{i}.jpg", PhotoDecision(i % 6)),
                    ("f" * 40, "/all.jpg", PhotoDecision(seed)),
                ]
                store.apply(step, f"writer {seed} step {i}")
        print(json.dumps({"writer": seed}))
        return 0

    _exit_with(work)


def decide_child(db: str, content_hash: str, path: str, stars: int, env: dict[str, str], log: str) -> None:
    """A CLI-like process that gives one photo ``stars`` in the library ``db`` and exits."""
    _enter_child(env, log)

    def work() -> int:
        from humanaes_core.store.decisions import DecisionStore

        with DecisionStore(db) as store:
            store.set_stars([(content_hash, path)], stars)
        return 0

    _exit_with(work)


def _decision(rng: random.Random, flag_type):
    from humanaes_core.store.decisions import PhotoDecision

    return PhotoDecision(rng.randint(0, 5), rng.choice(list(flag_type)))


def start(target: Callable[..., None], *args: object) -> mp.Process:
    proc = context().Process(target=target, args=args, daemon=False)
    proc.start()
    return proc


# --------------------------------------------------------------------------------------- real processes


def score_command() -> list[str]:
    """The installed ``humanaes-score`` console script (or the same entry point through Python)."""
    script = shutil.which(
        "humanaes-score", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    )
    if script:
        return [script]
    return [
        sys.executable,
        "-c",
        "import sys; from humanaes_core.cli import score_main; sys.exit(score_main())",
    ]


def popen(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    full_env = {**os.environ, **env}
    with open(log, "ab") as fh:
        return subprocess.Popen(
            cmd, env=full_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill9(proc: mp.Process | subprocess.Popen) -> None:
    """SIGKILL: no handler, no finally block, no flush runs."""
    pid = proc.pid
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if isinstance(proc, subprocess.Popen):
        proc.wait(30)
    else:
        proc.join(30)


def alive(proc: mp.Process | subprocess.Popen) -> bool:
    return proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()


# ------------------------------------------------------------------------------------------ database


def cards(db: Path) -> dict[str, float]:
    """Committed cards (content hash -> updated_at) as any other reader sees them right now."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT content_hash, updated_at FROM scores"))
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def duplicate_rows(db: Path) -> list[tuple]:
    """Keys that occur more than once in any table (the primary keys forbid it; this proves it)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        found = []
        for table, key in (
            ("scores", "content_hash, model_fp, settings_fp"),
            ("file_hashes", "path"),
            ("decisions", "content_hash"),
            ("decision_history", "step, content_hash"),
        ):
            with contextlib.suppress(sqlite3.OperationalError):  # a table that was never created
                found += conn.execute(
                    f"SELECT {key}, COUNT(*) FROM {table} GROUP BY {key} HAVING COUNT(*) > 1"
                ).fetchall()
        return found
    finally:
        conn.close()


def photo_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` small, distinct JPEGs (distinct content: no two share a card)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (320, 240) if i % 3 else (240, 320)
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        img.save(root / f"IMG_{seed:02d}_{i:03d}.jpg", quality=85)
    return root
