"""Event contracts: one versioned pydantic model per event type, each bound to one topic.

Every service imports its payloads from here and never re-declares another's. A model's
``TOPIC`` is the base topic name (a deployment may prefix it, see ``shared.topics``) and
its ``CE_TYPE`` is the CloudEvents ``type`` carried in the ``ce_type`` header.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import topics

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Contract(BaseModel):
    """Base of every payload: unknown fields are refused so a typo is an error, not data loss."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Contract):
    """An event published on a topic. Subclasses set TOPIC and CE_TYPE."""

    TOPIC: ClassVar[str]
    CE_TYPE: ClassVar[str]

    def subject(self) -> str:
        """The CloudEvents subject: the incident the event is about, where it has one."""
        return str(getattr(self, "incident_id", ""))


# ---------------------------------------------------------------------------
# Vocabulary from the domain brief
# ---------------------------------------------------------------------------


class PartnerAgency(enum.StrEnum):
    POLICE = "police"
    HOUSING = "housing"
    COMMUNITY_SAFETY_UNIT = "csu"
    ENVIRONMENTAL_HEALTH = "ehs"
    ENVIRONMENTAL_ENFORCEMENT = "environmental-enforcement"
    COUNTY_COUNCIL = "county-council"
    FIRE = "fire"
    NHS = "nhs"
    NEIGHBOURING_PARTNERSHIP = "neighbouring-partnership"
    RESIDENT = "resident"


class AsbQualifier(enum.StrEnum):
    """NSIR qualifier."""

    PERSONAL = "personal"
    NUISANCE = "nuisance"
    ENVIRONMENTAL = "environmental"
    UNCLASSIFIED = "unclassified"


class CrimeCategory(enum.StrEnum):
    """police.uk crime categories: any of these means violence or criminality."""

    VIOLENT_CRIME = "violent-crime"
    PUBLIC_ORDER = "public-order"
    POSSESSION_OF_WEAPONS = "possession-of-weapons"
    CRIMINAL_DAMAGE_ARSON = "criminal-damage-arson"
    DRUGS = "drugs"
    BURGLARY = "burglary"
    ROBBERY = "robbery"
    THEFT_FROM_THE_PERSON = "theft-from-the-person"
    VEHICLE_CRIME = "vehicle-crime"
    BICYCLE_THEFT = "bicycle-theft"
    SHOPLIFTING = "shoplifting"
    OTHER_THEFT = "other-theft"
    OTHER_CRIME = "other-crime"


class Vulnerability(enum.StrEnum):
    """Vulnerability factors a partner may record about a victim (personal or situational)."""

    DISABILITY = "disability"
    MENTAL_HEALTH = "mental-health"
    LIVES_ALONE = "lives-alone"
    ISOLATED = "isolated"
    CHILDREN_IN_HOUSEHOLD = "children-in-household"
    FEAR_OF_REPRISAL = "fear-of-reprisal"
    IMPACT_ON_DAILY_LIFE = "impact-on-daily-life"


class Tenure(enum.StrEnum):
    COUNCIL = "council"
    HOUSING_ASSOCIATION = "housing-association"
    PRIVATE_RENTED = "private-rented"
    OWNER_OCCUPIER = "owner-occupier"


class TenantRole(enum.StrEnum):
    VICTIM = "victim"
    PERPETRATOR = "perpetrator"


class MandatoryGround(enum.StrEnum):
    """The five triggers of the mandatory ground for possession (s84A HA 1985 / Ground 7A HA 1988)."""

    SERIOUS_OFFENCE_CONVICTION = "serious-offence-conviction"
    INJUNCTION_BREACH = "injunction-breach"
    CBO_BREACH_CONVICTION = "cbo-breach-conviction"
    CLOSURE_ORDER_OVER_48H = "closure-order-over-48h"
    NOISE_ABATEMENT_BREACH_CONVICTION = "noise-abatement-breach-conviction"


