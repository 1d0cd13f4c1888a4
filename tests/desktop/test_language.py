"""A photographer's language where a photographer looks: no model internals in the main panels, names
instead of letters, and counts in the right number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QWidget

from humanaes_core.culling import CopyReport
from humanaes_core.schema import KEYS
from humanaes_core.wording import count
from humanaes_desktop.cullcontrol import CullingController
from humanaes_desktop.explanation import node_label
from humanaes_desktop.widgets import chips_text, mini_name
from tests.desktop.test_desktop import _wait_done

#: Words for engineers: allowed in tooltips and the Advanced section, never in the main panels.
INTERNALS = re.compile(r"\b(metavoter|expert head|ffn|shapley|tiles?|mae)\b", re.IGNORECASE)


def _menu_texts(menu_bar) -> list[str]:
    out = []
    for action in menu_bar.actions():
        out.append(action.text())
        if action.menu() is not None:
            out.extend(a.text() for a in action.menu().actions())
    return out


def _main_panel_texts(window) -> list[str]:
    """Every text a photographer sees without hovering or opening Advanced."""
    advanced = window.panel.heads
    texts = []
    for widget in window.findChildren(QWidget):
        if not widget.isVisible() or widget is advanced or advanced.isAncestorOf(widget):
            continue
        if isinstance(widget, QLabel | QAbstractButton):
            texts.append(widget.text())
        elif isinstance(widget, QComboBox):
            texts.extend(widget.itemText(i) for i in range(widget.count()))
    texts.extend(_menu_texts(window.menuBar()))
    texts.append(window.statusBar().currentMessage())
    why = window.panel.attribution.explanation()
    assert why is not None
    texts.extend([node_label(n) for n in why.walk()] + [why.sentence, window.panel.badge.caption()])
    return texts


def test_main_panels_speak_a_photographers_language(make_window, qtbot, photo_dir):
    window = make_window()
    window.open_paths([photo_dir])
    _wait_done(qtbot, window)
    first = next(i for i, p in enumerate(window.model.photos) if p.card is not None)
    window.select_path(window.model.photos[first].path)
    qtbot.waitUntil(lambda: window.panel.attribution.explanation() is not None, timeout=10000)
    texts = _main_panel_texts(window)
    found = sorted({m.group(0) for t in texts for m in INTERNALS.finditer(t)})
    assert found == [], [t for t in texts if INTERNALS.search(t)]
    # The sections that are for engineers say so, and keep the technical names.
    assert window.panel.heads.HEADS[-1][1] == "MetaVoter"
    assert "MetaVoter" in window.panel.badge.toolTip()


def test_dimensions_are_named_not_lettered():
    line = chips_text(
        {"facial_feature_clarity": 0.42, "environment": 0.61}, ["facial_feature_clarity", "environment"]
    )
    assert line == "Feature Clarity 0.42  ·  Environment 0.61"
    names = [mini_name(k) for k in KEYS]
    assert len(set(names)) == len(KEYS) and all(len(n) > 1 for n in names)


def test_counts_are_in_the_right_number(tmp_path: Path):
    assert count(1, "pick") == "1 pick" and count(0, "pick") == "0 picks" and count(2, "photo") == "2 photos"
    one = CopyReport(copied=[(tmp_path / "a.jpg", tmp_path / "out" / "a.jpg")])
    text, _ = CullingController.picks_copied(one, tmp_path / "out", move=False)
    assert text.startswith("Copied 1 pick to")
