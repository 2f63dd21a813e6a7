"""Idempotent consumers: the id of each consumed event is recorded in the same transaction as its
effects, so a redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Insert, String, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, table_of


class ProcessedEvent(Base):
    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column()


_TABLE = table_of(ProcessedEvent)


def _claim_statement(dialect: str) -> Insert:
    # Core on the table, not the ORM entity: this runs once per consumed batch, and the ORM's
    # bulk-insert machinery costs more than the insert itself.
    if dialect == "sqlite":
        return sqlite_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.event_id)
    if dialect == "postgresql":
        return pg_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.event_id)
    return insert(_TABLE).returning(_TABLE.c.event_id)


async def claim_many(session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """Record that ``consumer`` handles these events now, in one statement; returns the ids it had
    not handled before (an id repeated within ``event_ids`` is claimed once)."""
    if not event_ids:
        return set()
    now = datetime.now(UTC)
    rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in dict.fromkeys(event_ids)]
    dialect = session.bind.dialect.name if session.bind is not None else ""
    connection = await session.connection()
    result = await connection.execute(_claim_statement(dialect), rows)
    return set(result.scalars().all())


async def claim(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id`` now; False if it already did."""
    return bool(await claim_many(session, consumer, [event_id]))
