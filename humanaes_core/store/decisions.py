"""Decisions on photos (stars, pick/reject, colour label) and who made them, stored with an undo history.

Decisions live in the library file beside the score cache, in tables of their own, keyed like the
cards by the photo's content hash: renaming or moving a photo keeps its decision, and the last path it
was seen at is kept beside it so exports and sidecar writes know where it is. Every change is one
step of a persistent undo history: a key press on one photo and an auto-cull of a whole folder are
each undone with one ``undo()``, even after the app was restarted. Each decision records its origin
(`humanaes_core.origins`: the photographer, an editor, HumanAes) and, for HumanAes's, the plan that made
it, so training can leave HumanAes's own decisions out.

The tables live next to the cache's own and the cache's ``schema_version`` is not touched: an older
HumanAes opening the library simply does not see them. Their own version is ``decisions_schema_version``
in the ``meta`` table (``migrations.DECISIONS_COMPONENT``). Opening, locking, retries and damage are
shared with the cache (``library.LibraryStore``, a SQLite file or a PostgreSQL server); nothing the
cache does with scores touches these tables. Every change is one transaction that is the only decision
writer while it runs (SQLite's ``BEGIN IMMEDIATE``, the server's advisory lock), and the new decisions
are computed from the current ones inside it (``amend``), so the decision read, the new decision and its
undo step are consistent even with several apps and CLIs writing at the same time.

Several processes (two app windows, a CLI, other machines on a shared library) see each other's
decisions through the change feed: every write appends, per photo, a row with a growing revision and the
writing handle's id to ``decision_changes``; ``changes_since(revision)`` returns what the others changed
after the revision a reader last saw, and is cheap enough to poll every second. An editor whose write
replaces a decision another one made after ``seen`` (the revision the editor had seen) still wins (last
writer wins) but is told: the write's ``Change`` has ``conflict`` set, and so has the change the other
editor's feed delivers.
"""

from __future__ import annotations

import enum
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, delete, func, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from humanaes_core.origins import Origin, origin_of
from humanaes_core.store.errors import DecisionsVersionError
from humanaes_core.store.hashing import decode_path, encode_path
from humanaes_core.store.library import LibraryStore, chunks
from humanaes_core.store.migrations import DECISIONS_COMPONENT
from humanaes_core.store.roots import FolderRoots
from humanaes_core.store.scores import ScoreCache

__all__ = [
    "Change",
    "DecisionStore",
    "DecisionsVersionError",
    "Feed",
    "Flag",
    "PhotoDecision",
]

#: Undo steps kept; older ones are dropped (a step can hold thousands of photos, e.g. an auto-cull).
DEFAULT_MAX_HISTORY = 200
#: Change-feed rows kept; a reader further behind than this is told to reload (``Feed.complete``).
FEED_KEPT = 100_000

#: (photo's content hash, current path, new decision or None to clear it)
Plan = Iterable[tuple[str, "str | os.PathLike[str]", "PhotoDecision | None"]]


class Flag(enum.IntEnum):
    """Pick state, as the P / U / X keys set it."""

    REJECT = -1
    NONE = 0
    PICK = 1


