"""The main window's commands as data: one `ActionSpec` per command, built into QActions and menus by one
function each.

A command's text, shortcuts, menu and when it is enabled are read here, in one table, instead of being
spread over hand-written QAction code. The handler is a method name of the window, looked up when the
command runs. Every action is also added to the window itself, so its shortcut works with the menu bar
hidden (full screen). Culling keys are single keys, as in Lightroom and darktable; text fields swallow
them while focused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMenuBar

from humanaes_core.store import Flag

Shortcut = str | QKeySequence.StandardKey
F = TypeVar("F", bound=Callable[..., Any])


def returns_focus(method: F) -> F:
    """For a command that opens a modal dialog: afterwards, however it ends, the keyboard focus goes back
    to the window's current view (`restore_focus`). Qt restores it only if the window manager re-activates
    the window in time; under some it does not, and Ctrl+Z or P/X do nothing until the window is clicked."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self.restore_focus()

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ActionSpec:
    """One command of the window."""

    id: str
    text: str
    handler: str  # the window's method, called with `args` (and the checked state when `checkable`)
    menu: str  # menu path, "/" between levels: "&Photo/&Rating"
    shortcuts: tuple[Shortcut, ...] = ()
    tip: str = ""
    args: tuple[Any, ...] = ()
    checkable: bool = False
    enabled_when: str | None = None  # a condition (`Commands.set_condition`); disabled until it holds
    separator_before: bool = False  # in its menu

    @property
    def tooltip(self) -> str:
        tip = self.tip or self.text
        return f"{tip} ({QKeySequence(self.shortcuts[0]).toString()})" if self.shortcuts else tip


def _stars(n: int) -> ActionSpec:
    plural = "s" if n > 1 else ""
    return ActionSpec(
        f"stars{n}",
        "No Stars" if n == 0 else f"{n} Star{plural}",
        "set_stars",
        "&Photo/&Rating",
        (str(n),),
        "Clear the stars" if n == 0 else f"Rate {n} star{plural}",
        args=(n,),
    )


_KEY = QKeySequence.StandardKey

#: Every command, in menu order: File, Edit, View, Photo, Export, Scoring.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "Open Folder…", "choose_folder", "&File", (_KEY.Open,)),
    ActionSpec("rescan", "Rescan", "rescan", "&File", ("F5",), "Rescan the folder for new or changed photos"),
    ActionSpec("settings", "Settings…", "open_settings", "&File", ("Ctrl+,",), separator_before=True),
    ActionSpec("quit", "Quit", "close", "&File", (_KEY.Quit,), separator_before=True),
    ActionSpec("undo", "Undo", "undo", "&Edit", (_KEY.Undo,), enabled_when="can_undo"),
    ActionSpec("redo", "Redo", "redo", "&Edit", ("Ctrl+Shift+Z", "Ctrl+Y"), enabled_when="can_redo"),
    ActionSpec("full", "Full-Screen Photo", "enter_full_view", "&View", tip="Full screen (Enter)"),
    ActionSpec("errors", "Skipped Files", "toggle_errors", "&View", ("Ctrl+E",)),
    ActionSpec(
        "zoom_in", "Larger Thumbnails", "zoom_tiles", "&View", ("Ctrl+=",), args=(24,), separator_before=True
    ),
    ActionSpec("zoom_out", "Smaller Thumbnails", "zoom_tiles", "&View", ("Ctrl+-",), args=(-24,)),
    ActionSpec(
        "collapse",
        "Collapse Bursts",
        "set_collapsed",
        "&View",
        ("Ctrl+B",),
        "Show each burst as its best frame (open, sharp eyes first, then the score)",
        checkable=True,
        separator_before=True,
    ),
    ActionSpec(
        "compare",
        "Compare Burst",
        "toggle_compare",
        "&View",
        ("Ctrl+G",),
        "The frames of this burst side by side",
    ),
    ActionSpec("pick", "Pick", "set_flag", "&Photo", ("P",), "Pick the selected photos", (Flag.PICK,)),
    ActionSpec(
        "reject", "Reject", "set_flag", "&Photo", ("X",), "Reject the selected photos", (Flag.REJECT,)
    ),
    ActionSpec("unflag", "Unflag", "set_flag", "&Photo", ("U",), "Neither picked nor rejected", (Flag.NONE,)),
    *(_stars(n) for n in range(6)),
    ActionSpec(
        "auto_cull",
        "Auto-Cull…",
        "open_auto_cull",
        "&Photo",
        ("Ctrl+Shift+A",),
        "Keep the best, reject the rest",
        separator_before=True,
    ),
    ActionSpec(
        "train",
        "Train on My Ratings…",
        "train_on_ratings",
        "&Photo",
        tip="Fine-tune the model on your stars and rejects",
        separator_before=True,
    ),
    ActionSpec(
        "write_xmp",
        "Write XMP Sidecars…",
        "write_sidecars",
        "E&xport",
        ("Ctrl+Shift+S",),
        "Ratings for Lightroom, darktable, digiKam",
    ),
    ActionSpec("copy_picks", "Copy Picks to…", "copy_picks", "E&xport", args=(False,)),
    ActionSpec("move_picks", "Move Picks to…", "copy_picks", "E&xport", args=(True,)),
    ActionSpec(
        "export",
        "Export Cards (CSV/JSON)…",
        "export_cards",
        "E&xport",
        ("Ctrl+Shift+E",),
        "Every score card and decision",
        separator_before=True,
    ),
    ActionSpec(
        "pause",
        "Pause",
        "toggle_pause",
        "&Scoring",
        ("Space",),
        "Pause or resume scoring",
        enabled_when="scoring",
    ),
    ActionSpec(
        "cancel",
        "Cancel",
        "cancel_scoring",
        "&Scoring",
        ("Ctrl+.",),
        "Stop scoring; scores so far stay",
        enabled_when="scoring",
    ),
)


