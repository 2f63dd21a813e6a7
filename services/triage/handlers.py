"""Triage handlers: classify each accepted incident once, and demand a police alert when the
rules find violence or criminality."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.triage import domain, store
from services.triage.settings import TriageSettings
from shared.consumer import Handle, Received
from shared.contracts import Event, IncidentAccepted, IncidentTriaged, PoliceAlertRequested
from shared.envelope import decode_event


def incident_accepted_handler(settings: TriageSettings) -> Handle:
    async def on_incident_accepted(session: AsyncSession, received: Received) -> list[Event]:
        _envelope, accepted = decode_event(IncidentAccepted, received.headers, received.body)
        if await store.get(session, accepted.incident_id) is not None:
            return []  # already triaged (e.g. the same incident re-published under a new event id)
        report = accepted.report
        prior = 0
        if accepted.victim_key:
            prior = await store.prior_reports(
                session, accepted.victim_key, report.reported_at, timedelta(days=settings.repeat_window_days)
            )
        classification = domain.classify(report, domain.VictimHistory(prior_reports=prior), settings)
        now = datetime.now(UTC)
        session.add(
            store.TriagedIncident(
                incident_id=accepted.incident_id,
                victim_key=accepted.victim_key,
                reported_at=report.reported_at,
                triaged_at=now,
                violence_or_criminality=classification.violence_or_criminality,
                asb_qualifier=str(classification.asb_qualifier),
                risk_tier=str(classification.risk_tier),
                rules_version=classification.rules_version,
                classification=classification.model_dump(mode="json"),
            )
        )
        events: list[Event] = [
            IncidentTriaged(
                incident_id=accepted.incident_id,
                triaged_at=now,
                victim_key=accepted.victim_key,
                classification=classification,
                report=report,
            )
        ]
        if classification.violence_or_criminality:
            events.append(
                PoliceAlertRequested(
                    incident_id=accepted.incident_id,
                    requested_at=now,
                    crime_category=classification.crime_category,
                    risk_tier=classification.risk_tier,
                    reasons=classification.reasons,
                    occurred_at=report.occurred_at or report.reported_at,
                    location=report.location,
                    description=report.description,
                )
            )
        return events

    return on_incident_accepted
