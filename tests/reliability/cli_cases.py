"""The hostile command lines of ``cli_corpus``, as data: one `CliCase` each, grouped by what they attack."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from .cli_corpus import DONE, ERROR, OK, CliCase, World, build_world


def once(target: Callable[[World], object]) -> Callable[[World], object]:
    """`target` evaluated once per world: building argv and listing what to keep must see one file."""

    def memo(w: World) -> object:
        cache = w.__dict__.setdefault("_once", {})
        if target not in cache:
            cache[target] = target(w)
        return cache[target]

    return memo


BAD_OUTPUTS: list[tuple[str, Callable[[World], Path], str, str]] = [
    # (name, target, expected, word in the message)
    ("a photo", lambda w: w.photo(0), ERROR, "photo"),
    ("a new .png name", lambda w: w.shoot / "new.png", ERROR, "photo"),
    ("a sidecar", lambda w: w.shoot / "IMG_2.jpg.xmp", ERROR, "sidecar"),
    ("the library database", lambda w: w.library, ERROR, "database"),
    ("a JPEG named plan.csv", lambda w: _jpeg_named(w, "plan.csv"), ERROR, "photo"),
    ("a folder", lambda w: w.shoot, ERROR, "folder"),
    ("a binary file", lambda w: _write(w.root / "blob.json", b"\x00\x01\x02\x03"), ERROR, "binary"),
    ("a path through a photo", lambda w: w.photo(0) / "out.csv", ERROR, ""),
    ("a 300-byte name", lambda w: w.root / ("x" * 300 + ".csv"), ERROR, "too long"),
    ("/dev/null", lambda w: Path("/dev/null"), OK, ""),
    ("a non-UTF-8 name", lambda w: w.root / os.fsdecode(b"r\xe9sultat.csv"), OK, ""),
    ("a new nested folder", lambda w: w.root / "out" / "deep" / "cards.csv", OK, ""),
    ("an earlier result", lambda w: _write(w.root / "cards.csv", b"path,overall\na.jpg,0.5\n"), OK, ""),
]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _jpeg_named(w: World, name: str) -> Path:
    target = w.root / name
    Image.new("RGB", (8, 8)).save(target, format="JPEG")
    return target


def _output_cases() -> list[CliCase]:
    cases = []
    for name, target, expect, says in BAD_OUTPUTS:
        target = once(target)
        keep = _keep_existing(target)
        cases += [
            CliCase(f"--out {name}", "outputs", "score", _argv("score", "--out", target), expect, says, keep),
            CliCase(
                f"--export {name}", "outputs", "cull", _argv("cull", "--export", target), expect, says, keep
            ),
            CliCase(
                f"--export {name}, --dry-run",
                "outputs",
                "cull",
                _argv("cull", "--export", target, "--dry-run"),
                expect,
                says,
                keep,
            ),
        ]
    return cases


def _argv(cli: str, flag: str, target: Callable[[World], Path], *extra: str) -> Callable[[World], list[str]]:
    def make(w: World) -> list[str]:
        path = str(target(w))
        return w.score_args(flag, path, *extra) if cli == "score" else w.cull_args(flag, path, *extra)

    return make


def _keep_existing(target: Callable[[World], Path]) -> Callable[[World], list[Path]]:
    """Whatever was at an output path that must be refused stays as it was."""

    def keep(w: World) -> list[Path]:
        path = target(w)
        try:
            existing = path.is_file()
        except OSError:  # e.g. a name too long to stat: nothing there to keep
            return []
        return [path] if (existing and path.suffix != ".csv") or path == w.library else []

    return keep


# ------------------------------------------------------------------------------------------ library


def _cache(target: Callable[[World], str], expect: str, says: str = "") -> Callable[[str], CliCase]:
    target = once(target)

    def case(name: str) -> CliCase:
        def make(w: World) -> list[str]:
            args = w.score_args("--out", str(w.root / "cards.jsonl"))
            args[args.index("--cache") + 1] = target(w)
            return args

        def keep(w: World) -> list[Path]:
            path = Path(target(w))
            return [path] if expect == ERROR and path.is_file() else []

        return CliCase(f"--cache {name}", "library", "score", make, expect, says, keep)

    return case


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def _library_cases() -> list[CliCase]:
    specs = {
        "a photo": _cache(lambda w: str(w.photo(0)), ERROR, ""),
        "a text file": _cache(lambda w: str(_write(w.root / "notes.txt", b"my notes\n" * 50)), ERROR, ""),
        "a folder": _cache(lambda w: str(w.shoot), ERROR, ""),
        "a PostgreSQL URL": _cache(lambda w: "postgresql+psycopg://me@localhost/lib", ERROR, ""),
        "/dev/null": _cache(lambda w: "/dev/null", ERROR, ""),
        "a FIFO": _cache(lambda w: _fifo(w.root / "pipe.sqlite"), ERROR, ""),
        "an empty file": _cache(lambda w: str(_write(w.root / "empty.sqlite", b"")), OK),
        "in a new folder": _cache(lambda w: str(w.root / "new" / "folder" / "lib.sqlite"), OK),
        "a non-UTF-8 name": _cache(lambda w: str(w.root / os.fsdecode(b"biblioth\xe8que.sqlite")), OK),
    }
    return [make(name) for name, make in specs.items()]


# ------------------------------------------------------------------------------------------ arguments


def _arguments_cases() -> list[CliCase]:
    score = {
        "--max-tiles 0": ["--max-tiles", "0"],
        "--max-tiles 41": ["--max-tiles", "41"],
        "--max-tiles 100000": ["--max-tiles", "100000"],
        "--max-tiles abc": ["--max-tiles", "abc"],
        "--batch-size 0": ["--batch-size", "0"],
        "--batch-size -3": ["--batch-size", "-3"],
        "--preset nope": ["--preset", "nope"],
        "--device nope": ["--device", "nope"],
        "--precision nope": ["--precision", "nope"],
        "--heads nope": ["--heads", "nope"],
    }
    cull = {
        "--keep-top 0": ["--keep-top", "0"],
        "--keep-top 150%": ["--keep-top", "150%"],
        "--keep-top abc": ["--keep-top", "abc"],
        "--max-gap -1": ["--per", "burst", "--max-gap", "-1"],
        "--max-hamming -1": ["--per", "burst", "--max-hamming", "-1"],
        "--max-hamming 65": ["--per", "burst", "--max-hamming", "65"],
        "--min-level great": ["--min-level", "great"],
        "--per nothing": ["--per", "nothing"],
    }
    cases = [
        CliCase(
            name, "arguments", "score", lambda w, a=a: w.score_args(*a, "--out", str(w.root / "c.csv")), ERROR
        )
        for name, a in score.items()
    ]
    for name, a in cull.items():

        def make(w: World, a: list[str] = a) -> list[str]:
            args = (
                [x for x in w.cull_args() if x not in ("--keep-top", "50%")]
                if "--keep-top" in a
                else w.cull_args()
            )
            if "--min-level" in a:
                args = [x for x in args if x not in ("--keep-top", "50%")]
            return [*args, *a]

        cases.append(CliCase(name, "arguments", "cull", make, ERROR))
    return cases


# ------------------------------------------------------------------------------------------ sidecars


def _sidecar(name: str, setup: Callable[[World], object], expect: str = DONE) -> CliCase:
    def make(w: World) -> list[str]:
        setup(w)
        return w.cull_args("--write-xmp")

    def keep(w: World) -> list[Path]:
        path = w.shoot / "IMG_0.jpg.xmp"
        return [path] if path.is_file() and not path.is_symlink() else []

    return CliCase(f"--write-xmp, {name}", "sidecars", "cull", make, expect, "", keep)


_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    + ']><x:xmpmeta xmlns:x="adobe:ns:meta/">&lol9;</x:xmpmeta>'
)
_XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">&xxe;</x:xmpmeta>'
)


def _sidecar_cases() -> list[CliCase]:
    def side(w: World) -> Path:
        return w.shoot / "IMG_0.jpg.xmp"

    return [
        _sidecar("a FIFO sidecar", lambda w: os.mkfifo(side(w))),
        _sidecar("a sidecar linked to /dev/zero", lambda w: side(w).symlink_to("/dev/zero")),
        _sidecar("a 20 MB sidecar", lambda w: side(w).write_bytes(b" " * (20 << 20))),
        _sidecar("a read-only sidecar", lambda w: (side(w).write_text(_XMPS), side(w).chmod(0o444))),
        _sidecar("a sidecar that is a folder", lambda w: side(w).mkdir()),
        _sidecar("a dangling sidecar link", lambda w: side(w).symlink_to(w.root / "gone.xmp")),
        _sidecar("a sidecar that is not XML", lambda w: side(w).write_text("<<<not xml")),
        _sidecar("billion laughs in a sidecar", lambda w: side(w).write_text(_LAUGHS)),
        _sidecar("XXE in a sidecar", lambda w: side(w).write_text(_XXE)),
        _sidecar(
            "a photo with a non-UTF-8 name",
            lambda w: w.photo(0).rename(w.shoot / os.fsdecode(b"caf\xe9.jpg")),
            OK,
        ),
        _sidecar(
            "a photo with a 240-byte name", lambda w: w.photo(0).rename(w.shoot / ("p" * 236 + ".jpg")), OK
        ),
    ]


_XMPS = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/>
</rdf:RDF></x:xmpmeta>"""


