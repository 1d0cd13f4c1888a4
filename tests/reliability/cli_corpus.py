"""A corpus of hostile command lines: what a user types and what a folder or a model directory holds.

The scanner's corpus (``hostile_corpus``) throws hostile *files* at a scan. This one throws hostile
*invocations* at the console scripts, in-process: output paths that are photos, databases or devices,
library paths that are not databases, absurd numbers, sidecars that are pipes or huge, destinations that
lie, checkpoints that point outside themselves or claim absurd sizes, label files that are nested or
enormous. Every case must end in exit 0 or in one line of error — never a traceback, never a hang — and
the photos, their sidecars and the library must come out intact (``Outcome.lost``).

``tests/reliability/test_cli_corpus.py`` asserts every row; ``python -m tests.reliability.cli_corpus``
prints the table (it builds a tiny model first).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import signal
import sqlite3
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

OK = "ok"
ERROR = "error"  # exit code != 0 and a one-line message on stderr
DONE = "done"  # either, as long as it ends in one line and nothing is lost
_TIMEOUT_S = 60


@dataclass
class World:
    """A small shoot, a tiny model and a warm library, rebuilt for every case."""

    root: Path
    model: Path
    shoot: Path = field(init=False)
    library: Path = field(init=False)

    def __post_init__(self) -> None:
        self.shoot = self.root / "shoot"
        self.library = self.root / "library.sqlite"

    def photo(self, i: int) -> Path:
        return self.shoot / f"IMG_{i}.jpg"

    def score_args(self, *extra: str) -> list[str]:
        return [
            str(self.shoot),
            "--model",
            str(self.model),
            "--device",
            "cpu",
            "--max-tiles",
            "1",
            "--quiet",
            "--cache",
            str(self.library),
            *extra,
        ]

    def cull_args(self, *extra: str) -> list[str]:
        return [*self.score_args(), "--keep-top", "50%", *extra]


@dataclass
class CliCase:
    name: str
    group: str
    cli: str  # score, cull, eval, train, import
    make: Callable[[World], list[str]]  # builds what the case needs, returns argv
    expect: str  # OK or ERROR
    says: str = ""  # a word the one-line message must contain (case-insensitive)
    keep: Callable[[World], list[Path]] = lambda w: []  # files whose bytes must not change
    cold: bool = False  # an empty library: the model must be loaded (cached cards need no model)


@dataclass
class Outcome:
    case: CliCase
    code: int | None
    last: str  # the last line on stderr
    problem: str = ""  # traceback, hang, lost data: why the row fails

    @property
    def ok(self) -> bool:
        if self.problem:
            return False
        if self.case.expect == OK:
            return self.code == 0
        if self.case.expect == DONE:
            return self.code is not None
        return self.code not in (0, None) and self.case.says.lower() in self.last.lower()


# ------------------------------------------------------------------------------------------ the world


def build_world(root: Path, model: Path, warm: Path | None) -> World:
    """Three photos (one with a sidecar) and, when `warm` is given, a copy of a library that has them."""
    world = World(root, model)
    world.shoot.mkdir(parents=True)
    for i, colour in enumerate(((200, 90, 60), (60, 120, 200), (90, 200, 90))):
        Image.new("RGB", (160, 120), colour).save(world.photo(i), quality=90)
    (world.shoot / "IMG_2.jpg.xmp").write_text(_XMP.format(rating=3))
    if warm is not None:
        shutil.copy(warm, world.library)
    return world


_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>
</rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def _digest(path: Path) -> str:
    try:
        if not path.is_file():
            return f"not a file: {path.lstat().st_mode if path.is_symlink() or path.exists() else 'gone'}"
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        return f"unreadable: {e}"


def _photos_and_sidecars(world: World) -> dict[Path, str]:
    return {p: _digest(p) for p in sorted(world.shoot.rglob("*")) if p.suffix.lower() in (".jpg", ".cr2")}


def _library_intact(world: World) -> str:
    if not world.library.exists():
        return ""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{world.library}?mode=ro", uri=True)) as conn:
            return "" if conn.execute("PRAGMA quick_check").fetchone()[0] == "ok" else "library damaged"
    except sqlite3.DatabaseError as e:
        return f"library unreadable: {e}"


# ------------------------------------------------------------------------------------------ running


def _main(cli: str) -> Callable[[list[str]], int]:
    from humanaes_core import cli as c

    return {
        "score": c.score_main,
        "cull": c.cull_main,
        "eval": c.eval_main,
        "train": c.train_main,
        "import": c.import_main,
    }[cli]


class _Hung(Exception):
    pass


def _on_alarm(_signum: int, _frame: object) -> None:
    raise _Hung


def run_case(case: CliCase, root: Path, model: Path, warm: Path | None) -> Outcome:
    """Build the world, run the case's command in-process, and check what became of everything."""
    world = build_world(root, model, None if case.cold else warm)
    argv = case.make(world)
    photos = _photos_and_sidecars(world) if case.cli in ("score", "eval", "import") else {}
    kept = {p: _digest(p) for p in case.keep(world)}
    err, out = io.StringIO(), io.StringIO()
    code: int | None = None
    problem = ""
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(_TIMEOUT_S)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = _main(case.cli)(argv)
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    except _Hung:
        problem = f"hung for {_TIMEOUT_S} s"
    except BaseException as e:
        problem = f"traceback: {type(e).__name__}: {str(e)[:120]}"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue()
    if "Traceback (most recent call last)" in text and not problem:
        problem = "traceback printed"
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if code not in (0, None) and len(last) > 2000:
        problem = problem or f"a {len(last)}-character message"
    changed = [p.name for p, d in {**photos, **kept}.items() if _digest(p) != d]
    if changed:
        problem = problem or f"changed or lost: {', '.join(changed)}"
    problem = problem or _library_intact(world)
    return Outcome(case, code, last, problem)


def table(outcomes: list[Outcome]) -> str:
    rows = [f"| {'group':<12} | {'case':<46} | {'expected':<8} | {'got':<60} | ok |", f"|{'-' * 132}|"]
    for o in outcomes:
        got = o.problem or ("exit 0" if o.code == 0 else f"exit {o.code}: {o.last}")
        rows.append(
            f"| {o.case.group:<12} | {o.case.name:<46} | {o.case.expect:<8} | {got[:60]:<60} | "
            f"{'✓' if o.ok else '✗'}  |"
        )
    bad = sum(not o.ok for o in outcomes)
    tracebacks = sum(o.problem.startswith("traceback") for o in outcomes)
    lost = sum(o.problem.startswith("changed or lost") for o in outcomes)
    rows.append(f"{len(outcomes)} cases, {bad} not as expected, {tracebacks} tracebacks, {lost} losing data")
    return "\n".join(rows)


def main() -> int:
    import tempfile

    from humanaes_core.testing import make_tiny_model

    from .cli_cases import CASES, warm_library

    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "model", seed=0, size="tiny")
        warm = warm_library(Path(tmp) / "warm", model)
        outcomes = [run_case(c, Path(tmp) / f"case{i}", model, warm) for i, c in enumerate(CASES)]
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
