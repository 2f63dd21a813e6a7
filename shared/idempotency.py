"""Idempotent consumers: the id of each consumed event is recorded in the same transaction as its
effects, so a redelivered event changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, String, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class ProcessedEvent(Base):
    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column()


async def claim(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id`` now; False if it already did."""
    values = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
    dialect = session.bind.dialect.name if session.bind is not None else ""
    stmt: Insert
    if dialect == "sqlite":
        stmt = sqlite_insert(ProcessedEvent).values(values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = pg_insert(ProcessedEvent).values(values).on_conflict_do_nothing()
    else:
        stmt = insert(ProcessedEvent).values(values)
    result = cast(CursorResult[Any], await session.execute(stmt))
    return bool(result.rowcount)
