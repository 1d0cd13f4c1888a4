"""Train on my ratings: the ratings CSV is written atomically and survives file names that are not UTF-8."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from humanaes_desktop.training import write_ratings_csv


def test_ratings_csv_with_a_non_utf8_file_name(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    odd = photos / os.fsdecode(b"caf\xe9.jpg")
    target = tmp_path / "models" / "mine.ratings.csv"
    assert write_ratings_csv([(odd, 0.9), (photos / "été.jpg", 0.1)], target) == target
    text = target.read_bytes().decode("utf-8")  # valid UTF-8
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["path"] for r in rows] == [str(photos) + "/caf\\xe9.jpg", str(photos / "été.jpg")]
    assert [r["overall"] for r in rows] == ["0.9000", "0.1000"]
    assert [p.name for p in target.parent.iterdir()] == ["mine.ratings.csv"]  # no temporary file left


def test_a_failed_ratings_csv_leaves_the_old_one_and_no_temp(tmp_path):
    target = tmp_path / "mine.ratings.csv"
    target.write_text("path,overall\n/old.jpg,0.5000\n", encoding="utf-8")

    def rows():
        yield Path("/a.jpg"), 0.5
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_ratings_csv(rows(), target)
    assert target.read_text(encoding="utf-8") == "path,overall\n/old.jpg,0.5000\n"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.ratings.csv"]
