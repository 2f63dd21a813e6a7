"""Officer pages, server-rendered: police alerts awaiting acknowledgement (with an Acknowledge form
that works without JavaScript) and the Daily Briefing.

The pages reuse the service's own use cases: ``PoliceAlerts.acknowledge``, ``DailyBriefings.build``
and ``briefing.render_html``; they add no rule of their own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import select

from services.notifications import briefing, store
from services.notifications.api import ALERT_READERS, BRIEFING_READERS, Acknowledgement, alert_view
from services.notifications.handlers import DailyBriefings, PoliceAlerts
from services.notifications.settings import NotificationsSettings
from shared import audit
from shared.clock import Clock
from shared.runtime import ServiceRuntime
from shared.security import Principal, require_roles
from shared.templates import SHARED_TEMPLATES

_templates = Environment(
    loader=FileSystemLoader([briefing.TEMPLATES, SHARED_TEMPLATES]),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Officer:
    """Who is using the officer pages."""

    name: str | None = None


async def officer_on_duty(request: Request) -> Officer:
    """Who is using the officer pages: an authenticated caller with an officer role (the police,
    Housing or the CSU); each page narrows that further."""
    principal = await require_roles(*BRIEFING_READERS)(request)
    return Officer(name=principal.subject)


# Module level: FastAPI resolves string annotations in the module's namespace.
AlertOfficer = Annotated[Principal, Depends(require_roles(*ALERT_READERS))]
BriefingOfficer = Annotated[Principal, Depends(require_roles(*BRIEFING_READERS))]


def _render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


async def _awaiting_acknowledgement(runtime: ServiceRuntime) -> list[store.PoliceAlert]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(store.PoliceAlert)
            .where(store.PoliceAlert.acknowledged_at.is_(None))
            .order_by(store.PoliceAlert.acknowledge_by, store.PoliceAlert.alert_id)
        )
        return list(rows.scalars())


def _briefing_body(html: str) -> Markup:
    """The briefing renderer's document without its own <html>/<head>, to sit inside the page's <main>."""
    start, end = html.find("<body>"), html.rfind("</body>")
    inner = html[start + len("<body>") : end] if start >= 0 and end > start else html
    return Markup(inner)  # already autoescaped by the briefing renderer


def install(
    app: FastAPI,
    runtime: ServiceRuntime,
    settings: NotificationsSettings,
    clock: Clock,
    alerts: PoliceAlerts,
    briefings: DailyBriefings,
) -> None:
    """Mount the officer pages under /officer."""
    zone = ZoneInfo(settings.briefing_timezone)
    router = APIRouter(prefix="/officer", dependencies=[Depends(officer_on_duty)], include_in_schema=False)

    def local(value: datetime | str | None) -> str:
        if value is None:
            return "-"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(zone).strftime("%d %b %Y %H:%M")

    async def alerts_page(
        status_code: int = 200,
        *,
        acknowledged: store.PoliceAlert | None = None,
        errors: dict[str, str] | None = None,
        entered: dict[str, str] | None = None,
        problem: str | None = None,
    ) -> HTMLResponse:
        now = clock()
        views = [alert_view(a, now) for a in await _awaiting_acknowledgement(runtime)]
        return _render(
            "officer_alerts.html",
            status_code,
            title="Police alerts awaiting acknowledgement",
            current="alerts",
            overdue=[v for v in views if v["overdue"]],
            not_yet_due=[v for v in views if not v["overdue"]],
            acknowledged=alert_view(acknowledged, now) if acknowledged else None,
            errors=errors or {},
            entered=entered or {},
            problem=problem,
            local=local,
            now=local(now),
            timezone=settings.briefing_timezone,
        )

    @router.get("/alerts", response_class=HTMLResponse)
    async def overdue_alerts(caller: AlertOfficer, acknowledged: str | None = None) -> HTMLResponse:
        """Overdue and unacknowledged police alerts, each with an Acknowledge form."""
        shown: store.PoliceAlert | None = None
        if acknowledged:
            try:
                alert_id = uuid.UUID(acknowledged)
            except ValueError:
                alert_id = None
            if alert_id is not None:
                async with runtime.sessions() as session:
                    shown = await session.get(store.PoliceAlert, alert_id)
        await audit.record(runtime.sessions, caller, "officer-alerts-page", "*")
        return await alerts_page(acknowledged=shown)

    @router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
    async def acknowledge_alert(alert_id: uuid.UUID, request: Request, caller: AlertOfficer) -> Response:
        """Acknowledge from the form, then back to the list (303: the browser GETs it)."""
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        name = (form.get("acknowledged_by") or [""])[0]
        try:
            body = Acknowledgement(acknowledged_by=name)
        except ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"]
            if not name.strip():
                reason = "Enter the name of the officer acknowledging the alert"
            return await alerts_page(
                422,
                errors={str(alert_id): reason},
                entered={str(alert_id): name},
                problem="The alert was not acknowledged.",
            )
        alert, _recorded = await alerts.acknowledge(alert_id, body.acknowledged_by)
        if alert is None:
            return await alerts_page(404, problem=f"There is no police alert {alert_id}.")
        await audit.record(runtime.sessions, caller, "police-alert", str(alert_id), action="acknowledge")
        # Whether this request or an earlier one recorded it, the page says who acknowledged it and when.
        return RedirectResponse(f"/officer/alerts?acknowledged={alert_id}", status_code=303)

    @router.get("/briefing", response_class=HTMLResponse)
    async def daily_briefing(request: Request, caller: BriefingOfficer) -> HTMLResponse:
        """Today's Daily Briefing once its cut-off has passed (before that, yesterday's); ?date= for another day."""
        now = clock()
        latest = briefing.briefing_due(now, settings.briefing_time, zone) or (
            now.astimezone(zone).date() - timedelta(days=1)
        )
        asked = request.query_params.get("date")
        day = latest
        if asked:
            try:
                day = date.fromisoformat(asked)
            except ValueError:
                return _briefing_page(422, latest, None, problem=f"{asked!r} is not a date: use YYYY-MM-DD.")
            if briefings.cut_off(day) > now:
                return _briefing_page(
                    404,
                    latest,
                    day,
                    problem=f"The briefing for {day} is not due until {local(briefings.cut_off(day))}.",
                )
        content = await briefings.build(day)
        await audit.record(runtime.sessions, caller, "daily-briefing", day.isoformat())
        return _briefing_page(200, latest, day, body=_briefing_body(briefing.render_html(content)))

    def _briefing_page(
        status_code: int, latest: date, day: date | None, *, body: Markup | None = None, problem: str | None = None
    ) -> HTMLResponse:
        return _render(
            "officer_briefing.html",
            status_code,
            title=f"Daily Briefing {day}" if day else "Daily Briefing",
            current="briefing",
            day=day.isoformat() if day else "",
            latest=latest.isoformat(),
            body=body,
            problem=problem,
        )

    app.include_router(router)
