"""Panel rules: who goes to the Vulnerability and Contextual Safeguarding Panel (VCSP) and who to the
monthly Complex Case Panel (CCP), what a panel's pack holds, when panels meet and what is on their
agendas, and when an action is overdue. Pure functions: no I/O, no clock (dates are passed in)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.panels.settings import MeetingSchedule
from shared.contracts import (
    IncidentTriaged,
    MandatoryGround,
    Panel,
    PanelReferralRequested,
    PartnerAgency,
    Person,
    PossessionStage,
    RiskTier,
    Tenancy,
    TenantRole,
    Tenure,
)

PANEL_NAMES = {
    Panel.VCSP: "Vulnerability and Contextual Safeguarding Panel",
    Panel.CCP: "Complex Case Panel",
}


@dataclass(frozen=True)
class ReferralDecision:
    panel: Panel
    person_key: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class TenancyRecord:
    """What panels knows about one tenancy: from reports' tenancy blocks and housing systems' events."""

    tenancy_ref: str
    tenure: Tenure
    stage: PossessionStage | None = None
    mandatory_grounds: tuple[MandatoryGround, ...] = ()
    tenant: Person | None = None
    uprn: str | None = None
    tenure_from_housing: bool = False


# ---------------------------------------------------------------------------
# Referral rules
# ---------------------------------------------------------------------------


def vcsp_reasons(event: IncidentTriaged) -> list[str]:
    """Why a victim belongs at the VCSP: high risk, vulnerable, or a repeat victim (empty if not)."""
    c = event.classification
    reasons = []
    if c.risk_tier == RiskTier.HIGH:
        reasons.append("victim assessed at high risk")
    if c.vulnerable:
        reasons.append(f"victim vulnerable (score {c.vulnerability_score})")
    if c.repeat_victim:
        reasons.append(f"repeat victim ({c.prior_reports_6_months + 1} reports in 6 months)")
    return reasons


def possession_reasons(stage: PossessionStage | None, grounds: Iterable[MandatoryGround]) -> list[str]:
    """Why a tenancy is at risk of possession: a notice or later stage, or a mandatory ground (empty if not)."""
    if stage == PossessionStage.WITHDRAWN:
        return []  # the landlord has stopped proceedings: no possession risk remains on record
    reasons = []
    if stage == PossessionStage.NOTICE_SERVED:
        reasons.append("notice of seeking possession served")
    elif stage is not None:
        reasons.append(f"possession proceedings at stage: {stage.value}")
    reasons += [f"mandatory ground for possession: {g}" for g in dict.fromkeys(grounds)]
    return reasons


def _ccp_heading(roles: Iterable[TenantRole]) -> str:
    named = ", ".join(str(r) for r in dict.fromkeys(roles))
    return f"council tenant ({named}) in an ASB case at risk of homelessness"


def ccp_reasons(event: IncidentTriaged, on_record: TenancyRecord | None = None) -> list[str]:
    """Why a council tenancy belongs at the CCP: ASB plus a possession risk, from the report's tenancy
    block or what is on record for the tenancy (empty if not)."""
    tenancy = event.report.tenancy
    if tenancy is None:
        return []
    if on_record is not None:
        tenure, stage, grounds = on_record.tenure, on_record.stage, on_record.mandatory_grounds
    else:
        tenure = tenancy.tenure
        stage = PossessionStage.NOTICE_SERVED if tenancy.possession.notice_of_seeking_possession else None
        grounds = tuple(tenancy.possession.mandatory_grounds)
    if tenure != Tenure.COUNCIL:
        return []
    reasons = possession_reasons(stage, grounds)
    if reasons:
        reasons.insert(0, _ccp_heading([tenancy.tenant_role]))
    return reasons


def tenancy_key(event: IncidentTriaged) -> str | None:
    """The person a CCP referral is about: the tenant, by tenancy reference, else the victim-tenant."""
    tenancy = event.report.tenancy
    if tenancy is None:
        return None
    if tenancy.tenancy_ref:
        return f"tenancy:{tenancy.tenancy_ref}"
    if tenancy.tenant_role == TenantRole.VICTIM:
        return event.victim_key
    return None  # a perpetrator-tenant with no reference: never file it under the victim


def decide_referrals(event: IncidentTriaged, on_record: TenancyRecord | None = None) -> list[ReferralDecision]:
    """The panel referrals a triaged incident calls for (each attaches to an open one if any)."""
    decisions = []
    vcsp = vcsp_reasons(event)
    if vcsp:
        person = event.victim_key or f"incident:{event.incident_id}"
        decisions.append(ReferralDecision(Panel.VCSP, person, tuple(vcsp)))
    ccp = ccp_reasons(event, on_record)
    if ccp:
        person = tenancy_key(event) or f"incident:{event.incident_id}"
        decisions.append(ReferralDecision(Panel.CCP, person, tuple(ccp)))
    return decisions


def decide_on_possession(record: TenancyRecord, roles_in_asb: Sequence[TenantRole]) -> ReferralDecision | None:
    """A CCP referral for a tenancy whose possession news arrived, when ASB incidents are on record for it."""
    if not roles_in_asb or record.tenure != Tenure.COUNCIL:
        return None
    reasons = possession_reasons(record.stage, record.mandatory_grounds)
    if not reasons:
        return None
    return ReferralDecision(Panel.CCP, f"tenancy:{record.tenancy_ref}", (_ccp_heading(roles_in_asb), *reasons))


def decide_on_request(request: PanelReferralRequested, tenancy_ref: str | None) -> ReferralDecision:
    """The referral a partner's request makes: to the panel asked for, keyed by the person (or tenancy for CCP)."""
    if request.panel == Panel.CCP and tenancy_ref:
        person = f"tenancy:{tenancy_ref}"
    else:
        person = request.person_key or f"request:{request.partner}:{request.idempotency_key}"
    return ReferralDecision(request.panel, person, (f"referral requested by {request.partner}: {request.reason}",))


