"""Police alerts on a real SQLite store, against a real HTTP police gateway (demo.police_receiver)
and a real SMTP server (aiosmtpd), both on 127.0.0.1, with an injected clock so retries and
deadlines run instantly."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from demo.pipeline import free_port
from demo.police_receiver import build_app
from demo.smtp_receiver import SmtpReceiver
from services.notifications import domain, store
from services.notifications.app import Notifications, wire
from services.notifications.settings import NotificationsSettings
from shared.clock import FrozenClock
from shared.consumer import Received
from shared.contracts import (
    AsbQualifier,
    Classification,
    CrimeCategory,
    Event,
    IncidentTriaged,
    Location,
    PoliceAlertRequested,
    ReportDetails,
    RiskTier,
)
from shared.db import create_tables
from shared.envelope import encode_body, new_envelope
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime

SECRET = "test-police-secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ServerThread:
    """A real HTTP server (uvicorn) for an ASGI app, on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **config)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "test HTTP server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def received(event: Event, event_id: str | None = None) -> Received:
    """A consumed record carrying ``event`` as a producer would have published it."""
    headers = new_envelope(event, "/dcsp/test", event_id=event_id).headers()
    return Received("topic", 0, 0, event.subject().encode(), headers, encode_body(event))


def alert_request(risk: RiskTier = RiskTier.HIGH, at: datetime = T0, **changes: Any) -> PoliceAlertRequested:
    fields: dict[str, Any] = {
        "incident_id": uuid.uuid4(),
        "requested_at": at,
        "crime_category": CrimeCategory.VIOLENT_CRIME,
        "risk_tier": risk,
        "reasons": ["violence or criminality: 'punched' suggests violent-crime"],
        "occurred_at": at - timedelta(hours=1),
        "location": Location(uprn="100023336956", postcode="AB1 2CD", address="3 Canal Walk"),
        "description": "He punched me outside the flats.",
    }
    fields.update(changes)
    return PoliceAlertRequested(**fields)


def classification(**changes: Any) -> Classification:
    fields: dict[str, Any] = {
        "asb_qualifier": AsbQualifier.PERSONAL,
        "asb_heading": "rowdy/nuisance neighbours",
        "crime_category": None,
        "violence_or_criminality": False,
        "hate_incident": False,
        "vulnerable": False,
        "vulnerability_score": 0,
        "risk_tier": RiskTier.STANDARD,
        "repeat_victim": False,
        "prior_reports_6_months": 0,
        "reasons": [],
        "rules_version": "test",
    }
    fields.update(changes)
    return Classification(**fields)


def triaged(c: Classification, at: datetime = T0, **report: Any) -> IncidentTriaged:
    details: dict[str, Any] = {
        "partner": "housing",
        "idempotency_key": uuid.uuid4().hex,
        "reported_at": at - timedelta(minutes=5),
        "location": {"address": "3 Canal Walk", "postcode": "AB1 2CD", "uprn": "100023336956"},
        "description": "Neighbour shouting and banging doors at night",
        "victim": {"name": "Alice Example", "date_of_birth": "1950-01-01", "contact": "07700 900000"},
    }
    details.update(report)
    return IncidentTriaged(
        incident_id=uuid.uuid4(),
        triaged_at=at,
        victim_key="vk-" + uuid.uuid4().hex[:8],
        classification=c,
        report=ReportDetails.model_validate(details),
    )


@dataclass
class Service:
    runtime: ServiceRuntime
    parts: Notifications
    clock: FrozenClock
    settings: NotificationsSettings

    async def consume(self, handler: Any, event: Event, event_id: str | None = None) -> None:
        async with self.runtime.sessions.begin() as session:
            await handler(session, received(event, event_id))

    async def deliver_until_settled(self, rounds: int = 12) -> int:
        """Run the dispatcher, moving the clock past each backoff, until nothing is pending."""
        for n in range(rounds):
            await self.parts.dispatcher.deliver_due()
            async with self.runtime.sessions() as session:
                pending = (
                    await session.execute(
                        select(store.Dispatch).where(store.Dispatch.status == store.DispatchStatus.PENDING)
                    )
                ).scalars()
                if not list(pending):
                    return n + 1
            self.clock.advance(seconds=self.settings.retry_max_seconds)
        raise AssertionError(f"dispatches still pending after {rounds} rounds")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.runtime.api), base_url="http://notifications")


async def start_service(tmp_path: Path, **settings: Any) -> Service:
    config = NotificationsSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
        http_port=0,
        retry_initial_seconds=1.0,
        retry_max_seconds=8.0,
        **settings,
    )
    runtime = ServiceRuntime("notifications", config)
    clock = FrozenClock(T0)
    parts = wire(runtime, config, clock)
    parts.dispatcher._rng = random.Random(5)
    await create_tables(runtime.engine, runtime.tables)
    return Service(runtime, parts, clock, config)


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver(free_port()) as receiver:
        yield receiver


