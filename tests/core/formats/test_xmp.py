"""XMP sidecars: names editors look for, merging that loses nothing, ratings an independent reader sees.

exiftool (Debian: libimage-exiftool-perl) is the independent reader: what it reads back is what
Lightroom, darktable and digiKam will read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from humanaes_core.formats import xmp
from humanaes_core.formats.xmp import Rating, XmpError, read_rating, sidecar_path, write_decision
from humanaes_core.origins import Origin
from tests.conftest import synthetic_photo

pytest.importorskip("pyexiv2", reason="pyexiv2 reads and writes XMP")

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not installed (Debian: apt-get install libimage-exiftool-perl)"
)

# A sidecar as Lightroom Classic / darktable leave it: keywords, hierarchical keywords, develop
# settings (including a sequence), darktable's history, camera EXIF mirrored into XMP, a title in
# another script, and a namespace no tool here knows.
EDITOR_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:studio="http://example.com/ns/studio/1.0/"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
   tiff:Make="Canon"
   tiff:Orientation="6"
   exif:ExposureTime="1/200"
   exif:DateTimeOriginal="2024-05-01T10:00:00.25+02:00"
   photoshop:DateCreated="2024-05-01T10:00:00.25+02:00"
   xmp:Rating="2"
   xmp:Label="Red"
   crs:Version="15.0"
   crs:Exposure2012="+0.35"
   crs:Temperature="5200"
   darktable:xmp_version="5"
   studio:Client="Zoë &amp; Ana">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>wedding</rdf:li>
     <rdf:li>Zoë</rdf:li>
     <rdf:li>first dance</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>people|Zoë</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">花嫁</rdf:li>
    </rdf:Alt>
   </dc:title>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>128, 140</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="0000803f"/>
     <rdf:li darktable:operation="colorbalancergb" darktable:enabled="1" darktable:params="ab12"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""

# what a decision may change, and the writer's toolkit name
DECISION_TAGS = {
    "Rating",
    "Label",
    "PickLabel",
    "ColorLabel",
    "MetadataDate",
    "SidecarForExtension",
    "XMPToolkit",
}


def exiftool(path: Path) -> dict:
    """Every XMP tag exiftool reads from a file, numbers as numbers."""
    out = subprocess.run(
        [EXIFTOOL, "-j", "-n", "-struct", "-XMP:all", str(path)], capture_output=True, check=True
    )
    [tags] = json.loads(out.stdout.decode("utf-8"))
    tags.pop("SourceFile", None)
    return tags


def _photo(path: Path, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_photo(seed, (64, 48)).save(path, format="JPEG")
    return path


def _raw(path: Path) -> Path:
    """Sidecar naming only looks at names; the RAW's bytes never matter (and are never written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00raw sensor data")
    return path


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# ---------------------------------------------------------------------------------------------- names


def test_sidecar_names_follow_the_editors(tmp_path):
    cr2 = _raw(tmp_path / "IMG_0001.CR2")
    assert sidecar_path(cr2) == tmp_path / "IMG_0001.xmp"  # Lightroom Classic, for proprietary RAW
    assert sidecar_path(cr2, "name.ext.xmp") == tmp_path / "IMG_0001.CR2.xmp"
    jpg = _photo(tmp_path / "IMG_0002.JPG")
    assert sidecar_path(jpg) == tmp_path / "IMG_0002.JPG.xmp"  # darktable / digiKam
    assert sidecar_path(jpg, "name.xmp") == tmp_path / "IMG_0002.xmp"
    dng = _raw(tmp_path / "IMG_0003.dng")
    assert sidecar_path(dng) == tmp_path / "IMG_0003.dng.xmp"  # Lightroom keeps DNG metadata inside
    with pytest.raises(ValueError, match="convention"):
        sidecar_path(jpg, "name.XMP")


