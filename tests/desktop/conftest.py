"""Shared fixtures of the desktop tests: an isolated environment, settings, windows, and Qt clean-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


from humanaes_desktop.mainwindow import MainWindow
from humanaes_desktop.settings import AppSettings


@pytest.fixture(autouse=True)
def _desktop_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own library (scores and decisions), settings, thumbnails and data folder."""
    for name in ("HUMANAES_LIBRARY", "HUMANAES_CACHE"):
        monkeypatch.setenv(name, str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("HUMANAES_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HUMANAES_THUMBNAILS", str(tmp_path / "thumbnails"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def max_tiles() -> int:
    """Tiles per photo for test windows (a test module may override this fixture)."""
    return 2


@pytest.fixture
def settings(tiny_model: Path, max_tiles: int) -> AppSettings:
    """Settings from the test's own config folder, scoring with the tiny model on the CPU."""
    loaded = AppSettings.load()
    loaded.scoring.model = str(tiny_model)
    loaded.scoring.device = "cpu"
    loaded.scoring.max_tiles = max_tiles
    loaded.scoring.batch_size = 4
    return loaded


@pytest.fixture
def make_window(qtbot, settings: AppSettings) -> Iterator[Callable[..., MainWindow]]:
    """Open main windows (1200×800, shown); they are closed after the test, which waits for their work."""
    windows: list[MainWindow] = []

    def make(model: Path | str | None = None, batch_size: int = 4) -> MainWindow:
        own = AppSettings.load()
        own.scoring = replace(settings.scoring, batch_size=batch_size)
        if model is not None:
            own.scoring.model = str(model)
        window = MainWindow(own)
        qtbot.addWidget(window)
        window.resize(1200, 800)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