@pytest.fixture
def gateway() -> Iterator[ServerThread]:
    with ServerThread(build_app(SECRET)) as server:
        yield server


@pytest.fixture
async def service(tmp_path: Path, gateway: ServerThread, smtp: SmtpReceiver) -> AsyncIterator[Service]:
    svc = await start_service(
        tmp_path,
        police_alert_channels=["webhook", "email"],
        police_webhook_url=gateway.url + "/alerts",
        police_webhook_secret=SECRET,
        police_email_to=["alerts@police.example.uk"],
        csu_duty_email=["duty@csu.example.gov.uk"],
        smtp={"port": smtp.port},
    )
    yield svc
    await svc.parts.dispatcher.webhooks.aclose()
    await svc.runtime.engine.dispose()


def gateway_state(gateway: ServerThread) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(gateway.url + "/alerts", timeout=5).json()
    return state


async def test_alert_is_stored_before_any_attempt_then_reaches_the_webhook_and_the_mailbox_once(
    service: Service, gateway: ServerThread, smtp: SmtpReceiver
) -> None:
    request = alert_request()
    await service.consume(service.parts.alerts.on_alert_requested, request)
    alert_id = domain.alert_id_for(request.incident_id)

    async with service.runtime.sessions() as session:
        alert = await session.get(store.PoliceAlert, alert_id)
        assert alert is not None and alert.status == "pending" and alert.attempts == 0
        assert {d.channel for d in await store.dispatches_for_alert(session, alert_id)} == {"webhook", "email"}
    assert gateway_state(gateway)["deliveries"] == 0 and smtp.mailbox.snapshot() == []

    await service.deliver_until_settled()

    state = gateway_state(gateway)
    assert (state["unique"], state["duplicates"], state["rejected"]) == (1, 0, 0)  # signature verified
    assert state["alerts"][str(alert_id)]["alert"]["incident_id"] == str(request.incident_id)
    mails = smtp.mailbox.to("alerts@police.example.uk")
    assert len(mails) == 1
    assert str(mails[0]["Message-ID"]).strip() == f"<police-alert.{alert_id}@dcsp.csp.example.gov.uk>"
    assert str(request.incident_id) in mails[0].get_content()

    async with service.http() as http:
        detail = (await http.get(f"/v1/alerts/{alert_id}")).json()
    assert detail["status"] == "delivered" and detail["attempts"] == 2
    assert sorted((a["channel"], a["outcome"], a["status_code"]) for a in detail["attempt_history"]) == [
        ("email", "delivered", 250),
        ("webhook", "delivered", 201),
    ]
    assert all(d["status"] == "delivered" for d in detail["deliveries"])
    async with service.runtime.sessions() as session:
        events = (await session.execute(select(OutboxRecord.topic, OutboxRecord.body))).all()
    assert [t for t, _ in events] == ["dcsp.police-alerts.delivered.v1"]
    assert b'"channel":"email+webhook"' in events[0][1]


async def test_redelivered_requests_and_the_triaged_event_make_one_alert(
    service: Service, gateway: ServerThread, smtp: SmtpReceiver
) -> None:
    c = classification(
        violence_or_criminality=True, crime_category=CrimeCategory.VIOLENT_CRIME, risk_tier=RiskTier.HIGH
    )
    incident = triaged(c)
    request = domain.alert_request_from_triaged(incident)
    assert request is not None
    await service.consume(service.parts.alerts.on_alert_requested, request, event_id="same")
    await service.consume(service.parts.alerts.on_alert_requested, request, event_id="same")
    await service.consume(service.parts.alerts.on_alert_requested, request)  # re-published, new event id
    await service.consume(service.parts.partners.on_incident_triaged, incident)
    await service.consume(service.parts.partners.on_incident_triaged, incident)
    quiet = triaged(classification())  # nuisance only: no alert
    await service.consume(service.parts.partners.on_incident_triaged, quiet)

    await service.deliver_until_settled()
    async with service.http() as http:
        alerts = (await http.get("/v1/alerts")).json()
    assert [a["incident_id"] for a in alerts] == [str(incident.incident_id)]
    state = gateway_state(gateway)
    assert (state["deliveries"], state["unique"], state["duplicates"]) == (1, 1, 0)
    assert smtp.mailbox.unique() == 1 and smtp.mailbox.duplicates == 0


