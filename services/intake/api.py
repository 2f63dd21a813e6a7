"""Intake's HTTP API: partners POST reports, panel referral requests and tenancy events here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from services.intake import store
from services.intake.handlers import IdempotencyConflict, PartnerEvent, accept_partner_event, accept_report
from shared.contracts import Channel, PanelReferralRequested, ReportDetails, TenancyPossessionUpdated
from shared.logging import get_logger
from shared.outbox import add_events
from shared.runtime import ServiceRuntime

log = get_logger(__name__)


class ReportAccepted(BaseModel):
    incident_id: uuid.UUID
    partner: str
    idempotency_key: str
    accepted_at: datetime
    replayed: bool


def _accepted(record: store.AcceptedReport, replayed: bool) -> ReportAccepted:
    return ReportAccepted(
        incident_id=record.incident_id,
        partner=record.partner,
        idempotency_key=record.idempotency_key,
        accepted_at=record.accepted_at,
        replayed=replayed,
    )


class PartnerEventAccepted(BaseModel):
    event_type: str
    partner: str
    idempotency_key: str
    accepted_at: datetime
    replayed: bool


class Problem(Exception):
    """An error answered in intake's one shape: ``{"error": ..., "errors": [{"field", "reason"}]}``."""

    def __init__(self, status_code: int, error: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.status_code, self.error, self.field, self.reason = status_code, error, field, reason


async def problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": exc.error, "errors": [{"field": exc.field, "reason": exc.reason}]},
    )


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field and the reason, e.g. ``location.uprn: String should match ...``."""
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            errors.append({"field": "(body)", "reason": f"malformed JSON: {detail}".rstrip(": ")})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append({"field": ".".join(loc) or "(body)", "reason": err.get("msg", "invalid")})
    return JSONResponse(status_code=422, content={"error": _invalid(request.url.path), "errors": errors})


def _invalid(path: str) -> str:
    if path.endswith("/panel-referral-requests"):
        return "invalid panel referral request"
    if path.endswith("/tenancy-events"):
        return "invalid tenancy event"
    return "invalid report"


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reports"])

    @router.post(
        "/reports",
        status_code=status.HTTP_201_CREATED,
        responses={
            200: {"description": "Same idempotency key as an earlier report: its result, nothing new"},
            409: {"description": "Idempotency key reused for different content"},
            422: {"description": "Invalid report: each bad field and why"},
        },
    )
    async def post_report(report: ReportDetails, response: Response) -> ReportAccepted:
        """Accept a partner's report; safe to retry with the same idempotency key."""
        for _ in range(2):  # a concurrent POST with the same key loses the unique race once
            try:
                async with runtime.sessions.begin() as session:
                    acceptance, events = await accept_report(session, report, Channel.HTTP)
                    add_events(session, runtime.source, events)
                break
            except IdempotencyConflict as exc:
                raise Problem(409, "idempotency key conflict", "idempotency_key", str(exc)) from exc
            except IntegrityError:
                continue
        else:
            raise Problem(503, "try again", "(body)", "could not store the report; retry with the same key")
        log.info(
            "report accepted" if acceptance.created else "report replayed (same idempotency key)",
            incident_id=str(acceptance.record.incident_id),
            partner=acceptance.record.partner,
            channel="http",
        )
        if acceptance.created:
            runtime.relay.wake()
        else:
            response.status_code = status.HTTP_200_OK
        return _accepted(acceptance.record, replayed=not acceptance.created)

    @router.get("/reports/{incident_id}")
    async def get_report(incident_id: uuid.UUID) -> ReportAccepted:
        async with runtime.sessions() as session:
            record = await store.get(session, incident_id)
        if record is None:
            raise Problem(404, "not found", "incident_id", f"no report with incident_id {incident_id}")
        return _accepted(record, replayed=False)

    async def accept(event: PartnerEvent, response: Response) -> PartnerEventAccepted:
        for _ in range(2):  # a concurrent POST with the same key loses the unique race once
            try:
                async with runtime.sessions.begin() as session:
                    acceptance, events = await accept_partner_event(session, event, Channel.HTTP)
                    add_events(session, runtime.source, events)
                break
            except IdempotencyConflict as exc:
                raise Problem(409, "idempotency key conflict", "idempotency_key", str(exc)) from exc
            except IntegrityError:
                continue
        else:
            raise Problem(503, "try again", "(body)", "could not store the event; retry with the same key")
        record = acceptance.record
        log.info(
            "partner event accepted" if acceptance.created else "partner event replayed (same idempotency key)",
            event_type=record.kind,
            partner=record.partner,
            channel="http",
        )
        if acceptance.created:
            runtime.relay.wake()
        else:
            response.status_code = status.HTTP_200_OK
        return PartnerEventAccepted(
            event_type=record.kind,
            partner=record.partner,
            idempotency_key=record.idempotency_key,
            accepted_at=record.accepted_at,
            replayed=not acceptance.created,
        )

    partner_event_responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Same idempotency key as an earlier event: its result, nothing new"},
        409: {"description": "Idempotency key reused for different content"},
        422: {"description": "Invalid event: each bad field and why"},
    }

    @router.post("/panel-referral-requests", status_code=status.HTTP_201_CREATED, responses=partner_event_responses)
    async def post_panel_referral_request(request: PanelReferralRequested, response: Response) -> PartnerEventAccepted:
        """A partner asks for a person to go to the VCSP or the CCP; safe to retry with the same key."""
        return await accept(request, response)

    @router.post("/tenancy-events", status_code=status.HTTP_201_CREATED, responses=partner_event_responses)
    async def post_tenancy_event(update: TenancyPossessionUpdated, response: Response) -> PartnerEventAccepted:
        """A housing system's possession news about a tenancy; safe to retry with the same key."""
        return await accept(update, response)

    return router


def install(app: FastAPI, runtime: ServiceRuntime) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Problem, problem_handler)
    app.include_router(build_router(runtime))