class Commands:
    """The window's QActions by id, and the conditions that enable them."""

    def __init__(self, specs: Sequence[ActionSpec], actions: dict[str, QAction]) -> None:
        self.specs = tuple(specs)
        self._actions = actions

    def __getitem__(self, action_id: str) -> QAction:
        return self._actions[action_id]

    def set_condition(self, condition: str, holds: bool) -> None:
        """Enable or disable every command that is enabled when `condition` holds."""
        for spec in self.specs:
            if spec.enabled_when == condition:
                self._actions[spec.id].setEnabled(holds)


def _trigger(window: QMainWindow, spec: ActionSpec, checked: bool) -> None:
    handler = getattr(window, spec.handler)
    if spec.checkable:
        handler(*spec.args, bool(checked))
    else:
        handler(*spec.args)


def build_actions(window: QMainWindow, specs: Sequence[ActionSpec] = ACTIONS) -> Commands:
    """One QAction per spec, added to the window (its shortcut works even with the menus hidden)."""
    actions: dict[str, QAction] = {}
    for spec in specs:
        action = QAction(spec.text, window)
        if spec.shortcuts:
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        action.setToolTip(spec.tooltip)
        action.setCheckable(spec.checkable)
        action.setEnabled(spec.enabled_when is None)
        action.triggered.connect(lambda checked=False, spec=spec: _trigger(window, spec, checked))
        window.addAction(action)
        actions[spec.id] = action
    return Commands(specs, actions)


def build_menus(menu_bar: QMenuBar, commands: Commands) -> dict[str, QMenu]:
    """The menus of the commands' `menu` paths, in table order; returned by path."""
    menus: dict[str, QMenu] = {}
    for spec in commands.specs:
        path = ""
        for title in spec.menu.split("/"):
            parent = menus.get(path)
            path = f"{path}/{title}" if path else title
            if path not in menus:
                menus[path] = parent.addMenu(title) if parent is not None else menu_bar.addMenu(title)
        menu = menus[spec.menu]
        if spec.separator_before:
            menu.addSeparator()
        menu.addAction(commands[spec.id])
    return menus
