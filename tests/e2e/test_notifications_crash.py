"""A crash between send and record: notifications is SIGKILLed after the police gateway has the
alert but before the attempt is recorded. The gateway (demo.police_receiver's app, in this process
so it can hold its answer) still ends with exactly one alert, and counts the resend as a duplicate."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response

from demo.pipeline import Process, free_port
from demo.police_receiver import build_app
from services.notifications import domain
from shared.contracts import CrimeCategory, Location, PoliceAlertRequested, RiskTier
from shared.envelope import encode_body, new_envelope
from shared.topics import resolve

from ..conftest import wait_for
from ..integration.test_notifications_alerts import ServerThread

pytestmark = pytest.mark.e2e

SECRET = "crash-test-secret"


class HoldingGateway:
    """The police stand-in, able to keep an alert and withhold its answer until released."""

    def __init__(self) -> None:
        self.holding, self.got_it, self.release = threading.Event(), threading.Event(), threading.Event()
        app: FastAPI = build_app(SECRET)

        @app.middleware("http")
        async def withhold(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)  # the alert is stored and counted first
            if request.method == "POST" and self.holding.is_set():
                self.got_it.set()
                await asyncio.to_thread(self.release.wait)
            return response

        self.server = ServerThread(app)

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.server.url + "/alerts", timeout=5).json()
        return result


@pytest.fixture
def gateway() -> Iterator[HoldingGateway]:
    gw = HoldingGateway()
    with gw.server:
        yield gw
        gw.release.set()


def publish(bootstrap: str, namespace: str, request: PoliceAlertRequested, event_id: str) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            headers = new_envelope(request, "/dcsp/triage", event_id=event_id).headers()
            await producer.send_and_wait(
                resolve(PoliceAlertRequested.TOPIC, namespace),
                encode_body(request),
                key=str(request.incident_id).encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        finally:
            await producer.stop()

    asyncio.run(send())


def test_sigkill_between_send_and_record_still_gives_the_gateway_exactly_one_alert(
    kafka_bootstrap: str, tmp_path: Path, gateway: HoldingGateway
) -> None:
    namespace = f"crash{uuid.uuid4().hex[:8]}."
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": namespace,
        "KAFKA_GROUP_PREFIX": namespace,
        "NOTIFICATIONS_HTTP_PORT": str(port),
        "NOTIFICATIONS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
        "NOTIFICATIONS_POLICE_WEBHOOK_URL": gateway.server.url + "/alerts",
        "NOTIFICATIONS_POLICE_WEBHOOK_SECRET": SECRET,
        "NOTIFICATIONS_POLICE_WEBHOOK_TIMEOUT_SECONDS": "60",
        "NOTIFICATIONS_DELIVERY_POLL_SECONDS": "0.2",
    }
    notifications = Process("notifications", "services.notifications", port, env, tmp_path / "n.log", "/ready")
    now = datetime.now(UTC)
    request = PoliceAlertRequested(
        incident_id=uuid.uuid4(),
        requested_at=now,
        crime_category=CrimeCategory.ROBBERY,
        risk_tier=RiskTier.HIGH,
        reasons=["robbery"],
        occurred_at=now,
        location=Location(postcode="AB1 2CD"),
        description="Phone snatched at knifepoint",
    )
    alert_id = str(domain.alert_id_for(request.incident_id))
    try:
        notifications.start()
        notifications.wait_ready(60)
        gateway.holding.set()
        publish(kafka_bootstrap, namespace, request, "request-1")
        assert gateway.got_it.wait(60), f"the gateway never got the alert:\n{notifications.tail()}"
        notifications.signal(signal.SIGKILL)  # sent, received, never recorded
        gateway.holding.clear()
        gateway.release.set()
        assert (gateway.state()["unique"], gateway.state()["deliveries"]) == (1, 1)

        notifications.start()
        notifications.wait_ready(60)
        publish(kafka_bootstrap, namespace, request, "request-1")  # the request redelivered, too

        def delivered() -> dict[str, Any] | None:
            r = httpx.get(f"{notifications.url}/v1/alerts/{alert_id}", timeout=5)
            return r.json() if r.status_code == 200 and r.json()["status"] == "delivered" else None

        detail = wait_for(delivered, 60, "the alert to be recorded as delivered after the restart")
        state = wait_for(lambda: gateway.state() if gateway.state()["duplicates"] >= 1 else None, 10, "the resend")
    finally:
        notifications.signal(signal.SIGTERM)
    assert (state["unique"], state["duplicates"], state["deliveries"]) == (1, 1, 2)
    assert [a["outcome"] for a in detail["attempt_history"]] == ["interrupted", "delivered"]
    assert "stopped during this attempt" in detail["attempt_history"][0]["error"]