def test_raw_plus_jpeg_pair_never_share_a_sidecar(tmp_path):
    raw = _raw(tmp_path / "IMG_0001.NEF")
    jpg = _photo(tmp_path / "IMG_0001.JPG")
    assert sidecar_path(raw, "name.xmp") == tmp_path / "IMG_0001.xmp"
    assert sidecar_path(jpg, "name.xmp") == tmp_path / "IMG_0001.JPG.xmp"  # name.xmp is the NEF's
    write_decision(raw, 5)
    write_decision(jpg, None, rejected=True, convention="name.xmp")
    assert read_rating(raw).stars == 5 and not read_rating(raw).rejected
    assert read_rating(jpg).rejected


def test_an_existing_sidecar_wins_over_the_convention(tmp_path):
    cr2 = _raw(tmp_path / "IMG_0001.CR2")
    darktable = tmp_path / "IMG_0001.CR2.xmp"
    darktable.write_text(EDITOR_SIDECAR, encoding="utf-8")
    assert write_decision(cr2, 4) == [darktable]
    assert not (tmp_path / "IMG_0001.xmp").exists()
    upper = _raw(tmp_path / "DSC_0002.ARW")
    (tmp_path / "DSC_0002.XMP").write_text(EDITOR_SIDECAR, encoding="utf-8")
    assert write_decision(upper, 3, convention="name.ext.xmp") == [tmp_path / "DSC_0002.XMP"]
    assert not (tmp_path / "DSC_0002.ARW.xmp").exists()


@needs_exiftool
def test_both_sidecars_are_updated_when_both_exist(tmp_path):
    cr2 = _raw(tmp_path / "IMG_0001.CR2")
    for name in ("IMG_0001.xmp", "IMG_0001.CR2.xmp"):
        (tmp_path / name).write_text(EDITOR_SIDECAR, encoding="utf-8")
    written = write_decision(cr2, 5)
    assert sorted(p.name for p in written) == ["IMG_0001.CR2.xmp", "IMG_0001.xmp"]
    assert {exiftool(p)["Rating"] for p in written} == {5}


# -------------------------------------------------------------------------------- writing, read back


@needs_exiftool
def test_ratings_rejects_and_labels_read_back_by_exiftool(tmp_path):
    keep = _raw(tmp_path / "IMG_0001.CR2")
    drop = _photo(tmp_path / "IMG_0002.jpg")
    [keep_side] = write_decision(keep, 4, label="Green", pick=True)
    [drop_side] = write_decision(drop, 2, rejected=True)
    assert keep_side == tmp_path / "IMG_0001.xmp"  # where Lightroom looks for a CR2's sidecar
    k, d = exiftool(keep_side), exiftool(drop_side)
    assert k["Rating"] == 4 and k["Label"] == "Green" and k["PickLabel"] == 3 and k["ColorLabel"] == 4
    assert k["SidecarForExtension"] == "CR2"
    assert d["Rating"] == -1 and d["PickLabel"] == 1 and "Label" not in d
    # written without an origin: the photographer's decisions (the app's keys)
    assert read_rating(keep) == Rating(4, False, True, "Green", str(keep_side), Origin.PHOTOGRAPHER)
    assert read_rating(drop) == Rating(None, True, False, None, str(drop_side), Origin.PHOTOGRAPHER)


@needs_exiftool
def test_merge_keeps_keywords_develop_settings_and_history(tmp_path):
    cr2 = _raw(tmp_path / "IMG_0001.CR2")
    side = tmp_path / "IMG_0001.xmp"
    side.write_text(EDITOR_SIDECAR, encoding="utf-8")
    before = exiftool(side)
    assert before["Subject"] == ["wedding", "Zoë", "first dance"]
    write_decision(cr2, None, rejected=True, label="")
    after = exiftool(side)
    assert after["Rating"] == -1 and "Label" not in after
    untouched = {k: v for k, v in before.items() if k not in DECISION_TAGS}
    assert {k: after.get(k) for k in untouched} == untouched  # keywords, crs:*, history, title, studio:*
    assert after["Subject"] == ["wedding", "Zoë", "first dance"]
    assert after["HierarchicalSubject"] == ["people|Zoë"]
    assert after["Exposure2012"] == "+0.35" and after["ToneCurvePV2012"] == ["0, 0", "128, 140", "255, 255"]
    assert len(after["History"]) == 2 and after["History"][1]["Operation"] == "colorbalancergb"
    assert after["Client"] == "Zoë & Ana" and after["Title"] == "花嫁"
    assert after["DateTimeOriginal"] == "2024:05:01 10:00:00.25+02:00" and after["Orientation"] == 6


