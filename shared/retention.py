"""Retention and the right to erasure, the same way in every service.

- Retention: each service keeps its case data for ``retention.case_days`` (settings), sent outbox
  rows for ``outbox_sent_days``, consumed event ids for ``processed_events_days`` and audit rows for
  ``audit_days``; a worker purges what is older every ``purge_interval_seconds``. A service's
  store says which of its rows are case data (``purge(session, cut_off)``).
- Erasure: an ``ErasureRequested`` event makes each service delete or anonymise the person's data
  (its store's ``erase(session, request)``), delete its sent outbox rows that mention the person
  or their incidents, record what it did (``erasure_confirmations``), and publish
  ``ErasureConfirmed``. Intake stores every service's confirmation, so the erasure is auditable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, CursorResult, String, Uuid, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.audit import AuditEntry
from shared.clock import Clock, system_clock
from shared.consumer import Handle, Received
from shared.contracts import ErasureConfirmed, ErasureRequested, Event
from shared.db import Base
from shared.envelope import decode_event
from shared.idempotency import ProcessedEvent
from shared.logging import get_logger
from shared.outbox import OutboxRecord

log = get_logger(__name__)


class RetentionSettings(BaseModel):
    """How long a service keeps what (nested in each service's settings, e.g.
    ``TRIAGE_RETENTION__CASE_DAYS=2190``)."""

    case_days: int = Field(default=6 * 365, ge=1, description="Case data (reports, incidents, alerts, referrals)")
    outbox_sent_days: int = Field(default=7, ge=1, description="Published outbox rows (they hold event bodies)")
    processed_events_days: int = Field(default=30, ge=1, description="Consumed event ids kept for dedupe")
    audit_days: int = Field(default=6 * 365, ge=1, description="Audit rows (who read what)")
    purge_interval_seconds: float = Field(default=3600.0, gt=0, description="How often the purge job runs")


class ErasureConfirmation(Base):
    """What one service erased for one erasure request (intake holds every service's)."""

    __tablename__ = "erasure_confirmations"

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(255), index=True)
    records: Mapped[dict[str, int]] = mapped_column(JSON)
    confirmed_at: Mapped[datetime] = mapped_column()


TABLES = [ErasureConfirmation.__table__]

# The store's part: rows past the cut-off (purge) or about the person (erase), counted per table.
Purge = Callable[[AsyncSession, datetime], Awaitable[dict[str, int]]]
Erase = Callable[[AsyncSession, ErasureRequested], Awaitable[dict[str, int]]]


def rowcount(result: Any) -> int:
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0


async def purge_infrastructure(session: AsyncSession, now: datetime, retention: RetentionSettings) -> dict[str, int]:
    """Sent outbox rows, old consumed event ids and old audit rows past their retention."""
    counts = {
        "outbox": rowcount(
            await session.execute(
                delete(OutboxRecord).where(
                    OutboxRecord.sent_at.is_not(None),
                    OutboxRecord.sent_at < now - timedelta(days=retention.outbox_sent_days),
                )
            )
        ),
        "processed_events": rowcount(
            await session.execute(
                delete(ProcessedEvent).where(
                    ProcessedEvent.processed_at < now - timedelta(days=retention.processed_events_days)
                )
            )
        ),
        "audit_log": rowcount(
            await session.execute(delete(AuditEntry).where(AuditEntry.at < now - timedelta(days=retention.audit_days)))
        ),
    }
    return counts


async def purge_once(
    sessions: async_sessionmaker[AsyncSession], purge: Purge | None, retention: RetentionSettings, now: datetime
) -> dict[str, int]:
    """One purge run in one transaction: case data past ``case_days`` and the infrastructure rows."""
    async with sessions.begin() as session:
        counts = await purge_infrastructure(session, now, retention)
        if purge is not None:
            counts |= await purge(session, now - timedelta(days=retention.case_days))
    return counts