async def test_gateway_down_for_the_first_attempts_delivers_after_it_returns_with_every_attempt_recorded(
    tmp_path: Path, smtp: SmtpReceiver
) -> None:
    failures = 3
    with ServerThread(build_app(SECRET, fail_first=failures)) as flaky:
        svc = await start_service(
            tmp_path, police_webhook_url=flaky.url + "/alerts", police_webhook_secret=SECRET, smtp={"port": smtp.port}
        )
        try:
            request = alert_request()
            await svc.consume(svc.parts.alerts.on_alert_requested, request)
            alert_id = domain.alert_id_for(request.incident_id)
            await svc.parts.dispatcher.deliver_due()
            async with svc.http() as http:
                assert (await http.get("/v1/alerts", params={"status": "failed"})).json()[0]["alert_id"] == str(
                    alert_id
                )
            await svc.deliver_until_settled()
            async with svc.http() as http:
                detail = (await http.get(f"/v1/alerts/{alert_id}")).json()
        finally:
            await svc.parts.dispatcher.webhooks.aclose()
            await svc.runtime.engine.dispose()
        state = gateway_state(flaky)
    history = detail["attempt_history"]
    assert [(a["outcome"], a["status_code"]) for a in history] == [("failed", 503)] * failures + [("delivered", 201)]
    assert all("HTTP 503" in a["error"] for a in history[:failures])
    times = [datetime.fromisoformat(a["attempted_at"]) for a in history]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap > 0 for gap in gaps)
    assert detail["status"] == "delivered" and detail["attempts"] == failures + 1
    assert (state["deliveries"], state["unique"], state["failed_on_purpose"]) == (failures + 1, 1, failures)


async def test_mail_server_down_then_up_delivers_the_email_copy(tmp_path: Path) -> None:
    port = free_port()
    svc = await start_service(tmp_path, police_alert_channels=["email"], smtp={"port": port, "timeout_seconds": 2})
    try:
        request = alert_request()
        await svc.consume(svc.parts.alerts.on_alert_requested, request)
        await svc.parts.dispatcher.deliver_due()
        svc.clock.advance(seconds=svc.settings.retry_max_seconds)
        with SmtpReceiver(port) as smtp:
            await svc.deliver_until_settled()
            assert smtp.mailbox.unique() == 1
        async with svc.http() as http:
            detail = (await http.get(f"/v1/alerts/{domain.alert_id_for(request.incident_id)}")).json()
    finally:
        await svc.runtime.engine.dispose()
    outcomes = [a["outcome"] for a in detail["attempt_history"]]
    assert outcomes[0] == "failed" and outcomes[-1] == "delivered"
    assert "Connection" in detail["attempt_history"][0]["error"] or "refused" in detail["attempt_history"][0]["error"]


