"""``--library URL`` on the CLIs: a SQLite file or a PostgreSQL server; ``--cache`` is the same option."""

from __future__ import annotations

import json

from humanaes_core.cli import score_main
from humanaes_core.scoring import scan
from humanaes_core.store import ScoreCache
from humanaes_core.store import server as server_mod
from tests.conftest import GOOD_PHOTOS


def test_score_and_cull_share_a_library_named_by_url(
    library, tiny_model, photo_dir, tmp_path, capsys, monkeypatch
):
    base = [str(photo_dir), "--model", str(tiny_model), "--quiet", "--max-tiles", "1"]
    assert score_main([*base, "--out", str(tmp_path / "a.jsonl"), "--library", str(library)]) == 0
    with ScoreCache(library) as cache:
        assert cache.count() == len(GOOD_PHOTOS)

    def no_model(*a, **k):
        raise AssertionError("the model was loaded although the library has every card")

    monkeypatch.setattr(scan, "load_scorer", no_model)
    capsys.readouterr()
    assert score_main([*base, "--out", str(tmp_path / "b.jsonl"), "--cache", str(library)]) == 0
    assert f"{len(GOOD_PHOTOS)} from cache, 0 by the model" in capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert sum(r["error"] is None for r in rows) == len(GOOD_PHOTOS)


def test_an_unreachable_library_server_is_one_clear_line(
    tiny_model, photo_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(server_mod, "RETRY_S", 0.2)
    url = f"postgresql+psycopg://editor:secret@/humanaes?host={tmp_path}"
    out = tmp_path / "cards.jsonl"
    code = score_main(
        [str(photo_dir), "--model", str(tiny_model), "--out", str(out), "--library", url, "--quiet"]
    )
    err = capsys.readouterr().err
    assert code != 0 and "cannot reach the library server" in err and "secret" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
