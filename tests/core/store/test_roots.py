"""Folder roots per machine: a decision made on one machine's mount of a shared drive gives the photo's
path under another machine's mount; photos outside every named root keep their paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from humanaes_core.store.decisions import DecisionStore, Flag, PhotoDecision
from humanaes_core.store.roots import ROOTS_ENV_VAR, FolderRoots
from humanaes_core.store.scores import ScoreCache


def test_paths_under_a_named_root_are_stored_relative_to_it(tmp_path: Path) -> None:
    mac = FolderRoots.parse(os.pathsep.join(["studio=/Volumes/Studio", "raw=/Volumes/Studio/raw"]))
    assert mac.to_stored("/Volumes/Studio/wedding/IMG_1.jpg") == "root:studio/wedding/IMG_1.jpg"
    assert mac.to_stored("/Volumes/Studio/raw/a.CR3") == "root:raw/a.CR3"  # the deepest root
    assert mac.to_stored("/Volumes/Studio") == "root:studio/"
    assert mac.to_stored("/Users/me/p.jpg") == "/Users/me/p.jpg"
    assert mac.to_stored("/Volumes/StudioB/p.jpg") == "/Volumes/StudioB/p.jpg"  # a prefix is not a parent
    linux = FolderRoots.parse(f"studio={tmp_path / 'mnt'}")
    assert linux.to_local("root:studio/wedding/IMG_1.jpg") == str(tmp_path / "mnt" / "wedding" / "IMG_1.jpg")
    assert linux.to_local("root:raw/a.CR3") == "root:raw/a.CR3"  # not mounted here: as stored
    assert linux.to_local("/Users/me/p.jpg") == "/Users/me/p.jpg"
    with pytest.raises(ValueError, match="name=folder"):
        FolderRoots.parse("no-equals-sign")


def test_a_shared_library_gives_each_machine_its_own_mount(
    library: Path | str, tmp_path: Path, monkeypatch
) -> None:
    on_mac = FolderRoots({"studio": "/Volumes/Studio"})
    on_linux = FolderRoots({"studio": str(tmp_path / "studio")})
    photo = ("a" * 40, "/Volumes/Studio/wedding/IMG_1.jpg")
    with DecisionStore(library, roots=on_mac) as mac, DecisionStore(library, roots=on_linux) as linux:
        seen = linux.revision()
        mac.set_flag([photo], Flag.PICK)
        expected = str(tmp_path / "studio" / "wedding" / "IMG_1.jpg")
        assert linux.all()["a" * 40] == (expected, PhotoDecision(flag=Flag.PICK))
        assert [c.path for c in linux.changes_since(seen).changes] == [expected]
        assert [c.path for c in linux.undo()] == [expected]
        assert mac.all() == {}
    monkeypatch.setenv(ROOTS_ENV_VAR, f"studio={tmp_path / 'studio'}")
    with DecisionStore(library) as from_env:
        assert from_env.roots == on_linux


def test_machines_keep_their_own_fast_path_rows_on_a_shared_library(
    postgres_library: str, tmp_path, monkeypatch
):
    from humanaes_core.store import scores

    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"shared photo")
    reads: list[str] = []
    real = scores.content_hash_file
    monkeypatch.setattr(scores, "content_hash_file", lambda p: reads.append(str(p)) or real(p))
    signature = scores.signature_of
    with ScoreCache(postgres_library) as cache:
        for n, host in enumerate(("mac", "linux", "mac", "linux")):
            monkeypatch.setattr(scores.platform, "node", lambda host=host: host)
            # each machine sees the share as another device, as two machines do
            monkeypatch.setattr(scores, "signature_of", lambda st, dev=n % 2: signature(st)._replace(dev=dev))
            cache.content_hash(photo)
    assert len(reads) == 2  # once per machine, not on every switch
