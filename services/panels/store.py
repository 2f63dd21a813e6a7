"""Panels' own store: referrals (one open per person and panel), the incidents attached, the
incidents and tenancies on record, action plans, and every change to a referral (its history)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Insert,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.contracts import ErasureRequested
from shared.db import Base, EncodedJSON, Staged, table_of
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


# -- the consumers' statements: SQLAlchemy Core on the mapped tables ---------------------------
# A consumer handles hundreds of messages in one transaction; the ORM's identity map, unit of work
# and instance loading cost more than the statements themselves. So the consumers read and write
# with Core, on the same session and transaction, with statements built once (bound parameters).
# The API keeps the ORM: one request, a few rows.

_REFERRALS = table_of(PanelReferral)
_REFERRAL_INCIDENTS = table_of(ReferralIncident)
_INCIDENTS = table_of(IncidentOnRecord)
_TENANCIES = table_of(TenancyRow)
_HISTORY = table_of(ReferralHistory)

# A row of a Core select, its columns read by name.
AnyRow = Row[*tuple[Any, ...]]

_r, _ri, _i, _t, _h = _REFERRALS.c, _REFERRAL_INCIDENTS.c, _INCIDENTS.c, _TENANCIES.c, _HISTORY.c

# What the consumers read of an open referral (and may change).
_OPEN_REFERRAL = select(
    _r.referral_id,
    _r.reasons,
    _r.referring_partner,
    _r.consent_given,
    _r.requested_people,
    _r.risk_tier,
    _r.vulnerability_score,
).where(_r.panel == bindparam("panel"), _r.open_key == bindparam("person_key"))
_INSERT_REFERRAL = insert(_REFERRALS)
# SET comes from the parameters given: only the columns that changed.
_UPDATE_REFERRAL = update(_REFERRALS).where(_r.referral_id == bindparam("where_referral_id"))
_IS_ATTACHED = select(_ri.incident_id).where(
    _ri.referral_id == bindparam("referral_id"), _ri.incident_id == bindparam("incident_id")
)
_ATTACHED = select(_ri.incident_id).where(_ri.referral_id == bindparam("referral_id"))
_ATTACH = insert(_REFERRAL_INCIDENTS)
_ADD_HISTORY = insert(_HISTORY)
_PARTNER_REQUESTS = (
    select(_h.detail)
    .where(_h.referral_id == bindparam("referral_id"), _h.event_type == "partner-request")
    .order_by(_h.id)
)
# Each incident on record as the referral rules use it, without loading (or validating) the whole event.
_INCIDENT_RISK = select(
    _i.incident_id,
    _i.tenancy_ref,
    _i.tenant_role,
    _i.event[("classification", "risk_tier")].as_string().label("risk_tier"),
    _i.event[("classification", "vulnerability_score")].as_integer().label("vulnerability_score"),
)
_INCIDENT_RISKS_BY_ID = _INCIDENT_RISK.where(_i.incident_id.in_(bindparam("incident_ids", expanding=True)))
_TENANCY_INCIDENT_RISKS = _INCIDENT_RISK.where(_i.tenancy_ref == bindparam("tenancy_ref")).order_by(
    _i.reported_at, _i.incident_id
)
_TENANCY = select(_TENANCIES).where(_t.tenancy_ref == bindparam("tenancy_ref"))
_INSERT_TENANCY = insert(_TENANCIES)
_UPDATE_TENANCY = update(_TENANCIES).where(_t.tenancy_ref == bindparam("where_tenancy_ref"))


_ENCODED_EVENT = {"event": bindparam("event", type_=EncodedJSON())}
# The first record of an incident wins: a republished or re-triaged incident leaves it as it is.
_KEEP_FIRST: dict[str, Insert] = {
    "sqlite": sqlite_insert(_INCIDENTS).values(_ENCODED_EVENT).on_conflict_do_nothing(),
    "postgresql": pg_insert(_INCIDENTS).values(_ENCODED_EVENT).on_conflict_do_nothing(),
}
_INCIDENT_EXISTS = select(_i.incident_id).where(_i.incident_id == bindparam("incident_id"))
_INSERT_INCIDENT = insert(_INCIDENTS).values(_ENCODED_EVENT)

# Rows a consumer stages on its session (incidents on record, attachments, history): written in
# one statement per table, in the order staged, before anything reads those tables and at the
# latest when the transaction commits. Referrals and tenancies, which the rules read back at once,
# are written straight away; staged rows only ever point at referrals already written.


@dataclass
class _Staged:
    incidents: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def _write(session: Session, staged: _Staged) -> None:
    connection = session.connection()
    if staged.incidents:
        stmt = _KEEP_FIRST.get(connection.dialect.name)
        if stmt is not None:
            connection.execute(stmt, staged.incidents)
        else:
            for values in staged.incidents:
                if connection.execute(_INCIDENT_EXISTS, {"incident_id": values["incident_id"]}).first() is None:
                    connection.execute(_INSERT_INCIDENT, values)
    if staged.attachments:
        connection.execute(_ATTACH, staged.attachments)
    if staged.history:
        connection.execute(_ADD_HISTORY, staged.history)


_STAGING = Staged("panels", _Staged, _write)


def write_staged(session: Session) -> None:
    """Write the rows staged on the session (a no-op when there are none)."""
    _STAGING.write_now(session)


async def write_staged_async(session: AsyncSession) -> None:
    """``write_staged`` for an async session (e.g. before an ORM read in the same transaction)."""
    if _STAGING.peek(session) is not None:
        await session.run_sync(write_staged)


def record_incident(session: Session, values: dict[str, Any]) -> None:
    """Keep a triaged incident on record (one already on record stays as it is); ``values["event"]``
    is the event as JSON text. Staged: most incidents are only recorded, so they are written with
    the rest of the batch in one statement."""
    _STAGING.get(session).incidents.append(values)


def attach_incidents(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Stage incidents attached to referrals (``referral_id``, ``incident_id``, ``attached_at``, ``reasons``)."""
    _STAGING.get(session).attachments.extend(rows)


