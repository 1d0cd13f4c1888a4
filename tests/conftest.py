"""Shared fixtures: a tiny random model built once per session, photos, and an isolated environment."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _garbage_on_the_main_thread() -> Iterator[None]:
    """As in the app (`humanaes_desktop.background.UiThreadGarbage`): no automatic collection during a
    test, where it could run in a worker thread and destroy Qt objects there (PySide crashes). After
    the test, what Qt was asked to delete is deleted and the garbage collected, on the main thread, so
    windows, lanes and their threads of one test never die in the middle of the next."""
    gc.disable()
    try:
        yield
    finally:
        if "PySide6.QtCore" in sys.modules:
            from PySide6.QtCore import QCoreApplication, QEvent

            if QCoreApplication.instance() is not None:
                QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
                QCoreApplication.processEvents()
        gc.enable()
        gc.collect()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or models, never reach the network."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HUMANAES_LIBRARY", str(root / "library.sqlite"))
    monkeypatch.delenv("HUMANAES_CACHE", raising=False)
    monkeypatch.setenv("HUMANAES_MODELS", str(root / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from humanaes_core.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, size="tiny")


@pytest.fixture(scope="session")
def scorer(tiny_model: Path):
    from humanaes_core import load_scorer

    return load_scorer(tiny_model, device="cpu", max_tiles=4, batch_size=4)


def synthetic_photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random 'photo' (gradients plus blobs), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-3, 3, 3)
        img[..., c] = 127 + 100 * np.sin(a * x / w + b * y / h + phase)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        colour = rng.uniform(0, 255, 3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + colour * blob
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder a photographer might open: a real portrait, synthetic photos in a sub-folder, broken files."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(root / "astronaut.jpg", quality=92)
    sub = root / "day2"
    sub.mkdir()
    synthetic_photo(1, (900, 600)).save(sub / "landscape.jpg", quality=90)
    synthetic_photo(2, (600, 900)).save(sub / "portrait.png")
    synthetic_photo(3, (1200, 300)).convert("RGBA").save(sub / "panorama.webp")
    (root / "not_a_photo.jpg").write_bytes(b"this is text, not a JPEG")
    good = (root / "astronaut.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not scanned: wrong suffix")
    return root


GOOD_PHOTOS = ("astronaut.jpg", "day2/landscape.jpg", "day2/portrait.png", "day2/panorama.webp")
BROKEN_PHOTOS = ("not_a_photo.jpg", "truncated.jpg", "empty.png")


def train_config(data: Path, base: Path, out: Path, **kw):
    """Small, fast CPU training settings: one tile per photo, no workers, no periodic saves."""
    from humanaes_core.train import TrainConfig

    settings = dict(
        data=str(data),
        base=str(base),
        out=str(out),
        max_tiles=1,
        batch_size=4,
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.0,
        workers=0,
        save_every=0,
        val_fraction=0.0,
        cpu=True,
        quiet=True,
        lr=1e-3,
    )
    return TrainConfig(**{**settings, **kw})


@pytest.fixture(scope="session")
def learned(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny model trained on 240 synthetic photos, evaluated before and after on 80 held-out ones:
    a model whose scores mean something, shared by the training and explanation tests."""
    from humanaes_core.data import load_data
    from humanaes_core.data.synthetic import write_humanbeauty
    from humanaes_core.evaluation import evaluate
    from humanaes_core.train import train

    root = write_humanbeauty(tmp_path_factory.mktemp("synthetic"), 240, 80, seed=0)
    out = tmp_path_factory.mktemp("learned") / "ckpt"
    test = load_data(root, split="test")
    before = evaluate(test, tiny_model, device="cpu", max_tiles=1, progress=False)
    config = train_config(
        root, tiny_model, out, epochs=4, batch_size=8, lora_rank=8, lora_alpha=16, head_lr=1e-2
    )
    config.val_fraction = 0.1
    result = train(config)
    after = evaluate(test, out, device="cpu", max_tiles=1, progress=False)
    return {"root": root, "result": result, "before": before, "after": after, "config": config}


# ------------------------------------------------------------------------------ the library's servers

#: A PostgreSQL server for the library tests (.ci/run starts one and sets it); without it the tests start
#: a throwaway one with .ci/postgres when PostgreSQL's server binaries are installed, or skip.
POSTGRES_ENV_VAR = "HUMANAES_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL database the tests may create schemas in."""
    import shutil
    import subprocess
    import tempfile

    given = os.environ.get(POSTGRES_ENV_VAR, "").strip()
    if given:
        yield given
        return
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install -e '.[test]')")
    script = Path(__file__).resolve().parents[1] / ".ci" / "postgres"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV_VAR} or apt-get install postgresql")
    folder = tempfile.mkdtemp(prefix="humanaes-pg-")  # short: a unix socket's path is at most 107 bytes
    started = subprocess.run([str(script), "start", folder], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {started.stderr.strip()[-300:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", folder], capture_output=True, timeout=120)


@pytest.fixture
def postgres_library(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL library: its own schema on the test server, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_server)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        yield f"{postgres_server}{'&' if '?' in postgres_server else '?'}options=-csearch_path%3D{schema}"
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def library(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A fresh library of each kind: a SQLite file (the embedded default) and a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "library" / "library.sqlite"
    return request.getfixturevalue("postgres_library")
