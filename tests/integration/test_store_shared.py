"""The shared store building blocks on both backends (SQLite and PostgreSQL): the outbox staged in
the caller's transaction and relayed to a real broker, idempotent claims, the reliable consumer's
dedupe and rollback, and UTC datetimes that keep their zone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from demo.partner import read_topic
from shared import topics
from shared.consumer import Received, ReliableConsumer
from shared.contracts import Event, PoliceAlertDelivered
from shared.db import Base
from shared.idempotency import ProcessedEvent, claim
from shared.outbox import OutboxRecord, add_events
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ReliabilitySettings, ServiceSettings


class StoreEffect(Base):
    """A stand-in for a service's own state change, written with the claim and the outbox rows."""

    __tablename__ = "test_store_effects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    note: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column()


@pytest.fixture
async def runtime(store_url: str, kafka_bootstrap: str, namespace: str) -> AsyncIterator[ServiceRuntime]:
    settings = ServiceSettings(
        database_url=store_url,
        http_port=0,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=namespace),
    )
    rt = ServiceRuntime("storetest", settings)
    rt.use_tables(StoreEffect.__table__)
    # Bounded, so a broker or store that stops answering fails the test instead of hanging the suite.
    await asyncio.wait_for(rt.start(), 120)
    yield rt
    await asyncio.wait_for(rt.stop(), 60)


def delivered(incident: uuid.UUID, attempts: int = 1) -> PoliceAlertDelivered:
    return PoliceAlertDelivered(
        alert_id=uuid.uuid4(),
        incident_id=incident,
        delivered_at=datetime.now(UTC),
        attempts=attempts,
        channel="webhook",
    )


async def count(rt: ServiceRuntime, model: object, *where: object) -> int:
    async with rt.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())  # type: ignore[arg-type]


async def test_outbox_rows_commit_and_roll_back_with_the_state_change(runtime: ServiceRuntime) -> None:
    await runtime.relay.drain_once()  # nothing staged yet
    with pytest.raises(RuntimeError, match="handler failed"):
        async with runtime.sessions.begin() as session:
            session.add(StoreEffect(note="lost", at=datetime.now(UTC)))
            add_events(session, runtime.source, [delivered(uuid.uuid4())])
            raise RuntimeError("handler failed")
    assert await count(runtime, OutboxRecord) == 0
    assert await count(runtime, StoreEffect) == 0

    incident = uuid.uuid4()
    async with runtime.sessions.begin() as session:
        session.add(StoreEffect(note="kept", at=datetime.now(UTC)))
        ids = add_events(session, runtime.source, [delivered(incident, n) for n in (1, 2, 3)])
    assert await count(runtime, StoreEffect) == 1
    async with runtime.sessions() as s:
        rows = (await s.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
    assert [r.event_id for r in rows] == ids
    assert rows[0].headers["ce_type"] == PoliceAlertDelivered.CE_TYPE  # JSON column round trip
    assert isinstance(rows[0].body, bytes) and b'"attempts":1' in rows[0].body.replace(b" ", b"")
    assert rows[0].created_at.tzinfo is not None


async def test_relay_publishes_in_order_and_marks_sent(runtime: ServiceRuntime) -> None:
    incident = uuid.uuid4()
    async with runtime.sessions.begin() as session:
        ids = add_events(session, runtime.source, [delivered(incident, n) for n in range(1, 21)])
    runtime.relay.wake()
    topic = runtime.topic(topics.POLICE_ALERTS_DELIVERED)
    records = await read_topic(runtime.settings.kafka.bootstrap_servers, topic, len(ids), within=30)
    published = [dict(r.headers)["ce_id"].decode() for r in records]
    assert published == ids  # one key, so one partition, in outbox order
    # The relay marks rows sent after the broker acknowledged them, so a reader may be faster.
    for _ in range(300):
        if await count(runtime, OutboxRecord, OutboxRecord.sent_at.is_(None)) == 0:
            break
        await asyncio.sleep(0.1)
    assert await count(runtime, OutboxRecord, OutboxRecord.sent_at.is_(None)) == 0


async def test_a_claim_is_taken_once_even_by_concurrent_transactions(runtime: ServiceRuntime) -> None:
    event_id = uuid.uuid4().hex
    async with runtime.sessions.begin() as first:
        assert await claim(first, "storetest:in", event_id) is True
    async with runtime.sessions.begin() as second:
        assert await claim(second, "storetest:in", event_id) is False
        assert await claim(second, "storetest:other", event_id) is True  # per consumer
    assert await count(runtime, ProcessedEvent) == 2


async def test_reliable_consumer_dedupes_and_rolls_back_on_this_backend(runtime: ServiceRuntime) -> None:
    calls = 0

    async def handle(session: AsyncSession, received: Received) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        session.add(StoreEffect(note=f"call {calls}", at=datetime.now(UTC)))
        await session.flush()
        if calls == 1:
            raise RuntimeError("downstream hiccup")
        return [delivered(uuid.uuid4())]

    consumer = ReliableConsumer(
        service="storetest",
        name="storetest:in",
        source=runtime.source,
        sessions=runtime.sessions,
        relay=runtime.relay,
        reliability=ReliabilitySettings(max_attempts=3, retry_initial_seconds=0.01, retry_max_seconds=0.02),
        handle=handle,
    )
    headers = {"ce_specversion": "1.0", "ce_source": "/t", "ce_type": "t", "ce_id": uuid.uuid4().hex}
    msg = Received(topic="in", partition=0, offset=7, key=None, headers=headers, body=b"{}")
    await consumer(msg)
    await consumer(msg)  # redelivered after a crash before the offset commit
    async with runtime.sessions() as s:
        notes = list((await s.execute(select(StoreEffect.note))).scalars())
    assert notes == ["call 2"]  # the failed attempt left nothing; the redelivery changed nothing
    assert consumer.duplicates == 1
    assert await count(runtime, OutboxRecord, OutboxRecord.topic == topics.POLICE_ALERTS_DELIVERED) == 1


async def test_datetimes_come_back_in_utc_and_naive_ones_are_refused(runtime: ServiceRuntime) -> None:
    local = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    async with runtime.sessions.begin() as session:
        session.add(StoreEffect(note="zoned", at=local))
    async with runtime.sessions() as s:
        stored = (await s.execute(select(StoreEffect.at))).scalar_one()
    assert stored == local and stored.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive datetime"):
        async with runtime.sessions.begin() as session:
            session.add(StoreEffect(note="naive", at=datetime(2026, 3, 29, 1, 30)))
    assert await count(runtime, StoreEffect) == 1