# ------------------------------------------------------------------------------------------ destinations


def _dest(name: str, flag: str, target: Callable[[World], Path], expect: str, *extra: str) -> CliCase:
    target = once(target)

    def make(w: World) -> list[str]:
        return w.cull_args(flag, str(target(w)), *extra)

    def keep(w: World) -> list[Path]:
        path = target(w)
        return [path] if path.is_file() else []

    return CliCase(f"{flag} {name}", "destinations", "cull", make, expect, "", keep)


def _dangling_pick(w: World) -> Path:
    picks = w.root / "picks"
    picks.mkdir()
    for i in range(3):
        (picks / f"IMG_{i}.jpg").symlink_to(w.root / "nowhere" / f"IMG_{i}.jpg")
    return picks


def _link_to_source(w: World) -> Path:
    picks = w.root / "picks"
    picks.mkdir()
    for i in range(3):
        (picks / f"IMG_{i}.jpg").symlink_to(w.photo(i))
    return picks


def _destination_cases() -> list[CliCase]:
    return [
        _dest(
            "into a regular file", "--copy-picks", lambda w: _write(w.root / "picks", b"not a folder"), ERROR
        ),
        _dest("into the source folder", "--copy-picks", lambda w: w.shoot, ERROR),
        _dest("into a sub-folder of the source", "--copy-picks", lambda w: w.shoot / "picks", ERROR),
        _dest("into a photo's path", "--copy-picks", lambda w: w.photo(0), ERROR),
        _dest("into /dev/null", "--copy-picks", lambda w: Path("/dev/null"), ERROR),
        _dest("past dangling links", "--copy-picks", _dangling_pick, OK),
        _dest("past links to the source photos", "--copy-picks", _link_to_source, OK),
        _dest("with --dry-run", "--move-picks", lambda w: w.root / "picks", OK, "--dry-run"),
    ]


