"""Intake's own store: every accepted report, keyed by partner and idempotency key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint, Uuid, select
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


TABLES = [AcceptedReport.__table__]


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
