"""Triage handlers: classify each accepted incident once, demand a police alert when the rules find
violence or criminality, and raise ASB Case Review notices once per victim per threshold crossing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.triage import domain, store
from services.triage.settings import TriageSettings
from shared.clock import Clock, system_clock
from shared.consumer import Handle, Received
from shared.contracts import (
    CaseReviewEligible,
    CaseReviewPromptDue,
    Event,
    IncidentAccepted,
    IncidentTriaged,
    PoliceAlertRequested,
)
from shared.envelope import decode_event
from shared.logging import get_logger

log = get_logger(__name__)
# structlog runs its processors before the level is checked; asking first skips them at INFO.
_stdlib_log = logging.getLogger(__name__)


def triage_accepted(
    accepted: IncidentAccepted, earlier: Iterable[domain.ReportFacts], settings: TriageSettings
) -> domain.Triaged:
    """Run the rules on an accepted incident against the stored facts of earlier reports."""
    return domain.triage(accepted.incident_id, accepted.victim_key, accepted.report, earlier, settings)


def kept_payload(accepted: IncidentAccepted, triaged: domain.Triaged) -> IncidentAccepted:
    """The accepted event as triage may keep it: without personal data when the rules strip it."""
    return accepted.model_copy(update={"report": triaged.report}) if triaged.minimised else accepted


def outgoing_events(
    accepted: IncidentAccepted,
    triaged: domain.Triaged,
    notices: Iterable[domain.CaseReviewNotice],
    now: datetime,
    settings: TriageSettings,
) -> list[Event]:
    """The events one triaged incident emits, in a fixed order."""
    c, report = triaged.classification, triaged.report
    events: list[Event] = [
        IncidentTriaged(
            incident_id=accepted.incident_id,
            triaged_at=now,
            victim_key=accepted.victim_key,
            classification=c,
            report=report,
        )
    ]
    if c.violence_or_criminality:
        events.append(
            PoliceAlertRequested(
                incident_id=accepted.incident_id,
                requested_at=now,
                crime_category=c.crime_category,
                risk_tier=c.risk_tier,
                reasons=c.reasons,
                occurred_at=report.occurred_at or report.reported_at,
                location=report.location,
                description=report.description,
            )
        )
    for notice in notices:
        common = {
            "incident_id": notice.incident_id,
            "victim_key": notice.key,
            "qualifying_incident_ids": list(notice.qualifying_incident_ids),
            "complaints_in_window": len(notice.qualifying_incident_ids),
            "window_days": settings.repeat_window_days,
            "raised_at": now,
        }
        if notice.kind == domain.NoticeKind.PROMPT:
            events.append(CaseReviewPromptDue.model_validate(common))
        else:
            events.append(CaseReviewEligible.model_validate({**common, "grounds": list(notice.grounds)}))
    return events


def incident_accepted_handler(settings: TriageSettings, clock: Clock = system_clock) -> Handle:
    window = timedelta(days=settings.repeat_window_days)
    same_incident = timedelta(hours=settings.duplicate_window_hours)

    async def on_incident_accepted(session: AsyncSession, received: Received) -> list[Event]:
        _envelope, accepted = decode_event(IncidentAccepted, received.headers, received.body)
        report = accepted.report
        earlier = await store.reports_to_link(
            session,
            accepted.incident_id,
            accepted.victim_key,
            domain.place_key(report.location),
            report.reported_at,
            report.occurred_at or report.reported_at,
            window,
            same_incident,
        )
        if earlier is None:
            return []  # already triaged (e.g. the same incident re-published under a new event id)
        triaged = triage_accepted(accepted, earlier, settings)
        # Notices already raised can only hold a notice back, never call for one: most reports call
        # for none, and then the store need not be asked.
        notices = domain.case_review_notices(triaged, (), settings)
        if notices:
            keys = [k for k in (accepted.victim_key, f"property:{triaged.facts.place_key}") if k]
            notices = domain.case_review_notices(triaged, await store.notices_for(session, keys), settings)
        now = clock()
        await store.stage_triaged(session, kept_payload(accepted, triaged).model_dump_json(), triaged, notices, now)
        if _stdlib_log.isEnabledFor(logging.DEBUG):  # the consumer logs one line per batch
            c = triaged.classification
            log.debug(
                "incident triaged",
                risk_tier=str(c.risk_tier),
                violence_or_criminality=c.violence_or_criminality,
                owning_team=c.owning_team,
                rules_version=c.rules_version,
            )
        return outgoing_events(accepted, triaged, notices, now, settings)

    return on_incident_accepted
