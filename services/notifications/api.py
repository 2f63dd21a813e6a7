"""Notifications' HTTP API: police alerts (query, history, acknowledgement), the Daily Briefing,
and what was sent to partners."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select

from services.notifications import briefing, domain, store
from services.notifications.handlers import DailyBriefings, PoliceAlerts
from services.notifications.settings import NotificationsSettings
from shared import audit
from shared.clock import Clock
from shared.runtime import ServiceRuntime
from shared.security import ALL, FieldSpec, Principal, Role, project, require_roles, view_role

# Who may read what here, and how much of it (the one place notifications minimises). The police
# and the CSU see police alerts (the police all but the CSU's own escalations); the partners at the
# Daily Briefing (CSU, police, Housing) see the briefing; only the CSU sees what was sent to whom.
ALERT_READERS = (Role.CSU, Role.POLICE, Role.ADMIN)
BRIEFING_READERS = (Role.CSU, Role.POLICE, Role.HOUSING, Role.ADMIN)
DISPATCH_READERS = (Role.CSU, Role.ADMIN)
ALERT_FIELDS = frozenset(
    {
        "alert_id",
        "incident_id",
        "status",
        "delivery_status",
        "overdue",
        "risk_tier",
        "crime_category",
        "channels",
        "created_at",
        "acknowledge_by",
        "delivered_at",
        "attempts",
        "acknowledged_at",
        "acknowledged_by",
        "escalated_at",
    }
)
ALERT_VIEWS: dict[str, FieldSpec] = {
    Role.ADMIN: ALL,
    Role.CSU: ALL,
    Role.POLICE: frozenset({*ALERT_FIELDS, "payload", "deliveries", "attempt_history"}),
}


def view_alert(caller: Principal, doc: dict[str, Any]) -> dict[str, Any]:
    """An alert cut to the caller's role (callers without an alert role never get here)."""
    role = view_role(caller, ALERT_VIEWS) or Role.POLICE
    return dict(project(doc, ALERT_VIEWS[role]))


AlertReader = Annotated[Principal, Depends(require_roles(*ALERT_READERS))]
BriefingReader = Annotated[Principal, Depends(require_roles(*BRIEFING_READERS))]
DispatchReader = Annotated[Principal, Depends(require_roles(*DISPATCH_READERS))]


