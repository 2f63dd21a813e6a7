"""Intake use cases: accept a report (from HTTP or the ingress topic) exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import domain, store
from shared.consumer import PermanentError, Received
from shared.contracts import Channel, Event, ReportDetails, ReportReceived
from shared.envelope import decode_event


class IdempotencyConflict(PermanentError):
    """The idempotency key was used before for a report with other content."""


@dataclass(frozen=True)
class Acceptance:
    record: store.AcceptedReport
    created: bool


async def accept_report(
    session: AsyncSession, report: ReportDetails, channel: Channel
) -> tuple[Acceptance, list[Event]]:
    """Store a report as an incident, once per (partner, idempotency key); the events to emit."""
    fingerprint = domain.content_hash(report)
    existing = await store.find_by_key(session, report.partner, report.idempotency_key)
    if existing is not None:
        if existing.content_hash != fingerprint:
            raise IdempotencyConflict(
                f"idempotency_key: {report.idempotency_key!r} was already used by {report.partner} "
                "for a report with different content"
            )
        return Acceptance(existing, created=False), []
    event = domain.accept(report, channel, datetime.now(UTC))
    record = store.AcceptedReport(
        incident_id=event.incident_id,
        partner=str(report.partner),
        idempotency_key=report.idempotency_key,
        content_hash=fingerprint,
        channel=str(channel),
        accepted_at=event.accepted_at,
        event=event.model_dump(mode="json"),
    )
    session.add(record)
    await session.flush()
    return Acceptance(record, created=True), [event]


async def on_partner_report(session: AsyncSession, received: Received) -> list[Event]:
    """A report a partner system published to the ingress topic."""
    _envelope, message = decode_event(ReportReceived, received.headers, received.body)
    report = ReportDetails.model_validate(message.model_dump())
    _acceptance, events = await accept_report(session, report, Channel.KAFKA)
    return events
