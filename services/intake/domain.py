"""Intake rules: how a partner's report becomes an incident. Pure functions."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from datetime import datetime

import orjson

from shared.contracts import Channel, IncidentAccepted, Person, ReportDetails

# Fixed namespace: the same partner + idempotency key always names the same incident, whichever
# channel (HTTP or the ingress topic) it came through.
INCIDENT_NAMESPACE = uuid.UUID("5b0f4f0e-4b7e-4d1c-9a51-6a3f0c2d9e11")


def incident_id_for(report: ReportDetails) -> uuid.UUID:
    """The incident id a report gets: derived from who sent it and their idempotency key."""
    return uuid.uuid5(INCIDENT_NAMESPACE, f"{report.partner}|{report.idempotency_key}")


def content_hash(report: ReportDetails) -> str:
    """A fingerprint of the report's content, to refuse an idempotency key reused for other content."""
    return hashlib.sha256(orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _norm(text: str) -> str:
    # Fold case and drop accents (combining marks) but keep every script's letters: a name in
    # Cyrillic or Chinese must not collapse to an empty string.
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFKC", stripped).casefold().split())


def person_key(person: Person | None, report: ReportDetails) -> str | None:
    """A stable pseudonymous key for a person across partners, or None when they can't be identified.

    Name plus date of birth identifies a person across agencies; failing that, name at a property
    (UPRN); failing that, the partner's own reference (which only matches within that partner).
    """
    if person is None:
        return None
    if person.name and person.date_of_birth:
        basis = f"nd|{_norm(person.name)}|{person.date_of_birth.isoformat()}"
    elif person.name and report.location.uprn:
        basis = f"nu|{_norm(person.name)}|{report.location.uprn}"
    elif person.person_ref:
        basis = f"ref|{report.partner}|{person.person_ref}"
    else:
        return None
    return "p-" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def accept(report: ReportDetails, channel: Channel, now: datetime) -> IncidentAccepted:
    """The incident-accepted event for a valid report."""
    return IncidentAccepted(
        incident_id=incident_id_for(report),
        channel=channel,
        accepted_at=now,
        victim_key=person_key(report.victim, report),
        report=report,
    )