def tenancy_from_report(tenancy: Tenancy, uprn: str | None, on_record: TenancyRecord | None) -> TenancyRecord | None:
    """A tenancy's record after a report's tenancy block: the housing system's own news wins over a report's."""
    if tenancy.tenancy_ref is None:
        return None
    grounds = tuple(
        dict.fromkeys([*(on_record.mandatory_grounds if on_record else ()), *tenancy.possession.mandatory_grounds])
    )
    if on_record is None:
        stage = PossessionStage.NOTICE_SERVED if tenancy.possession.notice_of_seeking_possession else None
        return TenancyRecord(tenancy.tenancy_ref, tenancy.tenure, stage, grounds, tenancy.tenant, uprn)
    stage = on_record.stage
    if stage is None and tenancy.possession.notice_of_seeking_possession:
        stage = PossessionStage.NOTICE_SERVED
    return TenancyRecord(
        tenancy_ref=on_record.tenancy_ref,
        tenure=on_record.tenure if on_record.tenure_from_housing else tenancy.tenure,
        stage=stage,
        mandatory_grounds=grounds,
        tenant=on_record.tenant or tenancy.tenant,
        uprn=on_record.uprn or uprn,
        tenure_from_housing=on_record.tenure_from_housing,
    )


def tenancy_from_housing(
    ref: str,
    tenure: Tenure,
    stage: PossessionStage,
    grounds: Sequence[MandatoryGround],
    tenant: Person | None,
    uprn: str | None,
    on_record: TenancyRecord | None,
) -> TenancyRecord:
    """A tenancy's record after its housing system's possession update (the landlord's word on stage and tenure)."""
    known = on_record.mandatory_grounds if on_record else ()
    return TenancyRecord(
        tenancy_ref=ref,
        tenure=tenure,
        stage=stage,
        mandatory_grounds=tuple(dict.fromkeys([*known, *grounds])),
        tenant=tenant or (on_record.tenant if on_record else None),
        uprn=uprn or (on_record.uprn if on_record else None),
        tenure_from_housing=True,
    )


# ---------------------------------------------------------------------------
# Homelessness risk
# ---------------------------------------------------------------------------