class Panel(enum.StrEnum):
    VCSP = "vcsp"  # Vulnerability and Contextual Safeguarding Panel
    CCP = "ccp"  # Complex Case Panel


class RiskTier(enum.StrEnum):
    STANDARD = "standard"
    MEDIUM = "medium"
    HIGH = "high"


class Channel(enum.StrEnum):
    """How a report reached intake."""

    HTTP = "http"
    KAFKA = "kafka"


# ---------------------------------------------------------------------------
# Parts of a report
# ---------------------------------------------------------------------------


class Location(Contract):
    uprn: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}$")] | None = Field(
        default=None, description="Unique Property Reference Number"
    )
    address: NonEmpty | None = None
    postcode: NonEmpty | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _somewhere(self) -> Location:
        if not (self.uprn or self.address or self.postcode or self.latitude is not None):
            raise ValueError("give at least one of uprn, address, postcode or latitude/longitude")
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class Person(Contract):
    person_ref: NonEmpty | None = Field(default=None, description="The partner's own reference")
    name: NonEmpty | None = None
    date_of_birth: date | None = None
    age: int | None = Field(default=None, ge=0, le=130)
    contact: NonEmpty | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)


class PossessionRisk(Contract):
    notice_of_seeking_possession: bool = False
    mandatory_grounds: list[MandatoryGround] = Field(default_factory=list)


class Tenancy(Contract):
    tenure: Tenure
    tenancy_ref: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    tenant_role: TenantRole
    tenant: Person | None = Field(default=None, description="The tenant, when not the victim")
    possession: PossessionRisk = Field(default_factory=PossessionRisk)


class ReportDetails(Contract):
    """What a partner tells us about one incident (the body of POST /v1/reports)."""

    partner: PartnerAgency
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    reported_at: AwareDatetime
    occurred_at: AwareDatetime | None = None
    location: Location
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    category: NonEmpty | None = Field(default=None, description="The partner's structured category, if any")
    perceived_as_hate: bool = Field(default=False, description="Victim or anyone perceives it as hate")
    victim: Person | None = None
    tenancy: Tenancy | None = None


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


class ReportReceived(Event, ReportDetails):
    """A partner's report, published by the partner system to the ingress topic."""

    TOPIC = topics.PARTNER_REPORTS
    CE_TYPE = "uk.gov.dcsp.report.received.v1"

    def subject(self) -> str:
        return f"{self.partner}:{self.idempotency_key}"


class IncidentAccepted(Event):
    TOPIC = topics.INCIDENTS_ACCEPTED
    CE_TYPE = "uk.gov.dcsp.incident.accepted.v1"

    incident_id: uuid.UUID
    channel: Channel
    accepted_at: AwareDatetime
    victim_key: str | None = Field(description="Stable key of the victim across partners, if identifiable")
    report: ReportDetails


class Reason(Contract):
    """One rule that fired: its id, a plain sentence, and the evidence it used."""

    rule_id: str
    text: str
    evidence: list[str] = Field(default_factory=list)


class Classification(Contract):
    asb_qualifier: AsbQualifier
    asb_heading: str | None
    crime_category: CrimeCategory | None
    violence_or_criminality: bool
    hate_incident: bool
    vulnerable: bool
    vulnerability_score: int
    risk_tier: RiskTier
    repeat_victim: bool
    prior_reports_6_months: int
    reasons: list[str]
    rules_version: str
    # Added for issue #4 (additive, with defaults, so older events still validate):
    hate_strands: list[str] = Field(default_factory=list)
    explanations: list[Reason] = Field(default_factory=list)
    owning_team: str | None = None
    supporting_teams: list[str] = Field(default_factory=list)
    response_tier: str | None = None
    first_contact_hours: int | None = None
    review_due: date | None = None
    cross_border: bool = False


class IncidentTriaged(Event):
    TOPIC = topics.INCIDENTS_TRIAGED
    CE_TYPE = "uk.gov.dcsp.incident.triaged.v1"

    incident_id: uuid.UUID
    triaged_at: AwareDatetime
    victim_key: str | None
    classification: Classification
    report: ReportDetails


