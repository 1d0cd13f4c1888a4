"""kill -9 during ``humanaes-cull --keep-top 50% --move-picks``, on one file system and across two.

Each trial copies a pristine shoot (photos with one or two sidecars each), starts ``humanaes-cull`` in a
forked child, kills it at a random moment (mostly while it moves, sometimes while it plans, sometimes
its first re-run too), then runs it again to the end. After the re-run every photo is exactly once in
the source or the destination, beside all of its sidecars, the destination holds exactly the plan of
an uninterrupted run, and no temporary file is left. The cross-file-system trials use a tmpfs the test
mounts (skipped where mounting is impossible). Also here: two runs started together on one folder
move exactly the plan between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from humanaes_core.culling.moves import JOURNAL_NAME
from tests import procs

N_PHOTOS = 24
PAD_BYTES = 2_000_000  # after the JPEG's end: a copy across file systems takes long enough to be hit


@dataclass
class Tally:
    trials: int = 0
    kills: int = 0
    settled: int = 0  # half-done moves a re-run found and completed or rolled back
    lost: int = 0
    duplicated: int = 0
    separated: int = 0
    leftovers: int = 0
    off_plan: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self, where: str) -> str:
        return (
            f"{where}: {self.trials} trials, {self.kills} kills ({self.settled} mid-move, settled by the "
            f"re-run), {self.lost} photos lost, "
            f"{self.duplicated} duplicated, {self.separated} sidecars separated, "
            f"{self.leftovers} temporary files left, {self.off_plan} trials off the plan"
        )


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _make_shoot(root: Path) -> Path:
    """Photos padded to ~2 MB, each with name.jpg.xmp, every third also with name.xmp."""
    procs.photo_folder(root, N_PHOTOS, seed=7)
    rng = random.Random(7)
    for i, photo in enumerate(sorted(root.glob("*.jpg"))):
        with photo.open("ab") as fh:
            fh.write(rng.randbytes(PAD_BYTES))
        packet = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- {photo.name} --></x:xmpmeta>\n'
        Path(f"{photo}.xmp").write_text(packet, encoding="utf-8")
        if i % 3 == 0:
            photo.with_suffix(".xmp").write_text(packet.replace("-->", "stem -->"), encoding="utf-8")
    return root


def _argv(src: Path, dest: Path, model: Path, db: Path) -> list[str]:
    return [
        str(src),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--max-tiles",
        "1",
        "--cache",
        str(db),
        "--quiet",
        "--keep-top",
        "50%",
        "--move-picks",
        str(dest),
    ]


def _run(
    argv: list[str],
    env: dict[str, str],
    log: Path,
    kill_after: tuple[str, float] | None,
    times: list | None = None,
) -> bool:
    """Run humanaes-cull in a forked child; SIGKILL it at `kill_after` ("journal" s after the journal
    appears, or "start" s after it started). Returns whether it was killed before it finished; `times`
    gets (seconds in all, seconds after the journal appeared) of a run that finished."""
    proc = procs.start(procs.cull_child, argv, env, str(log))
    started = time.monotonic()
    journal = Path(argv[-1]) / JOURNAL_NAME
    appeared = None
    while procs.alive(proc):
        now = time.monotonic()
        if now - started > 120:
            procs.kill9(proc)
            raise AssertionError(f"humanaes-cull did not finish in 120 s: {log.read_text()[-2000:]}")
        if appeared is None and journal.exists():
            appeared = now
        if kill_after is not None:
            kind, delay = kill_after
            since = started if kind == "start" else appeared
            if since is not None and now - since >= delay:
                procs.kill9(proc)
                return True
        time.sleep(0.002)
    proc.join(30)
    assert proc.exitcode == 0, log.read_text()[-3000:]
    if times is not None:
        end = time.monotonic()
        times.append((end - started, end - (appeared or end)))
    return False


def _photos(*folders: Path) -> list[Path]:
    return [p for f in folders for p in sorted(f.rglob("*.jpg"))]


def _check(pristine: Path, src: Path, dest: Path, plan: set[str], tally: Tally) -> None:
    """Every photo once, beside each of its sidecars; nothing else left; the plan and nothing more."""
    originals = {_digest(p): p for p in _photos(pristine)}
    where: dict[str, list[Path]] = {}
    for p in _photos(src, dest):
        where.setdefault(_digest(p), []).append(p)
    tally.lost += sum(1 for h in originals if h not in where)
    tally.duplicated += sum(len(v) - 1 for v in where.values())
    expected: set[Path] = set()
    for h, places in where.items():
        old = originals[h]
        for place in places:
            for side, new in (
                (Path(f"{old}.xmp"), Path(f"{place}.xmp")),
                (old.with_suffix(".xmp"), place.with_suffix(".xmp")),
            ):
                if side.exists():
                    expected.add(new)
                    if not new.exists() or _digest(new) != _digest(side):
                        tally.separated += 1
                        tally.notes.append(f"{new} missing beside {place}")
    found = [s for f in (src, dest) for s in f.rglob("*.xmp")]
    strays = [s for s in found if s not in expected]
    tally.separated += len(strays)
    tally.notes += [f"stray sidecar {s}" for s in strays]
    left = [p for f in (src, dest) for p in f.iterdir() if p.name.startswith(".") and p.name != JOURNAL_NAME]
    tally.leftovers += len(left)
    moved = {originals[_digest(p)].name for p in _photos(dest)}
    if moved != plan:
        tally.off_plan += 1
        tally.notes.append(f"moved {sorted(moved ^ plan)} off the plan")


@contextlib.contextmanager
def _tmpfs(where: Path):
    """A tmpfs mounted at `where` for the test, or None where mounting is impossible."""
    where.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    command = [mount or "mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(where)]
    ok = mount is not None and subprocess.run(command, capture_output=True).returncode == 0
    try:
        yield where if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _soak(
    tmp: Path, dest_root: Path, model: Path, pristine: Path, env: dict, db: Path, n: int, seed: int
) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    # the plan and the length of the move phase, from one uninterrupted run
    times: list[tuple[float, float]] = []
    for k in range(2):  # the first fills the score cache
        ref_src, ref_dest = tmp / f"ref{k}" / "shoot", dest_root / f"ref{k}-picks"
        shutil.copytree(pristine, ref_src)
        _run(_argv(ref_src, ref_dest, model, db), env, tmp / "ref.log", None, times)
    run_s, move_s = times[-1]
    tally.notes.append(f"an uninterrupted run: {run_s:.2f} s, {move_s:.2f} s of it moving")
    plan = {p.name for p in _photos(ref_dest)}
    assert 0 < len(plan) < N_PHOTOS
    for i in range(n):
        src, dest = tmp / f"t{i}" / "shoot", dest_root / f"t{i}-picks"
        shutil.copytree(pristine, src)
        argv = _argv(src, dest, model, db)
        log = tmp / f"t{i}.log"
        moving = rng.random() < 0.8  # mostly while it moves, else at any moment
        moment = ("journal", rng.uniform(0, 0.9 * move_s)) if moving else ("start", rng.uniform(0, run_s))
        tally.kills += _run(argv, env, log, moment)
        if rng.random() < 0.25:  # kill the re-run too, while it settles and goes on
            tally.kills += _run(argv, env, log, ("start", rng.uniform(0, run_s)))
        _run(argv, env, log, None)
        text = log.read_text(errors="replace")
        tally.settled += text.count("(a run was interrupted)") + text.count("stays where it was")
        tally.trials += 1
        _check(pristine, src, dest, plan, tally)
        shutil.rmtree(src.parent)
        shutil.rmtree(dest)
    return tally


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return _make_shoot(tmp_path_factory.mktemp("pristine") / "shoot")


@pytest.mark.slow
@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver and SIGKILL (POSIX)")
def test_kill9_move_picks_on_one_and_across_file_systems(tiny_model, pristine, tmp_path):
    db = tmp_path / "cache.sqlite"
    env = procs.child_env(db, tmp_path / "models")
    same, cross = tmp_path / "same", tmp_path / "cross"
    # 40 trials: a move on one file system takes ~0.02 s of a 0.1 s run, so fewer kills land in it
    tallies = {"same file system": _soak(same, same, tiny_model, pristine, env, db, 40, 1)}
    with _tmpfs(tmp_path / "tmpfs") as other:
        if other is not None:
            tallies["across file systems"] = _soak(cross, other, tiny_model, pristine, env, db, 24, 2)
    print("\n" + "\n".join(t.line(k) for k, t in tallies.items()))
    for t in tallies.values():
        assert (t.lost, t.duplicated, t.separated, t.leftovers, t.off_plan) == (0, 0, 0, 0, 0), t.notes[:20]
        assert t.kills >= t.trials // 3 and t.settled >= 3  # kills did land in the middle of moves
    if "across file systems" not in tallies:
        pytest.skip("could not mount a tmpfs: only the same-file-system trials ran")


@pytest.mark.slow
@pytest.mark.skipif(not procs.SUPPORTED, reason="needs a forkserver and SIGKILL (POSIX)")
def test_two_runs_at_once_move_exactly_the_plan(tiny_model, pristine, tmp_path):
    db = tmp_path / "cache.sqlite"
    env = procs.child_env(db, tmp_path / "models")
    ref_src, ref_dest = tmp_path / "ref" / "shoot", tmp_path / "ref-picks"
    shutil.copytree(pristine, ref_src)
    _run(_argv(ref_src, ref_dest, tiny_model, db), env, tmp_path / "ref.log", None)
    plan = {p.name for p in _photos(ref_dest)}
    waited = 0
    for i in range(3):
        src, dest = tmp_path / f"t{i}" / "shoot", tmp_path / f"t{i}-picks"
        shutil.copytree(pristine, src)
        argv = _argv(src, dest, tiny_model, db)
        runs = [procs.start(procs.cull_child, argv, env, str(tmp_path / f"c{i}-{k}.log")) for k in range(2)]
        for run in runs:
            run.join(120)
            assert run.exitcode == 0
        tally = Tally()
        _check(pristine, src, dest, plan, tally)
        assert (tally.lost, tally.duplicated, tally.separated, tally.off_plan) == (0, 0, 0, 0), tally.notes
        logs = [(tmp_path / f"c{i}-{k}.log").read_text(errors="replace") for k in range(2)]
        waited += sum("waiting for another humanaes-cull" in text for text in logs)
    assert waited >= 1  # the runs did overlap, and the lock made one wait