def test_label_none_keeps_the_editors_label_and_empty_removes_it(tmp_path):
    photo = _raw(tmp_path / "IMG_0001.RAF")
    (tmp_path / "IMG_0001.xmp").write_text(EDITOR_SIDECAR, encoding="utf-8")
    write_decision(photo, 5)
    assert read_rating(photo).label == "Red"
    write_decision(photo, 5, label="")
    assert read_rating(photo).label is None


def test_unflag_and_unrate_remove_the_fields(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, 3, rejected=True)
    assert read_rating(photo).rejected
    write_decision(photo, None)
    fields = xmp.read_sidecar(side)
    assert "Xmp.xmp.Rating" not in fields and "Xmp.digiKam.PickLabel" not in fields
    assert read_rating(photo) == Rating(source=None)
    write_decision(photo, 0)
    assert read_rating(photo).stars == 0


def test_originals_are_never_modified(tmp_path):
    photo = _photo(tmp_path / "IMG_0001.jpg")
    raw = _raw(tmp_path / "IMG_0002.ORF")
    snaps = {p: _snapshot(p) for p in (photo, raw)}
    write_decision(photo, 5, label="Green")
    write_decision(raw, None, rejected=True)
    assert {p: _snapshot(p) for p in (photo, raw)} == snaps
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary file became the sidecar


def test_an_up_to_date_sidecar_is_not_rewritten(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, 4, label="Green")
    snap = _snapshot(side)
    write_decision(photo, 4, label="Green")
    assert _snapshot(side) == snap
    write_decision(photo, 5)
    assert _snapshot(side) != snap and read_rating(photo).stars == 5


@needs_exiftool
def test_non_ascii_paths(tmp_path):
    photo = _photo(tmp_path / "Séance photo 写真" / "Zoë — 1.jpg")
    [side] = write_decision(photo, 5, label="Green")
    assert side.name == "Zoë — 1.jpg.xmp"
    assert exiftool(side)["Rating"] == 5
    assert read_rating(photo).stars == 5


