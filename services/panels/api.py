"""Panels' HTTP API: referrals and their packs, agendas, outcomes and action plans, history."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from services.panels import domain, store
from services.panels.handlers import ActionPlanItem, Panels, ReferralClosed, ReferralNotFound, tenancy_record
from services.panels.settings import MeetingSchedule, PanelsSettings
from shared import audit
from shared.contracts import AsbTool, IncidentTriaged, Panel, PartnerAgency, Person, RiskTier
from shared.runtime import ServiceRuntime
from shared.security import ALL, FieldSpec, Principal, Role, forbidden, project, require_roles, view_role

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class Problem(Exception):
    """An error answered in the one shape: ``{"error": ..., "errors": [{"field", "reason"}]}``."""

    def __init__(self, status_code: int, error: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.status_code, self.error, self.field, self.reason = status_code, error, field, reason


async def problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": exc.error, "errors": [{"field": exc.field, "reason": exc.reason}]},
    )


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field and the reason, e.g. ``actions.0.due: Input should be a valid date``."""
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            errors.append({"field": "(body)", "reason": f"malformed JSON: {detail}".rstrip(": ")})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append({"field": ".".join(loc) or "(body)", "reason": err.get("msg", "invalid")})
    return JSONResponse(status_code=422, content={"error": "invalid request", "errors": errors})


# -- who sees which referral, and how much of it: the one place panels minimises ---------------

# Which panels' referrals each role sees: Housing the Complex Case Panel (tenancies), the NHS the
# safeguarding panel (victims), the neighbouring partnership only cross-border cases.
PANELS_SEEN: dict[str, frozenset[Panel]] = {
    Role.ADMIN: frozenset(Panel),
    Role.CSU: frozenset(Panel),
    Role.POLICE: frozenset(Panel),
    Role.HOUSING: frozenset({Panel.CCP}),
    Role.NHS: frozenset({Panel.VCSP}),
    Role.NEIGHBOURING_PARTNERSHIP: frozenset(Panel),
}
CROSS_BORDER_ONLY = frozenset({Role.NEIGHBOURING_PARTNERSHIP})

_PACK_HEAD = frozenset({"referral_id", "panel", "panel_name", "status", "referred_at"})
_OUTCOME = frozenset({"decision", "agenda_meeting", "actions", "closed_at", "close_reason"})
# The fields of a referral's pack each role may see.
REFERRAL_VIEWS: dict[str, FieldSpec] = {
    Role.ADMIN: ALL,
    Role.CSU: ALL,
    # Offence detail and the people involved, not health or tenancy.
    Role.POLICE: {
        **dict.fromkeys(_PACK_HEAD | _OUTCOME | {"reasons", "referring_partner", "agencies", "cross_border"}, True),
        "person": frozenset({"name", "age", "role"}),
        "incidents": frozenset(
            {
                "incident_id",
                "status",
                "reported_at",
                "reported_by",
                "location",
                "description",
                "asb_qualifier",
                "asb_heading",
                "crime_category",
                "hate_incident",
                "risk_tier",
                "triage_reasons",
                "tenant_role",
            }
        ),
        "risk_history": frozenset({"at", "incident_id", "risk_tier"}),
    },
    # The tenancy and the ASB around it, not free-text accounts or health.
    Role.HOUSING: {
        **dict.fromkeys(
            _PACK_HEAD | _OUTCOME | {"reasons", "referring_partner", "consent", "agencies", "tenancy"}, True
        ),
        "person": frozenset({"name", "age", "role"}),
        "incidents": frozenset(
            {
                "incident_id",
                "status",
                "reported_at",
                "reported_by",
                "location",
                "asb_qualifier",
                "asb_heading",
                "risk_tier",
                "tenant_role",
            }
        ),
        "risk_history": frozenset({"at", "incident_id", "risk_tier"}),
    },
    # The victim's safeguarding needs: no offence or offender detail, no accounts, no places.
    Role.NHS: {
        **dict.fromkeys(_PACK_HEAD | _OUTCOME | {"reasons", "consent", "agencies", "risk_history"}, True),
        "person": frozenset({"name", "age", "vulnerabilities", "role"}),
        "incidents": frozenset(
            {
                "incident_id",
                "status",
                "reported_at",
                "asb_qualifier",
                "asb_heading",
                "hate_incident",
                "risk_tier",
                "vulnerability_score",
            }
        ),
    },
    # A cross-border case in outline, and who to contact.
    Role.NEIGHBOURING_PARTNERSHIP: {
        **dict.fromkeys(_PACK_HEAD | {"agencies", "cross_border"}, True),
        "person": frozenset({"name", "role"}),
        "incidents": frozenset(
            {
                "incident_id",
                "status",
                "reported_at",
                "location",
                "asb_qualifier",
                "asb_heading",
                "crime_category",
                "risk_tier",
            }
        ),
    },
}
LISTING_VIEWS: dict[str, FieldSpec] = {
    Role.ADMIN: ALL,
    Role.CSU: ALL,
    Role.POLICE: frozenset({"referral_id", "panel", "status", "created_at", "reasons", "incident_ids"}),
    Role.HOUSING: frozenset({"referral_id", "panel", "status", "created_at", "reasons", "incident_ids"}),
    Role.NHS: frozenset({"referral_id", "panel", "status", "created_at", "reasons", "incident_ids"}),
    Role.NEIGHBOURING_PARTNERSHIP: frozenset({"referral_id", "panel", "status", "created_at", "incident_ids"}),
}
REFERRAL_READERS = tuple(REFERRAL_VIEWS)
PANEL_CHAIRS = (Role.CSU, Role.ADMIN)
# Who sits on which panel (and so may read its agenda).
PANEL_MEMBERS: dict[Panel, tuple[Role, ...]] = {
    Panel.CCP: (Role.CSU, Role.ADMIN, Role.HOUSING, Role.POLICE),
    Panel.VCSP: (Role.CSU, Role.ADMIN, Role.POLICE, Role.NHS),
}


