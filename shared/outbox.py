"""Transactional outbox: events are written to the ``outbox`` table in the same transaction as the
state change that caused them; the relay publishes them with an idempotent producer and marks
them sent. A crash between publish and mark re-publishes the same event id, which consumers
drop (see ``shared.idempotency``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, LargeBinary, String, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared import metrics, tracing
from shared.contracts import Event
from shared.db import Base, Staged, table_of
from shared.envelope import encode_body, new_envelope
from shared.logging import get_logger
from shared.topics import resolve

log = get_logger(__name__)

# (topic, body, key, headers) -> a future that resolves once the broker has the record
Publish = Callable[[str, bytes, bytes | None, dict[str, str]], Awaitable[Awaitable[Any]]]


class OutboxRecord(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "id", sqlite_where=text("sent_at IS NULL"), postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str | None] = mapped_column(String(200))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


_TABLE = table_of(OutboxRecord)


def add_events(session: AsyncSession | Session, source: str, events: Sequence[Event]) -> list[str]:
    """Stage events for publication in the caller's transaction; returns their event ids.

    The rows are kept on the session and written in one statement when its transaction commits
    (inside that transaction, before the commit itself), in the order they were staged; a
    rollback drops them with everything else.
    """
    now = datetime.now(UTC)
    ids = []
    pending = _PENDING.get(session)
    for event in events:
        envelope = new_envelope(event, source, now=now)
        headers = envelope.headers()
        traceparent = tracing.outgoing()
        if traceparent:
            headers[tracing.HEADER] = traceparent
        pending.append(
            {
                "event_id": envelope.id,
                "topic": event.TOPIC,
                "key": envelope.subject,
                "headers": headers,
                "body": encode_body(event),
                "created_at": now,
            }
        )
        ids.append(envelope.id)
    return ids


def _write_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    # Core executemany, not ORM objects: a consumer's batch stages hundreds of rows at a time.
    if rows:
        session.connection().execute(insert(_TABLE), rows)


_PENDING: Staged[list[dict[str, Any]]] = Staged("outbox", list, _write_rows)


class OutboxRelay:
    """Publishes unsent outbox rows in insertion order, then marks them sent."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publish: Publish,
        *,
        service: str = "",
        topic_prefix: str = "",
        batch_size: int = 500,
        poll_seconds: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._service = service
        self._publish = publish
        self._prefix = topic_prefix
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Ask the relay to look at the outbox now rather than at its next poll."""
        self._wake.set()

    async def backlog(self) -> int:
        async with self._sessions() as session:
            stmt = select(func.count()).select_from(OutboxRecord).where(OutboxRecord.sent_at.is_(None))
            return int((await session.execute(stmt)).scalar_one())

    async def drain_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        t = _TABLE.c
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(t.id, t.topic, t.key, t.headers, t.body)
                    .where(t.sent_at.is_(None))
                    .order_by(t.id)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return 0
        # Sends are queued in id order before any is awaited, so per-key order holds.
        pending = [
            await self._publish(
                resolve(row.topic, self._prefix),
                row.body,
                row.key.encode() if row.key else None,
                row.headers,
            )
            for row in rows
        ]
        await asyncio.gather(*pending)
        async with self._sessions.begin() as session:
            await session.execute(
                update(_TABLE).where(t.id.in_([row.id for row in rows])).values(sent_at=datetime.now(UTC))
            )
        self.published += len(rows)
        for topic, n in Counter(row.topic for row in rows).items():
            metrics.PRODUCED.labels(self._service, topic).inc(n)
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled; a failed publish is retried, never skipped."""
        failures = 0
        while True:
            self._wake.clear()
            try:
                published = await self.drain_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("outbox relay failed; will retry", failures=failures)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
                continue
            if published == self._batch_size:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass
