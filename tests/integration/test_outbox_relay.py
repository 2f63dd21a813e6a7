"""The transactional outbox and its relay, on a real SQLite store and a real Kafka broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from demo.partner import read_topic
from shared import topics
from shared.contracts import PoliceAlertDelivered
from shared.outbox import OutboxRecord, add_events
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings


@pytest.fixture
async def runtime(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> AsyncIterator[ServiceRuntime]:
    settings = ServiceSettings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        http_port=0,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=namespace),
    )
    rt = ServiceRuntime("relaytest", settings)
    rt.use_tables()
    await rt.start()
    yield rt
    await rt.stop()


def delivered(incident: uuid.UUID, n: int) -> PoliceAlertDelivered:
    return PoliceAlertDelivered(
        alert_id=uuid.uuid4(), incident_id=incident, delivered_at=datetime.now(UTC), attempts=n, channel="webhook"
    )


async def unsent(rt: ServiceRuntime) -> int:
    async with rt.sessions() as s:
        stmt = select(func.count()).select_from(OutboxRecord).where(OutboxRecord.sent_at.is_(None))
        return int((await s.execute(stmt)).scalar_one())


async def test_relay_publishes_committed_events_in_order_with_cloudevents_headers(runtime: ServiceRuntime) -> None:
    incidents = [uuid.uuid4() for _ in range(4)]
    staged: list[str] = []
    for batch in range(3):
        async with runtime.sessions.begin() as session:
            staged += add_events(
                session, runtime.source, [delivered(i, batch + 1) for i in incidents for _ in range(25)]
            )
    runtime.relay.wake()

    topic = runtime.topic(topics.POLICE_ALERTS_DELIVERED)
    records = await read_topic(runtime.settings.kafka.bootstrap_servers, topic, len(staged), within=30)
    assert len(records) == len(staged) == 300
    ids = [dict(r.headers)["ce_id"].decode() for r in records]
    assert sorted(ids) == sorted(staged)
    for incident in incidents:
        mine = [r for r in records if r.key == str(incident).encode()]
        order = [staged.index(dict(r.headers)["ce_id"].decode()) for r in mine]
        assert order == sorted(order), "events for one incident must keep their outbox order"
    headers = {k: v.decode() for k, v in records[0].headers}
    assert headers["ce_type"] == PoliceAlertDelivered.CE_TYPE
    assert headers["ce_source"] == "/dcsp/relaytest"
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/json"
    for _ in range(100):
        if await unsent(runtime) == 0:
            break
        await asyncio.sleep(0.05)  # the relay marks rows sent just after the broker acknowledges
    assert await unsent(runtime) == 0


async def test_events_of_a_rolled_back_transaction_are_never_published(runtime: ServiceRuntime) -> None:
    incident = uuid.uuid4()

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with runtime.sessions.begin() as session:
            add_events(session, runtime.source, [delivered(incident, 1)])
            raise Abort
    async with runtime.sessions.begin() as session:
        (kept,) = add_events(session, runtime.source, [delivered(incident, 2)])
    runtime.relay.wake()
    topic = runtime.topic(topics.POLICE_ALERTS_DELIVERED)
    records = await read_topic(runtime.settings.kafka.bootstrap_servers, topic, 2, within=5)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [kept]
