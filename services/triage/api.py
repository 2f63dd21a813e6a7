"""Triage's HTTP API: read a classification and the reasons behind it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from services.triage import store
from shared.runtime import ServiceRuntime


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    router = APIRouter(prefix="/v1", tags=["triage"])

    async def _row(incident_id: uuid.UUID) -> store.TriagedIncident:
        async with runtime.sessions() as session:
            row = await store.get(session, incident_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"incident {incident_id} has not been triaged")
        return row

    @router.get("/incidents/{incident_id}")
    async def get_incident(incident_id: uuid.UUID) -> dict[str, Any]:
        """The classification of one incident, with the reasons behind it."""
        row = await _row(incident_id)
        return {
            "incident_id": str(row.incident_id),
            "triaged_at": row.triaged_at.isoformat(),
            "classification": row.classification,
        }

    @router.get("/incidents/{incident_id}/triage")
    async def get_triage(incident_id: uuid.UUID) -> dict[str, Any]:
        """The triage decision in brief, with every rule that fired: rule id, sentence and evidence."""
        row = await _row(incident_id)
        c = row.classification
        return {
            "incident_id": str(row.incident_id),
            "triaged_at": row.triaged_at.isoformat(),
            "rules_version": row.rules_version,
            "decision": {
                key: c.get(key)
                for key in (
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
            },
            "duplicate_of": None if row.root_id == row.incident_id else str(row.root_id),
            "reasons": c.get("explanations", []),
        }

    app.include_router(router)