def purge_worker(
    sessions: async_sessionmaker[AsyncSession],
    purge: Purge | None,
    retention: RetentionSettings,
    clock: Clock = system_clock,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background loop for ``ServiceRuntime.add_worker``: purge, then sleep the interval."""

    async def run() -> None:
        while True:
            try:
                counts = await purge_once(sessions, purge, retention, clock())
                if any(counts.values()):
                    log.info("retention purge", **{k: v for k, v in counts.items() if v})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention purge failed; will retry")
            await asyncio.sleep(retention.purge_interval_seconds)

    return run


async def erase_outbox(session: AsyncSession, needles: Iterable[str], *, include_unsent: bool = False) -> int:
    """Delete sent outbox rows whose body mentions any of ``needles``. Unsent rows still have to go
    out (a police alert must), unless ``include_unsent``: intake's own, not yet in the pipeline."""
    wanted = [n.encode() for n in needles if n]
    if not wanted:
        return 0
    stmt = select(OutboxRecord.id, OutboxRecord.body)
    if not include_unsent:
        stmt = stmt.where(OutboxRecord.sent_at.is_not(None))
    rows = await session.execute(stmt)
    ids = [row_id for row_id, body in rows if any(n in body for n in wanted)]
    for start in range(0, len(ids), 500):
        await session.execute(delete(OutboxRecord).where(OutboxRecord.id.in_(ids[start : start + 500])))
    return len(ids)


def needles_of(request: ErasureRequested) -> list[str]:
    """What identifies the person in a stored event body: their key, incidents and tenancies."""
    return [request.person_key, *(str(i) for i in request.incident_ids), *request.tenancy_refs]


async def erase_and_confirm(
    session: AsyncSession,
    service: str,
    erase: Erase,
    request: ErasureRequested,
    now: datetime,
    *,
    include_unsent: bool = False,
) -> ErasureConfirmed:
    """Erase the person's data in this service's store, record it, and the confirmation to publish."""
    records = await erase(session, request)
    records["outbox"] = await erase_outbox(session, needles_of(request), include_unsent=include_unsent)
    confirmed = ErasureConfirmed(
        request_id=request.request_id,
        service=service,
        person_key=request.person_key,
        records=records,
        confirmed_at=now,
    )
    await store_confirmation(session, confirmed)
    log.info("erasure done", request_id=str(request.request_id), service=service, records=records)
    return confirmed


async def store_confirmation(session: AsyncSession, confirmed: ErasureConfirmed) -> None:
    """Keep a confirmation once (a redelivered one changes nothing)."""
    if await session.get(ErasureConfirmation, (confirmed.request_id, confirmed.service)) is not None:
        return
    session.add(
        ErasureConfirmation(
            request_id=confirmed.request_id,
            service=confirmed.service,
            person_key=confirmed.person_key,
            records=confirmed.records,
            confirmed_at=confirmed.confirmed_at,
        )
    )
    await session.flush()


def erasure_handler(service: str, erase: Erase, clock: Clock = system_clock) -> Handle:
    """The consumer of ``ErasureRequested`` for a service."""

    async def on_erasure_requested(session: AsyncSession, received: Received) -> list[Event]:
        _envelope, request = decode_event(ErasureRequested, received.headers, received.body)
        return [await erase_and_confirm(session, service, erase, request, clock())]

    return on_erasure_requested


def confirmation_handler() -> Handle:
    """Intake's consumer of every service's ``ErasureConfirmed``: stored, so erasures are auditable."""

    async def on_erasure_confirmed(session: AsyncSession, received: Received) -> list[Event]:
        _envelope, confirmed = decode_event(ErasureConfirmed, received.headers, received.body)
        await store_confirmation(session, confirmed)
        return []

    return on_erasure_confirmed


async def confirmations(session: AsyncSession, request_id: uuid.UUID) -> list[ErasureConfirmation]:
    rows = await session.execute(
        select(ErasureConfirmation)
        .where(ErasureConfirmation.request_id == request_id)
        .order_by(ErasureConfirmation.confirmed_at, ErasureConfirmation.service)
    )
    return list(rows.scalars())
