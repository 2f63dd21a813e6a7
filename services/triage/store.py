"""Triage's own store: one row per triaged incident (its classification and the facts later reports
link to), the accepted events in the order triage saw them (for re-triage), and the ASB Case Review
notices raised (so each is raised once, whatever is redelivered)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Index,
    Integer,
    Select,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    bindparam,
    delete,
    insert,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.base import Executable

from services.triage import domain
from shared.contracts import ErasureRequested
from shared.db import Base, EncodedJSON, Staged
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

# The consumer's hot path uses Core on these tables with statements built once: the ORM's identity
# map, unit of work and instance loading cost more per message than the rules themselves.
_TRIAGED: Table = TriagedIncident.__table__  # type: ignore[assignment]
_LOG: Table = AcceptedLog.__table__  # type: ignore[assignment]
_NOTICES: Table = CaseReviewNoticeRecord.__table__  # type: ignore[assignment]
_FACT_COLUMNS = tuple(_TRIAGED.c[f.name] for f in dataclasses.fields(domain.ReportFacts))
_BY_ID = select(*_FACT_COLUMNS).where(_TRIAGED.c.incident_id == bindparam("incident_id"))
_NOTICES_FOR = (
    select(
        _NOTICES.c.kind,
        _NOTICES.c.notice_key,
        _NOTICES.c.incident_id,
        _NOTICES.c.qualifying_incident_ids,
        _NOTICES.c.grounds,
    )
    .where(_NOTICES.c.notice_key.in_(bindparam("keys", expanding=True)))
    .order_by(_NOTICES.c.id)
)
_INSERT_NOTICE = insert(_NOTICES)


# The JSON columns come already serialised by orjson (as re-triage writes them), which is several
# times faster than the engine's json.dumps.
_INSERT_TRIAGED = insert(_TRIAGED).values(classification=bindparam("classification", type_=EncodedJSON()))
_INSERT_LOG = insert(_LOG).values(accepted=bindparam("accepted", type_=EncodedJSON()))


def _earlier_statement(by_victim: bool, by_place: bool) -> Select[Any]:
    who = []
    if by_victim:
        who.append(_TRIAGED.c.victim_key == bindparam("victim_key"))
    if by_place:
        who.append(_TRIAGED.c.place_key == bindparam("place_key"))
    return select(*_FACT_COLUMNS).where(
        or_(*who),
        or_(
            _TRIAGED.c.reported_at.between(bindparam("window_start"), bindparam("reported_at")),
            _TRIAGED.c.occurred_at.between(bindparam("same_from"), bindparam("same_to")),
        ),
    )


# By (victim key given, place key given): the stored reports a new one may link to, and the same
# with the new incident's own row, if stored, in one round trip.
_EARLIER: dict[tuple[bool, bool], Select[Any]] = {
    (True, True): _earlier_statement(True, True),
    (True, False): _earlier_statement(True, False),
    (False, True): _earlier_statement(False, True),
}
_OWN_ROW_AND_EARLIER: dict[tuple[bool, bool], Executable] = {
    (False, False): _BY_ID,
    **{who: union_all(_BY_ID, statement) for who, statement in _EARLIER.items()},
}


class _Staged:
    """Incidents triaged in this transaction, written when it commits: one statement per table for a
    whole batch instead of two per message. Later messages of the batch link to them from here, as
    the same query would find them in the store."""

    def __init__(self) -> None:
        self.incidents: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.by_id: dict[uuid.UUID, domain.ReportFacts] = {}
        self.by_victim: dict[str, list[domain.ReportFacts]] = {}
        self.by_place: dict[str, list[domain.ReportFacts]] = {}

    def add(self, triaged: domain.Triaged, triaged_at: datetime, accepted_json: str) -> None:
        f = triaged.facts
        # The facts as a query reads them back: times in UTC.
        facts = domain.ReportFacts(
            f.incident_id,
            f.partner,
            f.victim_key,
            f.place_key,
            f.complainant_key,
            f.reported_at.astimezone(UTC),
            f.occurred_at.astimezone(UTC),
            f.kind,
            f.hate_incident,
            f.root_id,
        )
        self.incidents.append(_triaged_row(triaged, triaged_at))
        self.log.append({"incident_id": f.incident_id, "accepted": accepted_json})
        self.by_id[f.incident_id] = facts
        if f.victim_key is not None:
            self.by_victim.setdefault(f.victim_key, []).append(facts)
        if f.place_key is not None:
            self.by_place.setdefault(f.place_key, []).append(facts)

    def earlier(
        self, victim_key: str | None, place_key: str | None, params: dict[str, Any]
    ) -> list[domain.ReportFacts]:
        """What ``_earlier_statement`` selects, among the staged incidents."""
        found: dict[uuid.UUID, domain.ReportFacts] = {}
        if victim_key is not None:
            found.update((f.incident_id, f) for f in self.by_victim.get(victim_key, ()))
        if place_key is not None:
            found.update((f.incident_id, f) for f in self.by_place.get(place_key, ()))
        return [
            f
            for f in found.values()
            if params["window_start"] <= f.reported_at <= params["reported_at"]
            or params["same_from"] <= f.occurred_at <= params["same_to"]
        ]


def _write(session: Session, staged: _Staged) -> None:
    if staged.incidents:
        connection = session.connection()
        connection.execute(_INSERT_TRIAGED, staged.incidents)
        connection.execute(_INSERT_LOG, staged.log)


_STAGING = Staged("triage", _Staged, _write)


def _earlier_params(
    victim_key: str | None,
    place_key: str | None,
    reported_at: datetime,
    occurred_at: datetime,
    window: timedelta,
    same_incident: timedelta,
) -> dict[str, Any]:
    return {
        "victim_key": victim_key,
        "place_key": place_key,
        "window_start": reported_at - window,
        "reported_at": reported_at,
        "same_from": occurred_at - same_incident,
        "same_to": occurred_at + same_incident,
    }


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
    statement = _EARLIER.get((victim_key is not None, place_key is not None))
    if statement is None:
        return []
    params = _earlier_params(victim_key, place_key, reported_at, occurred_at, window, same_incident)
    earlier = [domain.ReportFacts(*row) for row in await session.execute(statement, params)]
    staged = _STAGING.peek(session)
    return earlier if staged is None else earlier + staged.earlier(victim_key, place_key, params)


async def reports_to_link(
    session: AsyncSession,
    incident_id: uuid.UUID,
    victim_key: str | None,
    place_key: str | None,
    reported_at: datetime,
    occurred_at: datetime,
    window: timedelta,
    same_incident: timedelta,
) -> list[domain.ReportFacts] | None:
    """None when this incident has been triaged already, else what ``earlier_reports`` finds for it:
    both in one query."""
    staged = _STAGING.peek(session)
    if staged is not None and incident_id in staged.by_id:
        return None
    params = _earlier_params(victim_key, place_key, reported_at, occurred_at, window, same_incident)
    params["incident_id"] = incident_id
    statement = _OWN_ROW_AND_EARLIER[(victim_key is not None, place_key is not None)]
    earlier = []
    for row in await session.execute(statement, params):
        if row[0] == incident_id:
            return None
        earlier.append(domain.ReportFacts(*row))
    if staged is not None and (victim_key is not None or place_key is not None):
        earlier += staged.earlier(victim_key, place_key, params)
    return earlier


def _notice(
    kind: str, key: str, incident_id: uuid.UUID, qualifying_incident_ids: list[str], grounds: list[str]
) -> domain.CaseReviewNotice:
    return domain.CaseReviewNotice(
        kind=domain.NoticeKind(kind),
        key=key,
        incident_id=incident_id,
        qualifying_incident_ids=tuple(uuid.UUID(i) for i in qualifying_incident_ids),
        grounds=tuple(grounds),
    )


def notice_of(row: CaseReviewNoticeRecord) -> domain.CaseReviewNotice:
    return _notice(row.kind, row.notice_key, row.incident_id, row.qualifying_incident_ids, row.grounds)


async def notices_for(session: AsyncSession, keys: Sequence[str]) -> list[domain.CaseReviewNotice]:
    """Case Review notices already raised for these victims or properties."""
    if not keys:
        return []
    return [_notice(*row) for row in await session.execute(_NOTICES_FOR, {"keys": list(keys)})]


def _notice_row(notice: domain.CaseReviewNotice, raised_at: datetime) -> dict[str, Any]:
    return {
        "kind": notice.kind.value,
        "notice_key": notice.key,
        "incident_id": notice.incident_id,
        "qualifying_incident_ids": [str(i) for i in notice.qualifying_incident_ids],
        "grounds": list(notice.grounds),
        "raised_at": raised_at,
    }


def _triaged_row(triaged: domain.Triaged, triaged_at: datetime) -> dict[str, Any]:
    facts, c = triaged.facts, triaged.classification
    return {
        "incident_id": facts.incident_id,
        "victim_key": facts.victim_key,
        "reported_at": facts.reported_at,
        "triaged_at": triaged_at,
        "violence_or_criminality": c.violence_or_criminality,
        "asb_qualifier": str(c.asb_qualifier),
        "risk_tier": str(c.risk_tier),
        "rules_version": c.rules_version,
        "classification": orjson.dumps(c.model_dump(mode="json")).decode(),
        "partner": facts.partner,
        "place_key": facts.place_key,
        "complainant_key": facts.complainant_key,
        "occurred_at": facts.occurred_at,
        "kind": facts.kind,
        "hate_incident": facts.hate_incident,
        "root_id": facts.root_id,
    }


async def stage_triaged(
    session: AsyncSession,
    accepted_json: str,
    triaged: domain.Triaged,
    notices: Sequence[domain.CaseReviewNotice],
    triaged_at: datetime,
) -> None:
    """Store a triaged incident, its place in the accepted log (``accepted_json``: the accepted event as
    triage keeps it, as JSON text) and the notices it raised, in the session's transaction, without ORM
    objects. The incident and its log entry are written when the transaction commits (``earlier_reports``
    and ``reports_to_link`` see them before that); the notices at once, for ``notices_for``."""
    staged = _STAGING.get(session)
    staged.add(triaged, triaged_at, accepted_json)
    for notice in notices:
        await session.execute(_INSERT_NOTICE, _notice_row(notice, triaged_at))


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
