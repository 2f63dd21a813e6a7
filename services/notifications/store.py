"""Notifications' own store: each police alert (stored before any attempt), every message to be
sent on every channel (a dispatch) with every attempt, escalations, the events the Daily Briefing
is built from, and the briefings published."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from typing import cast as type_cast

from sqlalchemy import (
    JSON,
    CursorResult,
    ForeignKey,
    Index,
    Insert,
    Integer,
    String,
    Table,
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
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.contracts import ErasureRequested
from shared.db import Base, Staged, table_of
from shared.retention import rowcount


class AlertStatus(enum.StrEnum):
    PENDING = "pending"  # stored; not yet on every channel, no attempt failed last
    FAILED = "failed"  # not yet on every channel and the last attempt on one failed (still retried)
    DELIVERED = "delivered"  # every configured channel has it
    ACKNOWLEDGED = "acknowledged"  # a query filter: someone acknowledged it
    OVERDUE = "overdue"  # a query filter: past its deadline, not acknowledged


class DispatchStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


class AttemptOutcome(enum.StrEnum):
    SENDING = "sending"  # recorded before the send: a crash leaves this, later marked interrupted
    DELIVERED = "delivered"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the service stopped mid-send; the outcome is unknown, so it is resent


class PoliceAlert(Base):
    __tablename__ = "police_alerts"
    __table_args__ = (Index("ix_alert_ack_due", "acknowledged_at", "acknowledge_by"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    status: Mapped[str] = mapped_column(String(16))
    risk_tier: Mapped[str] = mapped_column(String(16))
    crime_category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    channels: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(index=True)
    acknowledge_by: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class Dispatch(Base):
    """One message to one destination over one channel, delivered until it is accepted."""

    __tablename__ = "dispatches"
    __table_args__ = (Index("ix_dispatch_status_due", "status", "next_attempt_at"),)

    dispatch_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # police-alert, escalation, cross-border, panel-outcome, briefing
    subject_id: Mapped[str] = mapped_column(String(100), index=True)
    alert_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("police_alerts.alert_id"), nullable=True, index=True
    )
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    destination: Mapped[str] = mapped_column(Text)
    secret_name: Mapped[str | None] = mapped_column(String(32), nullable=True)  # which webhook key signs it
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DispatchAttempt(Base):
    __tablename__ = "dispatch_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dispatch_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("dispatches.dispatch_id"), index=True)
    alert_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    attempted_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertEscalation(Base):
    __tablename__ = "police_alert_escalations"
    __table_args__ = (UniqueConstraint("alert_id", "acknowledge_by", name="uq_one_escalation_per_deadline"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("police_alerts.alert_id"), index=True)
    acknowledge_by: Mapped[datetime] = mapped_column()
    escalated_at: Mapped[datetime] = mapped_column()
    channels: Mapped[list[str]] = mapped_column(JSON)


class IncidentOfConcern(Base):
    """A triaged incident the Daily Briefing may list (see domain.is_issue_of_concern)."""

    __tablename__ = "briefing_incidents"

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    triaged_at: Mapped[datetime] = mapped_column(index=True)
    fact: Mapped[dict[str, Any]] = mapped_column(JSON)


class CaseReviewNotice(Base):
    __tablename__ = "briefing_case_reviews"
    __table_args__ = (UniqueConstraint("kind", "victim_key", "incident_id", name="uq_case_review_notice"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    victim_key: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    raised_at: Mapped[datetime] = mapped_column(index=True)
    fact: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReferralSeen(Base):
    __tablename__ = "briefing_referrals"

    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    fact: Mapped[dict[str, Any]] = mapped_column(JSON)


class OutcomeSeen(Base):
    __tablename__ = "panel_outcomes_seen"
    __table_args__ = (UniqueConstraint("referral_id", "recorded_at", name="uq_outcome_seen"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    recorded_at: Mapped[datetime] = mapped_column()
    panel: Mapped[str] = mapped_column(String(16))
    referring_partner: Mapped[str | None] = mapped_column(String(40), nullable=True)
    decision: Mapped[str] = mapped_column(Text)


class PublishedBriefing(Base):
    __tablename__ = "daily_briefings"

    briefing_date: Mapped[date] = mapped_column(primary_key=True)
    cut_off: Mapped[datetime] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column()


TABLES = [
    PoliceAlert.__table__,
    Dispatch.__table__,
    DispatchAttempt.__table__,
    AlertEscalation.__table__,
    IncidentOfConcern.__table__,
    CaseReviewNotice.__table__,
    ReferralSeen.__table__,
    OutcomeSeen.__table__,
    PublishedBriefing.__table__,
]


# -- the hot path, in SQLAlchemy Core on the mapped tables (no ORM identity map or unit of work) --

ALERTS: Table = table_of(PoliceAlert)
DISPATCHES: Table = table_of(Dispatch)
ATTEMPTS: Table = table_of(DispatchAttempt)
INCIDENTS_OF_CONCERN: Table = table_of(IncidentOfConcern)
CASE_REVIEW_NOTICES: Table = table_of(CaseReviewNotice)
REFERRALS_SEEN: Table = table_of(ReferralSeen)

_SENDABLE_COLUMNS = (
    DISPATCHES.c.dispatch_id,
    DISPATCHES.c.alert_id,
    DISPATCHES.c.channel,
    DISPATCHES.c.destination,
    DISPATCHES.c.secret_name,
    DISPATCHES.c.content,
    DISPATCHES.c.attempts,
    DISPATCHES.c.created_at,
)
_DUE_TO_SEND = (
    select(*_SENDABLE_COLUMNS)
    .where(DISPATCHES.c.status == DispatchStatus.PENDING.value, DISPATCHES.c.next_attempt_at <= bindparam("now"))
    .order_by(DISPATCHES.c.next_attempt_at, DISPATCHES.c.dispatch_id)
    .limit(bindparam("limit"))
)
_PENDING_TO_SEND = select(*_SENDABLE_COLUMNS).where(
    DISPATCHES.c.status == DispatchStatus.PENDING.value,
    DISPATCHES.c.dispatch_id.in_(bindparam("ids", expanding=True)),
)
_START_ATTEMPTS = insert(ATTEMPTS).returning(ATTEMPTS.c.id, sort_by_parameter_order=True)
_FINISH_ATTEMPT = (
    update(ATTEMPTS)
    .where(ATTEMPTS.c.id == bindparam("b_id"))
    .values(
        finished_at=bindparam("b_finished_at"),
        outcome=bindparam("b_outcome"),
        status_code=bindparam("b_status_code"),
        error=bindparam("b_error"),
    )
)
_SETTLE_DISPATCH = (
    update(DISPATCHES)
    .where(DISPATCHES.c.dispatch_id == bindparam("b_id"))
    .values(
        attempts=DISPATCHES.c.attempts + 1,
        status=bindparam("b_status"),
        delivered_at=bindparam("b_delivered_at"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        last_error=bindparam("b_last_error"),
    )
)
_ALERTS_BY_ID = select(
    ALERTS.c.alert_id, ALERTS.c.incident_id, ALERTS.c.status, ALERTS.c.attempts, ALERTS.c.delivered_at
).where(ALERTS.c.alert_id.in_(bindparam("ids", expanding=True)))
_DISPATCHES_OF_ALERTS = select(
    DISPATCHES.c.alert_id, DISPATCHES.c.channel, DISPATCHES.c.status, DISPATCHES.c.last_error
).where(DISPATCHES.c.alert_id.in_(bindparam("ids", expanding=True)))
_SETTLE_ALERT = (
    update(ALERTS)
    .where(ALERTS.c.alert_id == bindparam("b_id"))
    .values(attempts=bindparam("b_attempts"), status=bindparam("b_status"), delivered_at=bindparam("b_delivered_at"))
)

_insert_if_absent: dict[tuple[str, str], Insert] = {}


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


async def insert_if_absent(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row unless one with the same key is stored; True if this call inserted it."""
    dialect = _dialect(session)
    stmt = _insert_if_absent_statement(table, dialect)
    if dialect not in ("sqlite", "postgresql"):
        key = list(table.primary_key.columns)
        found = await session.execute(select(*key).where(*(c == values[c.name] for c in key)))
        if found.first() is not None:
            return False
    result = type_cast(CursorResult[Any], await session.execute(stmt, values))
    return bool(result.rowcount)