class HomelessnessRisk(enum.IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    IMMINENT = 3
    HOMELESS = 4


_STAGE_RISK = {
    None: (HomelessnessRisk.LOW, "no possession proceedings on record"),
    PossessionStage.WITHDRAWN: (HomelessnessRisk.LOW, "possession proceedings withdrawn"),
    PossessionStage.NOTICE_SERVED: (HomelessnessRisk.MEDIUM, "notice of seeking possession served"),
    PossessionStage.PROCEEDINGS_ISSUED: (HomelessnessRisk.HIGH, "possession proceedings issued"),
    PossessionStage.HEARING_LISTED: (HomelessnessRisk.HIGH, "possession hearing listed"),
    PossessionStage.ORDER_GRANTED: (HomelessnessRisk.IMMINENT, "possession order granted"),
    PossessionStage.WARRANT_ISSUED: (HomelessnessRisk.IMMINENT, "warrant for possession issued"),
    PossessionStage.EVICTED: (HomelessnessRisk.HOMELESS, "tenant evicted"),
}


def homelessness_risk(
    stage: PossessionStage | None, grounds: Sequence[MandatoryGround]
) -> tuple[HomelessnessRisk, str]:
    """How near the tenant is to homelessness, and why: the possession stage, raised by a mandatory ground."""
    level, why = _STAGE_RISK[stage]
    if grounds and stage != PossessionStage.WITHDRAWN and level < HomelessnessRisk.HIGH:
        # A proven mandatory ground leaves the court no discretion, so the risk is high before any hearing.
        level, why = HomelessnessRisk.HIGH, f"{why}; mandatory ground on record: {', '.join(grounds)}"
    return level, why


# ---------------------------------------------------------------------------
# Packs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferralSummary:
    """The referral fields a pack shows."""

    referral_id: str
    panel: Panel
    person_key: str
    status: str
    referred_at: datetime
    reasons: tuple[str, ...]
    referring_partner: PartnerAgency | None
    consent_given: bool | None
    incident_ids: tuple[str, ...]
    requested_people: tuple[Person, ...] = ()
    action_owners: tuple[PartnerAgency, ...] = ()
    decision: str | None = None


def age_on(person: Person, today: date) -> int | None:
    """A person's age on a date, from the date of birth when known, else the age recorded."""
    if person.date_of_birth is None:
        return person.age
    dob = person.date_of_birth
    return today.year - dob.year - ((today.month, today.day) < (dob.month, dob.day))


def minimised_person(person: Person | None, today: date, role: str | None = None) -> dict[str, Any] | None:
    """Only what a panel needs about a person: name, age and vulnerabilities (no date of birth or contact)."""
    if person is None:
        return None
    out: dict[str, Any] = {
        "name": person.name,
        "age": age_on(person, today),
        "vulnerabilities": [str(v) for v in person.vulnerabilities],
    }
    if role:
        out["role"] = role
    return out


def _incident_entry(event: IncidentTriaged, panel: Panel) -> dict[str, Any]:
    c, report = event.classification, event.report
    entry: dict[str, Any] = {
        "incident_id": str(event.incident_id),
        "reported_at": report.reported_at.isoformat(),
        "reported_by": str(report.partner),
        "location": report.location.model_dump(mode="json", exclude_none=True),
        "description": report.description,
        "asb_qualifier": str(c.asb_qualifier),
        "asb_heading": c.asb_heading,
        "crime_category": str(c.crime_category) if c.crime_category else None,
        "hate_incident": c.hate_incident,
        "risk_tier": str(c.risk_tier),
        "vulnerability_score": c.vulnerability_score,
        "triage_reasons": list(c.reasons),
    }
    if panel == Panel.CCP and report.tenancy is not None:
        entry["tenant_role"] = str(report.tenancy.tenant_role)
    return entry


def consent_status(consent_given: bool | None) -> str:
    """The consent status a pack shows: given, refused or not recorded."""
    if consent_given is None:
        return "not recorded"
    return "given" if consent_given else "refused"


def _person_for(
    referral: ReferralSummary, incidents: Sequence[IncidentTriaged], tenancy: TenancyRecord | None, today: date
) -> dict[str, Any] | None:
    if referral.panel == Panel.CCP:
        if tenancy is not None and tenancy.tenant is not None:
            return minimised_person(tenancy.tenant, today, role="tenant")
        for event in reversed(incidents):
            t = event.report.tenancy
            if t is not None and t.tenant is not None:
                return minimised_person(t.tenant, today, role="tenant")
            if t is not None and t.tenant_role == TenantRole.VICTIM and event.report.victim is not None:
                return minimised_person(event.report.victim, today, role="tenant")
    else:
        for event in reversed(incidents):
            if event.report.victim is not None:
                return minimised_person(event.report.victim, today, role="victim")
    if referral.requested_people:
        return minimised_person(referral.requested_people[-1], today)
    return None


def assemble_pack(
    referral: ReferralSummary,
    incidents: Sequence[IncidentTriaged],
    tenancy: TenancyRecord | None,
    contacts: dict[PartnerAgency, str],
    today: date,
) -> dict[str, Any]:
    """A referral's pack: the person (minimised), incidents with triage reasons, risk history, agencies
    and their contacts, consent, and for the CCP the tenancy, possession stage and homelessness risk."""
    ordered = sorted(incidents, key=lambda e: (e.report.reported_at, str(e.incident_id)))
    received = {str(e.incident_id) for e in ordered}
    agencies = [e.report.partner for e in ordered]
    if referral.referring_partner is not None:
        agencies.insert(0, referral.referring_partner)
    agencies += referral.action_owners
    pack: dict[str, Any] = {
        "referral_id": referral.referral_id,
        "panel": str(referral.panel),
        "panel_name": PANEL_NAMES[referral.panel],
        "status": referral.status,
        "referred_at": referral.referred_at.isoformat(),
        "reasons": list(referral.reasons),
        "decision": referral.decision,
        "referring_partner": str(referral.referring_partner) if referral.referring_partner else None,
        "person": _person_for(referral, ordered, tenancy, today),
        "consent": consent_status(referral.consent_given),
        "incidents": [_incident_entry(e, referral.panel) for e in ordered]
        + [{"incident_id": i, "status": "not yet triaged"} for i in referral.incident_ids if i not in received],
        "risk_history": [
            {
                "at": e.triaged_at.isoformat(),
                "incident_id": str(e.incident_id),
                "risk_tier": str(e.classification.risk_tier),
                "vulnerability_score": e.classification.vulnerability_score,
                "vulnerable": e.classification.vulnerable,
                "repeat_victim": e.classification.repeat_victim,
            }
            for e in sorted(ordered, key=lambda e: e.triaged_at)
        ],
        "agencies": [{"agency": str(a), "contact": contacts.get(a)} for a in dict.fromkeys(agencies)],
    }
    if referral.panel == Panel.CCP:
        pack["tenancy"] = tenancy_section(tenancy)
    return pack


def tenancy_section(tenancy: TenancyRecord | None) -> dict[str, Any] | None:
    """The CCP pack's tenancy: reference, tenure, possession stage, mandatory grounds and homelessness risk."""
    if tenancy is None:
        return None
    level, why = homelessness_risk(tenancy.stage, tenancy.mandatory_grounds)
    return {
        "tenancy_ref": tenancy.tenancy_ref,
        "tenure": str(tenancy.tenure),
        "uprn": tenancy.uprn,
        "possession_stage": str(tenancy.stage) if tenancy.stage else None,
        "mandatory_grounds": [str(g) for g in tenancy.mandatory_grounds],
        "homelessness_risk": {"level": level.name.lower(), "reason": why},
    }


# ---------------------------------------------------------------------------
# Meetings and agendas
# ---------------------------------------------------------------------------


def local_date(instant: datetime, timezone: str) -> date:
    """The calendar date of an instant where the panels sit (Europe/London by default)."""
    return instant.astimezone(ZoneInfo(timezone)).date()


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def meetings_from(schedule: MeetingSchedule, start: date) -> Iterator[date]:
    """The panel's meeting dates on or after ``start``, in order, without end."""
    if schedule.kind == "monthly":
        year, month = start.year, start.month
        while True:
            meeting = _nth_weekday(year, month, schedule.weekday, schedule.week_of_month)
            if meeting >= start:
                yield meeting
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        step = schedule.interval_days
        behind = (start - schedule.anchor).days
        meeting = schedule.anchor + timedelta(days=-(-behind // step) * step)
        while True:
            yield meeting
            meeting += timedelta(days=step)


def next_meeting(schedule: MeetingSchedule, today: date) -> date:
    """The panel's next meeting: today's, if it sits today, else the first one after."""
    return next(meetings_from(schedule, today))


def cut_off(schedule: MeetingSchedule, meeting: date) -> date:
    """The last day a referral can be made and still go on this meeting's agenda."""
    return meeting - timedelta(days=schedule.cut_off_days)


def meeting_for_referral(schedule: MeetingSchedule, referred_on: date) -> date:
    """The first meeting whose agenda a referral made on ``referred_on`` goes on."""
    return next(m for m in meetings_from(schedule, referred_on) if cut_off(schedule, m) >= referred_on)


_TIER_RANK = {RiskTier.HIGH: 0, RiskTier.MEDIUM: 1, RiskTier.STANDARD: 2}


@dataclass(frozen=True)
class AgendaCandidate:
    referral_id: str
    referred_at: datetime
    risk_tier: RiskTier | None
    vulnerability_score: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def priority_order(candidates: Iterable[AgendaCandidate]) -> list[AgendaCandidate]:
    """Agenda order: highest risk tier first, then highest vulnerability score, then the oldest referral."""
    return sorted(
        candidates,
        key=lambda c: (
            _TIER_RANK.get(c.risk_tier, len(_TIER_RANK)) if c.risk_tier else len(_TIER_RANK),
            -c.vulnerability_score,
            c.referred_at,
            c.referral_id,
        ),
    )


def higher_tier(a: RiskTier | None, b: RiskTier | None) -> RiskTier | None:
    """The higher of two risk tiers (None when neither is known)."""
    known = [t for t in (a, b) if t is not None]
    return min(known, key=lambda t: _TIER_RANK[t]) if known else None


# ---------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------


def days_overdue(due: date, today: date) -> int:
    """Whole days an action is past its due date (0 when it is not yet overdue)."""
    return max(0, (today - due).days)
