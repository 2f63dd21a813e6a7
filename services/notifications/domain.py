"""Notification rules: alert identity, what each recipient is sent, signatures, retry timing,
acknowledgement deadlines. Pure: no I/O, no clock (callers pass ``now``)."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from shared.contracts import Classification, IncidentTriaged, PanelOutcomeRecorded, PoliceAlertRequested, RiskTier

ALERT_NAMESPACE = uuid.UUID("0d7c1e55-2a8b-4f6e-b7e3-91c4d2a6f8b0")
DISPATCH_NAMESPACE = uuid.UUID("6f1b9a44-8d2c-4c57-9a1e-3b7d5e2f0c18")
SIGNATURE_HEADER = "X-DCSP-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# What the neighbouring partnership is sent about a cross-border case (data minimisation, UK GDPR;
# s115 Crime and Disorder Act 1998): enough to recognise the case, judge its seriousness and
# contact us. No victim name, date of birth, contact details, vulnerabilities or tenancy, no
# free-text description (it often names people) and no street address: the UPRN and postcode
# locate the property for a partner that holds its own address gazetteer.
CROSS_BORDER_FIELDS = (
    "incident_id",
    "reported_at",
    "occurred_at",
    "asb_qualifier",
    "asb_heading",
    "crime_category",
    "hate_incident",
    "hate_strands",
    "risk_tier",
    "vulnerable",
    "repeat_victim",
    "location",
    "owning_team",
    "contact",
)
CROSS_BORDER_LOCATION_FIELDS = ("uprn", "postcode")


def alert_id_for(incident_id: uuid.UUID) -> uuid.UUID:
    """One alert per incident, with the same id however often it is requested."""
    return uuid.uuid5(ALERT_NAMESPACE, str(incident_id))


def dispatch_id_for(kind: str, subject: str, channel: str) -> uuid.UUID:
    """One dispatch per (kind of message, what it is about, channel): recreating it is a no-op."""
    return uuid.uuid5(DISPATCH_NAMESPACE, f"{kind}|{subject}|{channel}")


def message_id_for(dispatch_id: uuid.UUID, kind: str, domain: str) -> str:
    """An RFC 5322 Message-ID derived from the dispatch (for alerts: from the alert id), so a
    mailbox can spot a resent copy."""
    return f"<{kind}.{dispatch_id}@{domain}>"


def alert_request_from_triaged(triaged: IncidentTriaged) -> PoliceAlertRequested | None:
    """The police alert a triaged incident calls for (violence or criminality), else None."""
    c = triaged.classification
    if not c.violence_or_criminality:
        return None
    return PoliceAlertRequested(
        incident_id=triaged.incident_id,
        requested_at=triaged.triaged_at,
        crime_category=c.crime_category,
        risk_tier=c.risk_tier,
        reasons=list(c.reasons),
        occurred_at=triaged.report.occurred_at or triaged.report.reported_at,
        location=triaged.report.location,
        description=triaged.report.description,
    )


def police_payload(alert_id: uuid.UUID, request: PoliceAlertRequested) -> dict[str, Any]:
    """What the police gateway receives: the incident, why it is criminal, where and when."""
    return {
        "alert_id": str(alert_id),
        "incident_id": str(request.incident_id),
        "crime_category": request.crime_category,
        "risk_tier": request.risk_tier,
        "reasons": request.reasons,
        "occurred_at": request.occurred_at.isoformat() if request.occurred_at else None,
        "location": request.location.model_dump(mode="json", exclude_none=True),
        "description": request.description,
    }


def police_alert_email(payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of the police mailbox copy of an alert."""
    location = ", ".join(f"{k}: {v}" for k, v in sorted(payload["location"].items()))
    category = payload["crime_category"] or "criminality"
    subject = f"Police alert {payload['alert_id']}: {category} (risk {payload['risk_tier']})"
    lines = [
        "The community safety partnership notifies the police of this incident (violence or criminality).",
        "",
        f"Alert id:       {payload['alert_id']}",
        f"Incident id:    {payload['incident_id']}",
        f"Crime category: {payload['crime_category'] or 'not determined'}",
        f"Risk tier:      {payload['risk_tier']}",
        f"Occurred at:    {payload['occurred_at'] or 'not given'}",
        f"Location:       {location}",
        "",
        "Description:",
        payload["description"],
        "",
        "Why this is a police matter:",
        *[f"- {reason}" for reason in payload["reasons"]],
        "",
        f"Acknowledge with POST /v1/alerts/{payload['alert_id']}/ack",
    ]
    return subject, "\n".join(lines) + "\n"


