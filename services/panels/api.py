"""Panels' HTTP API: referrals to the VCSP and the CCP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from services.panels import store
from shared.contracts import Panel
from shared.runtime import ServiceRuntime


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    router = APIRouter(prefix="/v1", tags=["panels"])

    @router.get("/referrals")
    async def list_referrals(panel: Panel | None = None) -> list[dict[str, Any]]:
        """Referrals, oldest first, with the incidents attached to each."""
        async with runtime.sessions() as session:
            rows = await store.list_referrals(session, panel)
        return [
            {
                "referral_id": str(r.referral_id),
                "panel": r.panel,
                "person_key": r.person_key,
                "status": r.status,
                "created_at": r.created_at.isoformat(),
                "reasons": r.reasons,
                "incident_ids": incidents,
            }
            for r, incidents in rows
        ]

    app.include_router(router)
