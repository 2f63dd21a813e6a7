"""`python -m services.triage.retriage`: re-run the current rules over triage's stored history.

Replays the accepted log in the order triage first handled it, linking each report to the ones
before it exactly as the live handler did, so unchanged rules give unchanged results. Every stored
classification that differs is updated; an ``IncidentRetriaged`` event (previous and current
classification) is staged in the outbox only when the outcome changed, not just the wording or
the version stamp. The running triage service's relay publishes them. Settings come from the
``TRIAGE_*`` environment, as for the service.

Built for a million stored incidents in a few minutes, in bounded memory, with two processes:
this one reads the log in pages with SQLAlchemy Core (JSON text, no ORM objects), writes what
differs with one executemany per page and stages the events in the same transaction; a forked one
runs the rules a page ahead. The facts later reports link to stay in the rules process's memory
for recent reports whose victim or place comes up again in the store; the rest move to a scratch
SQLite database on disk (gone when the run ends) and are looked up there whenever a report could
still link to them, so results are those of a replay with every fact in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import multiprocessing
import queue
import resource
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Text, bindparam, cast, event, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.triage import domain, store
from services.triage.handlers import kept_payload, triage_accepted
from services.triage.settings import TriageSettings
from shared.clock import Clock, system_clock
from shared.contracts import Classification, IncidentAccepted, IncidentRetriaged
from shared.db import EncodedJSON, create_tables, make_engine, session_factory, table_of
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord, add_events

SOURCE = "/dcsp/triage"  # the triage service's CloudEvents source: consumers dedupe by source and id
_WORDING = frozenset({"rules_version", "reasons", "explanations"})
# Facts kept in memory at most (about 500 bytes each), of the latest reports whose victim or place
# comes up again; the rest go to the spill on disk. Exact either way: only the lookups' speed differs.
HISTORY_IN_MEMORY = 40_000
PROGRESS_LINE_SECONDS = 5.0  # a plain progress line this often when not on a terminal
_TRIM_EVERY_PAGES = 10  # pages between returning freed memory to the system
_BUSY_TIMEOUT_MS = 60_000
_WAL_CHECKPOINT_PAGES = 16_000  # 64 MB of WAL between checkpoints (SQLite's default is 1,000)


def outcome(c: Classification) -> dict[str, Any]:
    """What a classification decides, without its wording or version stamp."""
    return c.model_dump(mode="json", exclude=set(_WORDING))


@dataclass
class RetriageReport:
    incidents: int = 0
    updated: int = 0
    changed: int = 0
    seconds: float = 0.0
    rules_peak_rss_mb: float = 0.0  # of the process that ran the rules

    @property
    def rate(self) -> float:
        return self.incidents / self.seconds if self.seconds > 0 else 0.0


_LOG_TABLE, _TRIAGED_TABLE = table_of(store.AcceptedLog), table_of(store.TriagedIncident)
_LOG, _TRIAGED = _LOG_TABLE.c, _TRIAGED_TABLE.c
# One page of the log in triage's order, with the stored classification as its JSON text.
_PAGE = (
    select(
        _LOG.seq,
        _LOG.incident_id,
        cast(_LOG.accepted, Text),
        cast(_TRIAGED.classification, Text),
        _TRIAGED.victim_key,
        _TRIAGED.place_key,
    )
    .join_from(_LOG_TABLE, _TRIAGED_TABLE, _TRIAGED.incident_id == _LOG.incident_id)
    .where(_LOG.seq > bindparam("after"))
    .order_by(_LOG.seq)
    .limit(bindparam("page"))
)
_UPDATE_TRIAGED = (
    update(_TRIAGED_TABLE)
    .where(_TRIAGED.incident_id == bindparam("b_incident_id"))
    .values(
        classification=bindparam("b_classification", type_=EncodedJSON()),
        rules_version=bindparam("b_rules_version"),
        risk_tier=bindparam("b_risk_tier"),
        asb_qualifier=bindparam("b_asb_qualifier"),
        violence_or_criminality=bindparam("b_violence_or_criminality"),
        kind=bindparam("b_kind"),
        hate_incident=bindparam("b_hate_incident"),
        root_id=bindparam("b_root_id"),
    )
)
_UPDATE_LOG = (
    update(_LOG_TABLE)
    .where(_LOG.incident_id == bindparam("b_incident_id"))
    .values(accepted=bindparam("b_accepted", type_=EncodedJSON()))
)

_STILL_STORED = select(_TRIAGED.incident_id).where(_TRIAGED.incident_id.in_(bindparam("ids", expanding=True)))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class _Spill:
    """Facts moved out of memory, in a private SQLite database on disk that vanishes when closed:
    one row per fact, found by victim or by place, filtered by the handler's two time tests."""

    _COLUMNS = (
        "incident_id, partner, victim_key, place_key, complainant_key, reported, occurred, kind, hate_incident, root_id"
    )

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.executescript(
            """
            PRAGMA journal_mode=OFF;
            PRAGMA synchronous=OFF;
            PRAGMA cache_size=-2000;
            CREATE TABLE facts (
                incident_id BLOB NOT NULL, partner TEXT NOT NULL, victim_key TEXT, place_key TEXT,
                complainant_key TEXT NOT NULL, reported INTEGER NOT NULL, occurred INTEGER NOT NULL,
                kind TEXT NOT NULL, hate_incident INTEGER NOT NULL, root_id BLOB NOT NULL
            );
            CREATE INDEX facts_victim ON facts (victim_key);
            CREATE INDEX facts_place ON facts (place_key);
            """
        )

    def add(self, facts: Iterable[domain.ReportFacts]) -> None:
        rows = [
            (
                f.incident_id.bytes,
                f.partner,
                f.victim_key,
                f.place_key,
                f.complainant_key,
                _micros(f.reported_at),
                _micros(f.occurred_at),
                f.kind,
                f.hate_incident,
                f.root_id.bytes,
            )
            for f in facts
        ]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO facts VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        self._db.execute("COMMIT")

    def around(
        self, victim_key: str | None, place_key: str | None, reported: tuple[int, int], occurred: tuple[int, int]
    ) -> list[domain.ReportFacts]:
        found: dict[bytes, domain.ReportFacts] = {}
        when = "(reported BETWEEN ? AND ? OR occurred BETWEEN ? AND ?)"
        for column, key in (("victim_key", victim_key), ("place_key", place_key)):
            if key is None:
                continue
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM facts WHERE {column} = ? AND {when}", (key, *reported, *occurred)
            )
            for iid, partner, victim, place, complainant, rep, occ, kind, hate, root in rows:
                found[iid] = domain.ReportFacts(
                    incident_id=uuid.UUID(bytes=iid),
                    partner=partner,
                    victim_key=victim,
                    place_key=place,
                    complainant_key=complainant,
                    reported_at=_EPOCH + timedelta(microseconds=rep),
                    occurred_at=_EPOCH + timedelta(microseconds=occ),
                    kind=kind,
                    hate_incident=bool(hate),
                    root_id=uuid.UUID(bytes=root),
                )
        return list(found.values())

    def close(self) -> None:
        self._db.close()


