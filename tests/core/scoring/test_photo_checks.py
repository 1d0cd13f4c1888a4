"""ScanChecks: stored results are read, missing ones computed once and stored, failures leave None."""

from __future__ import annotations

from pathlib import Path

import pytest

from humanaes_core.checks import CHECKS_VERSION, Face, PhotoChecks
from humanaes_core.scoring import ScoreCard, photo_checks
from humanaes_core.scoring.photo_checks import ScanChecks
from humanaes_core.store import CheckStore

H1, H2 = "1" * 40, "2" * 40


def _card() -> ScoreCard:
    return ScoreCard(dims={"overall": 0.5}, heads={}, level="fair", lm_probs=[], tiles=1, mode="m")


def test_missing_results_are_computed_once_stored_and_then_read(tmp_path, monkeypatch):
    db = tmp_path / "library.sqlite"
    calls: list[Path] = []

    def fake(path):
        calls.append(Path(path))
        return [
            Face(box=(1, 2, 3, 4), size=3, left_eye="closed", right_eye="closed", eyes_closed=True)
        ], PhotoChecks()

    monkeypatch.setattr(photo_checks, "check_photo", fake)
    checks = ScanChecks(db, workers=1)
    checks.prefetch({H1: tmp_path / "a.jpg"})
    card = checks.attach(H1, _card())
    checks.close()
    assert card.faces[0].eyes_closed and card.checks == PhotoChecks() and calls == [tmp_path / "a.jpg"]
    with CheckStore(db) as store:
        assert set(store.get_many([H1], CHECKS_VERSION)) == {H1}
    again = ScanChecks(db, workers=1)
    again.prefetch({H1: tmp_path / "a.jpg"})
    assert again.attach(H1, _card()).faces[0].eyes_closed and len(calls) == 1  # read, not recomputed
    again.close()


def test_a_photo_the_checks_cannot_read_keeps_none_and_the_scan_goes_on(tmp_path, monkeypatch):
    def broken(path):
        raise OSError("unreadable")

    monkeypatch.setattr(photo_checks, "check_photo", broken)
    checks = ScanChecks(None, workers=1)
    checks.prefetch({H2: tmp_path / "b.jpg"})
    card = checks.attach(H2, _card())
    checks.close()
    assert card.faces is None and card.checks is None


def test_without_the_face_models_the_checks_switch_off_once(tmp_path, monkeypatch, caplog):
    calls = []

    def missing(path):
        calls.append(path)
        raise ImportError("no module named ai_edge_litert")

    monkeypatch.setattr(photo_checks, "check_photo", missing)
    checks = ScanChecks(None, workers=1)
    checks.prefetch({H1: tmp_path / "a.jpg"})
    assert checks.attach(H1, _card()).faces is None
    checks.prefetch({H2: tmp_path / "b.jpg"})
    assert checks.attach(H2, _card()).faces is None
    checks.close()
    assert len(calls) == 1 and "photo checks are off" in caplog.text


@pytest.mark.parametrize("workers", [1, 2])
def test_close_without_prefetch_is_harmless(workers):
    ScanChecks(None, workers=workers).close()


def test_a_library_that_refuses_results_is_told_once_and_the_checks_go_on(tmp_path, monkeypatch, caplog):
    from humanaes_core.store import CacheUnavailableError

    monkeypatch.setattr(photo_checks, "check_photo", lambda path: ([], PhotoChecks(misfire="black")))
    tries = []

    def full(self, rows, version):
        tries.append(1)
        raise CacheUnavailableError("the disk is full")

    monkeypatch.setattr(CheckStore, "put_many", full)
    checks = ScanChecks(tmp_path / "library.sqlite", workers=1)
    checks.prefetch({H1: tmp_path / "a.jpg", H2: tmp_path / "b.jpg"})
    cards = [checks.attach(h, _card()) for h in (H1, H2)]
    checks.close()
    assert all(c.checks.misfire == "black" for c in cards)
    assert len(tries) == 1 and caplog.text.count("no longer stored") == 1