class PoliceAlertRequested(Event):
    """Triage's demand that the police be told: one per violent or criminal incident."""

    TOPIC = topics.POLICE_ALERTS_REQUESTED
    CE_TYPE = "uk.gov.dcsp.police-alert.requested.v1"

    incident_id: uuid.UUID
    requested_at: AwareDatetime
    crime_category: CrimeCategory | None
    risk_tier: RiskTier
    reasons: list[str]
    occurred_at: AwareDatetime | None
    location: Location
    description: str


class PoliceAlertDelivered(Event):
    TOPIC = topics.POLICE_ALERTS_DELIVERED
    CE_TYPE = "uk.gov.dcsp.police-alert.delivered.v1"

    alert_id: uuid.UUID
    incident_id: uuid.UUID
    delivered_at: AwareDatetime
    attempts: int
    channel: str


class PanelReferralCreated(Event):
    TOPIC = topics.PANEL_REFERRALS
    CE_TYPE = "uk.gov.dcsp.panel-referral.created.v1"

    referral_id: uuid.UUID
    panel: Panel
    person_key: str
    incident_id: uuid.UUID
    reasons: list[str]
    created_at: AwareDatetime


class DeadLetter(Event):
    """A message a service could not process: kept whole, with where it came from and why."""

    TOPIC = topics.DEAD_LETTERS
    CE_TYPE = "uk.gov.dcsp.dead-letter.v1"

    service: str
    original_topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    body: str = Field(description="The original body, decoded as UTF-8 with invalid bytes replaced")
    body_base64: str = Field(description="The original body, byte for byte")
    error_type: str
    error: str
    attempts: int
    failed_at: AwareDatetime

    def subject(self) -> str:
        return f"{self.original_topic}/{self.partition}/{self.offset}"


# ---------------------------------------------------------------------------
# Triage events (issue #4) go below this line.
# ---------------------------------------------------------------------------


class CaseReviewPromptDue(Event):
    """The victim must be told about the ASB Case Review (2 qualifying complaints in 6 months)."""

    TOPIC = topics.CASE_REVIEW_PROMPTS
    CE_TYPE = "uk.gov.dcsp.case-review.prompt-due.v1"

    incident_id: uuid.UUID = Field(description="The complaint that reached the threshold")
    victim_key: str
    qualifying_incident_ids: list[uuid.UUID]
    complaints_in_window: int
    window_days: int
    raised_at: AwareDatetime


class CaseReviewEligible(Event):
    """The victim may ask for an ASB Case Review (the Community Trigger)."""

    TOPIC = topics.CASE_REVIEW_ELIGIBILITY
    CE_TYPE = "uk.gov.dcsp.case-review.eligible.v1"

    incident_id: uuid.UUID = Field(description="The complaint that reached the threshold")
    victim_key: str
    qualifying_incident_ids: list[uuid.UUID]
    complaints_in_window: int
    window_days: int
    grounds: list[str] = Field(description="Which condition was met, in plain words")
    raised_at: AwareDatetime


class IncidentRetriaged(Event):
    """A stored incident re-run under a new rules version whose outcome changed."""

    TOPIC = topics.INCIDENTS_RETRIAGED
    CE_TYPE = "uk.gov.dcsp.incident.retriaged.v1"

    incident_id: uuid.UUID
    previous: Classification
    current: Classification
    retriaged_at: AwareDatetime


# ---------------------------------------------------------------------------
# Notifications events (issue #5) go below this line.
# ---------------------------------------------------------------------------


class PoliceAlertAcknowledged(Event):
    """The police acknowledged an alert (POST /v1/alerts/{id}/ack): who, and when."""

    TOPIC = topics.POLICE_ALERTS_ACKNOWLEDGED
    CE_TYPE = "uk.gov.dcsp.police-alert.acknowledged.v1"

    alert_id: uuid.UUID
    incident_id: uuid.UUID
    acknowledged_by: str
    acknowledged_at: AwareDatetime