# Module level: FastAPI resolves string annotations in the module's namespace.
Reader = Annotated[Principal, Depends(require_roles(*REFERRAL_READERS))]
Chair = Annotated[Principal, Depends(require_roles(*PANEL_CHAIRS))]


def may_see(role: str, panel: str, cross_border: bool) -> bool:
    """Whether a role may see a referral to ``panel`` at all."""
    if Panel(panel) not in PANELS_SEEN.get(role, frozenset()):
        return False
    return cross_border or role not in CROSS_BORDER_ONLY


def referral_view(
    caller: Principal, doc: dict[str, Any], views: dict[str, FieldSpec] = REFERRAL_VIEWS
) -> tuple[str, dict[str, Any]] | None:
    """A referral (pack or listing row, with ``panel`` and ``cross_border``) cut to the caller's
    role, or None when the role may not see it."""
    role = view_role(caller, views)
    if role is None or not may_see(role, doc["panel"], bool(doc.get("cross_border"))):
        return None
    return role, dict(project(doc, views[role]))


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Text
    owner_agency: PartnerAgency
    due: date
    tool: AsbTool | None = Field(default=None, description="ASB, Crime and Policing Act 2014 tool, if any")


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Text
    actions: list[ActionIn] = Field(default_factory=list, max_length=100)


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text | None = None


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


