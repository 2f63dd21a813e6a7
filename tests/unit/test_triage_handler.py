"""Triage's handler on a real SQLite store through the ReliableConsumer: the same event log gives
byte-identical outputs, ASB Case Review notices are raised once, a non-crime hate incident leaves
without personal data, and re-triage emits only changed outcomes."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from sqlalchemy import select

from demo import scenario
from services.intake.domain import accept
from services.triage import store
from services.triage.handlers import incident_accepted_handler
from services.triage.retriage import retriage
from services.triage.settings import TriageSettings
from shared import topics
from shared.clock import FrozenClock
from shared.consumer import Received, ReliableConsumer
from shared.contracts import Channel, IncidentAccepted, ReportDetails
from shared.db import create_tables, make_engine, session_factory
from shared.envelope import encode_body, new_envelope
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord, OutboxRelay
from shared.settings import ReliabilitySettings

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
Output = tuple[str, str | None, bytes]


def settings_for(db: Path, **overrides: Any) -> TriageSettings:
    return TriageSettings(database_url=f"sqlite+aiosqlite:///{db}", **overrides)


def accepted(body: dict[str, Any]) -> IncidentAccepted:
    return accept(ReportDetails.model_validate(body), Channel.KAFKA, NOW)


def received(event: IncidentAccepted, event_id: str | None = None, offset: int = 0) -> Received:
    headers = new_envelope(event, "/dcsp/intake", event_id=event_id or str(uuid.uuid4()), now=NOW).headers()
    return Received(topics.INCIDENTS_ACCEPTED, 0, offset, None, headers, encode_body(event))


async def run_log(settings: TriageSettings, messages: Sequence[Received]) -> list[Output]:
    """Feed messages through triage's reliable consumer on a fresh store; the outbox in order."""
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    await create_tables(engine, [OutboxRecord.__table__, ProcessedEvent.__table__, *store.TABLES])

    async def never_published(*_args: Any) -> Any:
        raise AssertionError("the relay is not running in this test")

    consumer = ReliableConsumer(
        service="triage",
        name="triage:accepted",
        source="/dcsp/triage",
        sessions=sessions,
        relay=OutboxRelay(sessions, never_published),
        reliability=ReliabilitySettings(),
        handle=incident_accepted_handler(settings, FrozenClock(NOW)),
    )
    for message in messages:
        await consumer(message)
    async with sessions() as session:
        rows = (await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
    await engine.dispose()
    return [(row.topic, row.key, row.body) for row in rows]


def the_log() -> list[IncidentAccepted]:
    """The demo day plus a victim complaining three times, a duplicate across agencies and a hate incident."""
    items = [accepted(item.report) for item in scenario.build("replay", now=NOW)]
    victim = {"name": "Kim Lowe", "date_of_birth": "1977-07-07", "contact": "07700 900456"}
    where = {"address": "9 Canal Walk", "uprn": "100023330009"}
    for n, (partner, days) in enumerate((("housing", 60), ("csu", 30), ("police", 0))):
        items.append(
            accepted(
                {
                    "partner": partner,
                    "idempotency_key": f"kim-{n}",
                    "reported_at": (NOW - timedelta(days=days)).isoformat(),
                    "location": where,
                    "description": "Youths kicking a football at her windows and swearing",
                    "victim": victim,
                }
            )
        )
    items.append(
        accepted(
            {
                "partner": "housing",
                "idempotency_key": "dup-1",
                "reported_at": (NOW + timedelta(hours=2)).isoformat(),
                "location": where,
                "description": "Youths kicking a football at the windows",
            }
        )
    )
    items.append(
        accepted(
            {
                "partner": "resident",
                "idempotency_key": "nchi-1",
                "reported_at": NOW.isoformat(),
                "location": {"address": "4 Quay St", "postcode": "RV3 3QS"},
                "description": "Neighbour made a racist remark about us in the car park",
                "victim": {"name": "Ana Costa", "date_of_birth": "1990-02-02", "contact": "ana@example.org"},
            }
        )
    )
    return items


def test_same_event_log_twice_gives_byte_identical_outputs(tmp_path: Path) -> None:
    log = the_log()
    first = asyncio.run(run_log(settings_for(tmp_path / "one.db"), [received(e) for e in log]))
    # The second run also sees every message redelivered (same event id) and re-published (new id).
    messages = []
    for n, event in enumerate(log):
        ce_id = str(uuid.uuid4())
        messages += [received(event, ce_id, n), received(event, ce_id, n), received(event, offset=n)]
    second = asyncio.run(run_log(settings_for(tmp_path / "two.db"), messages))
    assert len(first) > len(log)  # triaged events plus alerts and Case Review notices
    assert first == second


def bodies(outputs: list[Output], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(body) for t, _key, body in outputs if t == topic]


def test_case_review_prompt_at_two_and_eligibility_at_three_once_each(tmp_path: Path) -> None:
    outputs = asyncio.run(run_log(settings_for(tmp_path / "t.db"), [received(e) for e in the_log()]))
    kim = [e for e in the_log() if e.report.idempotency_key.startswith("kim-")]
    prompts = [p for p in bodies(outputs, topics.CASE_REVIEW_PROMPTS) if p["victim_key"] == kim[0].victim_key]
    eligible = [p for p in bodies(outputs, topics.CASE_REVIEW_ELIGIBILITY) if p["victim_key"] == kim[0].victim_key]
    assert [p["incident_id"] for p in prompts] == [str(kim[1].incident_id)]
    assert prompts[0]["qualifying_incident_ids"] == [str(kim[0].incident_id), str(kim[1].incident_id)]
    assert [p["incident_id"] for p in eligible] == [str(kim[2].incident_id)]
    assert eligible[0]["complaints_in_window"] == 3
    assert any("3 reports about this victim" in g for g in eligible[0]["grounds"])


def test_duplicate_from_another_agency_is_linked_and_counted_once(tmp_path: Path) -> None:
    outputs = asyncio.run(run_log(settings_for(tmp_path / "t.db"), [received(e) for e in the_log()]))
    (dup,) = [e for e in the_log() if e.report.idempotency_key == "dup-1"]
    (kim_police,) = [e for e in the_log() if e.report.idempotency_key == "kim-2"]
    (triaged,) = [b for b in bodies(outputs, topics.INCIDENTS_TRIAGED) if b["incident_id"] == str(dup.incident_id)]
    (dup_reason,) = [r for r in triaged["classification"]["explanations"] if r["rule_id"] == "repeat.duplicate"]
    assert dup_reason["evidence"][0] == str(kim_police.incident_id)


def test_non_crime_hate_incident_leaves_without_personal_data(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    outputs = asyncio.run(run_log(settings_for(db), [received(e) for e in the_log()]))
    (nchi,) = [e for e in the_log() if e.report.idempotency_key == "nchi-1"]
    (triaged,) = [b for b in bodies(outputs, topics.INCIDENTS_TRIAGED) if b["incident_id"] == str(nchi.incident_id)]
    victim = triaged["report"]["victim"]
    assert victim["name"] is None and victim["date_of_birth"] is None and victim["contact"] is None
    assert victim["age"] == 36  # kept so the score is the same on re-triage
    assert triaged["victim_key"] == nchi.victim_key
    assert any(r["rule_id"] == "privacy.nchi.minimised" for r in triaged["classification"]["explanations"])
    # Nor does triage keep it in its own store.
    assert b"Ana Costa" not in db.read_bytes() and b"ana@example.org" not in db.read_bytes()


def retriaged(db: Path) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        async with session_factory(engine)() as session:
            rows = (
                await session.execute(select(OutboxRecord).where(OutboxRecord.topic == topics.INCIDENTS_RETRIAGED))
            ).scalars()
            found = [orjson.loads(r.body) for r in rows]
        await engine.dispose()
        return found

    return asyncio.run(read())


def test_retriage_emits_only_changed_outcomes_with_both_versions(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    asyncio.run(run_log(settings_for(db), [received(e) for e in the_log()]))
    quiet = Console(file=io.StringIO())

    same = asyncio.run(retriage(settings_for(db), clock=FrozenClock(NOW), console=quiet))
    assert (same.incidents, same.updated, same.changed) == (len(the_log()), 0, 0)
    assert retriaged(db) == []

    # A lower referral threshold changes some outcomes: only those are emitted, with both versions.
    lower = settings_for(db, vulnerability_threshold=14)
    changed = asyncio.run(retriage(lower, clock=FrozenClock(NOW), console=quiet))
    events = retriaged(db)
    assert 0 < changed.changed == len(events) < len(the_log())
    for event in events:
        assert event["previous"]["vulnerable"] is False and event["current"]["vulnerable"] is True
    assert changed.rate > 0
    again = asyncio.run(retriage(lower, clock=FrozenClock(NOW), console=quiet))
    assert (again.updated, again.changed) == (0, 0)
    assert len(retriaged(db)) == len(events)
