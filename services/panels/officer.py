"""Officer pages, server-rendered: the next Complex Case Panel and VCSP agendas with each referral's
pack summary.

The agenda and the packs come from the service's own HTTP API, called in process (no network): the
agenda's priority order, cut-off and pack assembly live there once, and this page only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.panels.settings import PanelsSettings
from shared.contracts import Panel
from shared.security import Role, require_roles
from shared.templates import SHARED_TEMPLATES

TEMPLATES = Path(__file__).parent / "templates"

_templates = Environment(
    loader=FileSystemLoader([TEMPLATES, SHARED_TEMPLATES]),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The order officers read them in: the monthly CCP first, then the fortnightly VCSP.
PANELS_SHOWN = (Panel.CCP, Panel.VCSP)


@dataclass(frozen=True)
class Officer:
    """Who is using the officer pages."""

    name: str | None = None


async def officer_on_duty(request: Request) -> Officer:
    """The agenda pages are the panel chair's: the CSU (or an admin)."""
    principal = await require_roles(Role.CSU, Role.ADMIN)(request)
    return Officer(name=principal.subject)


class ApiUnavailable(Exception):
    """The service's own API did not answer as documented."""


async def _get_json(app: FastAPI, path: str, credentials: dict[str, str] | None = None) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://panels.internal") as client:
        response = await client.get(path, headers={"accept": "application/json", **(credentials or {})})
    if response.status_code != 200:
        raise ApiUnavailable(f"GET {path}: HTTP {response.status_code}")
    return response.json()


def pack_summary(pack: dict[str, Any]) -> dict[str, Any]:
    """What an officer needs from a pack on the agenda page: incidents, agencies, tenancy, actions."""
    tenancy = pack.get("tenancy") or None
    return {
        "incidents": [
            {
                "incident_id": i["incident_id"],
                "reported_at": (i.get("reported_at") or "")[:10],
                "reported_by": i.get("reported_by"),
                "heading": " / ".join(p for p in (i.get("asb_qualifier"), i.get("asb_heading")) if p)
                or i.get("status", "-"),
                "crime_category": i.get("crime_category"),
                "risk_tier": i.get("risk_tier"),
            }
            for i in pack.get("incidents", [])
        ],
        "agencies": [a["agency"] for a in pack.get("agencies", [])],
        "tenancy": tenancy,
        "open_actions": [a for a in pack.get("actions", []) if a.get("status") == "open"],
        "decision": pack.get("decision"),
    }


def install(app: FastAPI, settings: PanelsSettings) -> None:
    """Mount the officer pages under /officer."""
    router = APIRouter(prefix="/officer", dependencies=[Depends(officer_on_duty)], include_in_schema=False)

    @router.get("/agendas", response_class=HTMLResponse)
    async def next_agendas(request: Request) -> HTMLResponse:
        """The next CCP and VCSP meetings' agendas, in priority order, with each referral's pack summary."""
        agendas = []
        problem = None
        # The API answers as the officer: same credential, same views, same audit trail.
        credentials = {k: v for k, v in request.headers.items() if k in ("authorization", "x-api-key")}
        try:
            for panel in PANELS_SHOWN:
                agenda = await _get_json(app, f"/v1/panels/{panel.value}/meetings/next/agenda?format=json", credentials)
                for item in agenda["items"]:
                    item["pack"] = pack_summary(
                        await _get_json(app, f"/v1/referrals/{item['referral_id']}", credentials)
                    )
                agendas.append(agenda)
        except ApiUnavailable as exc:
            problem = f"The agendas could not be built just now ({exc}). Try again shortly."
        html = _templates.get_template("officer_agendas.html").render(
            title="Next panel agendas", agendas=agendas, problem=problem, timezone=settings.timezone
        )
        return HTMLResponse(html, status_code=503 if problem else 200)

    app.include_router(router)
