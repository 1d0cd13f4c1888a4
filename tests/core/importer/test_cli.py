"""`humanaes-import`: --help without torch, an import, a dry run with --report, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.core.importer.originals import original_tensors, variant_copy


def test_cli_help_and_import(sources, tmp_path, capsys):
    from humanaes_core.cli.imports import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "humanaes-import" in capsys.readouterr().out
    out = tmp_path / "cli-out"
    assert main([str(sources["internlm2"]), str(out), "--quiet"]) == 0
    assert (out / "humanaes.json").is_file()
    assert main([str(sources["internlm2"]), str(out)]) == 2  # exists: refuses without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert main([str(sources["qwen2"]), str(tmp_path / "dry"), "--dry-run", "--report", str(report)]) == 0
    assert not (tmp_path / "dry").exists()
    assert len(json.loads(report.read_text())["placements"]) == len(original_tensors(sources["qwen2"]))
    bad = variant_copy(sources["qwen2"], tmp_path / "bad", lambda t: t.pop("mlp1.3.bias"))
    assert main([str(bad), str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "mlp1.3.bias" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_help_offers_the_importers_choices_without_importing_torch():
    """The choices come from the importer itself (no copies to drift apart), and --help stays light."""
    code = (
        "import sys\n"
        "from humanaes_core.cli.imports import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.rstrip().endswith("no torch")
    from humanaes_core.importer import BACKBONE_DTYPES, METAVOTER_MODES
    from humanaes_core.model import EXPERT_ACTIVATIONS

    help_text = " ".join(run.stdout.split())
    for choices in (METAVOTER_MODES, EXPERT_ACTIVATIONS, ("auto", *BACKBONE_DTYPES)):
        assert "{" + ",".join(choices) + "}" in help_text


def test_report_is_replaced_whole_or_not_at_all(sources, tmp_path, monkeypatch, capsys):
    """A failure while writing --report keeps the previous report, leaves no temporary file and ends in
    one line."""
    from humanaes_core.cli import imports
    from humanaes_core.cli.imports import main

    report = tmp_path / "report.json"
    report.write_text('{"previous": true}', encoding="utf-8")

    def disk_full(obj, f, **kwargs):
        f.write('{"placements": [')
        raise OSError(28, "No space left on device")

    json_dump = imports.json.dump
    monkeypatch.setattr(imports.json, "dump", disk_full)
    assert main([str(sources["qwen2"]), str(tmp_path / "dry"), "--dry-run", "--report", str(report)]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("not written: the disk is full")
    assert json.loads(report.read_text(encoding="utf-8")) == {"previous": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]

    monkeypatch.setattr(imports.json, "dump", json_dump)
    odd = tmp_path / "r\udce9port.json"  # a non-UTF-8 file name, as argv gives it
    assert main([str(sources["qwen2"]), str(tmp_path / "dry"), "--dry-run", "--report", str(odd)]) == 0
    assert json.loads(odd.read_bytes())["variant"] == "qwen2"