def test_a_malformed_sidecar_is_reported_and_left_alone(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    side = tmp_path / "a.jpg.xmp"
    side.write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF broken")
    snap = _snapshot(side)
    with pytest.raises(XmpError, match="not a readable XMP sidecar"):
        write_decision(photo, 5)
    assert _snapshot(side) == snap
    assert read_rating(photo) == Rating()  # unreadable sidecar: no decision, no crash


def test_bad_arguments(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    for stars in (6, -1, 2.5, True):
        with pytest.raises(ValueError, match="stars"):
            write_decision(photo, stars)
    with pytest.raises(XmpError, match="photo not found"):
        write_decision(tmp_path / "missing.jpg", 3)
    with pytest.raises(ValueError, match="convention"):
        write_decision(photo, 3, convention="lightroom")
    assert not any(p.suffix == ".xmp" for p in tmp_path.iterdir())


# -------------------------------------------------------------------------------------------- reading


def _embedded_xmp(rating: int) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmp:Rating="{rating}"/></rdf:RDF></x:xmpmeta>'
    ).encode()


def test_embedded_xmp_is_read_and_a_sidecar_beats_it(tmp_path):
    photo = tmp_path / "camera.jpg"
    synthetic_photo(1, (64, 48)).save(photo, format="JPEG", xmp=_embedded_xmp(3))
    assert b'xmp:Rating="3"' in photo.read_bytes()  # really embedded in the JPEG
    rating = read_rating(photo)
    assert rating.stars == 3 and rating.source == f"{photo} (embedded)"
    write_decision(photo, 1)
    assert read_rating(photo).stars == 1


def test_newest_sidecar_wins_and_digikam_fields_are_understood(tmp_path):
    photo = _raw(tmp_path / "IMG_0001.NEF")
    old = tmp_path / "IMG_0001.xmp"
    new = tmp_path / "IMG_0001.NEF.xmp"
    old.write_text(EDITOR_SIDECAR, encoding="utf-8")
    new.write_text(
        EDITOR_SIDECAR.replace('xmp:Rating="2"', 'digiKam:PickLabel="3" digiKam:ColorLabel="5"')
        .replace('xmp:Label="Red"', 'xmp:Rating="4"')
        .replace("xmlns:studio=", 'xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:studio='),
        encoding="utf-8",
    )
    os.utime(old, (1_000_000, 1_000_000))
    assert read_rating(photo) == Rating(4, False, True, "Blue", str(new))
    assert read_rating(tmp_path / "nothing.jpg") == Rating()


# ------------------------------------------------------------------- sidecars that are not sidecars

_SPECIAL_WRITER = """
import json, resource, sys
from pathlib import Path

resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # reading /dev/zero must not take the machine
from humanaes_core.culling import Decision, write_sidecars
from humanaes_core.formats.xmp import read_rating

folder = Path(sys.argv[1])
photos = sorted(folder.glob("*.jpg"))
ratings = [read_rating(p).stars for p in photos]
report = write_sidecars({p: Decision(True, 4, "test") for p in photos})
failed = [[p.name, reason] for p, reason in report.failed]
print(json.dumps({"written": sorted(p.name for p in report.written), "failed": failed, "ratings": ratings}))
"""


def _big_sidecar(path: Path) -> None:
    body = EDITOR_SIDECAR.replace("</x:xmpmeta>", " " * (xmp.SIDECAR_MAX_BYTES + 1024) + "</x:xmpmeta>")
    path.write_text(body, encoding="utf-8")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-big", "read-only"])
def test_a_sidecar_that_is_not_a_writable_regular_file_is_left_alone(kind, tmp_path):
    """Issue 16 items 7 and 15: a FIFO sidecar hung --write-xmp (and the app's Write XMP) forever, one
    linked to /dev/zero was read until memory ran out, 200 MB took 36 s and 7.4 GB, and a 0444 sidecar
    was replaced. Now each is reported in one line, left as it was, and the other photos are written."""
    for name in ("IMG_0.jpg", "IMG_1.jpg"):
        synthetic_photo(1, (32, 24)).save(tmp_path / name)
    odd = tmp_path / "IMG_0.jpg.xmp"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "dev-zero":
        odd.symlink_to("/dev/zero")
    elif kind == "too-big":
        _big_sidecar(odd)
    else:
        odd.write_text(EDITOR_SIDECAR, encoding="utf-8")
        odd.chmod(0o444)
    before = os.lstat(odd)
    data = odd.read_bytes() if odd.is_file() else None
    run = subprocess.run(
        [sys.executable, "-c", _SPECIAL_WRITER, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["written"] == ["IMG_1.jpg.xmp"]
    [[name, reason]] = result["failed"]
    expected = {"fifo": "not a regular file", "dev-zero": "not a regular file", "too-big": "larger than"}
    assert name == "IMG_0.jpg" and expected.get(kind, "read-only") in reason and "\n" not in reason
    after = os.lstat(odd)
    assert [after.st_mode, after.st_ino, after.st_mtime_ns] == [
        before.st_mode,
        before.st_ino,
        before.st_mtime_ns,
    ]
    assert data is None or odd.read_bytes() == data


# ------------------------------------------------------------------------------ who decided (origin)

PLAN = "humanaes-cull: keep top 50% per folder"


def _exiftool_set(path: Path, *assignments: str) -> None:
    """Change a sidecar as an editor would, with a tool that is not ours."""
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *assignments, str(path)], check=True)


@needs_exiftool
def test_humanaes_marks_its_own_decisions_in_its_namespace(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, None, rejected=True, origin=Origin.HUMANAES, plan=PLAN)
    tags = exiftool(side)
    assert tags["Rating"] == -1 and tags["PickLabel"] == 1
    assert (tags["Origin"], tags["Plan"]) == ("humanaes", PLAN)
    assert (tags["WrittenRating"], tags["WrittenPickLabel"]) == (-1, 1)
    assert tags["WrittenBy"].startswith("HumanAes ") and "CreatorTool" not in tags
    out = subprocess.run([EXIFTOOL, "-X", str(side)], capture_output=True, text=True, check=True).stdout
    assert "<XMP-humanaes:Origin>humanaes</XMP-humanaes:Origin>" in out
    assert read_rating(photo) == Rating(None, True, False, None, str(side), Origin.HUMANAES, PLAN)


@needs_exiftool
@pytest.mark.parametrize(
    ("change", "decision"),
    [
        # Lightroom: 4 stars; digiKam's reject left from HumanAes is HumanAes's, not the editor's
        (("-XMP-xmp:Rating=4",), (4, False, None)),
        # digiKam: accepted; Rating -1 left from HumanAes is not the editor's reject
        (("-XMP-digiKam:PickLabel=3",), (None, False, True)),
        # rewritten without our namespace: nothing tells HumanAes's fields apart any more
        (("-XMP-xmp:Rating=4", "-XMP-humanaes:all="), (4, True, False)),
    ],
    ids=["rating", "digikam-pick", "namespace-dropped"],
)
def test_an_editor_changing_humanaes_rating_makes_it_the_editors(tmp_path, change, decision):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, None, rejected=True, origin=Origin.HUMANAES, plan=PLAN)
    _exiftool_set(side, *change)
    rating = read_rating(photo)
    assert (rating.origin, rating.plan) == (Origin.EDITOR, None)
    assert (rating.stars, rating.rejected, rating.pick) == decision


