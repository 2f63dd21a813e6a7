"""Triage's own store: one row per triaged incident (its classification and the facts later reports
link to), the accepted events in the order triage saw them (for re-triage), and the ASB Case Review
notices raised (so each is raised once, whatever is redelivered)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, UniqueConstraint, Uuid, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.triage import domain
from shared.contracts import ErasureRequested
from shared.db import Base
from shared.retention import rowcount


class TriagedIncident(Base):
    __tablename__ = "triaged_incidents"
    __table_args__ = (
        Index("ix_triaged_victim_reported", "victim_key", "reported_at"),
        Index("ix_triaged_place_reported", "place_key", "reported_at"),
    )

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    victim_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reported_at: Mapped[datetime] = mapped_column()
    triaged_at: Mapped[datetime] = mapped_column()
    violence_or_criminality: Mapped[bool] = mapped_column(Boolean)
    asb_qualifier: Mapped[str] = mapped_column(String(32))
    risk_tier: Mapped[str] = mapped_column(String(16))
    rules_version: Mapped[str] = mapped_column(String(32))
    classification: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Facts later reports are linked by (see domain.ReportFacts).
    partner: Mapped[str] = mapped_column(String(64))
    place_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    complainant_key: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(100))
    hate_incident: Mapped[bool] = mapped_column(Boolean)
    root_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class AcceptedLog(Base):
    """Every accepted incident in the order triage handled it, as it may be kept (a non-crime hate
    incident without risk is stored without personal data): re-triage replays this log."""

    __tablename__ = "triage_accepted_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    accepted: Mapped[dict[str, Any]] = mapped_column(JSON)


class CaseReviewNoticeRecord(Base):
    __tablename__ = "case_review_notices"
    __table_args__ = (
        UniqueConstraint("kind", "notice_key", "incident_id", name="uq_case_review_notice"),
        Index("ix_case_review_notice_key", "notice_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    notice_key: Mapped[str] = mapped_column(String(320))
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    qualifying_incident_ids: Mapped[list[str]] = mapped_column(JSON)
    grounds: Mapped[list[str]] = mapped_column(JSON)
    raised_at: Mapped[datetime] = mapped_column()


TABLES = [TriagedIncident.__table__, AcceptedLog.__table__, CaseReviewNoticeRecord.__table__]


async def get(session: AsyncSession, incident_id: uuid.UUID) -> TriagedIncident | None:
    return await session.get(TriagedIncident, incident_id)


def facts_of(row: TriagedIncident) -> domain.ReportFacts:
    """The linking facts of a stored incident."""
    return domain.ReportFacts(
        incident_id=row.incident_id,
        partner=row.partner,
        victim_key=row.victim_key,
        place_key=row.place_key,
        complainant_key=row.complainant_key,
        reported_at=row.reported_at,
        occurred_at=row.occurred_at,
        kind=row.kind,
        hate_incident=row.hate_incident,
        root_id=row.root_id,
    )


async def earlier_reports(
    session: AsyncSession,
    victim_key: str | None,
    place_key: str | None,
    reported_at: datetime,
    occurred_at: datetime,
    window: timedelta,
    same_incident: timedelta,
) -> list[domain.ReportFacts]:
    """Stored reports that may link to a new one: same victim or place, in the repeat window or close
    enough in time to be the same incident. The domain decides exactly which link."""
    who = []
    if victim_key is not None:
        who.append(TriagedIncident.victim_key == victim_key)
    if place_key is not None:
        who.append(TriagedIncident.place_key == place_key)
    if not who:
        return []
    stmt = select(TriagedIncident).where(
        or_(*who),
        or_(
            TriagedIncident.reported_at.between(reported_at - window, reported_at),
            TriagedIncident.occurred_at.between(occurred_at - same_incident, occurred_at + same_incident),
        ),
    )
    return [facts_of(row) for row in (await session.execute(stmt)).scalars()]


def notice_of(row: CaseReviewNoticeRecord) -> domain.CaseReviewNotice:
    return domain.CaseReviewNotice(
        kind=domain.NoticeKind(row.kind),
        key=row.notice_key,
        incident_id=row.incident_id,
        qualifying_incident_ids=tuple(uuid.UUID(i) for i in row.qualifying_incident_ids),
        grounds=tuple(row.grounds),
    )


async def notices_for(session: AsyncSession, keys: Sequence[str]) -> list[domain.CaseReviewNotice]:
    """Case Review notices already raised for these victims or properties."""
    if not keys:
        return []
    stmt = (
        select(CaseReviewNoticeRecord)
        .where(CaseReviewNoticeRecord.notice_key.in_(list(keys)))
        .order_by(CaseReviewNoticeRecord.id)
    )
    return [notice_of(row) for row in (await session.execute(stmt)).scalars()]


def add_notice(session: AsyncSession, notice: domain.CaseReviewNotice, raised_at: datetime) -> None:
    session.add(
        CaseReviewNoticeRecord(
            kind=notice.kind.value,
            notice_key=notice.key,
            incident_id=notice.incident_id,
            qualifying_incident_ids=[str(i) for i in notice.qualifying_incident_ids],
            grounds=list(notice.grounds),
            raised_at=raised_at,
        )
    )


def add_triaged(session: AsyncSession, accepted: dict[str, Any], triaged: domain.Triaged, triaged_at: datetime) -> None:
    """Store a triaged incident, its linking facts and its place in the accepted log."""
    facts, c = triaged.facts, triaged.classification
    session.add(
        TriagedIncident(
            incident_id=facts.incident_id,
            victim_key=facts.victim_key,
            reported_at=facts.reported_at,
            triaged_at=triaged_at,
            violence_or_criminality=c.violence_or_criminality,
            asb_qualifier=str(c.asb_qualifier),
            risk_tier=str(c.risk_tier),
            rules_version=c.rules_version,
            classification=c.model_dump(mode="json"),
            partner=facts.partner,
            place_key=facts.place_key,
            complainant_key=facts.complainant_key,
            occurred_at=facts.occurred_at,
            kind=facts.kind,
            hate_incident=facts.hate_incident,
            root_id=facts.root_id,
        )
    )
    session.add(AcceptedLog(incident_id=facts.incident_id, accepted=accepted))


async def _delete_incidents(session: AsyncSession, ids: list[uuid.UUID]) -> dict[str, int]:
    counts = {"triaged_incidents": 0, "triage_accepted_log": 0, "case_review_notices": 0}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        counts["triaged_incidents"] += rowcount(
            await session.execute(delete(TriagedIncident).where(TriagedIncident.incident_id.in_(chunk)))
        )
        counts["triage_accepted_log"] += rowcount(
            await session.execute(delete(AcceptedLog).where(AcceptedLog.incident_id.in_(chunk)))
        )
        counts["case_review_notices"] += rowcount(
            await session.execute(delete(CaseReviewNoticeRecord).where(CaseReviewNoticeRecord.incident_id.in_(chunk)))
        )
    return counts


async def erase(session: AsyncSession, request: ErasureRequested) -> dict[str, int]:
    """Delete the person's incidents (as victim, or named by intake), their place in the accepted log
    and the Case Review notices about them."""
    ids = set(request.incident_ids)
    ids |= set(
        (
            await session.execute(
                select(TriagedIncident.incident_id).where(TriagedIncident.victim_key == request.person_key)
            )
        )
        .scalars()
        .all()
    )
    counts = await _delete_incidents(session, sorted(ids))
    counts["case_review_notices"] += rowcount(
        await session.execute(
            delete(CaseReviewNoticeRecord).where(CaseReviewNoticeRecord.notice_key == request.person_key)
        )
    )
    return counts


async def purge(session: AsyncSession, cut_off: datetime) -> dict[str, int]:
    """Delete incidents triaged before ``cut_off`` (past retention), with their log and notices."""
    ids = list(
        (
            await session.execute(select(TriagedIncident.incident_id).where(TriagedIncident.triaged_at < cut_off))
        ).scalars()
    )
    counts = await _delete_incidents(session, ids)
    counts["case_review_notices"] += rowcount(
        await session.execute(delete(CaseReviewNoticeRecord).where(CaseReviewNoticeRecord.raised_at < cut_off))
    )
    return counts