def add_history(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Stage history rows (``referral_id``, ``at``, ``event_type``, ``detail``), kept in the order given."""
    _STAGING.get(session).history.extend(rows)


def open_referral_row(session: Session, panel: str, person_key: str) -> AnyRow | None:
    """The open referral for a person and panel (the columns the consumers use), if any."""
    return session.connection().execute(_OPEN_REFERRAL, {"panel": panel, "person_key": person_key}).first()


def insert_referral(session: Session, values: dict[str, Any]) -> None:
    session.connection().execute(_INSERT_REFERRAL, values)


def update_referral(session: Session, referral_id: uuid.UUID, values: dict[str, Any]) -> None:
    session.connection().execute(_UPDATE_REFERRAL, {**values, "where_referral_id": referral_id})


def is_attached(session: Session, referral_id: uuid.UUID, incident_id: uuid.UUID) -> bool:
    write_staged(session)
    params = {"referral_id": referral_id, "incident_id": incident_id}
    return session.connection().execute(_IS_ATTACHED, params).first() is not None


def attached_incidents(session: Session, referral_id: uuid.UUID) -> set[uuid.UUID]:
    write_staged(session)
    return set(session.connection().execute(_ATTACHED, {"referral_id": referral_id}).scalars())


def partner_requests(session: Session, referral_id: uuid.UUID) -> list[dict[str, Any]]:
    """The details of the partner requests in a referral's history."""
    write_staged(session)
    return list(session.connection().execute(_PARTNER_REQUESTS, {"referral_id": referral_id}).scalars())


def incident_risks(session: Session, ids: Iterable[uuid.UUID]) -> list[AnyRow]:
    """Incidents on record by id: id, tenancy, tenant role, risk tier and vulnerability score."""
    wanted = list(ids)
    if not wanted:
        return []
    write_staged(session)
    return list(session.connection().execute(_INCIDENT_RISKS_BY_ID, {"incident_ids": wanted}).all())


def tenancy_incident_risks(session: Session, tenancy_ref: str) -> list[AnyRow]:
    """A tenancy's incidents on record, oldest first: id, tenant role, risk tier and vulnerability score."""
    write_staged(session)
    return list(session.connection().execute(_TENANCY_INCIDENT_RISKS, {"tenancy_ref": tenancy_ref}).all())


def tenancy_row(session: Session, tenancy_ref: str) -> AnyRow | None:
    """A tenancy on record, every column."""
    return session.connection().execute(_TENANCY, {"tenancy_ref": tenancy_ref}).first()


def save_tenancy(session: Session, tenancy_ref: str, values: dict[str, Any], *, new: bool) -> None:
    if new:
        session.connection().execute(_INSERT_TENANCY, {**values, "tenancy_ref": tenancy_ref})
    else:
        session.connection().execute(_UPDATE_TENANCY, {**values, "where_tenancy_ref": tenancy_ref})


# -- the API's queries (ORM) --------------------------------------------------------------------


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
    await write_staged_async(session)
    rows = await session.execute(
        select(ReferralIncident.incident_id)
        .where(ReferralIncident.referral_id == referral_id)
        .order_by(ReferralIncident.attached_at, ReferralIncident.incident_id)
    )
    return list(rows.scalars())


async def incidents_on_record(session: AsyncSession, ids: list[uuid.UUID]) -> list[IncidentOnRecord]:
    if not ids:
        return []
    await write_staged_async(session)
    return list(
        (await session.execute(select(IncidentOnRecord).where(IncidentOnRecord.incident_id.in_(ids)))).scalars()
    )


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
    await write_staged_async(session)
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
    await write_staged_async(session)
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
    await write_staged_async(session)
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
