"""The Ray engine on a local two-CPU cluster: the same cards as one process, written to the library as
they arrive, resumed after a kill, broken photos reported, and `humanaes-score --engine ray`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from humanaes_core.cli import score_main  # noqa: E402
from humanaes_core.formats import collect_photos  # noqa: E402
from humanaes_core.scoring import CachedScoring, RayScoring  # noqa: E402
from humanaes_core.store import ScoreCache  # noqa: E402
from tests.conftest import BROKEN_PHOTOS, synthetic_photo  # noqa: E402

CPUS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of two CPU workers, shared by this module's tests and shut down after."""
    ray.init(
        address="local",
        num_cpus=CPUS,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, photo_dir: Path) -> Path:
    """The shared photo folder (4 good photos of 1-4 tiles, 3 broken files) plus 10 synthetic photos."""
    root = tmp_path_factory.mktemp("ray-photos")
    shutil.copytree(photo_dir, root, dirs_exist_ok=True)
    for i in range(10):
        synthetic_photo(10 + i, (300 + 90 * i, 400)).save(root / f"s{i:02d}.jpg", quality=90)
    return root


def _files(folder: Path) -> list[Path]:
    files, _ = collect_photos([folder])
    return files


def _by_path(results) -> dict[str, dict | str]:
    return {r.source: r.card.to_dict() if r.card else r.error for r in results}


def _single(tiny_model: Path, files: list[Path]) -> dict[str, dict | str]:
    return _by_path(CachedScoring(tiny_model, cache=None, device="cpu", max_tiles=4).run(files))


@pytest.mark.slow  # starts two model workers (each imports torch): 30-50 s on 2 busy cores
def test_cards_equal_the_single_process_path_and_land_in_the_library(cluster, tiny_model, folder, tmp_path):
    files = _files(folder)
    cache = ScoreCache(tmp_path / "library.sqlite")
    engine = RayScoring(tiny_model, cache=cache, workers=2, max_tiles=4)
    try:
        got = _by_path(engine.run(files))
    finally:
        engine.close()
    assert got == _single(tiny_model, files)  # card for card, exactly; broken files with the same reason
    assert sum(isinstance(v, str) for v in got.values()) == len(BROKEN_PHOTOS)
    st = engine.stats
    assert (st.scored, st.failed, st.cached) == (len(files) - 3, 3, 0)
    assert sum(w.photos for w in engine.workers.values()) == st.scored
    assert all(w.rate > 0 for w in engine.workers.values())
    # keyed as the single-process path keys them: a local run finds every card in the library
    local = CachedScoring(tiny_model, cache=cache, device="cpu", max_tiles=4)
    assert _by_path(local.run(files)) == got
    assert (local.stats.cached, local.stats.scored, local.stats.model_loaded) == (len(files) - 3, 0, False)
    cache.close()


@pytest.mark.slow  # starts two model workers (each imports torch): 30-50 s on 2 busy cores
def test_a_killed_job_resumes_where_the_library_says(cluster, tiny_model, folder, tmp_path):
    files = _files(folder)
    cache = ScoreCache(tmp_path / "library.sqlite")
    first = RayScoring(tiny_model, cache=cache, workers=2, max_tiles=4)
    run = first.run(files)
    stored = [next(run).card for _ in range(6)]  # broken files come back first: at least 3 cards stored
    run.close()  # the job dies here; what was yielded is in the library
    kept = sum(card is not None for card in stored)
    assert kept >= 3
    again = RayScoring(tiny_model, cache=cache, workers=2, max_tiles=4)
    got = _by_path(again.run(files))
    cache.close()
    assert again.stats.cached >= kept
    assert again.stats.cached + again.stats.scored == len(files) - 3
    assert sum(w.photos for w in again.workers.values()) == again.stats.scored  # stored ones not sent again
    assert got == _single(tiny_model, files)


@pytest.mark.slow  # starts two model workers (each imports torch): 30-50 s on 2 busy cores
def test_score_cli_with_the_ray_engine_writes_what_the_local_engine_writes(
    cluster, tiny_model, folder, tmp_path, capsys
):
    common = [str(folder), "--model", str(tiny_model), "--max-tiles", "4", "--no-cache", "--quiet"]
    assert score_main([*common, "--out", str(tmp_path / "local.jsonl")]) == 0
    assert (
        score_main([*common, "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--workers", "2"]) == 0
    )
    assert ray.is_initialized()  # a cluster the command joined keeps running
    err = capsys.readouterr().err
    assert "3 skipped" in err and "photos/s of model time" in err

    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

    assert rows("ray.jsonl") == rows("local.jsonl")


@pytest.mark.slow  # starts the cluster when run alone (about 20 s)
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--device", "cuda:1"], "Ray gives each worker its GPU"),
        (["--device", "cuda"], "the Ray cluster has no GPU"),
        (["--workers", "3"], f"the Ray cluster has {CPUS} CPUs"),
    ],
)
def test_what_the_cluster_cannot_do_is_one_line(
    cluster, tiny_model, folder, tmp_path, capsys, flags, message
):
    args = [str(folder), "--model", str(tiny_model), "--out", str(tmp_path / "o.jsonl"), "--no-cache"]
    assert score_main([*args, "--quiet", "--engine", "ray", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_the_local_engine_never_imports_ray(tiny_model, photo_dir, tmp_path):
    argv = [str(photo_dir / "astronaut.jpg"), "--model", str(tiny_model), "--max-tiles", "1", "--quiet"]
    argv += ["--out", str(tmp_path / "o.jsonl"), "--cache", str(tmp_path / "library.sqlite")]
    code = f"import sys, humanaes_core.cli as c; c.score_main({argv!r}); print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