def sign(secret: bytes, body: bytes) -> str:
    """HMAC-SHA256 of the exact body bytes, as ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_delay(
    attempts: int, initial_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> timedelta:
    """Exponential backoff with equal jitter (between half and all of the step) after ``attempts``
    failed attempts (1, 2, ...), capped at ``max_seconds``."""
    # Cap the exponent: after enough failures 2**n would overflow a float, and an outage of the
    # police gateway must never stop the retries.
    exponent = min(max(0, attempts - 1), 64)
    ceiling = min(max_seconds, initial_seconds * 2.0**exponent)
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


def acknowledge_by(raised_at: datetime, deadline: timedelta) -> datetime:
    """When the police must have acknowledged an alert raised at ``raised_at``."""
    return raised_at + deadline


def is_overdue(acknowledge_by_at: datetime, acknowledged_at: datetime | None, now: datetime) -> bool:
    """Overdue: the deadline has passed and nobody had acknowledged the alert by ``now``."""
    acknowledged = acknowledged_at is not None and acknowledged_at <= now
    return not acknowledged and now >= acknowledge_by_at


def escalation_email(
    payload: dict[str, Any], raised_at: datetime, acknowledge_by_at: datetime, delivered: bool
) -> tuple[str, str]:
    """Subject and body of the message to the CSU duty contact about an unacknowledged alert."""
    subject = f"ESCALATION: police alert {payload['alert_id']} not acknowledged (risk {payload['risk_tier']})"
    lines = [
        "A police alert has not been acknowledged by its deadline. Please contact the police.",
        "",
        f"Alert id:        {payload['alert_id']}",
        f"Incident id:     {payload['incident_id']}",
        f"Crime category:  {payload['crime_category'] or 'not determined'}",
        f"Risk tier:       {payload['risk_tier']}",
        f"Raised at:       {raised_at.isoformat()}",
        f"Acknowledge by:  {acknowledge_by_at.isoformat()}",
        f"Delivered to the police on every channel: {'yes' if delivered else 'NO - delivery still being retried'}",
    ]
    return subject, "\n".join(lines) + "\n"


def is_issue_of_concern(c: Classification) -> bool:
    """An ASB issue of concern for the Daily Briefing: criminal, hate, vulnerable victim, repeat
    victim, cross-border or above standard risk."""
    return (
        c.violence_or_criminality
        or c.hate_incident
        or c.vulnerable
        or c.repeat_victim
        or c.cross_border
        or c.risk_tier != RiskTier.STANDARD
    )


def cross_border_payload(triaged: IncidentTriaged, contact: str) -> dict[str, Any]:
    """What the neighbouring partnership is sent: exactly CROSS_BORDER_FIELDS, nothing personal."""
    c = triaged.classification
    report = triaged.report
    location = report.location.model_dump(mode="json", exclude_none=True)
    payload: dict[str, Any] = {
        "incident_id": str(triaged.incident_id),
        "reported_at": report.reported_at.isoformat(),
        "occurred_at": report.occurred_at.isoformat() if report.occurred_at else None,
        "asb_qualifier": str(c.asb_qualifier),
        "asb_heading": c.asb_heading,
        "crime_category": str(c.crime_category) if c.crime_category else None,
        "hate_incident": c.hate_incident,
        "hate_strands": sorted(c.hate_strands),
        "risk_tier": str(c.risk_tier),
        "vulnerable": c.vulnerable,
        "repeat_victim": c.repeat_victim,
        "location": {k: location[k] for k in CROSS_BORDER_LOCATION_FIELDS if k in location},
        "owning_team": c.owning_team,
        "contact": contact,
    }
    return payload


def panel_outcome_email(outcome: PanelOutcomeRecorded) -> tuple[str, str]:
    """Subject and body telling the referring agency what the panel decided and who does what."""
    panel = {"vcsp": "Vulnerability and Contextual Safeguarding Panel", "ccp": "Complex Case Panel"}.get(
        str(outcome.panel), str(outcome.panel)
    )
    subject = f"{panel}: outcome of referral {outcome.referral_id}"
    lines = [
        f"The {panel} has recorded an outcome for your referral {outcome.referral_id}.",
        "",
        f"Decision: {outcome.decision}",
        f"Recorded at: {outcome.recorded_at.isoformat()}",
        "",
        "Actions:" if outcome.actions else "No actions were agreed.",
    ]
    for action in sorted(outcome.actions, key=lambda a: (a.due, str(a.action_id))):
        tool = f" [{action.tool}]" if action.tool else ""
        lines.append(f"- {action.description}{tool} (owner: {action.owner_agency}; due {action.due.isoformat()})")
    return subject, "\n".join(lines) + "\n"
