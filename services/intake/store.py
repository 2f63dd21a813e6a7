"""Intake's own store: every accepted report, and every accepted panel referral request and tenancy
event, each keyed by partner and idempotency key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


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


TABLES = [AcceptedReport.__table__, AcceptedPartnerEvent.__table__]


async def find_by_key(session: AsyncSession, partner: str, idempotency_key: str) -> AcceptedReport | None:
    return (
        await session.execute(
            select(AcceptedReport).where(
                AcceptedReport.partner == partner, AcceptedReport.idempotency_key == idempotency_key
            )
        )
    ).scalar_one_or_none()


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