AGENDA_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ agenda.panel_name }}: agenda for {{ agenda.meeting_date }}</title>
<style>body{font-family:sans-serif} table{border-collapse:collapse}
td,th{border:1px solid #999;padding:4px 8px;vertical-align:top}</style>
</head><body>
<h1>{{ agenda.panel_name }}</h1>
<p>Meeting: <strong>{{ agenda.meeting_date }}</strong>. Referrals made on or before {{ agenda.cut_off }} are listed,
highest risk first, then highest vulnerability score, then oldest referral.</p>
{% if agenda["items"] %}
<table>
<thead><tr><th>#</th><th>Person</th><th>Risk tier</th><th>Vulnerability score</th><th>Referred</th>
<th>Referred by</th><th>Incidents</th>{% if agenda.panel == "ccp" %}<th>Possession stage</th>{% endif %}
<th>Reasons</th></tr></thead>
<tbody>
{% for item in agenda["items"] %}
<tr><td>{{ item.position }}</td>
<td>{{ item.person.name if item.person and item.person.name else "(not named)" }}</td>
<td>{{ item.risk_tier or "not assessed" }}</td><td>{{ item.vulnerability_score }}</td>
<td>{{ item.referred_at[:10] }}</td><td>{{ item.referring_partner or "triage rules" }}</td>
<td>{{ item.incident_count }}</td>
{% if agenda.panel == "ccp" %}<td>{{ item.possession_stage or "none on record" }}</td>{% endif %}
<td><ul>{% for reason in item.reasons %}<li>{{ reason }}</li>{% endfor %}</ul></td></tr>
{% endfor %}
</tbody></table>
{% else %}<p>No referrals for this meeting.</p>{% endif %}
{% if agenda.after_cut_off %}<p>{{ agenda.after_cut_off | length }} later referral(s) will go to the meeting on
{{ agenda.following_meeting_date }}.</p>{% endif %}
</body></html>
"""

_templates = Environment(autoescape=True)
_agenda_template = _templates.from_string(AGENDA_HTML)


def _wants_html(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def install(app: FastAPI, runtime: ServiceRuntime, panels: Panels, settings: PanelsSettings) -> None:
    router = APIRouter(prefix="/v1", tags=["panels"])
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Problem, problem_handler)

    def schedule(panel: Panel) -> MeetingSchedule:
        return settings.ccp if panel == Panel.CCP else settings.vcsp

    async def pack(session: AsyncSession, referral: store.PanelReferral) -> dict[str, Any]:
        ids = await store.incident_ids(session, referral.referral_id)
        incidents = [IncidentTriaged.model_validate(r.event) for r in await store.incidents_on_record(session, ids)]
        tenancy = None
        if referral.tenancy_ref:
            tenancy = tenancy_record(await session.get(store.TenancyRow, referral.tenancy_ref))
        actions = await store.actions_of(session, referral.referral_id)
        summary = domain.ReferralSummary(
            referral_id=str(referral.referral_id),
            panel=Panel(referral.panel),
            person_key=referral.person_key,
            status=referral.status,
            referred_at=referral.created_at,
            reasons=tuple(referral.reasons),
            referring_partner=PartnerAgency(referral.referring_partner) if referral.referring_partner else None,
            consent_given=referral.consent_given,
            incident_ids=tuple(str(i) for i in ids),
            requested_people=tuple(Person.model_validate(p) for p in referral.requested_people or []),
            action_owners=tuple(PartnerAgency(a.owner_agency) for a in actions),
            decision=referral.decision,
        )
        body = domain.assemble_pack(summary, incidents, tenancy, settings.agency_contacts, panels.today())
        if referral.tenancy_ref and body.get("tenancy") is not None:
            row = await session.get(store.TenancyRow, referral.tenancy_ref)
            body["tenancy"]["stage_history"] = row.stage_history if row else []
        body["agenda_meeting"] = domain.meeting_for_referral(
            schedule(Panel(referral.panel)), domain.local_date(referral.created_at, settings.timezone)
        ).isoformat()
        body["actions"] = [_action_json(a, panels.today()) for a in actions]
        body["closed_at"] = referral.closed_at.isoformat() if referral.closed_at else None
        body["close_reason"] = referral.close_reason
        body["cross_border"] = any(e.classification.cross_border for e in incidents)
        return body

    async def referral_or_404(session: AsyncSession, referral_id: uuid.UUID) -> store.PanelReferral:
        referral = await session.get(store.PanelReferral, referral_id)
        if referral is None:
            raise Problem(404, "not found", "referral_id", f"no referral with id {referral_id}")
        return referral

    async def cross_border(session: AsyncSession, referral_id: uuid.UUID) -> bool:
        ids = await store.incident_ids(session, referral_id)
        return any(
            (r.event.get("classification") or {}).get("cross_border")
            for r in await store.incidents_on_record(session, ids)
        )

    @router.get("/referrals")
    async def list_referrals(caller: Reader, panel: Panel | None = None) -> list[dict[str, Any]]:
        """Referrals, oldest first, with the incidents attached to each (those the caller's role may see)."""
        listed = []
        async with runtime.sessions() as session:
            rows = await store.list_referrals(session, panel)
            for r, incidents in rows:
                row: dict[str, Any] = {
                    "referral_id": str(r.referral_id),
                    "panel": r.panel,
                    "person_key": r.person_key,
                    "status": r.status,
                    "created_at": r.created_at.isoformat(),
                    "reasons": r.reasons,
                    "incident_ids": incidents,
                }
                if view_role(caller, LISTING_VIEWS) == Role.NEIGHBOURING_PARTNERSHIP:
                    row["cross_border"] = await cross_border(session, r.referral_id)
                seen = referral_view(caller, row, LISTING_VIEWS)
                if seen is not None:
                    listed.append(seen[1])
        await audit.record(runtime.sessions, caller, "referral-list", str(panel or "*"))
        return listed

    @router.get("/referrals/{referral_id}")
    async def get_referral(referral_id: uuid.UUID, caller: Reader) -> dict[str, Any]:
        """A referral's pack, assembled from everything on record now, cut to what the caller's role may see."""
        async with runtime.sessions() as session:
            referral = await session.get(store.PanelReferral, referral_id)
            seen = referral_view(caller, await pack(session, referral)) if referral is not None else None
        await audit.record(
            runtime.sessions, caller, "referral", str(referral_id), view=seen[0] if seen else None,
            outcome="ok" if seen else "not-found",
        )  # fmt: skip
        if seen is None:
            # A referral the role may not see is answered as if it did not exist.
            raise Problem(404, "not found", "referral_id", f"no referral with id {referral_id}")
        return seen[1]

    @router.get("/referrals/{referral_id}/history")
    async def get_history(referral_id: uuid.UUID, caller: Chair) -> list[dict[str, Any]]:
        """Every change to a referral, oldest first (the CSU's record)."""
        async with runtime.sessions() as session:
            await referral_or_404(session, referral_id)
            rows = await store.history(session, referral_id)
        await audit.record(runtime.sessions, caller, "referral-history", str(referral_id))
        return [{"at": h.at.isoformat(), "event_type": h.event_type, "detail": h.detail} for h in rows]

    @router.post("/referrals/{referral_id}/outcome", status_code=status.HTTP_201_CREATED)
    async def post_outcome(referral_id: uuid.UUID, outcome: OutcomeIn, caller: Chair) -> dict[str, Any]:
        """The panel's decision and action plan; notifications tells the referring agency."""
        plan = [ActionPlanItem(a.description, a.owner_agency, a.due, a.tool) for a in outcome.actions]
        try:
            async with runtime.sessions.begin() as session:
                referral, rows = await panels.record_outcome(session, referral_id, outcome.decision, plan)
        except ReferralNotFound as exc:
            raise Problem(404, "not found", "referral_id", str(exc)) from exc
        except ReferralClosed as exc:
            raise Problem(409, "referral closed", "referral_id", str(exc)) from exc
        runtime.relay.wake()
        panels.wake()
        return {
            "referral_id": str(referral.referral_id),
            "status": referral.status,
            "decision": referral.decision,
            "actions": [_action_json(a, panels.today()) for a in rows],
        }

    @router.post("/referrals/{referral_id}/actions/{action_id}/complete")
    async def complete_action(
        referral_id: uuid.UUID, action_id: uuid.UUID, caller: Reader, body: CompleteIn | None = None
    ) -> dict[str, Any]:
        """Mark an action done (the CSU, or the agency that owns the action); repeating it changes nothing."""
        if not caller.has(*PANEL_CHAIRS):
            async with runtime.sessions() as session:
                owned = await session.get(store.PanelActionRow, action_id)
            if owned is not None and owned.owner_agency not in caller.roles:
                raise forbidden("action_id", f"only the CSU or {owned.owner_agency} may complete this action")
        try:
            async with runtime.sessions.begin() as session:
                action, changed = await panels.complete_action(
                    session, referral_id, action_id, body.note if body else None
                )
        except ReferralNotFound as exc:
            raise Problem(404, "not found", "action_id", str(exc)) from exc
        except ReferralClosed as exc:
            raise Problem(409, "referral closed", "referral_id", str(exc)) from exc
        if changed:
            runtime.relay.wake()
        return {**_action_json(action, panels.today()), "replayed": not changed}

    @router.post("/referrals/{referral_id}/close")
    async def close_referral(referral_id: uuid.UUID, body: CloseIn, caller: Chair) -> dict[str, Any]:
        """Close a referral with a reason; the person's next qualifying incident opens a new one."""
        try:
            async with runtime.sessions.begin() as session:
                referral = await panels.close_referral(session, referral_id, body.reason)
        except ReferralNotFound as exc:
            raise Problem(404, "not found", "referral_id", str(exc)) from exc
        except ReferralClosed as exc:
            raise Problem(409, "referral closed", "referral_id", str(exc)) from exc
        runtime.relay.wake()
        return {
            "referral_id": str(referral.referral_id),
            "status": referral.status,
            "closed_at": referral.closed_at.isoformat() if referral.closed_at else None,
            "close_reason": referral.close_reason,
        }

    @router.get("/actions/overdue")
    async def overdue_actions(caller: Chair, panel: Panel | None = None) -> list[dict[str, Any]]:
        """Open actions past their due date (on the service's clock), most overdue first."""
        today = panels.today()
        async with runtime.sessions() as session:
            rows = await store.overdue_actions(session, today)
        return [
            {**_action_json(a, today), "referral_id": str(r.referral_id), "panel": r.panel}
            for a, r in rows
            if panel is None or r.panel == panel
        ]

    @router.get("/panels/{panel}/meetings")
    async def upcoming_meetings(
        panel: Panel, _caller: Reader, count: Annotated[int, Query(ge=1, le=52)] = 6
    ) -> list[dict[str, str]]:
        """The panel's next meetings and their cut-off dates."""
        sched = schedule(panel)
        dates = domain.meetings_from(sched, panels.today())
        return [
            {"meeting_date": m.isoformat(), "cut_off": domain.cut_off(sched, m).isoformat()}
            for m, _ in zip(dates, range(count), strict=False)
        ]

    @router.get(
        "/panels/{panel}/meetings/next/agenda",
        responses={200: {"content": {"application/json": {}, "text/html": {}}}},
    )
    async def next_agenda(
        request: Request,
        panel: Panel,
        caller: Reader,
        format: Annotated[str | None, Query(pattern="^(json|html)$")] = None,
    ) -> Response:
        """The next meeting's agenda in priority order: JSON, or an HTML table (?format=html or Accept: text/html).
        Only the panel's members may read it."""
        if not caller.has(*PANEL_MEMBERS[panel]):
            raise forbidden("panel", f"only members of the {panel.value} panel may read its agenda")
        await audit.record(runtime.sessions, caller, "agenda", panel.value)
        sched = schedule(panel)
        meeting = domain.next_meeting(sched, panels.today())
        last_day = domain.cut_off(sched, meeting)
        items, later = [], []
        async with runtime.sessions() as session:
            for referral in await store.awaiting_panel(session, panel):
                referred_on = domain.local_date(referral.created_at, settings.timezone)
                if referred_on > last_day:
                    later.append(str(referral.referral_id))
                    continue
                body = await pack(session, referral)
                items.append(
                    domain.AgendaCandidate(
                        referral_id=str(referral.referral_id),
                        referred_at=referral.created_at,
                        risk_tier=RiskTier(referral.risk_tier) if referral.risk_tier else None,
                        vulnerability_score=referral.vulnerability_score or 0,
                        extra=body,
                    )
                )
        agenda = {
            "panel": str(panel),
            "panel_name": domain.PANEL_NAMES[panel],
            "meeting_date": meeting.isoformat(),
            "cut_off": last_day.isoformat(),
            "items": [
                {
                    "position": n,
                    "referral_id": c.referral_id,
                    "person": c.extra["person"],
                    "risk_tier": str(c.risk_tier) if c.risk_tier else None,
                    "vulnerability_score": c.vulnerability_score,
                    "referred_at": c.referred_at.isoformat(),
                    "referring_partner": c.extra["referring_partner"],
                    "reasons": c.extra["reasons"],
                    "incident_count": len(c.extra["incidents"]),
                    "consent": c.extra["consent"],
                    "possession_stage": (c.extra.get("tenancy") or {}).get("possession_stage"),
                }
                for n, c in enumerate(domain.priority_order(items), start=1)
            ],
            "after_cut_off": later,
            "following_meeting_date": domain.meeting_for_referral(sched, last_day + timedelta(days=1)).isoformat(),
        }
        if _wants_html(request, format):
            return HTMLResponse(_agenda_template.render(agenda=agenda))
        return JSONResponse(agenda)

    app.include_router(router)
    audit.install(app, runtime.sessions)


def _action_json(action: store.PanelActionRow, today: date) -> dict[str, Any]:
    return {
        "action_id": str(action.action_id),
        "description": action.description,
        "owner_agency": action.owner_agency,
        "due": action.due.isoformat(),
        "tool": action.tool,
        "status": action.status,
        "completed_at": action.completed_at.isoformat() if action.completed_at else None,
        "days_overdue": domain.days_overdue(action.due, today) if action.status == "open" else 0,
    }
