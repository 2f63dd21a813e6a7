"""Triage's store on the consumer's fast path: incidents triaged in a transaction are written when it
commits, and until then later messages of the same batch link to them exactly as the store would
answer. One batch gives what one transaction per message gives; a failed or rolled-back transaction
writes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.triage import domain, store
from services.triage.handlers import incident_accepted_handler, triage_accepted
from services.triage.settings import TriageSettings
from shared import topics
from shared.clock import FrozenClock
from shared.consumer import Received, ReliableConsumer
from shared.contracts import IncidentAccepted
from shared.db import create_tables, make_engine, session_factory
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord, OutboxRelay
from shared.settings import ReliabilitySettings
from tests.unit.test_triage_handler import NOW, accepted, received, settings_for, the_log

STORED = {
    "triaged_incidents": "SELECT * FROM triaged_incidents ORDER BY incident_id",
    "triage_accepted_log": "SELECT seq, incident_id, accepted FROM triage_accepted_log ORDER BY seq",
    "case_review_notices": "SELECT kind, notice_key, incident_id, qualifying_incident_ids, grounds, raised_at "
    "FROM case_review_notices ORDER BY id",
    "outbox": "SELECT topic, key, body FROM outbox ORDER BY id",
}
JSON_COLUMNS = {"classification", "accepted", "qualifying_incident_ids", "grounds"}


def stored(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row triage wrote, JSON columns parsed (the text may be spaced either way)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return {
            table: [
                {k: orjson.loads(row[k]) if k in JSON_COLUMNS else row[k] for k in row.keys()}
                for row in conn.execute(sql)
            ]
            for table, sql in STORED.items()
        }
    finally:
        conn.close()


async def open_store(settings: TriageSettings) -> AsyncEngine:
    engine = make_engine(settings.database_url)
    await create_tables(engine, [OutboxRecord.__table__, ProcessedEvent.__table__, *store.TABLES])
    return engine


def consume(db: Path, batches: Sequence[Sequence[Received]]) -> int:
    """Feed the batches through triage's reliable consumer (a batch of one is its own transaction);
    returns how many messages were dead-lettered."""

    async def run() -> int:
        settings = settings_for(db)
        engine = await open_store(settings)
        sessions = session_factory(engine)

        async def never_published(*_args: Any) -> Any:
            raise AssertionError("the relay is not running in this test")

        consumer = ReliableConsumer(
            service="triage",
            name="triage:accepted",
            source="/dcsp/triage",
            sessions=sessions,
            relay=OutboxRelay(sessions, never_published),
            reliability=ReliabilitySettings(max_attempts=1),
            handle=incident_accepted_handler(settings, FrozenClock(NOW)),
        )
        for batch in batches:
            await consumer.process_batch(batch)
        await engine.dispose()
        return consumer.dead_lettered

    return asyncio.run(run())


def in_offset(event: IncidentAccepted, hours: float) -> IncidentAccepted:
    """The same incident with its times written in another UTC offset."""
    zone = timezone(timedelta(hours=hours))
    report = event.report.model_copy(
        update={
            "reported_at": event.report.reported_at.astimezone(zone),
            "occurred_at": event.report.occurred_at.astimezone(zone) if event.report.occurred_at else None,
        }
    )
    return event.model_copy(update={"report": report})


def messages() -> list[Received]:
    """The handler test's log (a victim complaining three times, a duplicate across agencies, a hate
    incident), some times in other offsets, each incident re-published at once under a new event id."""
    log = [in_offset(e, 5.5) if n % 3 == 0 else e for n, e in enumerate(the_log())]
    out = []
    for n, event in enumerate(log):
        out.append(received(event, f"first-{n}", n))
        out.append(received(event, f"again-{n}", n))
    return out


def test_one_batch_stores_and_emits_what_one_transaction_per_message_does(tmp_path: Path) -> None:
    log = messages()
    consume(tmp_path / "each.db", [[m] for m in log])
    consume(tmp_path / "one.db", [log])
    consume(tmp_path / "threes.db", [log[i : i + 3] for i in range(0, len(log), 3)])
    each = stored(tmp_path / "each.db")
    # The Case Review notices need the earlier complaints of the same batch: linking really happened.
    assert len(each["case_review_notices"]) >= 2
    assert len(each["triaged_incidents"]) == len(each["triage_accepted_log"]) == len(log) // 2
    assert stored(tmp_path / "one.db") == each
    assert stored(tmp_path / "threes.db") == each


def test_a_failed_batch_writes_nothing_and_each_message_is_then_handled_once(tmp_path: Path) -> None:
    log = messages()
    poison = Received(topics.INCIDENTS_ACCEPTED, 0, 999, None, dict(log[0].headers, ce_id="poison"), b"{}")
    assert consume(tmp_path / "failed.db", [[*log[:9], poison, *log[9:]]]) == 1
    consume(tmp_path / "each.db", [[m] for m in log])
    failed, each = stored(tmp_path / "failed.db"), stored(tmp_path / "each.db")
    assert [r["topic"] for r in failed["outbox"]].count(topics.DEAD_LETTERS) == 1
    failed["outbox"] = [r for r in failed["outbox"] if r["topic"] != topics.DEAD_LETTERS]
    assert failed == each


WINDOW, SAME_INCIDENT = timedelta(days=180), timedelta(hours=24)


async def linked(session: AsyncSession, event: IncidentAccepted) -> list[domain.ReportFacts] | None:
    report = event.report
    return await store.reports_to_link(
        session,
        event.incident_id,
        event.victim_key,
        domain.place_key(report.location),
        report.reported_at,
        report.occurred_at or report.reported_at,
        WINDOW,
        SAME_INCIDENT,
    )


async def earlier(session: AsyncSession, event: IncidentAccepted) -> list[domain.ReportFacts]:
    report = event.report
    return await store.earlier_reports(
        session,
        event.victim_key,
        domain.place_key(report.location),
        report.reported_at,
        report.occurred_at or report.reported_at,
        WINDOW,
        SAME_INCIDENT,
    )


def complaints() -> tuple[IncidentAccepted, IncidentAccepted]:
    victim = {"name": "Jo Hart", "date_of_birth": "1969-03-03", "contact": "07700 900111"}
    where = {"address": "2 Lock Row", "uprn": "100023330002"}
    first, second = (
        accepted(
            {
                "partner": partner,
                "idempotency_key": f"jo-{n}",
                "reported_at": (NOW - timedelta(days=days)).astimezone(timezone(timedelta(hours=-5))).isoformat(),
                "location": where,
                "description": "Youths shouting and kicking the door",
                "victim": victim,
            }
        )
        for n, (partner, days) in enumerate((("housing", 20), ("csu", 1)))
    )
    return first, second


def test_staged_incidents_are_found_as_the_store_finds_them_once_written(tmp_path: Path) -> None:
    first, second = complaints()
    settings = settings_for(tmp_path / "t.db")

    async def run() -> tuple[list[Any], list[Any]]:
        engine = await open_store(settings)
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            triaged = triage_accepted(first, [], settings)
            await store.stage_triaged(session, first.model_dump_json(), triaged, [], NOW)
            before = [await linked(session, first), await linked(session, second), await earlier(session, second)]
        async with sessions.begin() as session:
            after = [await linked(session, first), await linked(session, second), await earlier(session, second)]
        await engine.dispose()
        return before, after

    before, after = asyncio.run(run())
    assert before[0] is None  # already triaged, though not yet written
    assert before[1] == before[2] != []
    facts = before[1][0]
    assert facts.incident_id == first.incident_id and facts.reported_at.tzinfo == UTC
    assert before == after


def test_staged_incidents_of_a_rolled_back_or_closed_transaction_are_never_written(tmp_path: Path) -> None:
    first, second = complaints()
    settings = settings_for(tmp_path / "t.db")

    async def run() -> None:
        engine = await open_store(settings)
        session = session_factory(engine)()
        for event, end in ((first, session.rollback), (second, session.close)):
            await store.stage_triaged(session, event.model_dump_json(), triage_accepted(event, [], settings), [], NOW)
            await end()
        await session.commit()  # the same session, in a new transaction
        await session.close()
        await engine.dispose()

    asyncio.run(run())
    assert stored(tmp_path / "t.db")["triaged_incidents"] == []
    assert stored(tmp_path / "t.db")["triage_accepted_log"] == []


def test_new_incident_ids_are_not_taken_for_the_stored_ones(tmp_path: Path) -> None:
    first, _second = complaints()
    settings = settings_for(tmp_path / "t.db")
    other = first.model_copy(update={"incident_id": uuid.uuid4()})

    async def run() -> list[domain.ReportFacts] | None:
        engine = await open_store(settings)
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            await store.stage_triaged(session, first.model_dump_json(), triage_accepted(first, [], settings), [], NOW)
        async with sessions.begin() as session:
            found = await linked(session, other)
        await engine.dispose()
        return found

    found = asyncio.run(run())
    assert found is not None and [f.incident_id for f in found] == [first.incident_id]
