"""Triage's own store: one row per triaged incident, with the victim key for repeat counting."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Index, String, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class TriagedIncident(Base):
    __tablename__ = "triaged_incidents"
    __table_args__ = (Index("ix_triaged_victim_reported", "victim_key", "reported_at"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    victim_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reported_at: Mapped[datetime] = mapped_column()
    triaged_at: Mapped[datetime] = mapped_column()
    violence_or_criminality: Mapped[bool] = mapped_column(Boolean)
    asb_qualifier: Mapped[str] = mapped_column(String(32))
    risk_tier: Mapped[str] = mapped_column(String(16))
    rules_version: Mapped[str] = mapped_column(String(32))
    classification: Mapped[dict[str, Any]] = mapped_column(JSON)


TABLES = [TriagedIncident.__table__]


async def get(session: AsyncSession, incident_id: uuid.UUID) -> TriagedIncident | None:
    return await session.get(TriagedIncident, incident_id)


async def prior_reports(session: AsyncSession, victim_key: str, reported_at: datetime, window: timedelta) -> int:
    """Reports about the same victim within ``window`` before (and up to) this one."""
    stmt = select(func.count()).where(
        TriagedIncident.victim_key == victim_key,
        TriagedIncident.reported_at >= reported_at - window,
        TriagedIncident.reported_at <= reported_at,
    )
    return int((await session.execute(stmt)).scalar_one())
