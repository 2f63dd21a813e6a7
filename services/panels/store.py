"""Panels' own store: referrals (one open per person and panel) and the incidents attached."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class PanelReferral(Base):
    __tablename__ = "panel_referrals"
    # open_key is the person key while the referral is open and NULL once closed: one open
    # referral per person and panel, any number of closed ones.
    __table_args__ = (UniqueConstraint("panel", "open_key", name="uq_one_open_referral"),)

    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    panel: Mapped[str] = mapped_column(String(8))
    person_key: Mapped[str] = mapped_column(String(255), index=True)
    open_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column()
    reasons: Mapped[list[str]] = mapped_column(JSON)


class ReferralIncident(Base):
    __tablename__ = "panel_referral_incidents"

    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panel_referrals.referral_id"), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    attached_at: Mapped[datetime] = mapped_column()
    reasons: Mapped[list[str]] = mapped_column(JSON)


TABLES = [PanelReferral.__table__, ReferralIncident.__table__]


async def open_referral(session: AsyncSession, panel: str, person_key: str) -> PanelReferral | None:
    return (
        await session.execute(
            select(PanelReferral).where(PanelReferral.panel == panel, PanelReferral.open_key == person_key)
        )
    ).scalar_one_or_none()


async def list_referrals(session: AsyncSession, panel: str | None) -> list[tuple[PanelReferral, list[str]]]:
    stmt = select(PanelReferral).order_by(PanelReferral.created_at)
    if panel:
        stmt = stmt.where(PanelReferral.panel == panel)
    referrals = list((await session.execute(stmt)).scalars())
    out = []
    for r in referrals:
        ids = await session.execute(
            select(ReferralIncident.incident_id).where(ReferralIncident.referral_id == r.referral_id)
        )
        out.append((r, [str(i) for i in ids.scalars()]))
    return out