@needs_exiftool
def test_a_lightroom_sidecar_is_the_editors(tmp_path):
    photo = _raw(tmp_path / "IMG_0001.CR2")
    side = tmp_path / "IMG_0001.xmp"
    subprocess.run(
        [
            EXIFTOOL,
            "-q",
            "-o",
            str(side),
            "-XMP-xmp:Rating=4",
            "-XMP-xmp:CreatorTool=Adobe Photoshop Lightroom Classic 13.0 (Macintosh)",
        ],
        check=True,
    )
    assert read_rating(photo) == Rating(4, False, None, None, str(side), Origin.EDITOR)
    # a sidecar naming HumanAes as its creator tool is still the editor's: only our namespace counts
    _exiftool_set(side, "-XMP-xmp:CreatorTool=HumanAes 0.1.0")
    assert read_rating(photo).origin == Origin.EDITOR


def test_an_editors_decision_written_by_humanaes_reads_back_whole(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, None, rejected=True, origin=Origin.EDITOR)
    assert read_rating(photo) == Rating(None, True, False, None, str(side), Origin.EDITOR)


def test_humanaes_never_claims_an_editors_rating(tmp_path):
    photo = _raw(tmp_path / "IMG_0001.RAF")
    side = tmp_path / "IMG_0001.xmp"
    side.write_text(EDITOR_SIDECAR, encoding="utf-8")  # Rating 2, label Red
    write_decision(photo, 2, label="Green", origin=Origin.HUMANAES, plan=PLAN, digikam=False)
    rating = read_rating(photo)
    assert (rating.stars, rating.label, rating.origin) == (2, "Green", Origin.EDITOR)
    assert "Xmp.humanaes.Origin" not in xmp.read_sidecar(side)
    write_decision(photo, None, rejected=True, origin=Origin.HUMANAES, plan=PLAN, digikam=False)
    assert read_rating(photo).origin == Origin.HUMANAES  # the rating changed: now it is HumanAes's


def test_the_latest_writer_is_recorded(tmp_path):
    photo = _photo(tmp_path / "a.jpg")
    [side] = write_decision(photo, 4, pick=True, origin=Origin.HUMANAES, plan=PLAN)
    assert read_rating(photo).origin == Origin.HUMANAES
    write_decision(photo, 4, pick=True)  # the photographer confirms it in the app: same rating, now theirs
    rating = read_rating(photo)
    assert (rating.stars, rating.origin, rating.plan) == (4, Origin.PHOTOGRAPHER, None)
    assert "Xmp.humanaes.Plan" not in xmp.read_sidecar(side)
    write_decision(photo, None)  # unrated: no rating left, the marks follow
    fields = xmp.read_sidecar(side)
    assert "Xmp.xmp.Rating" not in fields and "Xmp.humanaes.WrittenRating" not in fields