class PoliceAlertEscalated(Event):
    """An alert was not acknowledged by its deadline and went to the CSU duty contact (once per deadline)."""

    TOPIC = topics.POLICE_ALERTS_ESCALATED
    CE_TYPE = "uk.gov.dcsp.police-alert.escalated.v1"

    alert_id: uuid.UUID
    incident_id: uuid.UUID
    risk_tier: RiskTier
    acknowledge_by: AwareDatetime
    escalated_at: AwareDatetime
    channels: list[str]


class DailyBriefingPublished(Event):
    """The CSU Daily Briefing for a date was built from stored events and sent to the distribution list."""

    TOPIC = topics.DAILY_BRIEFINGS
    CE_TYPE = "uk.gov.dcsp.daily-briefing.published.v1"

    briefing_date: date
    cut_off: AwareDatetime
    previous_cut_off: AwareDatetime
    sha256: str = Field(description="SHA-256 of the briefing's canonical JSON")
    counts: dict[str, int]
    published_at: AwareDatetime

    def subject(self) -> str:
        return self.briefing_date.isoformat()


# ---------------------------------------------------------------------------
# Panels events (issue #6) go below this line.
# ---------------------------------------------------------------------------


class PossessionStage(enum.StrEnum):
    NOTICE_SERVED = "notice-of-seeking-possession"
    PROCEEDINGS_ISSUED = "proceedings-issued"
    HEARING_LISTED = "hearing-listed"
    ORDER_GRANTED = "possession-order-granted"
    WARRANT_ISSUED = "warrant-issued"
    EVICTED = "evicted"
    WITHDRAWN = "withdrawn"


class AsbTool(enum.StrEnum):
    """Tools under the ASB, Crime and Policing Act 2014, for panel action plans."""

    CIVIL_INJUNCTION = "civil-injunction"
    CRIMINAL_BEHAVIOUR_ORDER = "criminal-behaviour-order"
    DISPERSAL_DIRECTION = "dispersal-direction"
    COMMUNITY_PROTECTION_NOTICE = "community-protection-notice"
    PUBLIC_SPACES_PROTECTION_ORDER = "public-spaces-protection-order"
    CLOSURE_ORDER = "closure-order"


class PanelReferralRequested(Event):
    """A partner asks for a person to go to a panel (published by partners to the ingress topic;
    intake validates it and republishes it here)."""

    TOPIC = topics.PANEL_REFERRAL_REQUESTS
    CE_TYPE = "uk.gov.dcsp.panel-referral.requested.v1"

    partner: PartnerAgency
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    panel: Panel
    person: Person
    reason: NonEmpty
    incident_ids: list[uuid.UUID] = Field(default_factory=list)
    consent_given: bool | None = None
    requested_at: AwareDatetime
    person_key: str | None = Field(
        default=None, description="Set by intake: the person's stable key across partners (partners leave it out)"
    )

    def subject(self) -> str:
        return f"{self.partner}:{self.idempotency_key}"


class TenancyPossessionUpdated(Event):
    """A housing system's news about a tenancy's possession proceedings (via intake)."""

    TOPIC = topics.TENANCY_POSSESSION
    CE_TYPE = "uk.gov.dcsp.tenancy.possession-updated.v1"

    partner: PartnerAgency
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    tenancy_ref: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    tenure: Tenure
    tenant: Person | None = None
    uprn: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}$")] | None = None
    stage: PossessionStage
    mandatory_grounds: list[MandatoryGround] = Field(default_factory=list)
    occurred_at: AwareDatetime

    def subject(self) -> str:
        return f"tenancy:{self.tenancy_ref}"


class PanelAction(Contract):
    action_id: uuid.UUID
    description: NonEmpty
    owner_agency: PartnerAgency
    due: date
    tool: AsbTool | None = None


