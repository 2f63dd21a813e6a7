"""The shared reliable consumer on a real SQLite store: one transaction per message, dedupe,
bounded retries, dead letters, and store outages never dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.consumer import PermanentError, Received, ReliableConsumer
from shared.contracts import Event, ReportReceived
from shared.db import Base, create_tables, make_engine, session_factory
from shared.envelope import decode_event
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord, OutboxRelay
from shared.settings import ReliabilitySettings


class Effect(Base):
    """A stand-in for a service's own state change."""

    __tablename__ = "test_effects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    note: Mapped[str] = mapped_column(String(100))


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    await create_tables(engine, [Effect.__table__, OutboxRecord.__table__, ProcessedEvent.__table__])
    yield session_factory(engine)
    await engine.dispose()


async def _never_publish(*_args: Any) -> Any:
    raise AssertionError("the relay does not run in these tests")


def consumer_for(sessions: async_sessionmaker[AsyncSession], handle: Any, attempts: int = 3) -> ReliableConsumer:
    return ReliableConsumer(
        service="test",
        name=f"test:{uuid.uuid4().hex[:6]}",
        source="/dcsp/test",
        sessions=sessions,
        relay=OutboxRelay(sessions, _never_publish),
        reliability=ReliabilitySettings(max_attempts=attempts, retry_initial_seconds=0.01, retry_max_seconds=0.02),
        handle=handle,
    )


def message(offset: int = 0, body: bytes = b"{}", ce_id: str | None = None) -> Received:
    headers = {"ce_specversion": "1.0", "ce_source": "/t", "ce_type": "t", "content-type": "application/json"}
    headers["ce_id"] = ce_id or uuid.uuid4().hex
    return Received(topic="in", partition=0, offset=offset, key=None, headers=headers, body=body)


async def count(sessions: async_sessionmaker[AsyncSession], model: Any, *where: Any) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def dead_letters(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as s:
        rows = (await s.execute(select(OutboxRecord).where(OutboxRecord.topic.like("%dead-letters%")))).scalars()
        return [orjson.loads(r.body) for r in rows]


async def test_redelivered_message_changes_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def handle(session: AsyncSession, received: Received) -> Sequence[Event]:
        session.add(Effect(note=received.headers["ce_id"]))
        return []

    consumer = consumer_for(sessions, handle)
    msg = message()
    await consumer(msg)
    await consumer(msg)  # as after a crash before the offset commit
    assert await count(sessions, Effect) == 1
    assert consumer.processed == 1 and consumer.duplicates == 1


async def test_state_and_claim_roll_back_together_then_retry_succeeds(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    calls = 0

    async def flaky(session: AsyncSession, received: Received) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        session.add(Effect(note=f"call {calls}"))
        await session.flush()
        if calls < 3:
            raise RuntimeError("downstream hiccup")
        return []

    consumer = consumer_for(sessions, flaky, attempts=3)
    await consumer(message())
    assert calls == 3
    async with sessions() as s:
        notes = list((await s.execute(select(Effect.note))).scalars())
    assert notes == ["call 3"]  # the failed attempts left nothing behind
    assert await dead_letters(sessions) == []


async def test_invalid_payload_is_dead_lettered_at_once_with_the_field(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    calls = 0

    async def handle(session: AsyncSession, received: Received) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        decode_event(ReportReceived, {**received.headers, "ce_type": ReportReceived.CE_TYPE}, received.body)
        return []

    consumer = consumer_for(sessions, handle, attempts=5)
    await consumer(message(offset=41, body=b'{"partner": "police"}'))
    assert calls == 1  # no retries for a message that cannot get better
    (letter,) = await dead_letters(sessions)
    assert letter["error_type"] == "ValidationError"
    assert "location: Field required" in letter["error"]
    assert letter["original_topic"] == "in" and letter["offset"] == 41
    assert letter["body"] == '{"partner": "police"}'
    assert await count(sessions, ProcessedEvent) == 1  # a redelivery will not dead-letter it twice
    await consumer(message(offset=41, body=b'{"partner": "police"}', ce_id=letter["headers"]["ce_id"]))
    assert len(await dead_letters(sessions)) == 1


async def test_persistent_handler_error_is_dead_lettered_after_max_attempts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    calls = 0

    async def broken(session: AsyncSession, received: Received) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        raise KeyError("rule table missing an entry")

    consumer = consumer_for(sessions, broken, attempts=3)
    await consumer(message())
    assert calls == 3
    (letter,) = await dead_letters(sessions)
    assert letter["attempts"] == 3 and letter["error_type"] == "KeyError"
    assert consumer.dead_lettered == 1


async def test_permanent_error_raised_by_a_handler_is_not_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def refuse(session: AsyncSession, received: Received) -> Sequence[Event]:
        raise PermanentError("idempotency_key reused for different content")

    consumer = consumer_for(sessions, refuse, attempts=4)
    await consumer(message())
    (letter,) = await dead_letters(sessions)
    assert letter["attempts"] == 1 and "idempotency_key" in letter["error"]


async def test_store_outage_is_never_dead_lettered(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A store error after the attempts run out is raised (so the offset is not committed), not
    turned into a dead letter: the message is fine, the store is not."""
    calls = 0

    async def store_down(session: AsyncSession, received: Received) -> Sequence[Event]:
        nonlocal calls
        calls += 1
        if calls >= 6:
            raise asyncio_cancel()
        raise OperationalError("INSERT ...", {}, Exception("database is locked"))

    consumer = consumer_for(sessions, store_down, attempts=2)
    with pytest.raises(StopRetrying):
        await consumer(message())
    assert calls == 6  # kept retrying past max_attempts=2
    assert await dead_letters(sessions) == []
    assert await count(sessions, ProcessedEvent) == 0


class StopRetrying(BaseException):
    """Ends the otherwise endless retry of a store outage in the test above."""


def asyncio_cancel() -> BaseException:
    return StopRetrying()


async def test_a_redriven_dead_letter_is_processed_exactly_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    fixed = False

    async def handle(session: AsyncSession, received: Received) -> Sequence[Event]:
        if not fixed:
            raise PermanentError("rule table missing an entry")
        session.add(Effect(note=received.headers["ce_id"]))
        return []

    consumer = consumer_for(sessions, handle)
    original = message(offset=7)
    await consumer(original)
    await consumer(original)  # redelivered before the offset commit: still one dead letter
    assert len(await dead_letters(sessions)) == 1
    fixed = True
    redriven = Received(topic="in", partition=1, offset=99, key=None, headers=original.headers, body=original.body)
    await consumer(redriven)
    await consumer(redriven)  # redriven twice by mistake
    assert await count(sessions, Effect) == 1


async def test_a_batch_commits_together_and_a_poison_message_in_it_is_dead_lettered_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def handle(session: AsyncSession, received: Received) -> Sequence[Event]:
        if received.body == b"poison":
            raise PermanentError("cannot be processed")
        session.add(Effect(note=received.headers["ce_id"]))
        return []

    consumer = consumer_for(sessions, handle)
    good = [message(offset=i) for i in range(5)]
    await consumer.process_batch(good)
    assert await count(sessions, Effect) == 5

    mixed = [message(offset=10), message(offset=11, body=b"poison"), message(offset=12), good[0]]
    await consumer.process_batch(mixed)  # rolls back, then one transaction per message
    assert await count(sessions, Effect) == 7  # the two new good ones; good[0] is a duplicate
    (letter,) = await dead_letters(sessions)
    assert letter["offset"] == 11
    assert consumer.duplicates == 1 and consumer.dead_lettered == 1
