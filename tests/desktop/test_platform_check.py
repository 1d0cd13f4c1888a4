"""`humanaes` names the missing X11 package instead of letting Qt abort (no Qt needed for these)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from humanaes_desktop import __main__ as app_main
from humanaes_desktop import platform_check as pc


def test_only_the_xcb_platform_is_checked() -> None:
    assert pc.uses_xcb({"DISPLAY": ":0"})
    assert pc.uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert not pc.uses_xcb({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"})
    assert not pc.uses_xcb({"QT_QPA_PLATFORM": "wayland;xcb"})
    assert not pc.uses_xcb({"WAYLAND_DISPLAY": "wayland-0"})


@pytest.mark.parametrize(
    ("os_release", "command"),
    [
        ('ID=ubuntu\nID_LIKE="debian"\n', "sudo apt install libxcb-cursor0 libxcb-keysyms1"),
        ('ID="fedora"\n', "sudo dnf install xcb-util-cursor xcb-util-keysyms"),
        ("ID=arch\n", "sudo pacman -S xcb-util-cursor xcb-util-keysyms"),
    ],
)
def test_the_hint_names_this_distributions_packages(tmp_path: Path, os_release: str, command: str) -> None:
    release = tmp_path / "os-release"
    release.write_text(os_release)
    family = pc.distribution_family(release)
    assert pc.install_hint(["libxcb-cursor.so.0", "libxcb-keysyms.so.1"], family).endswith(command)


def test_the_app_prints_one_line_instead_of_starting_qt(monkeypatch, capsys) -> None:
    real = ctypes.CDLL

    def loader(name: str, *args, **kwargs):
        if name == "libxcb-cursor.so.0":
            raise OSError(f"{name}: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pc.ctypes, "CDLL", loader)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(pc, "distribution_family", lambda: "debian")
    assert app_main.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the desktop app needs X11 libraries that are not installed; "
                   "run: sudo apt install libxcb-cursor0"]  # fmt: skip