@dataclass(frozen=True)
class PhotoDecision:
    """One photo's state: stars 0-5 (None: unrated), flag, colour label (None: none), who set it
    (`origins.Origin`) and, for HumanAes's decisions, the plan that made them ("auto-cull: keep ...")."""

    stars: int | None = None
    flag: Flag = Flag.NONE
    label: str | None = None
    origin: Origin = Origin.PHOTOGRAPHER
    plan: str | None = None

    def __post_init__(self) -> None:
        if self.stars is not None and (
            isinstance(self.stars, bool) or not isinstance(self.stars, int) or not 0 <= self.stars <= 5
        ):
            raise ValueError(f"stars must be 0-5 or None, got {self.stars!r}")
        object.__setattr__(self, "flag", Flag(self.flag))
        object.__setattr__(self, "origin", Origin(self.origin))

    @property
    def rejected(self) -> bool:
        return self.flag == Flag.REJECT

    @property
    def picked(self) -> bool:
        return self.flag == Flag.PICK

    def by_photographer(self, **fields: object) -> PhotoDecision:
        """The decision after the photographer set `fields` (stars, flag, label) on this one with a key.

        What people decided stays (an editor's stars under a new pick); what HumanAes decided does not,
        its colour label excepted: its flag and stars (the keeper stars ``humanaes-cull`` writes come
        from the model's level) are the model's opinion, and kept under the photographer's name they
        would reach training as the photographer's.
        """
        base = PhotoDecision(label=self.label) if self.origin == Origin.HUMANAES else self
        return replace(base, origin=Origin.PHOTOGRAPHER, plan=None, **fields)

    def to_dict(self) -> dict:
        return {
            "stars": self.stars,
            "flag": int(self.flag),
            "label": self.label,
            "origin": str(self.origin),
            "plan": self.plan,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> PhotoDecision:
        """A decision as ``to_dict`` wrote it; undo steps of schema 1 say ``source`` ("user", ...)."""
        return cls(
            data.get("stars"),
            Flag(int(data.get("flag", 0))),
            data.get("label"),
            origin_of(data.get("origin", data.get("source"))),
            data.get("plan"),
        )


@dataclass(frozen=True)
class Change:
    """A photo whose decision a step changed (or an undo/redo restored); ``decision`` None: cleared.

    ``conflict``: in a write's result, this write replaced a decision another editor made after the
    revision the writer had ``seen``; in a ``Feed``, this change replaced one this handle made.
    """

    content_hash: str
    path: str
    decision: PhotoDecision | None
    conflict: bool = False


@dataclass(frozen=True)
class Feed:
    """What other handles changed after a revision: ``changes`` (latest state per photo) up to
    ``revision``; ``complete`` False when the reader was so far behind that older entries were pruned
    (reload everything shown)."""

    revision: int
    changes: list[Change]
    complete: bool = True


class _Base(DeclarativeBase):
    """Metadata of the decision tables only; the cache's tables stay the cache's."""


class _DecisionRow(_Base):
    __tablename__ = "decisions"

    content_hash: Mapped[str] = mapped_column(String(40), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    stars: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flag: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the column keeps its schema-1 name, so a damaged file's rows are salvaged whatever its version
    origin: Mapped[str] = mapped_column("source", Text, default=Origin.PHOTOGRAPHER.value)
    updated_at: Mapped[float] = mapped_column(Float)
    plan: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_decisions_path", "path"),)


class _HistoryRow(_Base):
    """One photo's before/after in one undo step; ``undone`` rows are the redo stack."""

    __tablename__ = "decision_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    before_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    after_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    undone: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_decision_history_step", "step"),)


class _ChangeRow(_Base):
    """One photo changed by one write: the change feed (revisions grow with every write)."""

    __tablename__ = "decision_changes"

    revision: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    content_hash: Mapped[str] = mapped_column(String(40))
    writer: Mapped[str] = mapped_column(Text)
    overwrote: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_decision_changes_hash", "content_hash"), {"sqlite_autoincrement": True})


def _dump(decision: PhotoDecision | None) -> str | None:
    return None if decision is None else json.dumps(decision.to_dict(), separators=(",", ":"))


def _load(text: str | None) -> PhotoDecision | None:
    return None if text is None else PhotoDecision.from_dict(json.loads(text))


def _row_decision(row: _DecisionRow) -> PhotoDecision:
    return PhotoDecision(row.stars, Flag(row.flag), row.label, origin_of(row.origin), row.plan)


