"""Panels' own store: referrals (one open per person and panel), the incidents attached, the
incidents and tenancies on record, action plans, and every change to a referral (its history)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.contracts import ErasureRequested
from shared.db import Base
from shared.retention import rowcount


class ReferralStatus:
    AWAITING_PANEL = "awaiting-panel"  # on an agenda until the panel records an outcome
    ACTION_PLAN = "action-plan"  # the panel decided; its actions are being carried out
    CLOSED = "closed"


OPEN_STATUSES = (ReferralStatus.AWAITING_PANEL, ReferralStatus.ACTION_PLAN)


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
    referring_partner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consent_given: Mapped[bool | None] = mapped_column(nullable=True)
    requested_people: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    tenancy_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    risk_tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    vulnerability_score: Mapped[int] = mapped_column(Integer, default=0)
    decision: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    close_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ReferralIncident(Base):
    __tablename__ = "panel_referral_incidents"

    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panel_referrals.referral_id"), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    attached_at: Mapped[datetime] = mapped_column()
    reasons: Mapped[list[str]] = mapped_column(JSON)


class IncidentOnRecord(Base):
    """Every triaged incident panels has seen, whether or not it made a referral: a later possession
    event or request may bring it to a panel."""

    __tablename__ = "panel_incidents"

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    victim_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    tenancy_ref: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    tenant_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reported_at: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column()
    event: Mapped[dict[str, Any]] = mapped_column(JSON)


class TenancyRow(Base):
    __tablename__ = "panel_tenancies"

    tenancy_ref: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenure: Mapped[str] = mapped_column(String(32))
    tenure_from_housing: Mapped[bool] = mapped_column(default=False)
    stage: Mapped[str | None] = mapped_column(String(40), nullable=True)
    mandatory_grounds: Mapped[list[str]] = mapped_column(JSON, default=list)
    tenant: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    uprn: Mapped[str | None] = mapped_column(String(12), nullable=True)
    stage_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column()


class PanelActionRow(Base):
    __tablename__ = "panel_actions"

    action_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panel_referrals.referral_id"), index=True)
    description: Mapped[str] = mapped_column(Text)
    owner_agency: Mapped[str] = mapped_column(String(64))
    due: Mapped[date] = mapped_column(Date, index=True)
    tool: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # open | completed
    recorded_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completion_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    overdue_notified_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ReferralHistory(Base):
    """One row per change to a referral: what happened, when, and the details."""

    __tablename__ = "referral_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panel_referrals.referral_id"), index=True)
    at: Mapped[datetime] = mapped_column()
    event_type: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


TABLES = [
    PanelReferral.__table__,
    ReferralIncident.__table__,
    IncidentOnRecord.__table__,
    TenancyRow.__table__,
    PanelActionRow.__table__,
    ReferralHistory.__table__,
]


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
        out.append((r, [str(i) for i in await incident_ids(session, r.referral_id)]))
    return out


async def incident_ids(session: AsyncSession, referral_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.execute(
        select(ReferralIncident.incident_id)
        .where(ReferralIncident.referral_id == referral_id)
        .order_by(ReferralIncident.attached_at, ReferralIncident.incident_id)
    )
    return list(rows.scalars())


async def incidents_on_record(session: AsyncSession, ids: list[uuid.UUID]) -> list[IncidentOnRecord]:
    if not ids:
        return []
    return list(
        (await session.execute(select(IncidentOnRecord).where(IncidentOnRecord.incident_id.in_(ids)))).scalars()
    )


async def tenancy_incidents(session: AsyncSession, tenancy_ref: str) -> list[IncidentOnRecord]:
    rows = await session.execute(
        select(IncidentOnRecord)
        .where(IncidentOnRecord.tenancy_ref == tenancy_ref)
        .order_by(IncidentOnRecord.reported_at, IncidentOnRecord.incident_id)
    )
    return list(rows.scalars())


async def actions_of(session: AsyncSession, referral_id: uuid.UUID) -> list[PanelActionRow]:
    rows = await session.execute(
        select(PanelActionRow)
        .where(PanelActionRow.referral_id == referral_id)
        .order_by(PanelActionRow.recorded_at, PanelActionRow.due, PanelActionRow.action_id)
    )
    return list(rows.scalars())


async def overdue_actions(session: AsyncSession, today: date) -> list[tuple[PanelActionRow, PanelReferral]]:
    """Open actions of open referrals whose due date has passed, most overdue first."""
    rows = await session.execute(
        select(PanelActionRow, PanelReferral)
        .join(PanelReferral, PanelReferral.referral_id == PanelActionRow.referral_id)
        .where(
            PanelActionRow.status == "open",
            PanelActionRow.due < today,
            PanelReferral.status != ReferralStatus.CLOSED,
        )
        .order_by(PanelActionRow.due, PanelActionRow.action_id)
    )
    return [(a, r) for a, r in rows.all()]


async def awaiting_panel(session: AsyncSession, panel: str) -> list[PanelReferral]:
    rows = await session.execute(
        select(PanelReferral).where(PanelReferral.panel == panel, PanelReferral.status == ReferralStatus.AWAITING_PANEL)
    )
    return list(rows.scalars())


async def history(session: AsyncSession, referral_id: uuid.UUID) -> list[ReferralHistory]:
    rows = await session.execute(
        select(ReferralHistory).where(ReferralHistory.referral_id == referral_id).order_by(ReferralHistory.id)
    )
    return list(rows.scalars())


# -- retention and erasure (issue #8) ---------------------------------------------------------


async def _delete_referrals(session: AsyncSession, ids: list[uuid.UUID]) -> dict[str, int]:
    counts = {"panel_referral_incidents": 0, "panel_actions": 0, "referral_history": 0, "panel_referrals": 0}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        # Children first: the store enforces foreign keys.
        counts["panel_referral_incidents"] += rowcount(
            await session.execute(delete(ReferralIncident).where(ReferralIncident.referral_id.in_(chunk)))
        )
        counts["panel_actions"] += rowcount(
            await session.execute(delete(PanelActionRow).where(PanelActionRow.referral_id.in_(chunk)))
        )
        counts["referral_history"] += rowcount(
            await session.execute(delete(ReferralHistory).where(ReferralHistory.referral_id.in_(chunk)))
        )
        counts["panel_referrals"] += rowcount(
            await session.execute(delete(PanelReferral).where(PanelReferral.referral_id.in_(chunk)))
        )
    return counts


async def erase(session: AsyncSession, request: ErasureRequested) -> dict[str, int]:
    """Delete the person's referrals (with their incidents, actions and history), the incidents on
    record about them, and the tenant's details on their tenancies."""
    key, ids = request.person_key, set(request.incident_ids)
    incidents = list(
        (
            await session.execute(
                select(IncidentOnRecord).where(
                    or_(IncidentOnRecord.victim_key == key, IncidentOnRecord.incident_id.in_(ids))
                )
            )
        ).scalars()
    )
    ids |= {i.incident_id for i in incidents}
    tenancies = {i.tenancy_ref for i in incidents if i.tenancy_ref} | set(request.tenancy_refs)
    referral_ids = set(
        (await session.execute(select(PanelReferral.referral_id).where(PanelReferral.person_key == key))).scalars()
    )
    # A referral made about one of the person's incidents (e.g. on a tenancy key) is about them too.
    referral_ids |= set(
        (
            await session.execute(select(ReferralIncident.referral_id).where(ReferralIncident.incident_id.in_(ids)))
        ).scalars()
    )
    referred = list(
        (await session.execute(select(PanelReferral).where(PanelReferral.referral_id.in_(referral_ids)))).scalars()
    )
    tenancies |= {r.tenancy_ref for r in referred if r.tenancy_ref}
    counts = await _delete_referrals(session, sorted(referral_ids))
    counts["panel_incidents"] = rowcount(
        await session.execute(delete(IncidentOnRecord).where(IncidentOnRecord.incident_id.in_(ids)))
    )
    anonymised = 0
    rows = await session.execute(select(TenancyRow).where(TenancyRow.tenancy_ref.in_(tenancies)))
    for tenancy in rows.scalars():
        if tenancy.tenant is not None:
            tenancy.tenant = None
            anonymised += 1
    counts["panel_tenancies"] = anonymised
    return counts


async def purge(session: AsyncSession, cut_off: datetime) -> dict[str, int]:
    """Delete referrals closed before ``cut_off``, incidents on record reported before it and no
    longer attached to an open referral, and tenancies not updated since."""
    closed = list(
        (
            await session.execute(
                select(PanelReferral.referral_id).where(
                    PanelReferral.status == ReferralStatus.CLOSED, PanelReferral.closed_at < cut_off
                )
            )
        ).scalars()
    )
    counts = await _delete_referrals(session, closed)
    attached = select(ReferralIncident.incident_id)
    counts["panel_incidents"] = rowcount(
        await session.execute(
            delete(IncidentOnRecord).where(
                IncidentOnRecord.reported_at < cut_off, IncidentOnRecord.incident_id.not_in(attached)
            )
        )
    )
    open_tenancies = select(PanelReferral.tenancy_ref).where(PanelReferral.tenancy_ref.is_not(None))
    counts["panel_tenancies"] = rowcount(
        await session.execute(
            delete(TenancyRow).where(TenancyRow.updated_at < cut_off, TenancyRow.tenancy_ref.not_in(open_tenancies))
        )
    )
    return counts
