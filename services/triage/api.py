"""Triage's HTTP API: read a classification and its reasons."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from services.triage import store
from shared.runtime import ServiceRuntime


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    router = APIRouter(prefix="/v1", tags=["triage"])

    @router.get("/incidents/{incident_id}")
    async def get_incident(incident_id: uuid.UUID) -> dict[str, Any]:
        """The classification of one incident, with the reasons behind it."""
        async with runtime.sessions() as session:
            row = await store.get(session, incident_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"incident {incident_id} has not been triaged")
        return {
            "incident_id": str(row.incident_id),
            "triaged_at": row.triaged_at.isoformat(),
            "classification": row.classification,
        }

    app.include_router(router)
