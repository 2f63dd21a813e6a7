"""Notifications' own store: each police alert, stored before any attempt, and every attempt."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class AlertStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


class PoliceAlert(Base):
    __tablename__ = "police_alerts"
    __table_args__ = (Index("ix_alert_status_due", "status", "next_attempt_at"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    risk_tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertAttempt(Base):
    __tablename__ = "police_alert_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("police_alerts.alert_id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column()
    channel: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


TABLES = [PoliceAlert.__table__, AlertAttempt.__table__]


async def find_by_incident(session: AsyncSession, incident_id: uuid.UUID) -> PoliceAlert | None:
    return (
        await session.execute(select(PoliceAlert).where(PoliceAlert.incident_id == incident_id))
    ).scalar_one_or_none()


async def due_alerts(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    rows = await session.execute(
        select(PoliceAlert.alert_id)
        .where(PoliceAlert.status == AlertStatus.PENDING, PoliceAlert.next_attempt_at <= now)
        .order_by(PoliceAlert.next_attempt_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def list_alerts(session: AsyncSession, status: str | None, incident_id: uuid.UUID | None) -> list[PoliceAlert]:
    stmt = select(PoliceAlert).order_by(PoliceAlert.created_at)
    if status:
        stmt = stmt.where(PoliceAlert.status == status)
    if incident_id:
        stmt = stmt.where(PoliceAlert.incident_id == incident_id)
    return list((await session.execute(stmt)).scalars())


async def attempts_for(session: AsyncSession, alert_id: uuid.UUID) -> list[AlertAttempt]:
    rows = await session.execute(
        select(AlertAttempt).where(AlertAttempt.alert_id == alert_id).order_by(AlertAttempt.id)
    )
    return list(rows.scalars())