class DecisionStore(LibraryStore):
    """Per-photo decisions with a persistent, linear undo/redo history; thread- and process-safe.

    ``writer`` identifies this handle in the change feed (one per app window or CLI run). Paths are
    stored relative to this machine's named ``roots`` (``roots.FolderRoots``, by default from
    ``$HUMANAES_ROOTS``), so a shared library gives each machine the photo's path under its own mount.
    """

    component = DECISIONS_COMPONENT

    def __init__(
        self,
        path: str | os.PathLike[str] | ScoreCache | None = None,
        *,
        max_history: int = DEFAULT_MAX_HISTORY,
        roots: FolderRoots | None = None,
    ) -> None:
        if isinstance(path, ScoreCache):
            path = path.path
        self.max_history = max_history
        self.writer = uuid.uuid4().hex
        self.roots = roots if roots is not None else FolderRoots.from_environment()
        super().__init__(path)

    def _store_path(self, path: str) -> str:
        return encode_path(self.roots.to_stored(path))

    def _local_path(self, stored: str) -> str:
        return self.roots.to_local(decode_path(stored))

    # ---------------------------------------------------------------- reading

    def get(self, content_hash: str) -> PhotoDecision | None:
        """The photo's decision, or None when it has none."""
        return self.get_many([content_hash]).get(content_hash)

    def get_many(self, content_hashes: Iterable[str]) -> dict[str, PhotoDecision]:
        """Decisions of many photos; photos without one are absent."""
        wanted = list(dict.fromkeys(content_hashes))
        return self._read(lambda session: self._current(session, wanted))

    def all(self) -> dict[str, tuple[str, PhotoDecision]]:
        """Every stored decision with the last path it was seen at: content hash -> (path, decision)."""
        return self._read(
            lambda session: {
                r.content_hash: (self._local_path(r.path), _row_decision(r))
                for r in session.scalars(select(_DecisionRow))
            }
        )

    def count(self) -> int:
        return int(
            self._read(
                lambda session: session.execute(select(func.count()).select_from(_DecisionRow)).scalar_one()
            )
        )

    # ---------------------------------------------------------------- changing

    def apply(self, changes: Plan, description: str = "", *, seen: int | None = None) -> list[Change]:
        """Set (or clear, with None) the decisions of many photos as ONE undo step.

        ``changes`` are (content hash, current path, new decision). Photos whose decision does not
        actually change are left out of the step; returns what changed. A new step drops the redo stack.
        ``seen``: the feed revision the writer's view is based on (see ``Change.conflict``).
        """
        changes = list(changes)
        return self.amend([h for h, _, _ in changes], lambda _current: changes, description, seen=seen)

    def amend(
        self,
        content_hashes: Iterable[str],
        plan: Callable[[dict[str, PhotoDecision]], Plan],
        description: str = "",
        *,
        seen: int | None = None,
    ) -> list[Change]:
        """``apply`` the changes ``plan`` makes from the current decisions of ``content_hashes``, read
        inside the write transaction: a key press that sets the flag keeps the stars another editor set
        a moment ago, whatever process they were set in."""
        hashes = list(dict.fromkeys(content_hashes))

        def work(session: Session) -> list[Change]:
            self._serialise_decisions(session)
            wanted: dict[str, tuple[str, PhotoDecision | None]] = {}
            for content_hash, path, decision in plan(self._current(session, hashes)):
                wanted[content_hash] = (os.fspath(path), decision)
            return self._apply_in(session, wanted, description, seen) if wanted else []

        return self._write(work)

    def _apply_in(
        self,
        session: Session,
        wanted: dict[str, tuple[str, PhotoDecision | None]],
        description: str,
        seen: int | None,
    ) -> list[Change]:
        now = time.time()
        done: list[Change] = []
        current = self._current(session, list(wanted))
        others = self._changed_by_others(session, list(wanted), seen)
        history: list[dict] = []
        for content_hash, (path, decision) in wanted.items():
            before = current.get(content_hash)
            if before == decision:
                if decision is not None:  # unchanged, but remember where the photo is now
                    session.execute(
                        update(_DecisionRow)
                        .where(_DecisionRow.content_hash == content_hash)
                        .values(path=self._store_path(path))
                    )
                continue
            self._write_row(session, content_hash, path, decision, now)
            history.append(
                {
                    "content_hash": content_hash,
                    "path": self._store_path(path),
                    "before_json": _dump(before),
                    "after_json": _dump(decision),
                }
            )
            done.append(Change(content_hash, path, decision, conflict=content_hash in others))
        if history:
            session.execute(delete(_HistoryRow).where(_HistoryRow.undone == 1))
            step = (session.execute(select(func.max(_HistoryRow.step))).scalar_one() or 0) + 1
            for row in history:
                row.update(step=step, description=description, undone=0, created_at=now)
            session.execute(insert(_HistoryRow), history)
            self._prune(session, step)
            self._log_changes(session, done, others, now)
        return done

    def _update_fields(
        self, items: Iterable[tuple[str, str | os.PathLike[str]]], description: str, **fields: object
    ) -> list[Change]:
        items = list(items)

        def plan(current: dict[str, PhotoDecision]) -> Plan:
            return [(h, path, current.get(h, PhotoDecision()).by_photographer(**fields)) for h, path in items]

        return self.amend([h for h, _ in items], plan, description)

    def set_stars(
        self, items: Iterable[tuple[str, str | os.PathLike[str]]], stars: int | None
    ) -> list[Change]:
        """Keys 0-5: stars for the (content hash, path) items, one undo step; 0 means no stars."""
        return self._update_fields(items, f"{stars or 0} stars", stars=stars)

    def set_flag(self, items: Iterable[tuple[str, str | os.PathLike[str]]], flag: Flag) -> list[Change]:
        """Keys P / X / U: pick, reject or unflag the items, one undo step."""
        return self._update_fields(items, Flag(flag).name.lower(), flag=Flag(flag))

    def set_label(
        self, items: Iterable[tuple[str, str | os.PathLike[str]]], label: str | None
    ) -> list[Change]:
        """Colour label ("Green", ...; None removes it), one undo step."""
        return self._update_fields(items, f"label {label or 'none'}", label=label or None)

    # ---------------------------------------------------------------- change feed

    def revision(self) -> int:
        """The library's latest decision revision (0 before the first change): where a reader starts."""
        return self._read(
            lambda session: session.execute(select(func.max(_ChangeRow.revision))).scalar_one() or 0
        )

    def changes_since(self, revision: int) -> Feed:
        """What other handles (other windows, CLIs, machines) changed after ``revision``: the current
        decision of each photo they changed, in one short read; poll it (it is an index range scan)."""

        def read(session: Session) -> Feed:
            newest = session.execute(select(func.max(_ChangeRow.revision))).scalar_one() or 0
            if newest <= revision:
                return Feed(max(newest, revision), [])
            oldest = session.execute(select(func.min(_ChangeRow.revision))).scalar_one()
            rows = session.execute(
                select(_ChangeRow.content_hash, _ChangeRow.writer, _ChangeRow.overwrote)
                .where(_ChangeRow.revision > revision, _ChangeRow.revision <= newest)
                .order_by(_ChangeRow.revision)
            ).all()
            latest: dict[str, tuple[str, str | None]] = {}
            for content_hash, writer, overwrote in rows:
                latest.pop(content_hash, None)  # keep the photos in the order of their last change
                latest[content_hash] = (writer, overwrote)
            theirs = [h for h, (writer, _) in latest.items() if writer != self.writer]
            rows_now = self._rows(session, theirs)
            changes = [
                Change(
                    h,
                    self._local_path(rows_now[h].path) if h in rows_now else "",
                    _row_decision(rows_now[h]) if h in rows_now else None,
                    conflict=latest[h][1] == self.writer,
                )
                for h in theirs
            ]
            return Feed(newest, changes, complete=oldest is not None and oldest <= revision + 1)

        return self._read(read)

    # ---------------------------------------------------------------- undo / redo

    def can_undo(self) -> bool:
        return self._edge_step(undone=False) is not None

    def can_redo(self) -> bool:
        return self._edge_step(undone=True) is not None

    def undo_description(self) -> str | None:
        """What ``undo()`` would undo ("reject", "auto-cull ..."), for an Edit menu; None: nothing."""
        return self._description(self._edge_step(undone=False))

    def redo_description(self) -> str | None:
        return self._description(self._edge_step(undone=True))

    def undo(self) -> list[Change]:
        """Undo the latest step; returns the restored decisions (empty when there is nothing to undo)."""
        return self._travel(undone=False)

    def redo(self) -> list[Change]:
        """Redo the step undone last; returns the re-applied decisions."""
        return self._travel(undone=True)

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _rows(session: Session, hashes: Sequence[str]) -> dict[str, _DecisionRow]:
        found: dict[str, _DecisionRow] = {}
        for chunk in chunks(hashes):
            for row in session.scalars(select(_DecisionRow).where(_DecisionRow.content_hash.in_(chunk))):
                found[row.content_hash] = row
        return found

    @classmethod
    def _current(cls, session: Session, hashes: Sequence[str]) -> dict[str, PhotoDecision]:
        return {h: _row_decision(row) for h, row in cls._rows(session, hashes).items()}

    def _changed_by_others(self, session: Session, hashes: Sequence[str], seen: int | None) -> dict[str, str]:
        """Photos among ``hashes`` another handle changed after revision ``seen``: hash -> that writer."""
        if seen is None:
            return {}
        found: dict[str, str] = {}
        for chunk in chunks(hashes):
            rows = session.execute(
                select(_ChangeRow.content_hash, _ChangeRow.writer)
                .where(
                    _ChangeRow.revision > seen,
                    _ChangeRow.writer != self.writer,
                    _ChangeRow.content_hash.in_(chunk),
                )
                .order_by(_ChangeRow.revision)
            )
            found.update({content_hash: writer for content_hash, writer in rows})
        return found

    def _log_changes(
        self, session: Session, changes: Sequence[Change], others: Mapping[str, str], now: float
    ) -> None:
        """Append the feed rows of one write and drop the oldest beyond ``FEED_KEPT``."""
        if not changes:
            return
        session.execute(
            insert(_ChangeRow),
            [
                {
                    "content_hash": c.content_hash,
                    "writer": self.writer,
                    "overwrote": others.get(c.content_hash),
                    "changed_at": now,
                }
                for c in changes
            ],
        )
        newest = session.execute(select(func.max(_ChangeRow.revision))).scalar_one() or 0
        if newest % 1000 < len(changes):  # now and then, not on every key press
            session.execute(delete(_ChangeRow).where(_ChangeRow.revision <= newest - FEED_KEPT))

    def _write_row(
        self, session: Session, content_hash: str, path: str, decision: PhotoDecision | None, now: float
    ) -> None:
        if decision is None:
            session.execute(delete(_DecisionRow).where(_DecisionRow.content_hash == content_hash))
            return
        values = {
            "content_hash": content_hash,
            "path": self._store_path(path),
            "stars": decision.stars,
            "flag": int(decision.flag),
            "label": decision.label,
            "source": decision.origin.value,  # the origin's column (see _DecisionRow)
            "plan": decision.plan,
            "updated_at": now,
        }
        stmt = self._insert(_DecisionRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_DecisionRow.content_hash],
            set_={k: stmt.excluded[k] for k in values if k != "content_hash"},
        )
        session.execute(stmt)

    def _edge_step(self, *, undone: bool) -> int | None:
        return self._read(lambda session: self._edge_step_in(session, undone=undone))

    @staticmethod
    def _edge_step_in(session: Session, *, undone: bool) -> int | None:
        # undo takes the newest applied step, redo the oldest undone one
        agg = func.min if undone else func.max
        return session.execute(
            select(agg(_HistoryRow.step)).where(_HistoryRow.undone == int(undone))
        ).scalar_one()

    def _description(self, step: int | None) -> str | None:
        if step is None:
            return None
        return self._read(
            lambda session: session.execute(
                select(_HistoryRow.description).where(_HistoryRow.step == step).limit(1)
            ).scalar_one_or_none()
        )

    def _travel(self, *, undone: bool) -> list[Change]:
        return self._write(lambda session: self._travel_in(session, undone=undone))

    def _travel_in(self, session: Session, *, undone: bool) -> list[Change]:
        self._serialise_decisions(session)
        now = time.time()
        step = self._edge_step_in(session, undone=undone)
        if step is None:
            return []
        rows = session.scalars(select(_HistoryRow).where(_HistoryRow.step == step).order_by(_HistoryRow.id))
        changes: list[Change] = []
        for row in rows:
            target = _load(row.after_json if undone else row.before_json)
            path = self._local_path(row.path)
            self._write_row(session, row.content_hash, path, target, now)
            changes.append(Change(row.content_hash, path, target))
        session.execute(update(_HistoryRow).where(_HistoryRow.step == step).values(undone=0 if undone else 1))
        self._log_changes(session, changes, {}, now)
        return changes

    def _prune(self, session: Session, newest: int) -> None:
        oldest_kept = newest - self.max_history + 1
        if oldest_kept > 1:
            session.execute(delete(_HistoryRow).where(_HistoryRow.step < oldest_kept))
