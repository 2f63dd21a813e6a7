"""Intake use cases: accept a report, a panel referral request or a tenancy possession update (from
HTTP or the ingress topic) exactly once per partner and idempotency key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import domain, store
from shared.consumer import PermanentError, Received
from shared.contracts import (
    Channel,
    Event,
    Location,
    PanelReferralRequested,
    ReportDetails,
    ReportReceived,
    TenancyPossessionUpdated,
)
from shared.envelope import decode_event, read_envelope


class IdempotencyConflict(PermanentError):
    """The idempotency key was used before for a report with other content."""


class UnknownEventType(PermanentError):
    """A message on the ingress topic whose ce_type intake does not accept."""


@dataclass(frozen=True)
class Acceptance:
    record: store.AcceptedReport
    created: bool


@dataclass(frozen=True)
class PartnerEventAcceptance:
    record: store.AcceptedPartnerEvent
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


PartnerEvent = TypeVar("PartnerEvent", PanelReferralRequested, TenancyPossessionUpdated)

# What each partner event is called in an error message.
_DESCRIBED = {
    PanelReferralRequested.CE_TYPE: "panel referral request",
    TenancyPossessionUpdated.CE_TYPE: "tenancy event",
}


def _fingerprint(event: PanelReferralRequested | TenancyPossessionUpdated) -> str:
    # person_key is intake's own addition, so it is not part of what the partner sent.
    body = event.model_dump(mode="json", exclude={"person_key"})
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _with_person_key(event: PartnerEvent) -> PartnerEvent:
    if not isinstance(event, PanelReferralRequested):
        return event
    # The same key rules as for a report's victim, so a partner's request finds the person's
    # triaged incidents; a request carries no property, hence no UPRN.
    as_report = ReportDetails.model_construct(
        partner=event.partner,
        idempotency_key=event.idempotency_key,
        reported_at=event.requested_at,
        description=event.reason,
        location=Location.model_construct(uprn=None),
    )
    return event.model_copy(update={"person_key": domain.person_key(event.person, as_report)})


async def accept_partner_event(
    session: AsyncSession, event: PartnerEvent, channel: Channel
) -> tuple[PartnerEventAcceptance, list[Event]]:
    """Store a panel referral request or tenancy event once per (partner, idempotency key); the
    event to republish on its own topic."""
    fingerprint = _fingerprint(event)
    existing = await store.find_partner_event(session, event.CE_TYPE, event.partner, event.idempotency_key)
    if existing is not None:
        if existing.content_hash != fingerprint:
            raise IdempotencyConflict(
                f"idempotency_key: {event.idempotency_key!r} was already used by {event.partner} "
                f"for a {_DESCRIBED[event.CE_TYPE]} with different content"
            )
        return PartnerEventAcceptance(existing, created=False), []
    published = _with_person_key(event)
    record = store.AcceptedPartnerEvent(
        kind=event.CE_TYPE,
        partner=str(event.partner),
        idempotency_key=event.idempotency_key,
        content_hash=fingerprint,
        channel=str(channel),
        accepted_at=datetime.now(UTC),
        event=published.model_dump(mode="json"),
    )
    session.add(record)
    await session.flush()
    return PartnerEventAcceptance(record, created=True), [published]


INGRESS_TYPES = (ReportReceived.CE_TYPE, PanelReferralRequested.CE_TYPE, TenancyPossessionUpdated.CE_TYPE)


async def on_partner_report(session: AsyncSession, received: Received) -> list[Event]:
    """A message a partner system published to the ingress topic: a report, a panel referral
    request or a tenancy possession update, told apart by its ce_type."""
    envelope = read_envelope(received.headers)
    if envelope.type == ReportReceived.CE_TYPE:
        _envelope, message = decode_event(ReportReceived, received.headers, received.body)
        report = ReportDetails.model_validate(message.model_dump())
        _acceptance, events = await accept_report(session, report, Channel.KAFKA)
        return events
    if envelope.type == PanelReferralRequested.CE_TYPE:
        _envelope, request = decode_event(PanelReferralRequested, received.headers, received.body)
        _accepted, events = await accept_partner_event(session, request, Channel.KAFKA)
        return events
    if envelope.type == TenancyPossessionUpdated.CE_TYPE:
        _envelope, update = decode_event(TenancyPossessionUpdated, received.headers, received.body)
        _accepted, events = await accept_partner_event(session, update, Channel.KAFKA)
        return events
    raise UnknownEventType(
        f"ce_type: {envelope.type!r} is not accepted on the ingress topic; expected one of {', '.join(INGRESS_TYPES)}"
    )
