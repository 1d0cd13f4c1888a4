"""Hostile inputs: every file is scored correctly or reported with a reason, and the scan always finishes.

The corpus and the table live in ``tests/hostile_corpus.py`` (run it as a module to print the table).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from humanaes_core.errors import ImageLoadError
from humanaes_core.formats.photos import collect_photos
from humanaes_core.model import preprocessing as pp
from humanaes_core.scoring.scan import KEPT_CHANGING, CachedScoring
from humanaes_core.store.decisions import DecisionStore, Flag, PhotoDecision
from humanaes_core.store.hashing import NotRegularFileError, content_hash_file, decode_path, encode_path
from humanaes_core.store.scores import ScoreCache

from . import hostile_corpus as hc


@pytest.fixture
def corpus(tmp_path: Path):
    built = hc.build(tmp_path / "corpus")
    yield built
    hc.remove_tree(built.root)  # pytest's own cleanup recurses once per folder level


def test_hostile_corpus_every_case_ends_as_expected(corpus, tiny_model, tmp_path):
    started = time.perf_counter()
    outcomes, elapsed = hc.scan(corpus.cases, [corpus.root], tiny_model, tmp_path / "cache.sqlite")
    print("\n" + hc.table(outcomes))
    assert len(outcomes) >= 60
    assert [o.case.name for o in outcomes if not o.ok] == []
    for o in outcomes:
        if o.got == hc.SCORED:
            card = o.card
            assert card is not None and set(card.dims) and all(0.0 <= v <= 1.0 for v in card.dims.values())
    kinds = {o.got if o.got in (hc.SCORED, hc.IGNORED) else "reason" for o in outcomes}
    assert kinds == {hc.SCORED, hc.IGNORED, "reason"}
    assert elapsed < 120 and time.perf_counter() - started < 150  # nothing hangs

    # a second scan of the same corpus: every photo from the cache, the same outcomes
    again, _ = hc.scan(corpus.cases, [corpus.root], tiny_model, tmp_path / "cache.sqlite")
    assert [o.got for o in again] == [o.got for o in outcomes]


def test_dynamic_cases_deleted_replaced_slow_and_hanging(tiny_model, tmp_path):
    outcomes = hc.dynamic_cases(tmp_path / "dynamic", tiny_model)
    print("\n" + hc.table(outcomes))
    assert len(outcomes) == 7
    assert [o.case.name for o in outcomes if not o.ok] == []


@pytest.mark.parametrize("moment", ["before decoding", "after decoding"])
def test_a_replaced_file_never_gets_the_other_contents_card(tiny_model, tmp_path, moment):
    folder = tmp_path / "shoot"
    old = hc.encoded(hc.picture(40, (200, 150)), "JPEG")
    new = hc.encoded(hc.picture(41, (150, 200)), "JPEG")
    photo = hc.write(folder / "photo.jpg", old)
    reference = hc.write(tmp_path / "reference" / "new.jpg", new)
    old_hash, new_hash = content_hash_file(photo), content_hash_file(reference)
    hooks: dict = (
        {"hook": hc._on_item(photo, lambda: hc._replace(photo, new))}
        if moment == "before decoding"
        else {"stream_hook": hc._after_decoded(photo, lambda: hc._replace(photo, new))}
    )
    db = tmp_path / "cache.sqlite"
    outcomes, _ = hc.scan([hc.Case("photo", photo, hc.SCORED)], [folder], tiny_model, db, **hooks)
    assert outcomes[0].got == hc.SCORED

    with ScoreCache(db) as cache:
        scoring = CachedScoring(tiny_model, cache=None, device="cpu", max_tiles=2, batch_size=4)
        direct = next(iter(scoring.run([reference]))).card
        fps = (scoring.model_fp, scoring.settings_fp)
        assert cache.get(old_hash, *fps) is None  # nothing cached under the bytes that were replaced
        stored = cache.get(new_hash, *fps)
        assert stored is not None and cache.count() == 1
    assert stored["dims"] == pytest.approx(direct.dims)
    assert outcomes[0].card.dims == pytest.approx(direct.dims)


def test_a_file_that_keeps_changing_is_reported(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "busy"
    photo = hc.write(folder / "photo.jpg", hc.encoded(hc.picture(42, (160, 120)), "JPEG"))
    versions = iter(range(100))

    def rewrite_every_time(items):
        for item in items:
            hc._replace(photo, hc.encoded(hc.picture(100 + next(versions), (160, 120)), "JPEG"))
            yield item

    case = hc.Case("photo", photo, KEPT_CHANGING)
    outcomes, _ = hc.scan([case], [folder], tiny_model, tmp_path / "c.sqlite", hook=rewrite_every_time)
    assert outcomes[0].ok, outcomes[0].got
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        assert cache.count() == 0


def test_animations_score_their_first_frame(tmp_path):
    for fmt, suffix in (("GIF", ".gif"), ("WEBP", ".webp"), ("PNG", ".png")):
        path = hc.write(tmp_path / f"anim{suffix}", hc.animated(fmt))
        with Image.open(path) as im:
            assert getattr(im, "n_frames", 1) == 2
        r, g, _ = pp.load_image(path).getpixel((10, 10))
        assert r > 180 and g < 80, (fmt, r, g)  # red: the first frame, not the green second one


def test_decode_timeout_configuration(monkeypatch):
    monkeypatch.delenv(pp.DECODE_TIMEOUT_ENV, raising=False)
    assert pp.decode_timeout() == pp.DEFAULT_DECODE_TIMEOUT_S == 30.0
    assert pp.decode_timeout(2.5) == 2.5
    assert pp.decode_timeout(0) is None
    monkeypatch.setenv(pp.DECODE_TIMEOUT_ENV, "7")
    assert pp.decode_timeout() == 7.0
    monkeypatch.setenv(pp.DECODE_TIMEOUT_ENV, "none")
    assert pp.decode_timeout() is None
    monkeypatch.setenv(pp.DECODE_TIMEOUT_ENV, "soon")
    assert pp.decode_timeout() == 30.0
    assert pp.TileConfig(decode_timeout=3.0).decode_timeout == 3.0


def test_a_hanging_decoder_is_abandoned_and_released(tmp_path):
    hang = hc.write(tmp_path / "hang.png", b"HANGHANG" + b"\0" * 64)
    good = hc.write(tmp_path / "good.png", hc.encoded(hc.picture(43, (64, 48)), "PNG"))
    with hc._hanging_decoder():
        started = time.perf_counter()
        with pytest.raises(ImageLoadError) as err:
            pp.load_image(hang, timeout=0.3)
        assert err.value.reason == pp.TOO_SLOW
        assert time.perf_counter() - started < 5
        assert pp.abandoned_decodes() >= 1
        assert pp.load_image(good, timeout=0.3).size == (64, 48)  # the next photo is unaffected
    deadline = time.monotonic() + 10
    while pp.abandoned_decodes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pp.abandoned_decodes() == 0  # released, the helper thread ended


def test_a_slow_decode_stops_reading_once_abandoned(tmp_path):
    big = hc.write(tmp_path / "flat.png", hc.encoded(Image.new("L", (9000, 9000), 90), "PNG"))
    with pytest.raises(ImageLoadError, match="decoding took too long"):
        pp.load_image(big, timeout=0.01)
    deadline = time.monotonic() + 10  # the cooperative deadline ends the helper at its next read
    while pp.abandoned_decodes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pp.abandoned_decodes() == 0
    assert pp.load_image(big, timeout=60).size == (9000, 9000)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_pipes_and_devices_are_never_read(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list = []

    def probe() -> None:
        try:
            with ScoreCache(tmp_path / "c.sqlite") as cache:
                errors.append(cache.content_hashes([fifo])[fifo])
            with pytest.raises(NotRegularFileError):
                content_hash_file(fifo)
            with pytest.raises(ImageLoadError, match="not a regular file"):
                pp.load_image(fifo)
        finally:
            done.set()

    threading.Thread(target=probe, daemon=True).start()
    assert done.wait(20), "reading a named pipe blocked"
    assert isinstance(errors[0], NotRegularFileError)


def test_non_utf8_names_in_the_cache_the_decisions_and_the_cli(tiny_model, tmp_path, capsys):
    folder = tmp_path / "shoot"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"\xe9t\xe9 \xff.jpg")
    with open(raw, "wb") as fh:
        fh.write(hc.encoded(hc.picture(44, (120, 90)), "JPEG"))
    name = os.fsdecode(raw)
    assert encode_path(name) != name and decode_path(encode_path(name)) == name
    assert decode_path("/plain/é.jpg") == "/plain/é.jpg"

    db = tmp_path / "cache.sqlite"
    with ScoreCache(db) as cache:
        first = cache.content_hashes([name])[Path(name)]
        assert isinstance(first, str)
        assert cache.content_hashes([name])[Path(name)] == first
    with DecisionStore(db) as store:
        store.set_flag([(first, name)], Flag.PICK)
        assert store.all()[first] == (name, PhotoDecision(None, Flag.PICK))
        store.undo()
        store.redo()
        assert store.get(first) == PhotoDecision(None, Flag.PICK)

    from humanaes_core.cli.score import main

    for out in ("rows.jsonl", "rows.csv"):
        argv = [str(folder), "--model", str(tiny_model), "--device", "cpu", "--max-tiles", "1"]
        assert main([*argv, "--out", str(tmp_path / out), "--cache", str(db), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    assert os.fsencode(rows[0]["path"]) == raw and rows[0]["error"] is None
    text = (tmp_path / "rows.csv").read_bytes().decode("utf-8")  # valid UTF-8
    (row,) = csv.DictReader(text.splitlines())
    assert row["path"].endswith("\\xe9t\\xe9 \\xff.jpg") and row["L_overall"]
    assert "  skipped " not in capsys.readouterr().err


def test_collect_photos_survives_deep_trees_and_link_cycles(tmp_path):
    top = tmp_path / "top"
    node = top
    node.mkdir()
    for _ in range(hc.DEEP_LEVELS):
        node = node / "d"
        node.mkdir()
        (node / "up").symlink_to("..")  # a folder link at every level: never followed
    hc.write(node / "bottom.jpg", b"x")
    try:
        files, skipped = collect_photos([top])
        assert files == [node / "bottom.jpg"] and skipped == []
    finally:
        hc.remove_tree(top)