# ------------------------------------------------------------------------------------------ models


def _model_copy(w: World) -> Path:
    target = w.root / "model"
    shutil.copytree(w.model, target)
    return target


def _consistent(model: Path) -> Path:
    from humanaes_core.model import write_manifest

    (model / "manifest.json").unlink(missing_ok=True)
    write_manifest(model)
    return model


def _json_edit(name: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(model: Path) -> None:
        data = json.loads((model / name).read_text())
        edit(data)
        (model / name).write_text(json.dumps(data))

    return apply


def _set(path: tuple[str, ...], value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return edit


def _model_case(
    name: str, mutate: Callable[[Path], object], expect: str = ERROR, consistent: bool = True
) -> CliCase:
    def make(w: World) -> list[str]:
        model = _model_copy(w)
        mutate(model)
        if consistent:
            _consistent(model)
        args = w.score_args("--out", str(w.root / "c.jsonl"))
        args[args.index("--model") + 1] = str(model)
        return args

    return CliCase(f"--model {name}", "models", "score", make, expect, cold=True)


def _outside_index(model: Path) -> None:
    outside = model.parent / "w"
    outside.mkdir()
    weights = next(model.glob("model*.safetensors"))
    shutil.move(weights, outside / "model.safetensors")
    keys = _safetensors_keys(outside / "model.safetensors")
    index = {"metadata": {}, "weight_map": dict.fromkeys(keys, "../w/model.safetensors")}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def _symlink_outside(model: Path) -> None:
    weights = next(model.glob("model*.safetensors"))
    outside = model.parent / "outside.safetensors"
    shutil.move(weights, outside)
    weights.symlink_to(outside)


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def apply(model: Path) -> None:
        path = next(model.glob(name))
        path.write_bytes(path.read_bytes()[:keep])

    return apply


def _replace_file(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(model: Path) -> None:
        (model / name).unlink()
        make(model / name)

    return apply


def _model_cases() -> list[CliCase]:
    def deep(n: int) -> str:
        return "[" * n + "]" * n

    def sparse(path: Path, size: int) -> None:
        with open(path, "wb") as f:
            f.truncate(size)

    cases = [
        CliCase(
            "--model that does not exist",
            "models",
            "score",
            lambda w: _with_model(w, str(w.root / "nowhere")),
            ERROR,
        ),
        CliCase("--model a photo", "models", "score", lambda w: _with_model(w, str(w.photo(0))), ERROR),
        CliCase(
            "--model an empty folder",
            "models",
            "score",
            lambda w: _with_model(w, str(_mkdir(w.root / "empty"))),
            ERROR,
        ),
        _model_case("without manifest.json", lambda m: (m / "manifest.json").unlink(), consistent=False),
        _model_case("with broken config.json", lambda m: (m / "config.json").write_text("{not json")),
        _model_case("with truncated weights", _truncate("model*.safetensors", 4096)),
        _model_case("with garbage heads", lambda m: (m / "heads.safetensors").write_bytes(b"\x08" * 64)),
        _model_case("without heads in humanaes.json", _json_edit("humanaes.json", lambda d: d.pop("heads"))),
        _model_case("with nested humanaes.json", lambda m: (m / "humanaes.json").write_text(deep(100_000))),
        _model_case("from the future", _json_edit("humanaes.json", _set(("format_version",), 99))),
        _model_case(
            "with 1e6 layers", _json_edit("config.json", _set(("text_config", "num_hidden_layers"), 10**6))
        ),
        _model_case(
            "with image_size 100000", _json_edit("humanaes.json", _set(("image", "image_size"), 100_000))
        ),
        _model_case(
            "with 1e9-wide heads", _json_edit("humanaes.json", _set(("heads", "expert_ffn_hidden"), 10**9))
        ),
        _model_case(
            "with a 256 MB tokenizer", _replace_file("tokenizer.json", lambda p: sparse(p, 256 << 20))
        ),
        _model_case(
            "with manifest.json -> /dev/zero",
            _replace_file("manifest.json", lambda p: p.symlink_to("/dev/zero")),
            consistent=False,
        ),
        _model_case("with a FIFO config.json", _replace_file("config.json", os.mkfifo), consistent=False),
        _model_case("with weights outside (index)", _outside_index),
        _model_case("with weights outside (symlink)", _symlink_outside),
        _model_case(
            "with a pickle beside it", lambda m: (m / "pytorch_model.bin").write_bytes(b"\x80\x04."), OK
        ),
        _model_case(
            "with a planted modeling file",
            lambda m: (m / "modeling_x.py").write_text("raise SystemExit('ran')"),
            OK,
        ),
    ]
    cases += [
        CliCase(
            "import from a missing folder",
            "models",
            "import",
            lambda w: [str(w.root / "nowhere"), str(w.root / "out")],
            ERROR,
        ),
        CliCase("import from a folder with a FIFO config.json", "models", "import", _import_fifo, ERROR),
        CliCase(
            "import --report onto a photo",
            "models",
            "import",
            lambda w: [str(w.model), str(w.root / "out"), "--report", str(w.photo(0))],
            ERROR,
        ),
    ]
    return cases


def _with_model(w: World, model: str) -> list[str]:
    args = w.score_args("--out", str(w.root / "c.jsonl"))
    args[args.index("--model") + 1] = model
    return args


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _import_fifo(w: World) -> list[str]:
    src = _mkdir(w.root / "src")
    os.mkfifo(src / "config.json")
    (src / "model.safetensors").write_bytes(b"")
    return [str(src), str(w.root / "out")]


# ------------------------------------------------------------------------------------------ labels


def _labels(
    name: str, lines: Callable[[World], bytes], expect: str = ERROR, suffix: str = ".jsonl"
) -> CliCase:
    def make(w: World) -> list[str]:
        data = _write(w.shoot / f"labels{suffix}", lines(w))
        return [
            "--data",
            str(data),
            "--model",
            str(w.model),
            "--out",
            str(w.root / "report.json"),
            "--quiet",
            "--device",
            "cpu",
            "--max-tiles",
            "1",
        ]

    return CliCase(f"labels: {name}", "labels", "eval", make, expect)


def _line(**fields: object) -> bytes:
    return (json.dumps({"image_name": "IMG_0.jpg", "is_expert": False, **fields}) + "\n").encode()


def _label_cases() -> list[CliCase]:
    return [
        _labels("nested JSON", lambda w: b'{"image_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
        _labels(
            "a 400-digit score", lambda w: _line(score=0).replace(b'"score": 0', b'"score": ' + b"9" * 400)
        ),
        _labels("a 2 MB value", lambda w: _line(score=0.5, text_level="x" * (2 << 20))),
        _labels("score NaN", lambda w: _line(score=0.5).replace(b"0.5", b"NaN")),
        _labels("score 7.5", lambda w: _line(score=7.5)),
        _labels("a missing image", lambda w: _line(score=0.5).replace(b"IMG_0", b"IMG_9")),
        _labels(
            "an image outside the root", lambda w: _line(score=0.5).replace(b"IMG_0.jpg", b"../../etc/passwd")
        ),
        _labels("an empty file", lambda w: b""),
        _labels("binary bytes as CSV", lambda w: b"\x00\xff\x10" * 100, suffix=".csv"),
        _labels("a CSV with only a header", lambda w: b"path,overall\n", suffix=".csv"),
        _labels(
            "a BOM before valid lines",
            lambda w: b"\xef\xbb\xbf" + _line(score=0.5) + _line(score=0.7).replace(b"IMG_0", b"IMG_1"),
            OK,
        ),
    ]


# ------------------------------------------------------------------------------------------ files


def _far_future(w: World) -> list[str]:
    os.utime(w.photo(1), ns=(2**63 - 1, 2**63 - 1))
    return w.score_args("--out", str(w.root / "c.csv"))


def _file_cases() -> list[CliCase]:
    return [CliCase("a photo dated after 2262", "files", "score", _far_future, DONE)]


CASES: list[CliCase] = [
    *_output_cases(),
    *_library_cases(),
    *_arguments_cases(),
    *_sidecar_cases(),
    *_destination_cases(),
    *_model_cases(),
    *_label_cases(),
    *_file_cases(),
]


def warm_library(root: Path, model: Path) -> Path:
    """A library that already holds the world's photos, so most cases never load the model."""
    from humanaes_core.cli import score_main

    world = build_world(root, model, None)
    code = score_main(world.score_args("--out", str(root / "warm.jsonl")))
    assert code == 0
    return world.library