class Problem(Exception):
    """An error in the partnership's one shape: ``{"error": ..., "errors": [{"field", "reason"}]}``."""

    def __init__(self, status_code: int, error: str, field: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status_code, self.error, self.field, self.reason, self.extra = status_code, error, field, reason, extra


async def problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": exc.error, "errors": [{"field": exc.field, "reason": exc.reason}], **exc.extra},
    )


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field (path, query or body) and the reason."""
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            errors.append({"field": "(body)", "reason": "malformed JSON"})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query")]
        errors.append({"field": ".".join(loc) or "(body)", "reason": err.get("msg", "invalid")})
    return JSONResponse(status_code=422, content={"error": "invalid request", "errors": errors})


class Acknowledgement(BaseModel):
    """Body of POST /v1/alerts/{alert_id}/ack."""

    model_config = ConfigDict(extra="forbid")

    acknowledged_by: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def alert_view(alert: store.PoliceAlert, now: datetime) -> dict[str, Any]:
    """An alert as the API shows it: ``status`` is acknowledged once acknowledged, else its delivery
    state; ``overdue`` says whether its deadline passed unacknowledged."""
    return {
        "alert_id": str(alert.alert_id),
        "incident_id": str(alert.incident_id),
        "status": "acknowledged" if alert.acknowledged_at else alert.status,
        "delivery_status": alert.status,
        "overdue": domain.is_overdue(alert.acknowledge_by, alert.acknowledged_at, now),
        "risk_tier": alert.risk_tier,
        "crime_category": alert.crime_category,
        "channels": alert.channels,
        "created_at": _iso(alert.created_at),
        "acknowledge_by": _iso(alert.acknowledge_by),
        "delivered_at": _iso(alert.delivered_at),
        "attempts": alert.attempts,
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "escalated_at": _iso(alert.escalated_at),
    }


def attempt_view(a: store.DispatchAttempt) -> dict[str, Any]:
    return {
        "attempted_at": _iso(a.attempted_at),
        "finished_at": _iso(a.finished_at),
        "channel": a.channel,
        "destination": a.destination,
        "outcome": a.outcome,
        "status_code": a.status_code,
        "error": a.error,
    }


def dispatch_view(d: store.Dispatch) -> dict[str, Any]:
    return {
        "dispatch_id": str(d.dispatch_id),
        "kind": d.kind,
        "subject_id": d.subject_id,
        "channel": d.channel,
        "destination": d.destination,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": _iso(d.created_at),
        "delivered_at": _iso(d.delivered_at),
        "next_attempt_at": _iso(d.next_attempt_at),
        "last_error": d.last_error,
    }


def install(
    app: FastAPI,
    runtime: ServiceRuntime,
    settings: NotificationsSettings,
    clock: Clock,
    alerts: PoliceAlerts,
    briefings: DailyBriefings,
) -> None:
    app.add_exception_handler(Problem, problem_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    zone = ZoneInfo(settings.briefing_timezone)
    router = APIRouter(prefix="/v1")

    @router.get("/alerts", tags=["police alerts"])
    async def list_alerts(
        caller: AlertReader,
        status: store.AlertStatus | None = None,
        incident_id: uuid.UUID | None = None,
        date_from: Annotated[date | None, Query(alias="from", description="First local date, inclusive")] = None,
        date_to: Annotated[date | None, Query(alias="to", description="Last local date, inclusive")] = None,
    ) -> list[dict[str, Any]]:
        """Police alerts, oldest first, by status (pending, failed, delivered, acknowledged, overdue),
        incident and creation date (local dates in the briefing time zone)."""
        if date_from and date_to and date_to < date_from:
            raise Problem(422, "invalid request", "to", "must not be before 'from'")
        start = datetime.combine(date_from, time(0), tzinfo=zone) if date_from else None
        end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=zone) if date_to else None
        now = clock()
        async with runtime.sessions() as session:
            found = await store.list_alerts(session, status, incident_id, start, end, now)
        await audit.record(runtime.sessions, caller, "police-alert-list", str(incident_id or "*"))
        return [view_alert(caller, alert_view(a, now)) for a in found]

    @router.get("/alerts/{alert_id}", tags=["police alerts"])
    async def get_alert(alert_id: uuid.UUID, caller: AlertReader) -> dict[str, Any]:
        """One alert with its per-channel delivery state and every attempt: the proof of when the
        police were told."""
        async with runtime.sessions() as session:
            alert = await session.get(store.PoliceAlert, alert_id)
            # In this session: the store may have a single connection (SQLite), so no second one.
            audit.add_entry(session, caller, "police-alert", str(alert_id), outcome="ok" if alert else "not-found")
            await session.commit()
            if alert is None:
                raise Problem(404, "not found", "alert_id", f"no police alert {alert_id}")
            attempts = await store.attempts_for_alert(session, alert_id)
            deliveries = await store.dispatches_for_alert(session, alert_id)
            escalations = (
                await session.execute(
                    select(store.AlertEscalation)
                    .where(store.AlertEscalation.alert_id == alert_id)
                    .order_by(store.AlertEscalation.id)
                )
            ).scalars()
            view = alert_view(alert, clock())
            view["payload"] = alert.payload
            view["deliveries"] = [dispatch_view(d) for d in deliveries]
            view["attempt_history"] = [attempt_view(a) for a in attempts]
            view["escalations"] = [
                {"acknowledge_by": _iso(e.acknowledge_by), "escalated_at": _iso(e.escalated_at), "channels": e.channels}
                for e in escalations
            ]
        return view_alert(caller, view)

    @router.post(
        "/alerts/{alert_id}/ack",
        tags=["police alerts"],
        responses={404: {"description": "No such alert"}, 409: {"description": "Already acknowledged"}},
    )
    async def acknowledge(alert_id: uuid.UUID, body: Acknowledgement, caller: AlertReader) -> dict[str, Any]:
        """Record who acknowledged the alert and when (the first acknowledgement stands)."""
        alert, recorded = await alerts.acknowledge(alert_id, body.acknowledged_by)
        if alert is None:
            raise Problem(404, "not found", "alert_id", f"no police alert {alert_id}")
        if not recorded:
            raise Problem(
                409,
                "already acknowledged",
                "alert_id",
                f"acknowledged by {alert.acknowledged_by} at {_iso(alert.acknowledged_at)}",
                acknowledgement={
                    "acknowledged_by": alert.acknowledged_by,
                    "acknowledged_at": _iso(alert.acknowledged_at),
                },
            )
        await audit.record(runtime.sessions, caller, "police-alert", str(alert_id), action="acknowledge")
        return view_alert(caller, alert_view(alert, clock()))

    @router.get("/briefings/{briefing_date}", tags=["daily briefing"], response_model=None)
    async def get_briefing(
        request: Request,
        briefing_date: date,
        caller: BriefingReader,
        format: Literal["json", "html", "text"] | None = None,
    ) -> Response:
        """The Daily Briefing for a date, rebuilt from the stored events: JSON by default, HTML with
        ``?format=html`` or ``Accept: text/html``, plain text with ``?format=text``."""
        cut_off = briefings.cut_off(briefing_date)
        if cut_off > clock():
            raise Problem(
                404, "not yet due", "briefing_date", f"the briefing for {briefing_date} closes at {cut_off.isoformat()}"
            )
        content = await briefings.build(briefing_date)
        await audit.record(runtime.sessions, caller, "daily-briefing", briefing_date.isoformat())
        async with runtime.sessions() as session:
            published = await session.get(store.PublishedBriefing, briefing_date)
        headers = {"X-DCSP-Briefing-SHA256": briefing.digest(content)}
        if published is not None:
            headers["X-DCSP-Published-SHA256"] = published.sha256
        wanted = format or ("html" if "text/html" in request.headers.get("accept", "") else "json")
        if wanted == "html":
            return HTMLResponse(briefing.render_html(content), headers=headers)
        if wanted == "text":
            return PlainTextResponse(briefing.render_text(content), headers=headers)
        return Response(briefing.render_json(content), media_type="application/json", headers=headers)

    @router.get("/dispatches", tags=["partner updates"])
    async def list_dispatches(
        caller: DispatchReader, kind: str | None = None, subject_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Everything sent or being sent (police alerts, escalations, cross-border cases, panel
        outcomes, briefings) with its delivery state and attempts."""
        stmt = select(store.Dispatch).order_by(store.Dispatch.created_at, store.Dispatch.dispatch_id)
        if kind:
            stmt = stmt.where(store.Dispatch.kind == kind)
        if subject_id:
            stmt = stmt.where(store.Dispatch.subject_id == subject_id)
        async with runtime.sessions() as session:
            found = list((await session.execute(stmt)).scalars())
            views = []
            for d in found:
                view = dispatch_view(d)
                view["attempt_history"] = [
                    attempt_view(a) for a in await store.attempts_for_dispatch(session, d.dispatch_id)
                ]
                views.append(view)
        await audit.record(runtime.sessions, caller, "dispatch-list", subject_id or "*")
        return views

    app.include_router(router)
    audit.install(app, runtime.sessions)
