"""Before Qt starts: are the X11 libraries Qt's xcb plugin needs installed?

On a minimal Linux, Qt aborts with "Could not load the Qt platform plugin xcb" and a page of advice that
does not name the missing packages. Qt 6's xcb plugin needs libxcb-cursor, libxcb-icccm and
libxcb-keysyms, which desktop installs have and minimal or server images often lack. This module looks
for them with the dynamic loader (no Qt import) and turns a missing one into one line with the command
that installs it on this distribution.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: Shared library -> package providing it, per distribution family.
_PACKAGES: dict[str, dict[str, str]] = {
    "libxcb-cursor.so.0": {
        "debian": "libxcb-cursor0",
        "fedora": "xcb-util-cursor",
        "arch": "xcb-util-cursor",
    },
    "libxcb-icccm.so.4": {"debian": "libxcb-icccm4", "fedora": "xcb-util-wm", "arch": "xcb-util-wm"},
    "libxcb-keysyms.so.1": {
        "debian": "libxcb-keysyms1",
        "fedora": "xcb-util-keysyms",
        "arch": "xcb-util-keysyms",
    },
}
_INSTALL = {"debian": "sudo apt install", "fedora": "sudo dnf install", "arch": "sudo pacman -S"}


def uses_xcb(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Whether Qt will load its xcb (X11) plugin: Linux, and no other platform chosen or preferred."""
    if not sys.platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return not (environ.get("WAYLAND_DISPLAY") and not environ.get("DISPLAY"))


def missing_xcb_libraries() -> list[str]:
    """The xcb plugin's libraries the dynamic loader cannot find (empty when all load)."""
    missing = []
    for name in _PACKAGES:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def distribution_family(os_release: Path = Path("/etc/os-release")) -> str | None:
    """ "debian", "fedora" or "arch" from /etc/os-release's ID and ID_LIKE (None when unknown)."""
    try:
        fields = dict(
            line.split("=", 1) for line in os_release.read_text(errors="replace").splitlines() if "=" in line
        )
    except OSError:
        return None
    ids = f"{fields.get('ID', '')} {fields.get('ID_LIKE', '')}".replace('"', "").lower().split()
    for family, members in (
        ("debian", {"debian", "ubuntu"}),
        ("fedora", {"fedora", "rhel", "centos"}),
        ("arch", {"arch"}),
    ):
        if members & set(ids):
            return family
    return None


def install_hint(missing: list[str], family: str | None) -> str:
    """One line: what is missing and the command that installs it."""
    if family is None:
        return (
            f"the desktop app needs {', '.join(missing)} (X11 libraries of Qt's xcb plugin); "
            "install them with your package manager, or run with QT_QPA_PLATFORM=wayland on Wayland"
        )
    packages = " ".join(_PACKAGES[name][family] for name in missing)
    return f"the desktop app needs X11 libraries that are not installed; run: {_INSTALL[family]} {packages}"


def check() -> str | None:
    """None when Qt can start, else the one-line message to print instead of Qt's abort."""
    if not uses_xcb():
        return None
    missing = missing_xcb_libraries()
    return install_hint(missing, distribution_family()) if missing else None
