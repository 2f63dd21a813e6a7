"""Unit tests for the panel referral rules (services.panels.domain): pure, no broker, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.panels.domain import ReferralDecision, ccp_reasons, decide_referrals, tenancy_key, vcsp_reasons
from shared.contracts import (
    AsbQualifier,
    Classification,
    IncidentTriaged,
    Location,
    MandatoryGround,
    Panel,
    PartnerAgency,
    Person,
    PossessionRisk,
    ReportDetails,
    RiskTier,
    Tenancy,
    TenantRole,
    Tenure,
)

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
INCIDENT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
VICTIM_KEY = "p-0123456789abcdef0123456789abcdef"


def make_classification(**changes: Any) -> Classification:
    """A standard-risk, not vulnerable, first-time nuisance classification, with ``changes`` applied."""
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
        "reasons": ["test"],
        "rules_version": "test",
    }
    fields.update(changes)
    return Classification(**fields)


def make_tenancy(
    tenure: Tenure = Tenure.COUNCIL,
    *,
    nsp: bool = False,
    grounds: tuple[MandatoryGround, ...] = (),
    ref: str | None = "T-42",
    role: TenantRole = TenantRole.PERPETRATOR,
) -> Tenancy:
    return Tenancy(
        tenure=tenure,
        tenancy_ref=ref,
        tenant_role=role,
        tenant=Person(name="A Tenant") if role == TenantRole.PERPETRATOR else None,
        possession=PossessionRisk(notice_of_seeking_possession=nsp, mandatory_grounds=list(grounds)),
    )


def make_triaged(
    *,
    tenancy: Tenancy | None = None,
    victim_key: str | None = VICTIM_KEY,
    **classification: Any,
) -> IncidentTriaged:
    report = ReportDetails(
        partner=PartnerAgency.HOUSING,
        idempotency_key="HSG-0001",
        reported_at=NOW,
        location=Location(uprn="100023336956"),
        description="Loud music and threats from the flat above.",
        victim=Person(name="A Resident") if victim_key else None,
        tenancy=tenancy,
    )
    return IncidentTriaged(
        incident_id=INCIDENT_ID,
        triaged_at=NOW,
        victim_key=victim_key,
        classification=make_classification(**classification),
        report=report,
    )


# ---------------------------------------------------------------------------
# VCSP
# ---------------------------------------------------------------------------


def test_no_vcsp_for_standard_risk_not_vulnerable_first_report() -> None:
    event = make_triaged()
    assert vcsp_reasons(event) == []
    assert decide_referrals(event) == []


@pytest.mark.parametrize("tier", [RiskTier.STANDARD, RiskTier.MEDIUM])
def test_no_vcsp_below_high_risk(tier: RiskTier) -> None:
    assert vcsp_reasons(make_triaged(risk_tier=tier)) == []


def test_no_vcsp_for_a_score_below_the_vulnerable_flag() -> None:
    # The score alone does not refer: triage's `vulnerable` decides, against its configurable threshold.
    assert vcsp_reasons(make_triaged(vulnerability_score=21, vulnerable=False)) == []


def test_no_vcsp_for_prior_reports_without_repeat_flag() -> None:
    assert vcsp_reasons(make_triaged(prior_reports_6_months=1, repeat_victim=False)) == []


def test_vcsp_for_high_risk_alone() -> None:
    event = make_triaged(risk_tier=RiskTier.HIGH)
    assert vcsp_reasons(event) == ["victim assessed at high risk"]
    assert decide_referrals(event) == [ReferralDecision(Panel.VCSP, VICTIM_KEY, ("victim assessed at high risk",))]


def test_vcsp_for_vulnerable_alone() -> None:
    event = make_triaged(vulnerable=True, vulnerability_score=22)
    assert vcsp_reasons(event) == ["victim vulnerable (score 22)"]
    assert [d.panel for d in decide_referrals(event)] == [Panel.VCSP]


def test_vcsp_for_repeat_victim_alone_counts_this_report() -> None:
    event = make_triaged(repeat_victim=True, prior_reports_6_months=2)
    assert vcsp_reasons(event) == ["repeat victim (3 reports in 6 months)"]
    assert [d.panel for d in decide_referrals(event)] == [Panel.VCSP]


def test_vcsp_lists_every_reason_in_order() -> None:
    event = make_triaged(
        risk_tier=RiskTier.HIGH, vulnerable=True, vulnerability_score=30, repeat_victim=True, prior_reports_6_months=1
    )
    assert vcsp_reasons(event) == [
        "victim assessed at high risk",
        "victim vulnerable (score 30)",
        "repeat victim (2 reports in 6 months)",
    ]
    (decision,) = decide_referrals(event)
    assert decision.reasons == tuple(vcsp_reasons(event))


def test_vcsp_without_victim_key_is_keyed_by_incident() -> None:
    (decision,) = decide_referrals(make_triaged(victim_key=None, risk_tier=RiskTier.HIGH))
    assert decision == ReferralDecision(Panel.VCSP, f"incident:{INCIDENT_ID}", ("victim assessed at high risk",))


# ---------------------------------------------------------------------------
# CCP
# ---------------------------------------------------------------------------


def test_ccp_for_council_tenancy_with_notice_of_seeking_possession() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True))
    assert ccp_reasons(event) == [
        "council tenant (perpetrator) in an ASB case at risk of homelessness",
        "notice of seeking possession served",
    ]
    assert decide_referrals(event) == [ReferralDecision(Panel.CCP, "tenancy:T-42", tuple(ccp_reasons(event)))]


@pytest.mark.parametrize("ground", list(MandatoryGround))
def test_ccp_for_each_mandatory_ground_alone(ground: MandatoryGround) -> None:
    event = make_triaged(tenancy=make_tenancy(grounds=(ground,)))
    assert ccp_reasons(event) == [
        "council tenant (perpetrator) in an ASB case at risk of homelessness",
        f"mandatory ground for possession: {ground.value}",
    ]
    assert [d.panel for d in decide_referrals(event)] == [Panel.CCP]


def test_the_five_mandatory_grounds_are_the_brief_s() -> None:
    assert {g.value for g in MandatoryGround} == {
        "serious-offence-conviction",
        "injunction-breach",
        "cbo-breach-conviction",
        "closure-order-over-48h",
        "noise-abatement-breach-conviction",
    }


def test_ccp_lists_notice_then_every_ground() -> None:
    grounds = (MandatoryGround.INJUNCTION_BREACH, MandatoryGround.CLOSURE_ORDER_OVER_48H)
    reasons = ccp_reasons(make_triaged(tenancy=make_tenancy(nsp=True, grounds=grounds)))
    assert reasons[1:] == [
        "notice of seeking possession served",
        "mandatory ground for possession: injunction-breach",
        "mandatory ground for possession: closure-order-over-48h",
    ]


def test_ccp_for_victim_tenant_names_the_role() -> None:
    reasons = ccp_reasons(make_triaged(tenancy=make_tenancy(nsp=True, role=TenantRole.VICTIM)))
    assert reasons[0] == "council tenant (victim) in an ASB case at risk of homelessness"


@pytest.mark.parametrize("tenure", [Tenure.HOUSING_ASSOCIATION, Tenure.PRIVATE_RENTED, Tenure.OWNER_OCCUPIER])
def test_no_ccp_for_other_tenures_even_with_possession_risk(tenure: Tenure) -> None:
    event = make_triaged(tenancy=make_tenancy(tenure, nsp=True, grounds=tuple(MandatoryGround)))
    assert ccp_reasons(event) == []
    assert decide_referrals(event) == []


def test_no_ccp_for_council_tenancy_without_possession_risk() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=False, grounds=()))
    assert ccp_reasons(event) == []
    assert decide_referrals(event) == []


def test_no_ccp_without_tenancy() -> None:
    assert ccp_reasons(make_triaged(tenancy=None)) == []


def test_ccp_and_vcsp_together_have_different_person_keys() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True), risk_tier=RiskTier.HIGH)
    assert [(d.panel, d.person_key) for d in decide_referrals(event)] == [
        (Panel.VCSP, VICTIM_KEY),
        (Panel.CCP, "tenancy:T-42"),
    ]


# ---------------------------------------------------------------------------
# CCP person key
# ---------------------------------------------------------------------------


def test_ccp_person_key_is_the_tenancy_reference_not_the_victim() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True, ref="T-42", role=TenantRole.VICTIM))
    assert tenancy_key(event) == "tenancy:T-42"
    assert decide_referrals(event)[0].person_key == "tenancy:T-42"


def test_ccp_same_tenancy_same_key_whoever_the_victim() -> None:
    one = make_triaged(tenancy=make_tenancy(nsp=True), victim_key="p-" + "a" * 32)
    other = make_triaged(tenancy=make_tenancy(nsp=True), victim_key="p-" + "b" * 32)
    assert decide_referrals(one)[0].person_key == decide_referrals(other)[0].person_key == "tenancy:T-42"


def test_tenancy_key_none_without_tenancy() -> None:
    assert tenancy_key(make_triaged(tenancy=None)) is None


def test_ccp_victim_tenant_without_reference_falls_back_to_victim_key() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True, ref=None, role=TenantRole.VICTIM))
    assert decide_referrals(event) == [ReferralDecision(Panel.CCP, VICTIM_KEY, tuple(ccp_reasons(event)))]


def test_ccp_without_reference_or_victim_key_is_keyed_by_incident() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True, ref=None, role=TenantRole.VICTIM), victim_key=None)
    assert decide_referrals(event)[0].person_key == f"incident:{INCIDENT_ID}"


def test_ccp_perpetrator_tenant_without_reference_is_not_keyed_by_the_victim() -> None:
    event = make_triaged(tenancy=make_tenancy(nsp=True, ref=None, role=TenantRole.PERPETRATOR))
    (ccp,) = decide_referrals(event)
    assert ccp.person_key != VICTIM_KEY