# -- rows a consumer's batch stages, written at its commit (inside its transaction) -------------
# A batch of hundreds of messages then costs a few statements, not a few per message.

_STORED_ALERTS = select(ALERTS.c.alert_id).where(ALERTS.c.alert_id.in_(bindparam("ids", expanding=True)))


# A new alert's row and its dispatches' rows, built only if the alert is not stored by the commit.
AlertRows = Callable[[], tuple[dict[str, Any], list[dict[str, Any]]]]


class _Staged:
    __slots__ = ("absent", "alerts")

    def __init__(self) -> None:
        self.alerts: dict[uuid.UUID, AlertRows] = {}
        self.absent: dict[str, tuple[Table, list[dict[str, Any]]]] = {}


def alert_staged(session: AsyncSession, alert_id: uuid.UUID) -> bool:
    """Whether this transaction has already staged the alert."""
    staged = _STAGING.peek(session)
    return staged is not None and alert_id in staged.alerts


def stage_alert(session: AsyncSession, alert_id: uuid.UUID, rows: AlertRows) -> None:
    """Write a new alert and its dispatches (as ``rows()`` makes them) when the transaction
    commits, unless the alert is stored by then (its dispatches were stored with it)."""
    _STAGING.get(session).alerts.setdefault(alert_id, rows)


