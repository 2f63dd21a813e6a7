"""Intake use cases: accept a report, a panel referral request or a tenancy possession update (from
HTTP or the ingress topic) exactly once per partner and idempotency key."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import domain, store
from shared import retention
from shared.consumer import PermanentError, Received
from shared.contracts import (
    Channel,
    ErasureRequested,
    Event,
    Location,
    PanelReferralRequested,
    Person,
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
    await store.add_report(session, record)
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


def _key_without_property(person: Person | None, partner: Any, idempotency_key: str, at: datetime) -> str | None:
    # The same key rules as for a report's victim, so a partner's request finds the person's
    # triaged incidents; a request carries no property, hence no UPRN.
    as_report = ReportDetails.model_construct(
        partner=partner,
        idempotency_key=idempotency_key,
        reported_at=at,
        description="-",
        location=Location.model_construct(uprn=None),
    )
    return domain.person_key(person, as_report)


def _with_person_key(event: PartnerEvent) -> PartnerEvent:
    if not isinstance(event, PanelReferralRequested):
        return event
    key = _key_without_property(event.person, event.partner, event.idempotency_key, event.requested_at)
    return event.model_copy(update={"person_key": key})


def _tenant_key(stored: dict[str, Any]) -> str | None:
    """The key of a stored tenancy event's tenant (None if it has none or cannot be read)."""
    try:
        update = TenancyPossessionUpdated.model_validate(stored)
    except ValueError:
        return None
    return _key_without_property(update.tenant, update.partner, update.idempotency_key, update.occurred_at)


async def accept_erasure_request(
    session: AsyncSession,
    name: str | None,
    date_of_birth: date | None,
    person_key: str | None,
    reason: str,
    requested_by: str,
) -> tuple[uuid.UUID, list[Event]]:
    """Anonymise the person's data in intake's store, record the request, and the events that ask
    every other service to do the same (with intake's own confirmation)."""
    now = datetime.now(UTC)
    key = person_key or _key_without_property(Person(name=name, date_of_birth=date_of_birth), "csu", "erasure", now)
    assert key is not None  # name and date of birth always make a key
    request = ErasureRequested(
        request_id=uuid.uuid4(),
        person_key=key,
        incident_ids=await store.incidents_of_victim(session, key),
        tenancy_refs=await store.tenancies_of_tenant(session, TenancyPossessionUpdated.CE_TYPE, key, _tenant_key),
        requested_by=requested_by,
        reason=reason,
        requested_at=now,
    )
    session.add(
        store.ErasureRequestRow(
            request_id=request.request_id,
            person_key=key,
            incident_ids=[str(i) for i in request.incident_ids],
            requested_by=requested_by,
            reason=reason,
            requested_at=now,
        )
    )

    async def erase(s: AsyncSession, r: ErasureRequested) -> dict[str, int]:
        return await store.erase(
            s, list(r.incident_ids), r.person_key, r.request_id, _tenant_key, TenancyPossessionUpdated.CE_TYPE
        )

    # Intake's unsent events about the person go too: what has not entered the pipeline never will.
    confirmed = await retention.erase_and_confirm(session, "intake", erase, request, now, include_unsent=True)
    return request.request_id, [request, confirmed]


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
        # Already validated as ReportReceived, whose fields are a report's: no second validation.
        report = ReportDetails.model_construct(
            _fields_set=message.model_fields_set,
            **{name: getattr(message, name) for name in ReportDetails.model_fields},
        )
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