class _Bloom:
    """A set of keys in ten bits a key that may answer yes for a key never added (about 1 in 100),
    never no for one that was: here a wrong yes only costs a needless lookup. Within one process."""

    def __init__(self, capacity: int) -> None:
        self._bits = max(1 << 16, 10 * capacity)
        self._table = bytearray(self._bits // 8 + 1)

    def _positions(self, key: str) -> tuple[int, int, int, int, int]:
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        h1, h2, bits = h & 0xFFFFFFFF, (h >> 32) | 1, self._bits
        return h1 % bits, (h1 + h2) % bits, (h1 + 2 * h2) % bits, (h1 + 3 * h2) % bits, (h1 + 4 * h2) % bits

    def add(self, key: str) -> None:
        table = self._table
        for p in self._positions(key):
            table[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str | None) -> bool:
        if key is None:
            return False
        table = self._table
        for p in self._positions(key):
            if not table[p >> 3] & (1 << (p & 7)):
                return False
        return True


_Kept = domain.ReportFacts | list[domain.ReportFacts]  # one fact under a key, or several in replay order


def _forget(index: dict[str, _Kept], key: str, f: domain.ReportFacts) -> None:
    kept = index[key]
    if isinstance(kept, list):
        kept.pop(next(i for i, k in enumerate(kept) if k is f))
        if len(kept) == 1:
            index[key] = kept[0]
    else:
        del index[key]


class _History:
    """Facts of the reports replayed so far, by victim and by place, as the handler's query sees them:
    same victim or place, reported within the repeat window before, or occurring close enough to be
    the same incident (reports outside both tests cannot link, so leaving them out changes nothing).

    Facts stay in memory while a later report may well link to them: their victim or place comes
    up again in the store, up to ``in_memory`` of the latest. Every other fact goes to the spill,
    and every lookup whose key has a fact there asks the spill too: exact either way.
    """

    def __init__(self, settings: TriageSettings, in_memory: int, expected: int) -> None:
        self.window = timedelta(days=settings.repeat_window_days)
        self.same_incident = timedelta(hours=settings.duplicate_window_hours)
        self.in_memory = max(1, in_memory)
        self.by_victim: dict[str, _Kept] = {}
        self.by_place: dict[str, _Kept] = {}
        self.order: deque[domain.ReportFacts] = deque()  # kept in memory, oldest first
        self.leaving: list[domain.ReportFacts] = []  # bound for the spill at the next trim
        self.kinds: dict[str, str] = {}
        self.spill: _Spill | None = None
        # Facts go to the spill two ways: at once when their keys come up nowhere else in the
        # store, or when the oldest of those kept in memory make room. A lookup asks the spill
        # when a key may have a fact there of the first kind, or of the second kind recent enough.
        self.spilled_once = _Bloom(2 * expected)
        self.spilled_old = _Bloom(2 * expected)
        self.spilled_reported: datetime | None = None  # latest report time among facts that made room
        self.spilled_occurred: datetime | None = None
        self.spill_lookups = 0

    def around(
        self, victim_key: str | None, place_key: str | None, reported_at: datetime, occurred_at: datetime
    ) -> list[domain.ReportFacts]:
        keys = [k for k in (victim_key, place_key) if k is not None]
        if not keys:
            return []
        since, lo, hi = reported_at - self.window, occurred_at - self.same_incident, occurred_at + self.same_incident
        found: dict[uuid.UUID, domain.ReportFacts] = {}
        for index, key in ((self.by_victim, victim_key), (self.by_place, place_key)):
            kept = index.get(key) if key is not None else None
            if kept is None:
                continue
            for f in kept if isinstance(kept, list) else (kept,):
                if since <= f.reported_at <= reported_at or lo <= f.occurred_at <= hi:
                    found[f.incident_id] = f
        if self.spill is not None and (
            any(k in self.spilled_once for k in keys)
            or (
                self.spilled_reported is not None
                and self.spilled_occurred is not None
                and (since <= self.spilled_reported or lo <= self.spilled_occurred)
                and any(k in self.spilled_old for k in keys)
            )
        ):
            self.spill_lookups += 1
            window = (_micros(since), _micros(reported_at))
            for f in self.spill.around(victim_key, place_key, window, (_micros(lo), _micros(hi))):
                found.setdefault(f.incident_id, f)
        return list(found.values())

    def add(self, facts: domain.ReportFacts, repeated: bool = True) -> None:
        """Add a report's facts; ``repeated`` when its victim or place comes up again in the store."""
        if repeated:
            facts = self._shared(facts)
            self.order.append(facts)
        else:
            self.leaving.append(facts)
        for index, key in ((self.by_victim, facts.victim_key), (self.by_place, facts.place_key)):
            if key is None:
                continue
            kept = index.get(key)
            if kept is None:
                index[key] = facts
            elif isinstance(kept, list):
                kept.append(facts)
            else:
                index[key] = [kept, facts]

    def _shared(self, f: domain.ReportFacts) -> domain.ReportFacts:
        # Facts kept for long share one copy of each repeated string (a victim's key, a place's).
        return domain.ReportFacts(
            incident_id=f.incident_id,
            partner=sys.intern(f.partner),
            victim_key=None if f.victim_key is None else sys.intern(f.victim_key),
            place_key=None if f.place_key is None else sys.intern(f.place_key),
            complainant_key=sys.intern(f.complainant_key),
            reported_at=f.reported_at,
            occurred_at=f.occurred_at,
            kind=self.kinds.setdefault(f.kind, f.kind),
            hate_incident=f.hate_incident,
            root_id=f.root_id,
        )

    def trim(self) -> None:
        """Move to the spill the facts bound for it and the oldest beyond the in-memory allowance."""
        once, self.leaving = self.leaving, []
        old = [self.order.popleft() for _ in range(len(self.order) - self.in_memory)]
        if not once and not old:
            return
        for moved, bloom in ((once, self.spilled_once), (old, self.spilled_old)):
            for f in moved:
                for index, key in ((self.by_victim, f.victim_key), (self.by_place, f.place_key)):
                    if key is not None:
                        _forget(index, key, f)
                        bloom.add(key)
        for f in old:
            if self.spilled_reported is None or f.reported_at > self.spilled_reported:
                self.spilled_reported = f.reported_at
            if self.spilled_occurred is None or f.occurred_at > self.spilled_occurred:
                self.spilled_occurred = f.occurred_at
        if self.spill is None:
            self.spill = _Spill()
        self.spill.add(once + old)

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()


# What the rules say about one incident, in a shape cheap to pass between processes: the current
# classification as JSON, the linking facts triage stores (root id None when the incident is its
# own root) and, when the rules strip personal data, the accepted event as it may be kept.
_Verdict = tuple[bytes, str, bool, bytes | None, bytes | None]


@dataclass(frozen=True)
class _RulesSetup:
    settings: TriageSettings
    in_memory: int  # facts kept in memory at most
    expected: int  # incidents in the store


class _Rules:
    """The rules side of the replay: the history of facts and the rules, one page at a time."""

    def __init__(self, setup: _RulesSetup) -> None:
        self.settings = setup.settings
        self.history = _History(setup.settings, setup.in_memory, setup.expected)

    def page(self, accepted_page: list[tuple[str, bool]]) -> list[_Verdict]:
        """Verdicts for a page of (accepted event JSON, whether its victim or place comes up again)."""
        history, settings = self.history, self.settings
        verdicts: list[_Verdict] = []
        for accepted_json, repeated in accepted_page:
            accepted = IncidentAccepted.model_validate_json(accepted_json)
            details = accepted.report
            earlier = history.around(
                accepted.victim_key,
                domain.place_key(details.location),
                details.reported_at,
                details.occurred_at or details.reported_at,
            )
            triaged = triage_accepted(accepted, earlier, settings)
            facts = triaged.facts
            history.add(facts, repeated)
            verdicts.append(
                (
                    triaged.classification.model_dump_json().encode(),
                    facts.kind,
                    facts.hate_incident,
                    None if facts.root_id == accepted.incident_id else facts.root_id.bytes,
                    # newer rules may strip what older ones kept, never the reverse
                    kept_payload(accepted, triaged).model_dump_json().encode() if triaged.minimised else None,
                )
            )
        history.trim()
        return verdicts

    def close(self) -> None:
        self.history.close()


def _rules_process(conn: Connection) -> None:
    """The rules in their own process (the store side runs in the parent): the setup, then pages in
    and verdicts out."""
    # Pages are taken off the pipe as they come, so the parent's send of the next page and this
    # side's send of verdicts never wait on each other.
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def take() -> None:
        try:
            while True:
                message = conn.recv()
                inbox.put(message)
                if message is None:
                    return
        except (EOFError, OSError):
            inbox.put(None)

    threading.Thread(target=take, name="retriage-pages", daemon=True).start()
    setup = inbox.get()
    if setup is None:
        conn.close()
        return
    rules = _Rules(setup)
    try:
        pages = 0
        while (page := inbox.get()) is not None:
            try:
                verdicts = rules.page(page)
            except Exception:  # the parent raises it: a bad stored event stops the run
                conn.send(("error", traceback.format_exc()))
                return
            conn.send(("page", verdicts))
            pages += 1
            if pages % _TRIM_EVERY_PAGES == 0:
                _release_free_memory()
        conn.send(("done", _peak_rss_mb(), rules.history.spill_lookups))
    except (BrokenPipeError, EOFError):
        pass  # the parent has gone: nothing to report to
    finally:
        rules.close()
        conn.close()


class RulesProcessError(RuntimeError):
    """The rules process failed or went away."""


class _RulesInProcess:
    def __init__(self) -> None:
        self._rules: _Rules | None = None
        self._queued: deque[list[tuple[str, bool]]] = deque()
        self.rules_peak_rss_mb = 0.0

    def start(self, setup: _RulesSetup) -> None:
        self._rules = _Rules(setup)

    def send(self, accepted_page: list[tuple[str, bool]]) -> None:
        self._queued.append(accepted_page)

    def receive(self) -> list[_Verdict]:
        if self._rules is None:
            raise RulesProcessError("the rules were not started")
        return self._rules.page(self._queued.popleft())

    def close(self, *, finished: bool = True) -> None:
        if self._rules is not None:
            self._rules.close()
        self.rules_peak_rss_mb = _peak_rss_mb()


class _RulesWorker:
    """The rules in a child process, fed a page ahead so they never wait for the store."""

    def __init__(self) -> None:
        # Forked first thing, before any database connection exists, the child starts at once
        # with the modules imported; a process already running threads (whose locks a fork could
        # copy mid-use) or without fork spawns a fresh interpreter instead.
        single_threaded = threading.active_count() == 1
        context = (
            multiprocessing.get_context("fork")
            if single_threaded and "fork" in multiprocessing.get_all_start_methods()
            else multiprocessing.get_context("spawn")
        )
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_rules_process, args=(child,), name="retriage-rules", daemon=True)
        self._process.start()
        child.close()
        self.rules_peak_rss_mb = 0.0

    def start(self, setup: _RulesSetup) -> None:
        self._conn.send(setup)

    def send(self, accepted_page: list[tuple[str, bool]]) -> None:
        self._conn.send(accepted_page)

    def _receive(self) -> Any:
        try:
            message = self._conn.recv()
        except EOFError:
            raise RulesProcessError(f"the rules process ended (exit code {self._process.exitcode})") from None
        if message[0] == "error":
            raise RulesProcessError(message[1])
        return message

    def receive(self) -> list[_Verdict]:
        _kind, verdicts = self._receive()
        return list(verdicts)

    def close(self, *, finished: bool = True) -> None:
        """Stop the rules process: after its last page it reports its peak memory; cut short, it is killed."""
        try:
            if finished and self._process.is_alive():
                self._conn.send(None)
                kind, *rest = self._receive()
                if kind == "done":
                    self.rules_peak_rss_mb = rest[0]
        except (OSError, RulesProcessError):
            pass
        finally:
            self._conn.close()
            if not finished:
                self._process.kill()
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