def stage_if_absent(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """Write a row when the transaction commits, unless one with the same key is stored by then."""
    staged = _STAGING.get(session).absent.setdefault(table.name, (table, []))
    staged[1].append(row)


def _write(session: Session, staged: _Staged) -> None:
    connection = session.connection()
    if staged.alerts:
        stored = set(connection.execute(_STORED_ALERTS, {"ids": list(staged.alerts)}).scalars())
        new = [rows() for alert_id, rows in staged.alerts.items() if alert_id not in stored]
        if new:
            # The alerts first: every dispatch refers to its alert.
            connection.execute(insert(ALERTS), [alert for alert, _ in new])
            dispatches = [d for _, rows in new for d in rows]
            if dispatches:
                connection.execute(insert(DISPATCHES), dispatches)
    for table, rows in staged.absent.values():
        dialect = connection.dialect.name
        if dialect in ("sqlite", "postgresql"):
            connection.execute(_insert_if_absent_statement(table, dialect), rows)
            continue
        key = list(table.primary_key.columns)
        seen: set[tuple[Any, ...]] = set()
        for row in rows:
            pk = tuple(row[c.name] for c in key)
            if (
                pk in seen
                or connection.execute(select(*key).where(*(c == v for c, v in zip(key, pk, strict=True)))).first()
            ):
                continue
            seen.add(pk)
            connection.execute(insert(table), row)


_STAGING = Staged("notifications", _Staged, _write)


def _insert_if_absent_statement(table: Table, dialect: str) -> Insert:
    stmt = _insert_if_absent.get((table.name, dialect))
    if stmt is None:
        if dialect == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect == "postgresql":
            stmt = pg_insert(table).on_conflict_do_nothing()
        else:
            stmt = insert(table)
        _insert_if_absent[(table.name, dialect)] = stmt
    return stmt


async def sendable(session: AsyncSession, now: datetime, limit: int, ids: list[uuid.UUID] | None = None) -> list[Any]:
    """Pending dispatches with what sending them needs: those due at ``now`` (oldest first), or
    those of ``ids`` still pending."""
    if ids is not None:
        return list((await session.execute(_PENDING_TO_SEND, {"ids": ids})).all())
    return list((await session.execute(_DUE_TO_SEND, {"now": now, "limit": limit})).all())


async def start_attempts(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Record attempts as 'sending' (before anything is sent); their ids, in the order given."""
    return list((await session.execute(_START_ATTEMPTS, rows)).scalars())


async def finish_attempts(
    session: AsyncSession, attempts: list[dict[str, Any]], dispatches: list[dict[str, Any]]
) -> None:
    """Record how each attempt ended and where its dispatch stands (``b_``-prefixed parameters)."""
    await session.execute(_FINISH_ATTEMPT, attempts)
    await session.execute(_SETTLE_DISPATCH, dispatches)


async def alerts_to_settle(session: AsyncSession, alert_ids: list[uuid.UUID]) -> tuple[list[Any], list[Any]]:
    """The alerts (id, incident, status, attempts, delivered_at) and all their dispatches (alert,
    channel, status, last error)."""
    alerts = (await session.execute(_ALERTS_BY_ID, {"ids": alert_ids})).all()
    dispatches = (await session.execute(_DISPATCHES_OF_ALERTS, {"ids": alert_ids})).all()
    return list(alerts), list(dispatches)


async def settle_alerts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(_SETTLE_ALERT, rows)


_FACT_OF_INCIDENT = select(INCIDENTS_OF_CONCERN.c.fact).where(
    INCIDENTS_OF_CONCERN.c.incident_id == bindparam("incident_id")
)
_UPDATE_FACT = (
    update(INCIDENTS_OF_CONCERN)
    .where(INCIDENTS_OF_CONCERN.c.incident_id == bindparam("b_id"))
    .values(fact=bindparam("b_fact"))
)
_CASE_REVIEW_NOTICED = select(CASE_REVIEW_NOTICES.c.id).where(
    CASE_REVIEW_NOTICES.c.kind == bindparam("kind"),
    CASE_REVIEW_NOTICES.c.victim_key == bindparam("victim_key"),
    CASE_REVIEW_NOTICES.c.incident_id == bindparam("incident_id"),
)


async def incident_fact(session: AsyncSession, incident_id: uuid.UUID) -> dict[str, Any] | None:
    """What the briefing keeps about an incident of concern, if it keeps anything."""
    fact: dict[str, Any] | None = (await session.execute(_FACT_OF_INCIDENT, {"incident_id": incident_id})).scalar()
    return fact


async def replace_incident_fact(session: AsyncSession, incident_id: uuid.UUID, fact: dict[str, Any]) -> None:
    await session.execute(_UPDATE_FACT, {"b_id": incident_id, "b_fact": fact})


async def add_case_review_notice(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Store a case review notice unless one for the same kind, victim and incident is; True if new."""
    key = {k: values[k] for k in ("kind", "victim_key", "incident_id")}
    if (await session.execute(_CASE_REVIEW_NOTICED, key)).first() is not None:
        return False
    await session.execute(insert(CASE_REVIEW_NOTICES), values)
    return True


async def find_by_incident(session: AsyncSession, incident_id: uuid.UUID) -> PoliceAlert | None:
    return (
        await session.execute(select(PoliceAlert).where(PoliceAlert.incident_id == incident_id))
    ).scalar_one_or_none()


async def dispatches_for_alert(session: AsyncSession, alert_id: uuid.UUID) -> list[Dispatch]:
    rows = await session.execute(select(Dispatch).where(Dispatch.alert_id == alert_id).order_by(Dispatch.created_at))
    return list(rows.scalars())


async def list_alerts(
    session: AsyncSession,
    status: AlertStatus | None,
    incident_id: uuid.UUID | None,
    created_from: datetime | None,
    created_to: datetime | None,
    now: datetime,
) -> list[PoliceAlert]:
    """Alerts, oldest first. Status filters: ``delivered`` = every channel has it (acknowledged or
    not); ``acknowledged``; ``overdue`` = past its deadline and not acknowledged; ``pending`` and
    ``failed`` = not yet on every channel."""
    stmt = select(PoliceAlert).order_by(PoliceAlert.created_at, PoliceAlert.alert_id)
    if status == AlertStatus.ACKNOWLEDGED:
        stmt = stmt.where(PoliceAlert.acknowledged_at.is_not(None))
    elif status == AlertStatus.OVERDUE:
        stmt = stmt.where(PoliceAlert.acknowledged_at.is_(None), PoliceAlert.acknowledge_by <= now)
    elif status is not None:
        stmt = stmt.where(PoliceAlert.status == str(status))
    if incident_id:
        stmt = stmt.where(PoliceAlert.incident_id == incident_id)
    if created_from:
        stmt = stmt.where(PoliceAlert.created_at >= created_from)
    if created_to:
        stmt = stmt.where(PoliceAlert.created_at < created_to)
    return list((await session.execute(stmt)).scalars())


async def attempts_for_alert(session: AsyncSession, alert_id: uuid.UUID) -> list[DispatchAttempt]:
    rows = await session.execute(
        select(DispatchAttempt).where(DispatchAttempt.alert_id == alert_id).order_by(DispatchAttempt.id)
    )
    return list(rows.scalars())


async def attempts_for_dispatch(session: AsyncSession, dispatch_id: uuid.UUID) -> list[DispatchAttempt]:
    rows = await session.execute(
        select(DispatchAttempt).where(DispatchAttempt.dispatch_id == dispatch_id).order_by(DispatchAttempt.id)
    )
    return list(rows.scalars())


async def unacknowledged_past_deadline(session: AsyncSession, now: datetime) -> list[PoliceAlert]:
    rows = await session.execute(
        select(PoliceAlert)
        .where(PoliceAlert.acknowledged_at.is_(None), PoliceAlert.acknowledge_by <= now)
        .order_by(PoliceAlert.acknowledge_by, PoliceAlert.alert_id)
    )
    return list(rows.scalars())


async def escalated_deadlines(session: AsyncSession, alert_ids: list[uuid.UUID]) -> set[tuple[uuid.UUID, datetime]]:
    if not alert_ids:
        return set()
    rows = await session.execute(
        select(AlertEscalation.alert_id, AlertEscalation.acknowledge_by).where(AlertEscalation.alert_id.in_(alert_ids))
    )
    return {(a, d) for a, d in rows}


async def briefing_rows(
    session: AsyncSession, since: datetime, until: datetime
) -> tuple[list[IncidentOfConcern], list[CaseReviewNotice], list[ReferralSeen], list[PoliceAlert]]:
    """Everything the briefing for a cut-off ``until`` may use, from ``since`` (the look-back)."""
    incidents = await session.execute(
        select(IncidentOfConcern).where(IncidentOfConcern.triaged_at >= since, IncidentOfConcern.triaged_at < until)
    )
    reviews = await session.execute(
        select(CaseReviewNotice).where(CaseReviewNotice.raised_at >= since, CaseReviewNotice.raised_at < until)
    )
    referrals = await session.execute(
        select(ReferralSeen).where(ReferralSeen.created_at >= since, ReferralSeen.created_at < until)
    )
    alerts = await session.execute(
        select(PoliceAlert).where(PoliceAlert.created_at >= since, PoliceAlert.created_at < until)
    )
    return (
        list(incidents.scalars()),
        list(reviews.scalars()),
        list(referrals.scalars()),
        list(alerts.scalars()),
    )


# -- retention and erasure (issue #8) ---------------------------------------------------------


def _erased(request_id: uuid.UUID) -> dict[str, Any]:
    return {"erased": str(request_id)}


async def _anonymise_dispatches(session: AsyncSession, where: Any, request_id: uuid.UUID) -> int:
    # Only delivered messages: one still owed to the police (or a partner) must go out whole.
    rows = await session.execute(select(Dispatch).where(where, Dispatch.status == DispatchStatus.DELIVERED))
    count = 0
    for d in rows.scalars():
        if not d.content.get("erased"):
            d.content = _erased(request_id)
            count += 1
    return count


async def erase(session: AsyncSession, request: ErasureRequested) -> dict[str, int]:
    """Delete what the briefing holds about the person; anonymise their police alerts and sent
    messages, keeping the proof of when the police were told (ids, times, attempts)."""
    key, ids = request.person_key, set(request.incident_ids)
    facts = await session.execute(
        select(IncidentOfConcern).where(
            or_(IncidentOfConcern.incident_id.in_(ids), cast(IncidentOfConcern.fact, Text).contains(key))
        )
    )
    ids |= {f.incident_id for f in facts.scalars() if f.incident_id in ids or f.fact.get("victim_key") == key}
    referrals = await session.execute(select(ReferralSeen).where(cast(ReferralSeen.fact, Text).contains(key)))
    referral_ids = {r.referral_id for r in referrals.scalars() if r.fact.get("person_key") == key}
    counts: dict[str, int] = {
        "briefing_incidents": rowcount(
            await session.execute(delete(IncidentOfConcern).where(IncidentOfConcern.incident_id.in_(ids)))
        ),
        "briefing_case_reviews": rowcount(
            await session.execute(
                delete(CaseReviewNotice).where(
                    or_(CaseReviewNotice.victim_key == key, CaseReviewNotice.incident_id.in_(ids))
                )
            )
        ),
        "briefing_referrals": rowcount(
            await session.execute(delete(ReferralSeen).where(ReferralSeen.referral_id.in_(referral_ids)))
        ),
        "panel_outcomes_seen": rowcount(
            await session.execute(delete(OutcomeSeen).where(OutcomeSeen.referral_id.in_(referral_ids)))
        ),
    }
    alerts = list((await session.execute(select(PoliceAlert).where(PoliceAlert.incident_id.in_(ids)))).scalars())
    for alert in alerts:
        alert.payload = _erased(request.request_id)
    counts["police_alerts"] = len(alerts)
    needles = [key, *(str(i) for i in ids), *(str(r) for r in referral_ids), *(str(a.alert_id) for a in alerts)]
    counts["dispatches"] = await _anonymise_dispatches(
        session,
        or_(Dispatch.subject_id.in_(needles), *(cast(Dispatch.content, Text).contains(n) for n in needles)),
        request.request_id,
    )
    briefings = await session.execute(
        select(PublishedBriefing).where(or_(*(PublishedBriefing.content.contains(n) for n in needles)))
    )
    counts["daily_briefings"] = 0
    for b in briefings.scalars():
        # The briefing can be rebuilt from the store (now without the person); its digest stays as the record.
        b.content = f'{{"erased": "{request.request_id}"}}'
        counts["daily_briefings"] += 1
    return counts


async def purge(session: AsyncSession, cut_off: datetime) -> dict[str, int]:
    """Delete what is older than ``cut_off``: settled alerts with their messages, and briefing facts."""
    old_alerts = select(PoliceAlert.alert_id).where(
        PoliceAlert.created_at < cut_off,
        or_(PoliceAlert.acknowledged_at.is_not(None), PoliceAlert.status == "delivered"),
    )
    alert_ids = list((await session.execute(old_alerts)).scalars())
    old_dispatches = select(Dispatch.dispatch_id).where(
        or_(Dispatch.alert_id.in_(alert_ids), (Dispatch.alert_id.is_(None) & (Dispatch.created_at < cut_off)))
    )
    dispatch_ids = list((await session.execute(old_dispatches)).scalars())
    return {
        "dispatch_attempts": rowcount(
            await session.execute(delete(DispatchAttempt).where(DispatchAttempt.dispatch_id.in_(dispatch_ids)))
        ),
        "dispatches": rowcount(await session.execute(delete(Dispatch).where(Dispatch.dispatch_id.in_(dispatch_ids)))),
        "police_alert_escalations": rowcount(
            await session.execute(delete(AlertEscalation).where(AlertEscalation.alert_id.in_(alert_ids)))
        ),
        "police_alerts": rowcount(
            await session.execute(delete(PoliceAlert).where(PoliceAlert.alert_id.in_(alert_ids)))
        ),
        "briefing_incidents": rowcount(
            await session.execute(delete(IncidentOfConcern).where(IncidentOfConcern.triaged_at < cut_off))
        ),
        "briefing_case_reviews": rowcount(
            await session.execute(delete(CaseReviewNotice).where(CaseReviewNotice.raised_at < cut_off))
        ),
        "briefing_referrals": rowcount(
            await session.execute(delete(ReferralSeen).where(ReferralSeen.created_at < cut_off))
        ),
        "panel_outcomes_seen": rowcount(
            await session.execute(delete(OutcomeSeen).where(OutcomeSeen.recorded_at < cut_off))
        ),
        "daily_briefings": rowcount(
            await session.execute(delete(PublishedBriefing).where(PublishedBriefing.published_at < cut_off))
        ),
    }
