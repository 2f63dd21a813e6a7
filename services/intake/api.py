"""Intake's HTTP API: partners POST reports, panel referral requests and tenancy events here."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError

from services.intake import store
from services.intake.handlers import (
    IdempotencyConflict,
    PartnerEvent,
    accept_erasure_request,
    accept_partner_event,
    accept_report,
)
from services.intake.settings import IntakeSettings
from shared import audit, retention
from shared.contracts import Channel, PanelReferralRequested, ReportDetails, TenancyPossessionUpdated
from shared.logging import get_logger
from shared.outbox import add_events
from shared.runtime import ServiceRuntime
from shared.security import Principal, Role, Submission, check_submission, current_principal, require_roles

Caller = Annotated[Principal, Depends(current_principal)]
ErasureOfficer = Annotated[Principal, Depends(require_roles(Role.CSU, Role.ADMIN))]

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


class ErasureRequestIn(BaseModel):
    """Body of POST /v1/erasure-requests: who (name and date of birth, or their person key) and why."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    date_of_birth: date | None = None
    person_key: Annotated[str, StringConstraints(pattern=r"^p-[0-9a-f]{32}$")] | None = Field(
        default=None, description="The person's key, when known instead of name and date of birth"
    )
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _who(self) -> ErasureRequestIn:
        if self.person_key is None and (self.name is None or self.date_of_birth is None):
            raise ValueError("give name and date_of_birth, or person_key")
        return self


class ErasureStatus(BaseModel):
    request_id: uuid.UUID
    person_key: str
    incident_ids: list[uuid.UUID]
    requested_by: str
    requested_at: datetime
    complete: bool
    awaiting: list[str]
    confirmations: list[dict[str, Any]]


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
    if "/erasure-requests" in path:
        return "invalid erasure request"
    return "invalid report"


def build_router(runtime: ServiceRuntime, settings: IntakeSettings | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["reports"])
    erasure_services = (settings or IntakeSettings()).erasure_services

    @router.post(
        "/reports",
        status_code=status.HTTP_201_CREATED,
        responses={
            200: {"description": "Same idempotency key as an earlier report: its result, nothing new"},
            409: {"description": "Idempotency key reused for different content"},
            422: {"description": "Invalid report: each bad field and why"},
        },
    )
    async def post_report(report: ReportDetails, response: Response, caller: Caller) -> ReportAccepted:
        """Accept a partner's report; safe to retry with the same idempotency key."""
        check_submission(caller, Submission.REPORTS, str(report.partner))
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
    async def get_report(incident_id: uuid.UUID, caller: Caller) -> ReportAccepted:
        """Intake's receipt for a report: its partner (or the CSU) may read it."""
        async with runtime.sessions() as session:
            record = await store.get(session, incident_id)
        if record is not None and not (caller.has(Role.CSU, Role.ADMIN) or caller.partner == record.partner):
            record = None  # another partner's report is not even confirmed to exist
        await audit.record(
            runtime.sessions, caller, "report", str(incident_id), outcome="ok" if record else "not-found"
        )
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
    async def post_panel_referral_request(
        request: PanelReferralRequested, response: Response, caller: Caller
    ) -> PartnerEventAccepted:
        """A partner asks for a person to go to the VCSP or the CCP; safe to retry with the same key."""
        check_submission(caller, Submission.PANEL_REFERRAL_REQUESTS, str(request.partner))
        return await accept(request, response)

    @router.post("/tenancy-events", status_code=status.HTTP_201_CREATED, responses=partner_event_responses)
    async def post_tenancy_event(
        update: TenancyPossessionUpdated, response: Response, caller: Caller
    ) -> PartnerEventAccepted:
        """A housing system's possession news about a tenancy; safe to retry with the same key."""
        check_submission(caller, Submission.TENANCY_EVENTS, str(update.partner))
        return await accept(update, response)

    async def erasure_status(request_id: uuid.UUID) -> ErasureStatus:
        async with runtime.sessions() as session:
            row = await session.get(store.ErasureRequestRow, request_id)
            if row is None:
                raise Problem(404, "not found", "request_id", f"no erasure request {request_id}")
            confirmed = await retention.confirmations(session, request_id)
        done = {c.service for c in confirmed}
        return ErasureStatus(
            request_id=row.request_id,
            person_key=row.person_key,
            incident_ids=[uuid.UUID(i) for i in row.incident_ids],
            requested_by=row.requested_by,
            requested_at=row.requested_at,
            complete=all(s in done for s in erasure_services),
            awaiting=[s for s in erasure_services if s not in done],
            confirmations=[
                {"service": c.service, "records": c.records, "confirmed_at": c.confirmed_at.isoformat()}
                for c in confirmed
            ],
        )

    @router.post(
        "/erasure-requests",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["erasure"],
        responses={403: {"description": "Only the CSU (or an admin) may ask for erasure"}},
    )
    async def post_erasure_request(body: ErasureRequestIn, caller: ErasureOfficer) -> ErasureStatus:
        """Right to erasure: intake anonymises the person's data now and asks every service to do the
        same; each confirms (see GET /v1/erasure-requests/{request_id})."""
        async with runtime.sessions.begin() as session:
            request_id, events = await accept_erasure_request(
                session, body.name, body.date_of_birth, body.person_key, body.reason, caller.subject
            )
            add_events(session, runtime.source, events)
        runtime.relay.wake()
        log.info("erasure requested", request_id=str(request_id))
        return await erasure_status(request_id)

    @router.get("/erasure-requests/{request_id}", tags=["erasure"])
    async def get_erasure_request(request_id: uuid.UUID, _caller: ErasureOfficer) -> ErasureStatus:
        """An erasure request and each service's confirmation: complete once all have confirmed."""
        return await erasure_status(request_id)

    return router


def install(app: FastAPI, runtime: ServiceRuntime, settings: IntakeSettings | None = None) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Problem, problem_handler)
    app.include_router(build_router(runtime, settings))
    audit.install(app, runtime.sessions)
