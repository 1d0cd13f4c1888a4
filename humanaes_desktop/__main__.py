"""`humanaes [FOLDER] [--model M]`: the desktop app's entry point."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="humanaes",
        description="HumanAes desktop app: open a folder of portraits, sort it by score and see why.",
    )
    parser.add_argument("folder", nargs="?", help="folder to open")
    parser.add_argument("--model", default=None, help="checkpoint directory or hub id")
    parser.parse_args(argv)
    print(
        "humanaes: the desktop app is not available in this version of HumanAes yet; "
        "score folders with `humanaes-score FOLDER --model M --out cards.csv`.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
