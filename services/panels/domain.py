"""Panel referral rules: who goes to the Vulnerability and Contextual Safeguarding Panel (VCSP)
and who to the monthly Complex Case Panel (CCP). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import IncidentTriaged, Panel, RiskTier, TenantRole, Tenure


@dataclass(frozen=True)
class ReferralDecision:
    panel: Panel
    person_key: str
    reasons: tuple[str, ...]


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


def ccp_reasons(event: IncidentTriaged) -> list[str]:
    """Why a council tenancy belongs at the CCP: ASB plus a possession risk (empty if not)."""
    tenancy = event.report.tenancy
    if tenancy is None or tenancy.tenure != Tenure.COUNCIL:
        return []
    reasons = []
    if tenancy.possession.notice_of_seeking_possession:
        reasons.append("notice of seeking possession served")
    reasons += [f"mandatory ground for possession: {g}" for g in dict.fromkeys(tenancy.possession.mandatory_grounds)]
    if reasons:
        reasons.insert(0, f"council tenant ({tenancy.tenant_role}) in an ASB case at risk of homelessness")
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


def decide_referrals(event: IncidentTriaged) -> list[ReferralDecision]:
    """The panel referrals a triaged incident calls for (each attaches to an open one if any)."""
    decisions = []
    vcsp = vcsp_reasons(event)
    if vcsp:
        person = event.victim_key or f"incident:{event.incident_id}"
        decisions.append(ReferralDecision(Panel.VCSP, person, tuple(vcsp)))
    ccp = ccp_reasons(event)
    if ccp:
        person = tenancy_key(event) or f"incident:{event.incident_id}"
        decisions.append(ReferralDecision(Panel.CCP, person, tuple(ccp)))
    return decisions