async def test_crash_after_the_gateway_has_the_alert_but_before_it_is_recorded_resends_and_the_gateway_dedupes(
    tmp_path: Path,
) -> None:
    holding, got_it, release = threading.Event(), threading.Event(), threading.Event()
    app: FastAPI = build_app(SECRET)

    @app.middleware("http")
    async def slow_answer(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.method == "POST" and holding.is_set():
            got_it.set()
            await asyncio.to_thread(release.wait)
        return response

    with ServerThread(app) as gw:
        svc = await start_service(tmp_path, police_webhook_url=gw.url + "/alerts", police_webhook_secret=SECRET)
        try:
            request = alert_request()
            await svc.consume(svc.parts.alerts.on_alert_requested, request)
            holding.set()
            in_flight = asyncio.create_task(svc.parts.dispatcher.deliver_due())
            assert await asyncio.to_thread(got_it.wait, 10), "the gateway never got the alert"
            in_flight.cancel()  # the process dies here: sent, never recorded
            with pytest.raises(asyncio.CancelledError):
                await in_flight
            holding.clear()
            release.set()
            assert gateway_state(gw)["unique"] == 1

            assert await svc.parts.dispatcher.recover_interrupted() == 1  # what a restart does first
            await svc.deliver_until_settled()
            async with svc.http() as http:
                detail = (await http.get(f"/v1/alerts/{domain.alert_id_for(request.incident_id)}")).json()
        finally:
            await svc.parts.dispatcher.webhooks.aclose()
            await svc.runtime.engine.dispose()
        state = gateway_state(gw)
    assert (state["unique"], state["duplicates"], state["deliveries"]) == (1, 1, 2)
    assert [a["outcome"] for a in detail["attempt_history"]] == ["interrupted", "delivered"]
    assert detail["status"] == "delivered"


# ---------------------------------------------------------------------------
# Acknowledgement and escalation, with an injected clock
# ---------------------------------------------------------------------------


async def test_unacknowledged_high_risk_alert_escalates_once_at_15_minutes_and_an_acknowledged_one_never(
    service: Service, smtp: SmtpReceiver
) -> None:
    ignored, acknowledged = alert_request(), alert_request()
    await service.consume(service.parts.alerts.on_alert_requested, ignored)
    await service.consume(service.parts.alerts.on_alert_requested, acknowledged)
    await service.deliver_until_settled()
    service.clock.now = T0  # deadlines run from when the alerts were stored
    ignored_id = domain.alert_id_for(ignored.incident_id)
    acked_id = domain.alert_id_for(acknowledged.incident_id)

    service.clock.advance(minutes=5)
    async with service.http() as http:
        ack = await http.post(f"/v1/alerts/{acked_id}/ack", json={"acknowledged_by": "PC 1234 Smith"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged" and ack.json()["acknowledged_by"] == "PC 1234 Smith"

    service.clock.now = T0 + timedelta(minutes=14, seconds=59)
    assert await service.parts.alerts.escalate_overdue() == []
    service.clock.now = T0 + timedelta(minutes=15)
    assert await service.parts.alerts.escalate_overdue() == [ignored_id]
    for later in (timedelta(minutes=16), timedelta(hours=1), timedelta(hours=5), timedelta(days=2)):
        service.clock.now = T0 + later
        assert await service.parts.alerts.escalate_overdue() == []

    await service.deliver_until_settled()
    to_csu = smtp.mailbox.to("duty@csu.example.gov.uk")
    assert len(to_csu) == 1
    assert str(ignored_id) in to_csu[0]["Subject"] and "ESCALATION" in to_csu[0]["Subject"]
    async with service.http() as http:
        overdue = (await http.get("/v1/alerts", params={"status": "overdue"})).json()
        detail = (await http.get(f"/v1/alerts/{ignored_id}")).json()
        acked = (await http.get(f"/v1/alerts/{acked_id}")).json()
    assert [a["alert_id"] for a in overdue] == [str(ignored_id)]
    assert detail["overdue"] is True and len(detail["escalations"]) == 1
    assert acked["overdue"] is False and acked["escalations"] == [] and acked["escalated_at"] is None


async def test_standard_risk_alert_has_four_hours(service: Service) -> None:
    request = alert_request(risk=RiskTier.STANDARD)
    await service.consume(service.parts.alerts.on_alert_requested, request)
    service.clock.now = T0 + timedelta(hours=3, minutes=59)
    assert await service.parts.alerts.escalate_overdue() == []
    service.clock.now = T0 + timedelta(hours=4)
    assert await service.parts.alerts.escalate_overdue() == [domain.alert_id_for(request.incident_id)]


async def test_ack_api_answers_404_409_and_422_in_the_error_shape(service: Service) -> None:
    request = alert_request()
    await service.consume(service.parts.alerts.on_alert_requested, request)
    alert_id = domain.alert_id_for(request.incident_id)
    async with service.http() as http:
        unknown = await http.post(f"/v1/alerts/{uuid.uuid4()}/ack", json={"acknowledged_by": "PC 1"})
        first = await http.post(f"/v1/alerts/{alert_id}/ack", json={"acknowledged_by": "PC 1234 Smith"})
        service.clock.advance(minutes=1)
        again = await http.post(f"/v1/alerts/{alert_id}/ack", json={"acknowledged_by": "PS 99 Jones"})
        blank = await http.post(f"/v1/alerts/{alert_id}/ack", json={"acknowledged_by": "  "})
        missing = await http.post(f"/v1/alerts/{alert_id}/ack", json={})
        bad_id = await http.post("/v1/alerts/not-a-uuid/ack", json={"acknowledged_by": "PC 1"})
        bad_status = await http.get("/v1/alerts", params={"status": "lost"})
        backwards = await http.get("/v1/alerts", params={"from": "2026-03-03", "to": "2026-03-01"})
        acked = (await http.get("/v1/alerts", params={"status": "acknowledged"})).json()
        on_day = (await http.get("/v1/alerts", params={"from": "2026-03-02", "to": "2026-03-02"})).json()
        day_after = (await http.get("/v1/alerts", params={"from": "2026-03-03"})).json()
        by_incident = (await http.get("/v1/alerts", params={"incident_id": str(uuid.uuid4())})).json()
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "alert_id"
    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json()["acknowledgement"] == {
        "acknowledged_by": "PC 1234 Smith",
        "acknowledged_at": T0.isoformat(),
    }
    assert "PC 1234 Smith" in again.json()["errors"][0]["reason"]
    for response, field in ((blank, "acknowledged_by"), (missing, "acknowledged_by"), (bad_id, "alert_id")):
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["field"] == "status"
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "to"
    assert [a["alert_id"] for a in acked] == [str(alert_id)]
    assert [a["alert_id"] for a in on_day] == [str(alert_id)]
    assert day_after == [] and by_incident == []
