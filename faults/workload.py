"""What a fault run sends, and what the partnership's rules say must come out of it.

Every report has its own victim, address and tenancy, so no report links to another (no repeat
victim, no cross-agency duplicate): what each must produce follows from the triage and panel rules
applied to it alone, with the services' own domain modules and default settings."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.intake import domain as intake_domain
from services.panels import domain as panels_domain
from services.triage import domain as triage_domain
from services.triage.settings import TriageSettings
from shared.contracts import IncidentTriaged, Panel, ReportDetails, ReportReceived
from shared.envelope import encode_body, new_envelope

PARTNER_SOURCE = "/partners/fault-harness"

# (description, category) pairs: violence, other crime, and plain ASB, so alerts are a subset.
DESCRIPTIONS = (
    "He punched the caretaker in the lobby and kicked him as he fell",
    "A man threatened residents with a knife outside the shop",
    "Someone smashed the window of a parked car and took the radio",
    "Youths sprayed graffiti on the bus shelter again",
    "Loud music from the flat above until 3am every night",
    "Mattresses and bin bags dumped in the alley behind the terrace",
    "Group of people drinking in the park and shouting at passers-by",
    "A bicycle was stolen from the communal rack",
)
# About a third violent or criminal: enough alerts to count, not so many they are the whole load.
WEIGHTS = (2, 1, 1, 1, 4, 4, 4, 1)
PARTNERS = ("police", "housing", "csu", "ehs", "resident")


@dataclass(frozen=True)
class Expected:
    incident_id: str
    alert: bool
    referrals: frozenset[tuple[str, str]]  # (panel, person_key)


@dataclass
class Workload:
    reports: list[dict[str, Any]]
    channels: list[str]  # "http" or "kafka", per report
    expected: dict[str, Expected] = field(default_factory=dict)  # by incident id

    @property
    def by_incident(self) -> dict[str, dict[str, Any]]:
        return {str(intake_domain.incident_id_for(ReportDetails.model_validate(r))): r for r in self.reports}


def make_report(run: str, n: int, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partner": rng.choice(PARTNERS),
        "idempotency_key": f"fault-{run}-{n}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": f"{n} Fault Line Road {run}", "postcode": "RV1 1FT"},
        "description": rng.choices(DESCRIPTIONS, WEIGHTS)[0],
        "victim": {"name": f"Resident {run} {n}", "date_of_birth": "1970-01-01"},
    }
    if rng.random() < 0.25:
        body["victim"]["vulnerabilities"] = ["disability", "lives-alone", "mental-health"]
    if rng.random() < 0.2:
        body["tenancy"] = {
            "tenure": rng.choice(["council", "council", "housing-association"]),
            "tenancy_ref": f"FT-{run}-{n}",
            "tenant_role": rng.choice(["victim", "perpetrator"]),
            "possession": {"notice_of_seeking_possession": rng.random() < 0.7},
        }
    return body


def expectation(body: dict[str, Any], settings: TriageSettings) -> Expected:
    """What one report alone must produce: an alert or not, and which panel referrals."""
    report = ReportDetails.model_validate(body)
    incident_id = intake_domain.incident_id_for(report)
    victim_key = intake_domain.person_key(report.victim, report)
    triaged = triage_domain.triage(incident_id, victim_key, report, [], settings)
    event = IncidentTriaged(
        incident_id=incident_id,
        triaged_at=datetime.now(UTC),
        victim_key=victim_key,
        classification=triaged.classification,
        report=triaged.report,
    )
    block = event.report.tenancy
    on_record = (
        panels_domain.tenancy_from_report(block, event.report.location.uprn, None)
        if block is not None and block.tenancy_ref
        else None
    )
    referrals = frozenset(
        (str(d.panel), d.person_key) for d in panels_domain.decide_referrals(event, on_record) if d.panel in Panel
    )
    return Expected(str(incident_id), triaged.classification.violence_or_criminality, referrals)


def build(count: int, http_share: float, rng: random.Random, run: str | None = None) -> Workload:
    run = run or uuid.uuid4().hex[:8]
    settings = TriageSettings()
    reports = [make_report(run, n, rng) for n in range(count)]
    channels = ["http" if rng.random() < http_share else "kafka" for _ in reports]
    work = Workload(reports, channels)
    for body in reports:
        e = expectation(body, settings)
        work.expected[e.incident_id] = e
    return work


def incident_of(body: dict[str, Any]) -> str:
    """The incident id intake gives a report."""
    return str(intake_domain.incident_id_for(ReportDetails.model_validate(body)))


def ingress_record(body: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """A report as a partner system publishes it: (value, CloudEvents headers, key)."""
    event = ReportReceived.model_validate(body)
    headers = new_envelope(event, PARTNER_SOURCE).headers()
    return encode_body(event), [(k, v.encode()) for k, v in headers.items()], event.subject().encode()


# ---------------------------------------------------------------------------
# Poison: messages on the ingress topic that must end in the dead-letter topic, with the reason
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Poison:
    kind: str
    value: bytes
    headers: list[tuple[str, bytes]]
    reason: str  # a fragment the dead letter's error must contain


def _headers(ce_type: str = ReportReceived.CE_TYPE, **extra: str) -> list[tuple[str, bytes]]:
    headers = {
        "ce_id": str(uuid.uuid4()),
        "ce_source": PARTNER_SOURCE,
        "ce_type": ce_type,
        "ce_specversion": "1.0",
        "ce_time": datetime.now(UTC).isoformat(),
        "content-type": "application/json",
        **extra,
    }
    return [(k, v.encode()) for k, v in headers.items()]


def poison(kind: str, run: str, n: int) -> Poison:
    """One poison message of ``kind`` (see POISON_KINDS)."""
    good = make_report(f"poison-{run}", n, random.Random(n))
    if kind == "wrong-schema":
        body = {k: v for k, v in good.items() if k not in ("location", "description")} | {"colour": "blue"}
        return Poison(kind, orjson.dumps(body), _headers(), "location: Field required")
    if kind == "wrong-field-type":
        return Poison(kind, orjson.dumps({**good, "reported_at": ["last", "week"]}), _headers(), "reported_at")
    if kind == "wrong-event-type":
        return Poison(
            kind, orjson.dumps(good), _headers("uk.gov.dcsp.parking-ticket.v1"), "is not accepted on the ingress topic"
        )
    if kind == "huge-payload":
        body = {**good, "description": "noise " * 100_000}  # 600 kB: far over the 20,000-character limit
        return Poison(kind, orjson.dumps(body), _headers(), "description: String should have at most")
    if kind == "bad-encoding":
        value = orjson.dumps(good).replace(b"Resident", b"R\xe9sident\xff\xfe")
        return Poison(kind, value, _headers(), "Invalid JSON")
    if kind == "no-envelope":
        return Poison(kind, orjson.dumps(good), [("content-type", b"application/json")], "missing CloudEvents header")
    raise ValueError(f"unknown poison kind {kind!r}")


POISON_KINDS = ("wrong-schema", "wrong-field-type", "wrong-event-type", "huge-payload", "bad-encoding", "no-envelope")