class PanelOutcomeRecorded(Event):
    """A panel's decision on a referral, with its action plan (notifications tells the referrer)."""

    TOPIC = topics.PANEL_OUTCOMES
    CE_TYPE = "uk.gov.dcsp.panel-outcome.recorded.v1"

    referral_id: uuid.UUID
    panel: Panel
    referring_partner: PartnerAgency | None
    decision: NonEmpty
    actions: list[PanelAction]
    recorded_at: AwareDatetime

    def subject(self) -> str:
        return str(self.referral_id)


class PanelActionOverdue(Event):
    """An action from a panel's plan is past its due date and not completed (emitted once per action)."""

    TOPIC = topics.PANEL_ACTIONS_OVERDUE
    CE_TYPE = "uk.gov.dcsp.panel-action.overdue.v1"

    referral_id: uuid.UUID
    panel: Panel
    referring_partner: PartnerAgency | None
    action: PanelAction
    days_overdue: int = Field(ge=1)
    detected_at: AwareDatetime

    def subject(self) -> str:
        return str(self.referral_id)


class PanelActionCompleted(Event):
    """An owning agency completed an action from a panel's plan."""

    TOPIC = topics.PANEL_ACTIONS_COMPLETED
    CE_TYPE = "uk.gov.dcsp.panel-action.completed.v1"

    referral_id: uuid.UUID
    panel: Panel
    referring_partner: PartnerAgency | None
    action: PanelAction
    completed_at: AwareDatetime
    note: str | None = None

    def subject(self) -> str:
        return str(self.referral_id)


class PanelReferralClosed(Event):
    """A referral was closed with a reason; a new incident for the person starts a new referral."""

    TOPIC = topics.PANEL_REFERRALS_CLOSED
    CE_TYPE = "uk.gov.dcsp.panel-referral.closed.v1"

    referral_id: uuid.UUID
    panel: Panel
    referring_partner: PartnerAgency | None
    reason: NonEmpty
    closed_at: AwareDatetime

    def subject(self) -> str:
        return str(self.referral_id)


# ---------------------------------------------------------------------------
# Security events (issue #8) go below this line.
# ---------------------------------------------------------------------------


class ErasureRequested(Event):
    """A right-to-erasure request accepted by intake: every service deletes or anonymises the
    person's data and confirms. Carries only pseudonymous keys, never the name or date of birth."""

    TOPIC = topics.ERASURE_REQUESTS
    CE_TYPE = "uk.gov.dcsp.erasure.requested.v1"

    request_id: uuid.UUID
    person_key: str = Field(description="The person's stable pseudonymous key (see intake's person_key)")
    incident_ids: list[uuid.UUID] = Field(
        default_factory=list, description="Incidents intake accepted for the person (as victim)"
    )
    tenancy_refs: list[str] = Field(default_factory=list, description="Tenancies where intake saw the person as tenant")
    requested_by: str = Field(description="Who asked (the authenticated caller)")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    requested_at: AwareDatetime

    def subject(self) -> str:
        return str(self.request_id)


class ErasureConfirmed(Event):
    """One service erased (deleted or anonymised) a person's data for an erasure request."""

    TOPIC = topics.ERASURE_CONFIRMATIONS
    CE_TYPE = "uk.gov.dcsp.erasure.confirmed.v1"

    request_id: uuid.UUID
    service: str
    person_key: str
    records: dict[str, int] = Field(description="Rows deleted or anonymised, per table")
    confirmed_at: AwareDatetime

    def subject(self) -> str:
        return str(self.request_id)


def event_types() -> list[type[Event]]:
    """Every concrete event type declared in this module (each has a TOPIC and a CE_TYPE)."""
    found: list[type[Event]] = []
    pending: list[type[Event]] = list(Event.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if "TOPIC" in vars(cls) and cls not in found:
            found.append(cls)
    return found


def event_topics() -> list[str]:
    """The base names of every topic an event is published on."""
    return sorted({cls.TOPIC for cls in event_types()})
