"""Notifications' HTTP API: police alerts and their attempt history."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from services.notifications import store
from shared.runtime import ServiceRuntime


def _alert_view(alert: store.PoliceAlert) -> dict[str, Any]:
    return {
        "alert_id": str(alert.alert_id),
        "incident_id": str(alert.incident_id),
        "status": alert.status,
        "risk_tier": alert.risk_tier,
        "created_at": alert.created_at.isoformat(),
        "delivered_at": alert.delivered_at.isoformat() if alert.delivered_at else None,
        "attempts": alert.attempts,
    }


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    router = APIRouter(prefix="/v1", tags=["police alerts"])

    @router.get("/alerts")
    async def list_alerts(
        status: store.AlertStatus | None = None,
        incident_id: uuid.UUID | None = None,
    ) -> list[dict[str, Any]]:
        """Police alerts, oldest first, optionally by status or incident."""
        async with runtime.sessions() as session:
            alerts = await store.list_alerts(session, status, incident_id)
        return [_alert_view(a) for a in alerts]

    @router.get("/alerts/{alert_id}")
    async def get_alert(alert_id: uuid.UUID) -> dict[str, Any]:
        """One alert with every delivery attempt: the proof of when the police were told."""
        async with runtime.sessions() as session:
            alert = await session.get(store.PoliceAlert, alert_id)
            if alert is None:
                raise HTTPException(status_code=404, detail=f"no police alert {alert_id}")
            attempts = await store.attempts_for(session, alert_id)
        view = _alert_view(alert)
        view["attempt_history"] = [
            {
                "attempted_at": a.attempted_at.isoformat(),
                "channel": a.channel,
                "outcome": a.outcome,
                "status_code": a.status_code,
                "error": a.error,
            }
            for a in attempts
        ]
        return view

    app.include_router(router)
