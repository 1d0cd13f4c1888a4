"""`humanaes [FOLDER] [--model M]`: the desktop app's entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanaes",
        description="HumanAes desktop app: open a folder of portraits, sort it by score and see why each "
        "photo scored as it did; cull it with P / X / U and 0-5 stars, auto-cull, compare bursts, and write "
        "XMP sidecars for Lightroom, darktable and digiKam. Scores and decisions are cached, so reopening a "
        "folder is instant.",
    )
    parser.add_argument("folder", nargs="?", help="folder (or photo) to open")
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint directory or hub id (KwaiVGI/HumanAesExpert-1B, -8B); remembered for next time",
    )
    return parser


def _warm_up() -> None:
    """Import what every scored folder needs in the background while the window opens: the cache
    lookups and torch, for the detail panel's attribution.

    Importing torch now, before the photographer does anything, means the short GIL stalls of loading
    its native libraries happen while nobody is interacting yet, not while a folder's first screen is
    being drawn. transformers is not imported here: only a photo that is not in the cache needs the
    model, and the scoring worker imports it then.
    """
    try:
        from humanaes_core.attribution import explain_card  # noqa: F401
        from humanaes_core.scoring import CachedScoring  # noqa: F401
    except Exception as e:  # the worker reports real problems when it runs; this is only a head start
        logging.getLogger(__name__).debug("warm-up import failed: %s", e)


def main(argv: list[str] | None = None) -> int:
    """Start the app; returns the Qt event loop's exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.folder is not None and not os.path.exists(args.folder):
        print(f"error: {args.folder}: no such file or folder", file=sys.stderr)
        return 2
    from .platform_check import check

    problem = check()  # before Qt: its own abort for a missing xcb library names no package
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # Qt is imported only now, so `humanaes --help` works without a display.
    from PySide6.QtWidgets import QApplication

    from . import theme
    from .background import UiThreadGarbage
    from .mainwindow import MainWindow

    threading.Thread(target=_warm_up, name="humanaes-warm-up", daemon=True).start()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("HumanAes")
    app.setOrganizationName("HumanAes")
    theme.apply(app)  # type: ignore[arg-type]
    UiThreadGarbage(app)
    window = MainWindow(model=args.model)
    window.show()
    if args.folder is not None:
        window.open_paths([args.folder])
    return int(app.exec())


if __name__ == "__main__":
    raise SystemExit(main())
