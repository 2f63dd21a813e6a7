"""Intake's own store: every accepted report, and every accepted panel referral request and tenancy
event, each keyed by partner and idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    bindparam,
    cast,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, table_of


class AcceptedReport(Base):
    __tablename__ = "accepted_reports"
    __table_args__ = (UniqueConstraint("partner", "idempotency_key", name="uq_partner_idempotency_key"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    partner: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column()
    event: Mapped[dict[str, Any]] = mapped_column(JSON)


class AcceptedPartnerEvent(Base):
    """A partner event other than a report (a panel referral request, a tenancy possession update)."""

    __tablename__ = "accepted_partner_events"
    # Each kind has its own key space: a housing system may number its tenancy events and its
    # referral requests independently.
    __table_args__ = (UniqueConstraint("kind", "partner", "idempotency_key", name="uq_kind_partner_idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(100))
    partner: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column()
    event: Mapped[dict[str, Any]] = mapped_column(JSON)


class ErasureRequestRow(Base):
    """A right-to-erasure request intake accepted (the services' confirmations are in
    ``erasure_confirmations``)."""

    __tablename__ = "erasure_requests"

    request_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    person_key: Mapped[str] = mapped_column(String(255), index=True)
    incident_ids: Mapped[list[str]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column()


TABLES = [AcceptedReport.__table__, AcceptedPartnerEvent.__table__, ErasureRequestRow.__table__]

# What an erased record keeps: its keys and content hash (so a partner's retry is still answered
# as a replay and does not bring the data back), never the content.
ERASED = "erased"


_REPORTS = table_of(AcceptedReport)
# Built once: the ingress consumer runs this for every report, and building an ORM query costs
# more than running it.
_FIND_BY_KEY = select(_REPORTS).where(
    _REPORTS.c.partner == bindparam("partner"), _REPORTS.c.idempotency_key == bindparam("idempotency_key")
)
_INSERT_REPORT = insert(_REPORTS)


async def find_by_key(session: AsyncSession, partner: str, idempotency_key: str) -> AcceptedReport | None:
    """The report this partner accepted under this key, if any (a detached record)."""
    row = (await session.execute(_FIND_BY_KEY, {"partner": partner, "idempotency_key": idempotency_key})).one_or_none()
    return AcceptedReport(**row._mapping) if row is not None else None


async def add_report(session: AsyncSession, record: AcceptedReport) -> None:
    """Store an accepted report now (a reused key fails here, with IntegrityError)."""
    await session.execute(_INSERT_REPORT, {c.key: getattr(record, c.key) for c in _REPORTS.columns})


async def get(session: AsyncSession, incident_id: uuid.UUID) -> AcceptedReport | None:
    return await session.get(AcceptedReport, incident_id)


async def find_partner_event(
    session: AsyncSession, kind: str, partner: str, idempotency_key: str
) -> AcceptedPartnerEvent | None:
    return (
        await session.execute(
            select(AcceptedPartnerEvent).where(
                AcceptedPartnerEvent.kind == kind,
                AcceptedPartnerEvent.partner == partner,
                AcceptedPartnerEvent.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()


async def incidents_of_victim(session: AsyncSession, victim_key: str) -> list[uuid.UUID]:
    """Incidents accepted with this victim key (the key is hex, so a text match is exact enough to
    narrow; each candidate is then checked)."""
    rows = await session.execute(
        select(AcceptedReport.incident_id, AcceptedReport.event).where(
            cast(AcceptedReport.event, Text).contains(victim_key)
        )
    )
    return [incident_id for incident_id, event in rows if event.get("victim_key") == victim_key]


async def tenancies_of_tenant(
    session: AsyncSession, tenancy_kind: str, person_key: str, tenant_key: Callable[[dict[str, Any]], str | None]
) -> list[str]:
    """Tenancy references of the tenancy events whose tenant has this key."""
    rows = await session.execute(select(AcceptedPartnerEvent.event).where(AcceptedPartnerEvent.kind == tenancy_kind))
    return sorted(
        {str(e["tenancy_ref"]) for e in rows.scalars() if e.get("tenancy_ref") and tenant_key(e) == person_key}
    )


async def erase(
    session: AsyncSession,
    incident_ids: list[uuid.UUID],
    person_key: str,
    erasure_id: uuid.UUID,
    tenant_key: Callable[[dict[str, Any]], str | None],
    tenancy_kind: str,
) -> dict[str, int]:
    """Anonymise the person's reports and partner events: the content goes, the keys stay.
    ``tenant_key`` gives the key of a tenancy event's tenant (those events carry no key)."""
    erased = {ERASED: str(erasure_id)}
    reports = 0
    if incident_ids:
        result = await session.execute(
            update(AcceptedReport).where(AcceptedReport.incident_id.in_(incident_ids)).values(event=erased)
        )
        reports = int(getattr(result, "rowcount", 0) or 0)
    events = 0
    rows = await session.execute(
        select(AcceptedPartnerEvent).where(
            or_(cast(AcceptedPartnerEvent.event, Text).contains(person_key), AcceptedPartnerEvent.kind == tenancy_kind)
        )
    )
    for row in rows.scalars():
        if row.event.get(ERASED):
            continue
        if row.event.get("person_key") == person_key or tenant_key(row.event) == person_key:
            row.event = erased
            events += 1
    return {"accepted_reports": reports, "accepted_partner_events": events}


async def purge(session: AsyncSession, cut_off: datetime) -> dict[str, int]:
    """Delete reports and partner events accepted before ``cut_off`` (past retention)."""
    reports = await session.execute(delete(AcceptedReport).where(AcceptedReport.accepted_at < cut_off))
    events = await session.execute(delete(AcceptedPartnerEvent).where(AcceptedPartnerEvent.accepted_at < cut_off))
    return {
        "accepted_reports": int(getattr(reports, "rowcount", 0) or 0),
        "accepted_partner_events": int(getattr(events, "rowcount", 0) or 0),
    }
