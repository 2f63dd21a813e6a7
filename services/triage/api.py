"""Triage's HTTP API: read a classification and the reasons behind it, cut to the caller's role."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException

from services.triage import store
from shared import audit
from shared.runtime import ServiceRuntime
from shared.security import FieldSpec, Principal, Role, project, require_roles, view_role

DECISION_FIELDS = (
    "asb_qualifier",
    "asb_heading",
    "crime_category",
    "violence_or_criminality",
    "hate_incident",
    "hate_strands",
    "vulnerable",
    "vulnerability_score",
    "risk_tier",
    "review_due",
    "repeat_victim",
    "prior_reports_6_months",
    "owning_team",
    "supporting_teams",
    "response_tier",
    "first_contact_hours",
    "cross_border",
)

# What each role may see of a classification (the one place triage minimises). The CSU sees all;
# the police the offence and response (not the victim's vulnerability); Housing the ASB type and
# who owns it; the NHS the victim's vulnerability and risk (no offence or offender detail); the
# neighbouring partnership only cross-border cases, in outline. Reasons quote the report, so only
# the CSU and the police see them.
CLASSIFICATION_VIEWS: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset({*DECISION_FIELDS, "reasons", "explanations", "rules_version"}),
    Role.CSU: frozenset({*DECISION_FIELDS, "reasons", "explanations", "rules_version"}),
    Role.POLICE: frozenset(
        {
            "asb_qualifier",
            "asb_heading",
            "crime_category",
            "violence_or_criminality",
            "hate_incident",
            "hate_strands",
            "risk_tier",
            "repeat_victim",
            "owning_team",
            "supporting_teams",
            "response_tier",
            "first_contact_hours",
            "cross_border",
            "reasons",
            "explanations",
            "rules_version",
        }
    ),
    Role.HOUSING: frozenset(
        {
            "asb_qualifier",
            "asb_heading",
            "risk_tier",
            "review_due",
            "owning_team",
            "supporting_teams",
            "response_tier",
            "first_contact_hours",
        }
    ),
    Role.NHS: frozenset({"vulnerable", "vulnerability_score", "risk_tier", "review_due", "hate_incident"}),
    Role.NEIGHBOURING_PARTNERSHIP: frozenset(
        {"asb_qualifier", "asb_heading", "crime_category", "risk_tier", "cross_border"}
    ),
}
READERS = tuple(CLASSIFICATION_VIEWS)


# Module level: FastAPI resolves string annotations in the module's namespace.
Reader = Annotated[Principal, Depends(require_roles(*READERS))]


def incident_view(caller: Principal, doc: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The one place triage cuts a document to the caller's role: ``doc`` has ``classification``
    (the stored one) and the role's allowed fields are kept; None when the role may not see it."""
    role = view_role(caller, READERS)
    if role is None:
        return None
    c = doc["classification"]
    if role == Role.NEIGHBOURING_PARTNERSHIP and not c.get("cross_border"):
        return None
    allowed = CLASSIFICATION_VIEWS[role]
    spec: dict[str, FieldSpec | bool] = {k: True for k in doc if k != "classification"}
    spec["classification"] = allowed
    out = project(doc, spec)
    return role, out


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    router = APIRouter(prefix="/v1", tags=["triage"])

    async def _viewed(
        incident_id: uuid.UUID, caller: Principal, what: str
    ) -> tuple[store.TriagedIncident, dict[str, Any]]:
        async with runtime.sessions() as session:
            row = await store.get(session, incident_id)
        seen = (
            incident_view(caller, {"incident_id": str(incident_id), "classification": row.classification})
            if row is not None
            else None
        )
        await audit.record(
            runtime.sessions, caller, what, str(incident_id), view=seen[0] if seen else None,
            outcome="ok" if seen else "not-found",
        )  # fmt: skip
        if row is None or seen is None:
            raise HTTPException(status_code=404, detail=f"incident {incident_id} has not been triaged")
        return row, seen[1]["classification"]

    @router.get("/incidents/{incident_id}")
    async def get_incident(incident_id: uuid.UUID, caller: Reader) -> dict[str, Any]:
        """The classification of one incident, with the reasons behind it (as the caller's role may see it)."""
        row, c = await _viewed(incident_id, caller, "incident")
        return {
            "incident_id": str(row.incident_id),
            "triaged_at": row.triaged_at.isoformat(),
            "classification": c,
        }

    @router.get("/incidents/{incident_id}/triage")
    async def get_triage(incident_id: uuid.UUID, caller: Reader) -> dict[str, Any]:
        """The triage decision in brief, with every rule that fired: rule id, sentence and evidence."""
        row, c = await _viewed(incident_id, caller, "incident-triage")
        out: dict[str, Any] = {
            "incident_id": str(row.incident_id),
            "triaged_at": row.triaged_at.isoformat(),
            "rules_version": row.rules_version,
            "decision": {key: c.get(key) for key in DECISION_FIELDS if key in c},
            "duplicate_of": None if row.root_id == row.incident_id else str(row.root_id),
            "reasons": c.get("explanations", []),
        }
        if "explanations" not in c:
            del out["reasons"]
        if "rules_version" not in c:
            del out["rules_version"]
        return out

    app.include_router(router)
    audit.install(app, runtime.sessions)