_Rows = Sequence[Row[int, uuid.UUID, str, str, str | None, str | None]]


@dataclass
class _Store:
    """The store side of the replay: reads pages, writes what differs, stages events."""

    clock: Clock
    report: RetriageReport
    dry_run: bool

    async def read(self, session: AsyncSession, after: int, size: int) -> _Rows:
        return (await session.execute(_PAGE, {"after": after, "page": size})).all()

    async def write(self, session: AsyncSession, rows: _Rows, verdicts: list[_Verdict]) -> None:
        report = self.report
        events: list[IncidentRetriaged] = []
        updates: list[dict[str, Any]] = []
        minimised: list[dict[str, Any]] = []
        for (_seq, incident_id, _accepted, stored_json, _victim, _place), (new_json, kind, hate, root, kept) in zip(
            rows, verdicts, strict=True
        ):
            report.incidents += 1
            if new_json == stored_json.encode():
                continue
            stored, new = orjson.loads(stored_json), orjson.loads(new_json)
            if new == stored:  # the same classification, written differently
                continue
            report.updated += 1
            if not _same_outcome(stored, new):
                previous = Classification.model_validate(stored)
                current = Classification.model_validate_json(new_json)
                if outcome(previous) != outcome(current):
                    report.changed += 1
                    events.append(
                        IncidentRetriaged(
                            incident_id=incident_id, previous=previous, current=current, retriaged_at=self.clock()
                        )
                    )
            if self.dry_run:
                continue
            updates.append(
                {
                    "b_incident_id": incident_id,
                    "b_classification": new_json.decode(),
                    "b_rules_version": new["rules_version"],
                    "b_risk_tier": new["risk_tier"],
                    "b_asb_qualifier": new["asb_qualifier"],
                    "b_violence_or_criminality": new["violence_or_criminality"],
                    "b_kind": kind,
                    "b_hate_incident": hate,
                    "b_root_id": incident_id if root is None else uuid.UUID(bytes=root),
                }
            )
            if kept is not None:
                minimised.append({"b_incident_id": incident_id, "b_accepted": kept.decode()})
        if self.dry_run or not updates:
            return
        await session.execute(_UPDATE_TRIAGED, updates)
        if minimised:
            await session.execute(_UPDATE_LOG, minimised)
        # Read a page ahead, an incident may have been erased (or purged) since: holding the write
        # lock now, make sure each still exists before saying its outcome changed.
        ids = [u["b_incident_id"] for u in updates]
        there = set((await session.execute(_STILL_STORED, {"ids": ids})).scalars())
        if len(there) < len(ids):
            gone = set(ids) - there
            report.updated -= len(gone)
            kept_events = [e for e in events if e.incident_id not in gone]
            report.changed -= len(events) - len(kept_events)
            events = kept_events
        add_events(session, SOURCE, events)


