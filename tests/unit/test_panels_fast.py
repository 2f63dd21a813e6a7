"""Panels' consumers in batches, as Kafka delivers them (issue #9): many messages in one transaction,
with Core statements and rows staged on the session until a read needs them or the batch commits.

A batch must leave the store exactly as the same messages do one at a time; a rolled-back batch
must leave nothing behind; and an incident that leads to no referral must cost no statement of its
own. Real ReliableConsumer, real SQLite; no broker (delivery is tests/e2e/test_panels_flow.py)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, func, select

from services.panels import store
from services.panels.app import compose
from services.panels.handlers import Panels
from services.panels.settings import PanelsSettings
from shared.clock import FrozenClock
from shared.consumer import Received
from shared.contracts import (
    Event,
    IncidentTriaged,
    Panel,
    PanelReferralRequested,
    PartnerAgency,
    Person,
    PossessionStage,
    RiskTier,
    TenancyPossessionUpdated,
    Tenure,
)
from shared.db import create_tables
from shared.envelope import encode_body, new_envelope
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime
from tests.unit.test_panels_service import NOW, classification, tenancy, triaged

_offsets = itertools.count(1)


@dataclass
class Service:
    runtime: ServiceRuntime
    panels: Panels

    def received(self, item: Event | tuple[Event, str]) -> Received:
        message, event_id = item if isinstance(item, tuple) else (item, None)
        headers = new_envelope(message, "/test", event_id=event_id).headers()
        return Received(message.TOPIC, 0, next(_offsets), None, headers, encode_body(message))

    async def deliver(self, items: Sequence[Event | tuple[Event, str]], *, batch: bool) -> None:
        """Hand messages of one topic to its real consumer: all in one batch, or one at a time."""
        topic = (items[0][0] if isinstance(items[0], tuple) else items[0]).TOPIC
        (consumer,) = [c for c in self.runtime.consumers if c.name == f"panels:{topic}"]
        messages = [self.received(item) for item in items]
        if batch:
            await consumer.process_batch(messages)
        else:
            for message in messages:
                await consumer(message)

    async def snapshot(self) -> dict[str, Any]:
        """Everything the consumers wrote, with each referral named by panel and person, not its random id."""
        async with self.runtime.sessions() as session:

            async def rows(model: Any, *order: Any) -> list[dict[str, Any]]:
                result = await session.execute(select(model.__table__).order_by(*order))
                return [dict(row) for row in result.mappings()]

            referrals = await rows(store.PanelReferral, store.PanelReferral.panel, store.PanelReferral.person_key)
            names = {row["referral_id"]: f"{row['panel']}:{row['person_key']}" for row in referrals}
            outbox = (await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
            return {
                "referrals": {names[row.pop("referral_id")]: row for row in referrals},
                "attached": sorted(
                    (names[row["referral_id"]], str(row["incident_id"]), tuple(row["reasons"]))
                    for row in await rows(store.ReferralIncident, store.ReferralIncident.incident_id)
                ),
                "incidents": await rows(store.IncidentOnRecord, store.IncidentOnRecord.incident_id),
                "tenancies": await rows(store.TenancyRow, store.TenancyRow.tenancy_ref),
                "history": [
                    (names[row["referral_id"]], row["event_type"], row["detail"])
                    for row in await rows(store.ReferralHistory, store.ReferralHistory.id)
                ],
                "events": [
                    {**body, "referral_id": names[uuid.UUID(body["referral_id"])]}
                    for body in (orjson.loads(o.body) for o in outbox)
                ],
            }


Build = Callable[[str], Awaitable[Service]]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    made: list[ServiceRuntime] = []

    async def make(name: str) -> Service:
        settings = PanelsSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / name}.db", http_port=0)
        runtime, panels = compose(settings, FrozenClock(NOW))
        await create_tables(runtime.engine, runtime.tables)
        made.append(runtime)
        return Service(runtime, panels)

    yield make
    for runtime in made:
        await runtime.engine.dispose()


def busy_day() -> tuple[list[Event | tuple[Event, str]], list[Event], list[Event], dict[str, IncidentTriaged]]:
    """Triaged incidents, then possession news, then partner requests, each leaning on what came before."""
    victim = "p-" + "b" * 32
    first = triaged(victim_key=victim, risk_tier=RiskTier.HIGH, vulnerability_score=12)
    repeat = triaged(victim_key=victim, repeat_victim=True, prior_reports_6_months=2, vulnerability_score=27)
    # The same incident again under a new rules version: the first record on file stays.
    retriaged = first.model_copy(update={"classification": classification(risk_tier=RiskTier.STANDARD)})
    asb = triaged(victim_key="p-asb", tenancy_block=tenancy(ref="T-9"))  # a tenancy on record, no panel
    notice = triaged(victim_key="p-notice", tenancy_block=tenancy(ref="T-9", nsp=True), risk_tier=RiskTier.MEDIUM)
    quiet = [triaged(victim_key=f"p-quiet-{n}") for n in range(6)]
    # The order matters: each staged row must be written before a later message reads its table.
    incidents: list[Event | tuple[Event, str]] = [
        quiet[0],
        (first, "evt-first"),
        quiet[1],
        (first, "evt-first"),  # redelivered in the same batch
        repeat,
        repeat,  # republished under a new event id: already attached, by a row staged in this batch
        quiet[2],
        asb,
        notice,  # its CCP referral takes in the tenancy's other incident, staged just before
        retriaged,
        *quiet[3:],
    ]
    possession: list[Event] = [
        TenancyPossessionUpdated(
            partner=PartnerAgency.HOUSING,
            idempotency_key=f"P-{n}",
            tenancy_ref=ref,
            tenure=Tenure.COUNCIL,
            stage=stage,
            occurred_at=NOW,
        )
        for n, (ref, stage) in enumerate(
            [("T-9", PossessionStage.HEARING_LISTED), ("T-none", PossessionStage.NOTICE_SERVED)]
        )
    ]
    ask = PanelReferralRequested(
        partner=PartnerAgency.NHS,
        idempotency_key="Q-1",
        panel=Panel.VCSP,
        person=Person(name="Vic Victim"),
        reason="GP worried",
        consent_given=True,
        requested_at=NOW,
        person_key=victim,
    )
    with_incidents = ask.model_copy(
        update={"idempotency_key": "Q-2", "incident_ids": [quiet[0].incident_id, first.incident_id]}
    )
    # Republished, the request changes nothing: its history entry was staged in this batch.
    requests: list[Event] = [ask, ask, with_incidents]
    return incidents, possession, requests, {"first": first, "repeat": repeat, "asb": asb, "notice": notice}


async def test_a_batch_leaves_the_store_as_the_same_messages_one_at_a_time(build: Build) -> None:
    incidents, possession, requests, named = busy_day()
    one_by_one, batched = await build("one-by-one"), await build("batched")
    commits: list[object] = []
    event.listen(batched.runtime.engine.sync_engine, "commit", commits.append)
    for service, batch in ((one_by_one, False), (batched, True)):
        await service.deliver(incidents, batch=batch)
        await service.deliver(possession, batch=batch)
        await service.deliver(requests, batch=batch)
    assert len(commits) == 3  # each batch in one transaction: none fell back to one message at a time

    state = await batched.snapshot()
    assert state == await one_by_one.snapshot()

    victim, first = named["first"].victim_key, named["first"]
    vcsp, ccp = state["referrals"][f"vcsp:{victim}"], state["referrals"]["ccp:tenancy:T-9"]
    assert set(state["referrals"]) == {f"vcsp:{victim}", "ccp:tenancy:T-9"}
    assert (vcsp["risk_tier"], vcsp["vulnerability_score"]) == ("high", 27)
    assert vcsp["consent_given"] is True and vcsp["referring_partner"] == "nhs"
    assert vcsp["updated_at"] == NOW and len(vcsp["requested_people"]) == 2
    assert ccp["risk_tier"] == "medium"  # the highest of the tenancy's incidents, both attached
    attached = {(name, incident) for name, incident, _ in state["attached"]}
    assert {
        ("ccp:tenancy:T-9", str(named["asb"].incident_id)),
        ("ccp:tenancy:T-9", str(named["notice"].incident_id)),
    } <= attached
    assert [e for n, e, _ in state["history"] if n == f"vcsp:{victim}"] == [
        "referral-created",
        "incident-attached",
        "reasons-added",  # a repeat victim
        "incident-attached",
        "reasons-added",  # the NHS asks
        "partner-request",
        "partner-request",  # the NHS asks again, about two incidents
        "incident-attached",  # the quiet one; the first was attached already
    ]
    assert [e for n, e, _ in state["history"] if n == "ccp:tenancy:T-9"][-2:] == [
        "reasons-added",
        "possession-updated",
    ]
    on_record = {row["incident_id"]: row for row in state["incidents"]}
    assert len(on_record) == 10  # every incident once, referred or not
    assert on_record[first.incident_id]["event"] == first.model_dump(mode="json")  # the first record stays
    (tenancy_row,) = [t for t in state["tenancies"] if t["tenancy_ref"] == "T-9"]
    assert [s["stage"] for s in tenancy_row["stage_history"]] == ["notice-of-seeking-possession", "hearing-listed"]
    assert sorted((e["panel"], e["person_key"]) for e in state["events"]) == [
        ("ccp", "tenancy:T-9"),
        ("vcsp", victim),
    ]


async def test_a_rolled_back_batch_leaves_no_staged_rows_behind(build: Build) -> None:
    service = await build("rollback")
    high = triaged(victim_key="p-rollback", risk_tier=RiskTier.HIGH)
    async with service.runtime.sessions() as session:
        with pytest.raises(RuntimeError):
            async with session.begin():
                await service.panels.on_incident_triaged(session, service.received(triaged()))
                assert await service.panels.on_incident_triaged(session, service.received(high))
                raise RuntimeError("the batch fails after staging rows")
        async with session.begin():
            pass  # a later transaction on the same session commits nothing of the failed one
        for table in (store.IncidentOnRecord, store.PanelReferral, store.ReferralIncident, store.ReferralHistory):
            assert await session.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__


async def test_an_incident_that_leads_to_no_referral_costs_no_statement_of_its_own(
    build: Build,
) -> None:
    service = await build("quiet")
    statements: list[tuple[str, bool]] = []

    def seen(_conn: Any, _cursor: Any, sql: str, _params: Any, _context: Any, executemany: bool) -> None:
        if " panel_" in sql or " referral_history" in sql:
            statements.append((" ".join(sql.split()[:3]), executemany))

    event.listen(service.runtime.engine.sync_engine, "before_cursor_execute", seen)
    quiet = [triaged(victim_key=f"p-{n}", risk_tier=RiskTier.MEDIUM) for n in range(40)]
    await service.deliver(list(quiet), batch=True)
    assert statements == [("INSERT INTO panel_incidents", True)]  # the batch's 40 rows in one statement
    async with service.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(store.IncidentOnRecord)) == 40
