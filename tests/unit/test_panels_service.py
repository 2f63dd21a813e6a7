"""The panels service in one process on a real SQLite store: triaged incidents, possession updates
and partner requests go through the real ReliableConsumer (dedupe, one transaction, outbox) and the
HTTP API is called through ASGI. The clock is a FrozenClock; no broker is needed (delivery over
Kafka is shown in tests/e2e/test_panels_flow.py)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from services.panels import domain, store
from services.panels.app import compose
from services.panels.handlers import Panels
from services.panels.settings import PanelsSettings
from shared.clock import FrozenClock
from shared.consumer import Received
from shared.contracts import (
    AsbQualifier,
    Classification,
    Event,
    IncidentTriaged,
    Location,
    MandatoryGround,
    Panel,
    PanelReferralRequested,
    PartnerAgency,
    Person,
    PossessionRisk,
    PossessionStage,
    ReportDetails,
    RiskTier,
    Tenancy,
    TenancyPossessionUpdated,
    TenantRole,
    Tenure,
)
from shared.db import create_tables
from shared.envelope import encode_body, new_envelope
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime

# Monday 2 March 2026, 09:00 in London (GMT): the next CCP sits on the second Tuesday, 10 March.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
VICTIM = "p-" + "a" * 32
_ids = itertools.count(1)


def classification(**changes: Any) -> Classification:
    fields: dict[str, Any] = {
        "asb_qualifier": AsbQualifier.NUISANCE,
        "asb_heading": "noise",
        "crime_category": None,
        "violence_or_criminality": False,
        "hate_incident": False,
        "vulnerable": False,
        "vulnerability_score": 0,
        "risk_tier": RiskTier.STANDARD,
        "repeat_victim": False,
        "prior_reports_6_months": 0,
        "reasons": ["asb: noise"],
        "rules_version": "test",
    }
    fields.update(changes)
    return Classification(**fields)


def tenancy(
    ref: str = "T-1",
    tenure: Tenure = Tenure.COUNCIL,
    role: TenantRole = TenantRole.PERPETRATOR,
    nsp: bool = False,
    grounds: tuple[MandatoryGround, ...] = (),
) -> Tenancy:
    return Tenancy(
        tenure=tenure,
        tenancy_ref=ref,
        tenant_role=role,
        tenant=Person(name="Tam Tenant", date_of_birth=date(1980, 6, 1), contact="07700 900123")
        if role == TenantRole.PERPETRATOR
        else None,
        possession=PossessionRisk(notice_of_seeking_possession=nsp, mandatory_grounds=list(grounds)),
    )


def triaged(
    *,
    victim_key: str | None = VICTIM,
    tenancy_block: Tenancy | None = None,
    partner: PartnerAgency = PartnerAgency.HOUSING,
    reported_at: datetime = NOW - timedelta(days=3),
    victim_name: str = "Vic Victim",
    incident_id: uuid.UUID | None = None,
    **changes: Any,
) -> IncidentTriaged:
    n = next(_ids)
    report = ReportDetails(
        partner=partner,
        idempotency_key=f"R-{n}",
        reported_at=reported_at,
        location=Location(uprn="100023336956", postcode="AB1 2CD"),
        description=f"Loud music and shouting, night {n}",
        victim=Person(
            name=victim_name,
            date_of_birth=date(1950, 3, 10),
            contact="01632 960001",
            vulnerabilities=["disability"],
        )
        if victim_key
        else None,
        tenancy=tenancy_block,
    )
    return IncidentTriaged(
        incident_id=incident_id or uuid.uuid4(),
        triaged_at=reported_at + timedelta(minutes=1),
        victim_key=victim_key,
        classification=classification(**changes),
        report=report,
    )


def possession(
    ref: str = "T-1",
    stage: PossessionStage = PossessionStage.NOTICE_SERVED,
    tenure: Tenure = Tenure.COUNCIL,
    grounds: tuple[MandatoryGround, ...] = (),
    occurred_at: datetime = NOW - timedelta(days=1),
) -> TenancyPossessionUpdated:
    return TenancyPossessionUpdated(
        partner=PartnerAgency.HOUSING,
        idempotency_key=f"P-{next(_ids)}",
        tenancy_ref=ref,
        tenure=tenure,
        stage=stage,
        mandatory_grounds=list(grounds),
        occurred_at=occurred_at,
    )


def request(panel: Panel = Panel.VCSP, person_key: str | None = VICTIM, **changes: Any) -> PanelReferralRequested:
    fields: dict[str, Any] = {
        "partner": PartnerAgency.NHS,
        "idempotency_key": f"Q-{next(_ids)}",
        "panel": panel,
        "person": Person(name="Vic Victim", date_of_birth=date(1950, 3, 10)),
        "reason": "GP concerned about repeated harassment",
        "consent_given": True,
        "requested_at": NOW - timedelta(days=2),
        "person_key": person_key,
    }
    fields.update(changes)
    return PanelReferralRequested(**fields)


@dataclass
class Service:
    runtime: ServiceRuntime
    panels: Panels
    clock: FrozenClock
    http: httpx.AsyncClient
    settings: PanelsSettings

    async def deliver(self, event: Event, event_id: str | None = None) -> None:
        """Hand an event to the service's real consumer for its topic, as the broker would."""
        (consumer,) = [c for c in self.runtime.consumers if c.name == f"panels:{event.TOPIC}"]
        headers = new_envelope(event, "/test", event_id=event_id).headers()
        await consumer(Received(event.TOPIC, 0, next(_ids), None, headers, encode_body(event)))

    async def referrals(self) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/referrals")
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    async def pack(self, referral_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/referrals/{referral_id}")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def outbox(self, ce_type: str) -> list[dict[str, Any]]:
        async with self.runtime.sessions() as session:
            rows = (await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
        return [orjson.loads(r.body) for r in rows if r.headers["ce_type"] == ce_type]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    clock = FrozenClock(NOW)
    settings = PanelsSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'panels.db'}", http_port=0)
    runtime, panels = compose(settings, clock)
    await create_tables(runtime.engine, runtime.tables)
    transport = httpx.ASGITransport(app=runtime.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://panels") as http:
        yield Service(runtime, panels, clock, http, settings)
    await runtime.engine.dispose()


# ---------------------------------------------------------------------------
# Every referral trigger and non-trigger, through the store (table-driven)
# ---------------------------------------------------------------------------

Steps = Callable[[], list[Event]]

TRIGGERS: list[tuple[str, Steps, set[tuple[str, str]]]] = [
    ("VCSP: victim at high risk", lambda: [triaged(risk_tier=RiskTier.HIGH)], {("vcsp", VICTIM)}),
    ("VCSP: vulnerable victim", lambda: [triaged(vulnerable=True, vulnerability_score=22)], {("vcsp", VICTIM)}),
    ("VCSP: repeat victim", lambda: [triaged(repeat_victim=True, prior_reports_6_months=1)], {("vcsp", VICTIM)}),
    ("VCSP: a partner asks", lambda: [request(Panel.VCSP)], {("vcsp", VICTIM)}),
    ("CCP: a partner asks", lambda: [request(Panel.CCP, person_key="p-" + "c" * 32)], {("ccp", "p-" + "c" * 32)}),
    (
        "CCP: council tenant perpetrator, notice in the report",
        lambda: [triaged(tenancy_block=tenancy(nsp=True))],
        {("ccp", "tenancy:T-1")},
    ),
    (
        "CCP: council tenant victim, mandatory ground in the report",
        lambda: [
            triaged(tenancy_block=tenancy(role=TenantRole.VICTIM, grounds=(MandatoryGround.CLOSURE_ORDER_OVER_48H,)))
        ],
        {("ccp", "tenancy:T-1")},
    ),
    (
        "CCP: ASB on record, then a notice of seeking possession",
        lambda: [triaged(tenancy_block=tenancy()), possession()],
        {("ccp", "tenancy:T-1")},
    ),
    (
        "CCP: notice on record, then ASB",
        lambda: [possession(), triaged(tenancy_block=tenancy())],
        {("ccp", "tenancy:T-1")},
    ),
    (
        "CCP: ASB on record, then a conviction for breaching a noise abatement notice",
        lambda: [
            triaged(tenancy_block=tenancy(role=TenantRole.VICTIM)),
            possession(
                stage=PossessionStage.PROCEEDINGS_ISSUED, grounds=(MandatoryGround.NOISE_ABATEMENT_BREACH_CONVICTION,)
            ),
        ],
        {("ccp", "tenancy:T-1")},
    ),
    ("no panel: standard risk, not vulnerable, first report", lambda: [triaged()], set()),
    ("no panel: medium risk alone", lambda: [triaged(risk_tier=RiskTier.MEDIUM)], set()),
    ("no panel: council tenant in ASB, no possession risk", lambda: [triaged(tenancy_block=tenancy())], set()),
    (
        "no panel: private tenant facing eviction",
        lambda: [
            triaged(tenancy_block=tenancy(tenure=Tenure.PRIVATE_RENTED)),
            possession(tenure=Tenure.PRIVATE_RENTED, stage=PossessionStage.ORDER_GRANTED),
        ],
        set(),
    ),
    (
        "no panel: housing association tenant with a notice in the report",
        lambda: [triaged(tenancy_block=tenancy(tenure=Tenure.HOUSING_ASSOCIATION, nsp=True))],
        set(),
    ),
    ("no panel: a notice for a tenancy with no ASB on record", lambda: [possession()], set()),
    (
        "no panel: possession proceedings withdrawn before the ASB report",
        lambda: [possession(stage=PossessionStage.WITHDRAWN), triaged(tenancy_block=tenancy())],
        set(),
    ),
    (
        "no panel: the housing system says the tenancy is not the council's",
        lambda: [
            possession(tenure=Tenure.OWNER_OCCUPIER, stage=PossessionStage.NOTICE_SERVED),
            triaged(tenancy_block=tenancy(nsp=False)),
        ],
        set(),
    ),
]


@pytest.mark.parametrize(("case", "steps", "expected"), TRIGGERS, ids=[t[0] for t in TRIGGERS])
async def test_referral_triggers_and_non_triggers(
    service: Service, case: str, steps: Steps, expected: set[tuple[str, str]]
) -> None:
    for event in steps():
        await service.deliver(event)
    assert {(r["panel"], r["person_key"]) for r in await service.referrals()} == expected, case


# ---------------------------------------------------------------------------
# One referral per person and panel; redelivery
# ---------------------------------------------------------------------------


async def test_later_incidents_attach_and_redelivery_changes_nothing(service: Service) -> None:
    first = triaged(risk_tier=RiskTier.HIGH, vulnerable=True, vulnerability_score=24)
    await service.deliver(first, event_id="evt-1")
    await service.deliver(first, event_id="evt-1")  # the broker redelivers
    await service.deliver(first, event_id="evt-1-republished")  # the same incident under a new event id
    later = triaged(
        repeat_victim=True, prior_reports_6_months=1, vulnerability_score=30, vulnerable=True, reported_at=NOW
    )
    await service.deliver(later)
    await service.deliver(later)

    (referral,) = await service.referrals()
    assert referral["panel"] == "vcsp"
    assert sorted(referral["incident_ids"]) == sorted([str(first.incident_id), str(later.incident_id)])
    history = (await service.http.get(f"/v1/referrals/{referral['referral_id']}/history")).json()
    assert [h["event_type"] for h in history] == [
        "referral-created",
        "incident-attached",
        "reasons-added",
        "incident-attached",
    ]
    assert len(await service.outbox("uk.gov.dcsp.panel-referral.created.v1")) == 1
    pack = await service.pack(referral["referral_id"])
    assert [r["vulnerability_score"] for r in pack["risk_history"]] == [24, 30]
    assert "repeat victim (2 reports in 6 months)" in pack["reasons"]


async def test_a_partner_request_for_a_referred_person_attaches_with_consent(service: Service) -> None:
    incident = triaged(risk_tier=RiskTier.HIGH)
    await service.deliver(incident)
    ask = request(Panel.VCSP, incident_ids=[incident.incident_id], consent_given=True)
    await service.deliver(ask)
    await service.deliver(ask, event_id="same-request-new-id")
    (referral,) = await service.referrals()
    pack = await service.pack(referral["referral_id"])
    assert pack["consent"] == "given"
    assert pack["referring_partner"] == "nhs"
    assert [i["incident_id"] for i in pack["incidents"]] == [str(incident.incident_id)]
    history = (await service.http.get(f"/v1/referrals/{referral['referral_id']}/history")).json()
    assert [h["event_type"] for h in history].count("partner-request") == 1


async def test_closing_frees_the_person_for_a_new_referral(service: Service) -> None:
    await service.deliver(triaged(risk_tier=RiskTier.HIGH))
    (first,) = await service.referrals()
    r = await service.http.post(f"/v1/referrals/{first['referral_id']}/close", json={"reason": "moved away"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    again = await service.http.post(f"/v1/referrals/{first['referral_id']}/close", json={"reason": "twice"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "referral_id"

    await service.deliver(triaged(risk_tier=RiskTier.HIGH))
    referrals = await service.referrals()
    assert [r["status"] for r in referrals] == ["closed", "awaiting-panel"]
    assert referrals[0]["referral_id"] != referrals[1]["referral_id"]
    (closed,) = await service.outbox("uk.gov.dcsp.panel-referral.closed.v1")
    assert closed["reason"] == "moved away"
    history = (await service.http.get(f"/v1/referrals/{first['referral_id']}/history")).json()
    assert history[-1] == {"at": NOW.isoformat(), "event_type": "referral-closed", "detail": {"reason": "moved away"}}


# ---------------------------------------------------------------------------
# Packs
# ---------------------------------------------------------------------------


async def test_ccp_pack_lists_incidents_tenancy_possession_stage_and_agencies(service: Service) -> None:
    one = triaged(tenancy_block=tenancy(), partner=PartnerAgency.HOUSING, reported_at=NOW - timedelta(days=9))
    two = triaged(tenancy_block=tenancy(), partner=PartnerAgency.POLICE, risk_tier=RiskTier.MEDIUM)
    await service.deliver(one)
    await service.deliver(two)
    assert await service.referrals() == []
    await service.deliver(possession(stage=PossessionStage.NOTICE_SERVED))
    (referral,) = await service.referrals()
    pack = await service.pack(referral["referral_id"])

    assert pack["panel"] == "ccp" and pack["status"] == "awaiting-panel"
    assert [i["incident_id"] for i in pack["incidents"]] == [str(one.incident_id), str(two.incident_id)]
    assert pack["incidents"][0]["triage_reasons"] == ["asb: noise"]
    assert pack["incidents"][0]["tenant_role"] == "perpetrator"
    assert pack["tenancy"]["tenancy_ref"] == "T-1"
    assert pack["tenancy"]["possession_stage"] == "notice-of-seeking-possession"
    assert pack["tenancy"]["homelessness_risk"]["level"] == "medium"
    assert pack["person"] == {"name": "Tam Tenant", "age": 45, "vulnerabilities": [], "role": "tenant"}
    assert {a["agency"]: a["contact"] for a in pack["agencies"]} == {
        "housing": service.settings.agency_contacts[PartnerAgency.HOUSING],
        "police": service.settings.agency_contacts[PartnerAgency.POLICE],
    }
    assert pack["consent"] == "not recorded"
    assert pack["agenda_meeting"] == "2026-03-10"

    # Packs follow new events: the court lists a hearing, with a mandatory ground.
    await service.deliver(
        possession(stage=PossessionStage.HEARING_LISTED, grounds=(MandatoryGround.INJUNCTION_BREACH,))
    )
    pack = await service.pack(referral["referral_id"])
    assert pack["tenancy"]["possession_stage"] == "hearing-listed"
    assert pack["tenancy"]["mandatory_grounds"] == ["injunction-breach"]
    assert pack["tenancy"]["homelessness_risk"]["level"] == "high"
    assert [h["stage"] for h in pack["tenancy"]["stage_history"]] == ["notice-of-seeking-possession", "hearing-listed"]
    assert len(await service.referrals()) == 1


async def test_vcsp_pack_minimises_the_person(service: Service) -> None:
    await service.deliver(triaged(risk_tier=RiskTier.HIGH))
    (referral,) = await service.referrals()
    pack = await service.pack(referral["referral_id"])
    assert pack["person"] == {"name": "Vic Victim", "age": 75, "vulnerabilities": ["disability"], "role": "victim"}
    text = orjson.dumps(pack).decode()
    assert "1950-03-10" not in text and "01632 960001" not in text  # no date of birth, no phone number


async def test_late_possession_news_does_not_roll_the_stage_back(service: Service) -> None:
    await service.deliver(triaged(tenancy_block=tenancy()))
    await service.deliver(possession(stage=PossessionStage.ORDER_GRANTED, occurred_at=NOW - timedelta(days=1)))
    await service.deliver(possession(stage=PossessionStage.NOTICE_SERVED, occurred_at=NOW - timedelta(days=60)))
    (referral,) = await service.referrals()
    pack = await service.pack(referral["referral_id"])
    assert pack["tenancy"]["possession_stage"] == "possession-order-granted"
    assert pack["tenancy"]["homelessness_risk"]["level"] == "imminent"


# ---------------------------------------------------------------------------
# Agendas
# ---------------------------------------------------------------------------


async def test_agenda_lists_referrals_before_the_cut_off_in_priority_order(service: Service) -> None:
    # The next VCSP sits on 3 March (fortnightly from 6 January); its cut-off is 26 February.
    service.clock.now = datetime(2026, 2, 10, 9, tzinfo=UTC)
    await service.deliver(triaged(victim_key="p-old-medium", repeat_victim=True, risk_tier=RiskTier.MEDIUM))
    service.clock.now = datetime(2026, 2, 11, 9, tzinfo=UTC)
    await service.deliver(triaged(victim_key="p-high-20", risk_tier=RiskTier.HIGH, vulnerability_score=20))
    await service.deliver(
        triaged(victim_key="p-high-30", risk_tier=RiskTier.HIGH, vulnerability_score=30, victim_name="<b>Bo</b>")
    )
    service.clock.now = datetime(2026, 2, 12, 9, tzinfo=UTC)
    await service.deliver(triaged(victim_key="p-high-20-newer", risk_tier=RiskTier.HIGH, vulnerability_score=20))
    service.clock.now = datetime(2026, 2, 27, 9, tzinfo=UTC)  # after the cut-off for 3 March (26 February)
    await service.deliver(triaged(victim_key="p-late", risk_tier=RiskTier.HIGH, vulnerability_score=40))

    agenda = (await service.http.get("/v1/panels/vcsp/meetings/next/agenda")).json()
    assert agenda["meeting_date"] == "2026-03-03" and agenda["cut_off"] == "2026-02-26"
    keys = {r["referral_id"]: r["person_key"] for r in await service.referrals()}
    assert [keys[i["referral_id"]] for i in agenda["items"]] == [
        "p-high-30",
        "p-high-20",
        "p-high-20-newer",
        "p-old-medium",
    ]
    assert [i["position"] for i in agenda["items"]] == [1, 2, 3, 4]
    assert [keys[i] for i in agenda["after_cut_off"]] == ["p-late"]
    assert agenda["following_meeting_date"] == "2026-03-17"

    html = await service.http.get("/v1/panels/vcsp/meetings/next/agenda", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;Bo&lt;/b&gt;" in html.text and "<b>Bo</b>" not in html.text
    assert html.text.index("&lt;b&gt;Bo") < html.text.index("2026-02-10")
    by_accept = await service.http.get("/v1/panels/vcsp/meetings/next/agenda", headers={"accept": "text/html"})
    assert by_accept.headers["content-type"].startswith("text/html")


async def test_agenda_drops_referrals_once_decided(service: Service) -> None:
    await service.deliver(triaged(tenancy_block=tenancy(nsp=True)))
    (referral,) = await service.referrals()
    agenda = (await service.http.get("/v1/panels/ccp/meetings/next/agenda")).json()
    assert agenda["meeting_date"] == "2026-03-10"
    assert [i["referral_id"] for i in agenda["items"]] == [referral["referral_id"]]
    assert agenda["items"][0]["possession_stage"] == "notice-of-seeking-possession"
    await service.http.post(f"/v1/referrals/{referral['referral_id']}/outcome", json={"decision": "monitor"})
    agenda = (await service.http.get("/v1/panels/ccp/meetings/next/agenda")).json()
    assert agenda["items"] == []


async def test_meetings_endpoint_lists_dates_and_cut_offs(service: Service) -> None:
    r = await service.http.get("/v1/panels/ccp/meetings", params={"count": 3})
    assert r.json() == [
        {"meeting_date": "2026-03-10", "cut_off": "2026-03-05"},
        {"meeting_date": "2026-04-14", "cut_off": "2026-04-09"},
        {"meeting_date": "2026-05-12", "cut_off": "2026-05-07"},
    ]


# ---------------------------------------------------------------------------
# Outcomes, actions, overdue
# ---------------------------------------------------------------------------


async def test_outcome_with_two_actions_then_overdue_once_with_a_moved_clock(service: Service) -> None:
    await service.deliver(triaged(tenancy_block=tenancy(nsp=True)))
    (referral,) = await service.referrals()
    rid = referral["referral_id"]
    body = {
        "decision": "Support the tenancy; seek an injunction against the perpetrator",
        "actions": [
            {"description": "Apply for a civil injunction", "owner_agency": "housing", "due": "2026-03-20",
             "tool": "civil-injunction"},
            {"description": "Tenancy sustainment visit", "owner_agency": "csu", "due": "2026-04-30"},
        ],
    }  # fmt: skip
    r = await service.http.post(f"/v1/referrals/{rid}/outcome", json=body)
    assert r.status_code == 201, r.text
    actions = r.json()["actions"]
    assert [a["tool"] for a in actions] == ["civil-injunction", None]

    (outcome,) = await service.outbox("uk.gov.dcsp.panel-outcome.recorded.v1")
    assert outcome["referral_id"] == rid and outcome["panel"] == "ccp"
    assert [a["description"] for a in outcome["actions"]] == [
        "Apply for a civil injunction",
        "Tenancy sustainment visit",
    ]

    assert (await service.http.get("/v1/actions/overdue")).json() == []
    assert await service.panels.flag_overdue() == 0

    service.clock.advance(days=20)  # 22 March: the injunction application is two days late
    overdue = (await service.http.get("/v1/actions/overdue")).json()
    assert [(a["action_id"], a["days_overdue"]) for a in overdue] == [(actions[0]["action_id"], 2)]
    assert await service.panels.flag_overdue() == 1
    assert await service.panels.flag_overdue() == 0  # once each
    (flagged,) = await service.outbox("uk.gov.dcsp.panel-action.overdue.v1")
    assert flagged["action"]["action_id"] == actions[0]["action_id"] and flagged["days_overdue"] == 2

    done = await service.http.post(f"/v1/referrals/{rid}/actions/{actions[0]['action_id']}/complete", json={})
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["replayed"] is False
    again = await service.http.post(f"/v1/referrals/{rid}/actions/{actions[0]['action_id']}/complete")
    assert again.json()["replayed"] is True
    assert (await service.http.get("/v1/actions/overdue")).json() == []
    assert len(await service.outbox("uk.gov.dcsp.panel-action.completed.v1")) == 1

    history = (await service.http.get(f"/v1/referrals/{rid}/history")).json()
    assert [h["event_type"] for h in history] == [
        "referral-created",
        "incident-attached",
        "outcome-recorded",
        "action-overdue",
        "action-completed",
    ]


async def test_london_dates_decide_overdue(service: Service) -> None:
    await service.deliver(triaged(risk_tier=RiskTier.HIGH))
    (referral,) = await service.referrals()
    due = "2026-06-30"
    body = {"decision": "act", "actions": [{"description": "Visit", "owner_agency": "csu", "due": due}]}
    r = await service.http.post(f"/v1/referrals/{referral['referral_id']}/outcome", json=body)
    assert r.status_code == 201, r.text
    service.clock.now = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)  # 30 June in UTC, 1 July in London (BST)
    assert [a["due"] for a in (await service.http.get("/v1/actions/overdue")).json()] == [due]


async def test_errors_name_the_field(service: Service) -> None:
    missing = uuid.uuid4()
    r = await service.http.post(f"/v1/referrals/{missing}/outcome", json={"decision": "x"})
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "referral_id"
    await service.deliver(triaged(risk_tier=RiskTier.HIGH))
    (referral,) = await service.referrals()
    bad = {"decision": "x", "actions": [{"description": "y", "owner_agency": "mi5", "due": "soon", "tool": "tank"}]}
    r = await service.http.post(f"/v1/referrals/{referral['referral_id']}/outcome", json=bad)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"actions.0.owner_agency", "actions.0.due", "actions.0.tool"}
    r = await service.http.post(f"/v1/referrals/{referral['referral_id']}/close", json={"reason": "  "})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await service.http.post(f"/v1/referrals/{referral['referral_id']}/actions/{uuid.uuid4()}/complete")
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "action_id"
    r = await service.http.get("/v1/panels/daily-briefing/meetings/next/agenda")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "path.panel"


async def test_a_bad_event_is_dead_lettered_not_stored(service: Service) -> None:
    (consumer,) = [c for c in service.runtime.consumers if c.name.endswith(TenancyPossessionUpdated.TOPIC)]
    headers = new_envelope(possession(), "/test").headers()
    body = orjson.dumps({**possession().model_dump(mode="json"), "stage": "bailiffs-at-the-door"})
    await consumer(Received(TenancyPossessionUpdated.TOPIC, 0, 1, None, headers, body))
    (letter,) = await service.outbox("uk.gov.dcsp.dead-letter.v1")
    assert "stage" in letter["error"]
    async with service.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(store.TenancyRow)) == 0


def test_domain_next_meeting_matches_the_agenda_rule() -> None:
    settings = PanelsSettings()
    assert domain.next_meeting(settings.ccp, date(2026, 3, 10)) == date(2026, 3, 10)
    assert domain.meeting_for_referral(settings.ccp, date(2026, 3, 6)) == date(2026, 4, 14)