def _same_outcome(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    # ``new`` is a complete dump: a stored dict equal to it outside the wording is the same outcome.
    # Anything else (an older shape, defaults missing) is compared as ``outcome`` does, after validation.
    return stored.keys() == new.keys() and all(key in _WORDING or stored[key] == new[key] for key in new)


class _Progress:
    """A progress bar on a terminal; otherwise a plain line every few seconds (logs, a parent process)."""

    def __init__(self, total: int, show: bool, console: Console) -> None:
        self.total, self.show, self.console = total, show, console
        self.live = show and console.is_terminal
        self._bar = Progress(
            TextColumn("re-triage"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self._task = self._bar.add_task("re-triage", total=total)
        self._started = self._last = time.perf_counter()

    def update(self, done: int, *, final: bool = False) -> None:
        if self.live:
            self._bar.update(self._task, completed=done)
            return
        now = time.perf_counter()
        if self.show and (final or now - self._last >= PROGRESS_LINE_SECONDS):
            self._last = now
            rate = done / (now - self._started) if now > self._started else 0.0
            self.console.print(f"re-triage: {done}/{self.total} incidents ({rate:.0f}/s)", highlight=False)

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        with self._bar:
            yield self


def _sqlite_for_a_batch_job(dbapi_connection: Any, _record: Any) -> None:
    # A command may wait for the running service's write lock far longer than the service itself
    # waits for anyone; and a page writes megabytes, so checkpoint the WAL less often (fewer syncs).
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
    cursor.close()


async def _repeated_keys(session: AsyncSession, expected: int) -> _Bloom:
    """Victim and place keys stored for more than one incident: facts worth keeping in memory. A hint
    only (a key may be computed differently today): which facts stay in memory never changes a result."""
    repeated = _Bloom(expected)  # a repeated key takes two incidents or more: at most one per incident
    for column in (_TRIAGED.victim_key, _TRIAGED.place_key):
        stmt = select(column).where(column.is_not(None)).group_by(column).having(func.count() > 1)
        async for key in await session.stream_scalars(stmt):
            repeated.add(key)
    return repeated


async def retriage(
    settings: TriageSettings,
    *,
    clock: Clock = system_clock,
    batch_size: int = 1000,
    show_progress: bool = True,
    dry_run: bool = False,
    console: Console | None = None,
    history_in_memory: int = HISTORY_IN_MEMORY,
    rules_process: bool = True,
) -> RetriageReport:
    """Re-run the rules over the stored history; update what differs; stage events for changed outcomes."""
    console = console or Console(stderr=True)
    # The engine connects on first use, after the rules process is forked.
    engine = make_engine(settings.database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_for_a_batch_job)
    sessions = session_factory(engine)
    report = RetriageReport()
    rules = _RulesWorker() if rules_process else _RulesInProcess()
    try:
        await create_tables(engine, [OutboxRecord.__table__, ProcessedEvent.__table__, *store.TABLES])
        async with sessions() as session:
            total = int((await session.execute(select(func.count()).select_from(store.AcceptedLog))).scalar_one())
        started = time.perf_counter()
        async with sessions() as session:
            repeated = await _repeated_keys(session, total)
        rules.start(_RulesSetup(settings, history_in_memory, total))
        side = _Store(clock, report, dry_run)
        with _Progress(total, show_progress, console).running() as progress:
            # The rules work on the next page while this side writes the last one.
            in_flight: deque[_Rows] = deque()
            after = pages = 0
            while True:
                while len(in_flight) < 2 and after >= 0:
                    async with sessions() as session:
                        rows = await side.read(session, after, batch_size)
                    if not rows:
                        after = -1
                        break
                    rules.send([(row[2], row[4] in repeated or row[5] in repeated) for row in rows])
                    in_flight.append(rows)
                    after = rows[-1][0]
                if not in_flight:
                    break
                rows = in_flight.popleft()
                verdicts = rules.receive()
                async with sessions.begin() as session:
                    await side.write(session, rows, verdicts)
                progress.update(report.incidents)
                pages += 1
                if pages % _TRIM_EVERY_PAGES == 0:
                    _release_free_memory()
            progress.update(report.incidents, final=True)
        report.seconds = time.perf_counter() - started
    except BaseException:
        rules.close(finished=False)
        raise
    else:
        rules.close()
        report.rules_peak_rss_mb = rules.rules_peak_rss_mb
    finally:
        await engine.dispose()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.triage.retriage",
        description="Re-run the current triage rules over the stored history; emit IncidentRetriaged for "
        "changed outcomes (through the outbox; the triage service's relay publishes them).",
    )
    parser.add_argument("--database-url", help="triage's store (default: TRIAGE_DATABASE_URL or its default)")
    parser.add_argument("--batch-size", type=int, default=1000, help="incidents per transaction (default 1000)")
    parser.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size: must be at least 1")
    settings = TriageSettings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    console = Console(stderr=True)
    result = asyncio.run(
        retriage(
            settings,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
            dry_run=args.dry_run,
            console=console,
        )
    )
    if args.json:
        summary = {
            "incidents": result.incidents,
            "updated": result.updated,
            "changed": result.changed,
            "seconds": round(result.seconds, 3),
            "incidents_per_second": round(result.rate, 1),
            "rules_version": domain.RULES_VERSION,
            "dry_run": args.dry_run,
            "peak_rss_mb": round(max(_peak_rss_mb(), result.rules_peak_rss_mb), 1),
            "peak_rss_mb_store": round(_peak_rss_mb(), 1),
            "peak_rss_mb_rules": round(result.rules_peak_rss_mb, 1),
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return 0
    verb = "would change" if args.dry_run else "changed"
    print(
        f"re-triaged {result.incidents} incidents under rules {domain.RULES_VERSION} in {result.seconds:.1f} s "
        f"({result.rate:.0f} incidents/s): {result.updated} stored classifications differed, "
        f"{result.changed} outcomes {verb} (IncidentRetriaged {'not ' if args.dry_run else ''}staged)"
    )
    return 0


def _malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


# Pages of JSON text and the objects made from them come and go between the long-lived facts;
# glibc keeps the freed holes unless asked, and resident memory creeps up by tens of megabytes.
_release_free_memory = _malloc_trim()


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage, not inherited from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


if __name__ == "__main__":
    raise SystemExit(main())
