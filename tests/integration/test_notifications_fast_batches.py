"""Notifications' consumers write a batch's alerts, dispatches and briefing facts in a few
statements at its commit (issue #9): on a real SQLite store, through the real ReliableConsumer,
each alert is still stored once with a dispatch per channel, whichever route and however often
it is requested, and a failed batch leaves nothing behind but what its retry stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.notifications import domain, store
from services.notifications.app import Notifications, wire
from services.notifications.settings import NotificationsSettings
from shared.consumer import Received, ReliableConsumer
from shared.contracts import CrimeCategory, PanelReferralCreated, RiskTier
from shared.db import create_tables
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime
from shared.topics import DEAD_LETTERS, INCIDENTS_TRIAGED, PANEL_REFERRALS, POLICE_ALERTS_REQUESTED

from .test_notifications_alerts import T0, alert_request, classification, received, triaged


@dataclass
class Consumers:
    runtime: ServiceRuntime
    parts: Notifications
    requests: ReliableConsumer
    triaged: ReliableConsumer
    referrals: ReliableConsumer

    async def count(self, column: Any) -> int:
        async with self.runtime.sessions() as session:
            return int((await session.execute(select(func.count(column)))).scalar_one())


@pytest.fixture
async def consumers(tmp_path: Path) -> AsyncIterator[Consumers]:
    config = NotificationsSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
        http_port=0,
        police_alert_channels=["webhook", "email"],
    )
    runtime = ServiceRuntime("notifications", config)
    parts = wire(runtime, config)
    await create_tables(runtime.engine, runtime.tables)
    yield Consumers(
        runtime,
        parts,
        runtime.subscribe(POLICE_ALERTS_REQUESTED, parts.alerts.on_alert_requested),
        runtime.subscribe(INCIDENTS_TRIAGED, parts.partners.on_incident_triaged),
        runtime.subscribe(PANEL_REFERRALS, parts.partners.on_panel_referral),
    )
    await parts.dispatcher.webhooks.aclose()
    await runtime.engine.dispose()


def garbage() -> Received:
    headers = received(alert_request()).headers
    return Received("topic", 0, 99, None, {**headers, "ce_id": str(uuid.uuid4())}, b'{"incident_id": "not-a-uuid"}')


async def test_repeats_in_a_batch_and_across_routes_give_one_alert_each_and_a_bad_message_fails_alone(
    consumers: Consumers,
) -> None:
    a, b = alert_request(), alert_request()
    violent = classification(
        violence_or_criminality=True, crime_category=CrimeCategory.VIOLENT_CRIME, risk_tier=RiskTier.HIGH
    )
    c = triaged(violent)
    a_triaged = triaged(violent)
    a_triaged = a_triaged.model_copy(update={"incident_id": a.incident_id})

    # One batch: A twice (a re-publication, new event id), B, and a message that cannot be read.
    await consumers.requests.process_batch([received(a), received(a), received(b), garbage()])
    # Another: A again by the triaged route, C twice by it, in one transaction.
    await consumers.triaged.process_batch([received(a_triaged), received(c), received(c)])

    alerts = {domain.alert_id_for(i.incident_id) for i in (a, b, c)}
    async with consumers.runtime.sessions() as session:
        stored = set((await session.execute(select(store.PoliceAlert.alert_id))).scalars())
        dispatches = (await session.execute(select(store.Dispatch.alert_id, store.Dispatch.channel))).all()
        outbox = (await session.execute(select(OutboxRecord.topic))).scalars().all()
    assert stored == alerts
    assert sorted((alert_id, channel) for alert_id, channel in dispatches) == sorted(
        (alert_id, channel) for alert_id in alerts for channel in ("email", "webhook")
    )
    assert outbox == [DEAD_LETTERS]
    # Both triaged incidents are issues of concern for the briefing, each kept once.
    assert await consumers.count(store.IncidentOfConcern.incident_id) == 2
    assert consumers.requests.dead_lettered == 1


async def test_a_referral_seen_twice_in_a_batch_and_again_later_is_kept_once(consumers: Consumers) -> None:
    referral = PanelReferralCreated(
        referral_id=uuid.uuid4(),
        panel="vcsp",
        person_key="pk-1",
        incident_id=uuid.uuid4(),
        reasons=["repeat victim"],
        created_at=T0,
    )
    other = referral.model_copy(update={"referral_id": uuid.uuid4()})
    await consumers.referrals.process_batch([received(referral), received(referral), received(other)])
    await consumers.referrals.process_batch([received(referral), received(other)])
    assert await consumers.count(store.ReferralSeen.referral_id) == 2
    assert consumers.referrals.dead_lettered == 0
    async with consumers.runtime.sessions() as session:
        kept = await session.get(store.ReferralSeen, referral.referral_id)
    assert kept is not None and kept.fact["person_key"] == "pk-1" and kept.fact["panel"] == "vcsp"
