"""Prompt, bounded, kept-alive police alert delivery (issue #9): the dispatcher's own run loop on a
real SQLite store, with the system clock, against real HTTP(S) servers on 127.0.0.1 (the police
gateway stand-in, demo.police_receiver, and a forward proxy)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from demo.police_receiver import build_app
from services.notifications import domain, store
from services.notifications.app import wire
from services.notifications.channels import WebhookRoute, WebhookSender
from services.notifications.handlers import Dispatcher, PartnerUpdates, PoliceAlerts
from services.notifications.settings import NotificationsSettings, TlsOptions
from shared.clock import system_clock
from shared.consumer import Received, ReliableConsumer
from shared.contracts import CrimeCategory, RiskTier
from shared.db import create_tables
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime
from shared.topics import INCIDENTS_TRIAGED, POLICE_ALERTS_REQUESTED

from .test_notifications_alerts import ServerThread, alert_request, classification, received, triaged

SECRET = "fast-delivery-secret"
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], seconds: float, what: str) -> T:
    """Poll an async ``probe`` (without blocking the loop the dispatcher runs on) until it
    returns something truthy; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}; last value: {last!r}")


class Gateway:
    """The police stand-in, also counting the requests it holds at once and the TCP connections
    they arrive on; ``delay`` holds each answer that long; ``holding`` holds answers (after the
    alert is stored) until ``release`` is set."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0, **server: Any) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.connections: set[tuple[str, int]] = set()
        self.holding, self.release = threading.Event(), threading.Event()
        app: FastAPI = build_app(SECRET, fail_first=fail_first)

        @app.middleware("http")
        async def observe(request: Request, call_next: Any) -> Response:
            if request.method != "POST":
                response: Response = await call_next(request)
                return response
            assert request.client is not None
            self.connections.add((request.client.host, request.client.port))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                response = await call_next(request)
                if self.holding.is_set():
                    await asyncio.to_thread(self.release.wait)
                return response
            finally:
                self.in_flight -= 1

        self.server = ServerThread(app, **server)
        self.url = self.server.url

    async def state(self) -> dict[str, Any]:
        async with httpx.AsyncClient(verify=False) as client:
            answer: dict[str, Any] = (await client.get(self.url + "/alerts", timeout=10)).json()
        return answer


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    with gw.server:
        yield gw
        gw.release.set()


@dataclass
class Running:
    """Notifications' store, alerts and dispatcher, the dispatcher's run loop as a task."""

    runtime: ServiceRuntime
    dispatcher: Dispatcher
    settings: NotificationsSettings
    alerts: PoliceAlerts
    partners: PartnerUpdates
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.dispatcher.run())

    async def crash(self) -> None:
        """Stop the dispatcher where it is, as a killed process would (nothing more is recorded)."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.task = None

    async def request_alert(self) -> tuple[uuid.UUID, float]:
        """Commit an alert as the consumer does, and wake the dispatcher as its after_commit does."""
        request = alert_request()
        async with self.runtime.sessions.begin() as session:
            await self.alerts.on_alert_requested(session, received(request))
        committed = time.time()
        self.dispatcher.wake()
        return domain.alert_id_for(request.incident_id), committed

    async def attempts(self, alert_id: uuid.UUID) -> list[tuple[str, int | None]]:
        async with self.runtime.sessions() as session:
            return [(a.outcome, a.status_code) for a in await store.attempts_for_alert(session, alert_id)]

    async def delivered(self) -> int:
        async with self.runtime.sessions() as session:
            stmt = select(func.count()).where(store.PoliceAlert.status == store.AlertStatus.DELIVERED)
            return int((await session.execute(stmt)).scalar_one())


@pytest.fixture
async def service(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def start(gateway_url: str, **settings: Any) -> Running:
        config = NotificationsSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifications.db'}",
            http_port=0,
            police_webhook_url=gateway_url + "/alerts",
            police_webhook_secret=SECRET,
            **settings,
        )
        runtime = ServiceRuntime("notifications", config)
        parts = wire(runtime, config, system_clock)
        await create_tables(runtime.engine, runtime.tables)
        running = Running(runtime, parts.dispatcher, config, parts.alerts, parts.partners)
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.task is not None:
            await running.crash()
        await running.dispatcher.webhooks.aclose()
        await running.runtime.engine.dispose()


async def test_alerts_at_200_a_second_through_both_consumers_reach_the_gateway_promptly_and_once(
    service: Callable[..., Awaitable[Running]], gateway: Gateway
) -> None:
    # As in production: every report violent, so each alert is requested twice (alert request and
    # triaged event), each topic consumed in batches as Kafka hands them over, and the dispatcher
    # woken after each commit. No poll to fall back on: only the wake can make delivery prompt.
    svc = await service(gateway.url, delivery_poll_seconds=30)
    wake = svc.dispatcher.wake
    requests = svc.runtime.subscribe(POLICE_ALERTS_REQUESTED, svc.alerts.on_alert_requested, after_commit=wake)
    triaged_events = svc.runtime.subscribe(INCIDENTS_TRIAGED, svc.partners.on_incident_triaged, after_commit=wake)
    rate, count = 200.0, 400
    violent = classification(
        violence_or_criminality=True, crime_category=CrimeCategory.VIOLENT_CRIME, risk_tier=RiskTier.HIGH
    )
    incidents = [triaged(violent) for _ in range(count)]
    arriving: dict[str, list[Received]] = {"requests": [], "triaged": []}
    committed: dict[str, float] = {}
    fed = asyncio.Event()

    async def consume(name: str, consumer: ReliableConsumer) -> None:
        while not (fed.is_set() and not arriving[name]):
            await asyncio.sleep(0.025)  # the consumers' batch_timeout_ms
            batch, arriving[name][:] = list(arriving[name]), []
            if batch:
                await consumer.process_batch(batch)
                if name == "requests":
                    committed.update((r.headers["ce_subject"], time.time()) for r in batch)

    consumers = [
        asyncio.create_task(consume("requests", requests)),
        asyncio.create_task(consume("triaged", triaged_events)),
    ]
    # This process holds pytest and every test module: one full garbage collection of that heap
    # stops everything for ~150 ms, which is not the dispatcher's doing. Keep it out of the timing.
    gc.collect()
    gc.freeze()
    try:
        start = time.monotonic()
        for n, incident in enumerate(incidents):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            request = domain.alert_request_from_triaged(incident)
            assert request is not None
            arriving["requests"].append(received(request))
            arriving["triaged"].append(received(incident))
        fed.set()
        await asyncio.gather(*consumers)
    finally:
        gc.unfreeze()

    async def all_received() -> dict[str, Any] | None:
        state = await gateway.state()
        return state if state["unique"] >= count else None

    state = await eventually(all_received, 30, "every alert at the gateway")
    latencies = sorted(
        (datetime.fromisoformat(a["received_at"]).timestamp() - committed[a["alert"]["incident_id"]]) * 1000
        for a in state["alerts"].values()
    )
    p50, p99 = latencies[len(latencies) // 2], latencies[int(0.99 * len(latencies)) - 1]
    # Measured here: p50 ~10 ms, p99 ~30-80 ms on a quiet machine (the dispatcher before issue #9:
    # p50 2.2 s, p99 3.2 s). The bounds leave room for a machine shared with other work; the
    # issue's 250 ms p99, from intake to the gateway, is for `make bench` to show.
    assert p50 <= 250 and p99 <= 1000, f"from the request's commit to the gateway: p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    assert (state["deliveries"], state["unique"], state["duplicates"], state["rejected"]) == (count, count, 0, 0)
    await eventually(lambda: _at_least(svc.delivered(), count), 10, "every alert recorded as delivered")
    async with svc.runtime.sessions() as session:
        topics = (await session.execute(select(OutboxRecord.topic))).scalars().all()
        attempts = (await session.execute(select(store.DispatchAttempt.outcome))).scalars().all()
    assert topics == ["dcsp.police-alerts.delivered.v1"] * count
    assert attempts == ["delivered"] * count


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


async def test_no_more_than_delivery_concurrency_at_once_over_kept_alive_connections(
    service: Callable[..., Awaitable[Running]],
) -> None:
    slow = Gateway(delay=0.05)
    with slow.server:
        svc = await service(slow.url, delivery_concurrency=4)
        await svc.crash()  # commit them all first, so all are due at once
        alerts = [(await svc.request_alert())[0] for _ in range(40)]
        svc.start()

        async def all_received() -> bool:
            return bool((await slow.state())["unique"] == len(alerts))

        await eventually(all_received, 30, "every alert at the gateway")
        await eventually(lambda: _at_least(svc.delivered(), len(alerts)), 10, "every alert recorded as delivered")
    assert slow.most_in_flight == 4
    assert len(slow.connections) <= 4  # 40 alerts, at most one connection per concurrent send
    for alert_id in alerts:
        assert await svc.attempts(alert_id) == [("delivered", 201)]


async def test_a_failed_attempt_is_retried_when_its_backoff_ends_not_at_the_next_poll(
    service: Callable[..., Awaitable[Running]],
) -> None:
    flaky = Gateway(fail_first=2)
    with flaky.server:
        svc = await service(flaky.url, delivery_poll_seconds=30, retry_initial_seconds=0.05, retry_max_seconds=0.2)
        alert_id, _ = await svc.request_alert()
        await eventually(lambda: _at_least(svc.delivered(), 1), 10, "the alert delivered after two failures")
        state = await flaky.state()
    assert await svc.attempts(alert_id) == [("failed", 503), ("failed", 503), ("delivered", 201)]
    assert (state["deliveries"], state["unique"], state["failed_on_purpose"]) == (3, 1, 2)


async def test_a_crash_with_alerts_in_flight_loses_none_and_the_gateway_dedupes_the_resends(
    service: Callable[..., Awaitable[Running]], gateway: Gateway
) -> None:
    svc = await service(gateway.url)
    gateway.holding.set()
    alerts = [(await svc.request_alert())[0] for _ in range(5)]

    async def all_held() -> bool:
        return bool((await gateway.state())["unique"] == len(alerts) and gateway.in_flight == len(alerts))

    await eventually(all_held, 10, "the gateway to have every alert, its answers held")
    await svc.crash()  # the gateway has them; none is recorded as delivered
    gateway.holding.clear()
    gateway.release.set()
    assert await svc.delivered() == 0
    for alert_id in alerts:
        assert await svc.attempts(alert_id) == [("sending", None)]

    restarted = Running(
        svc.runtime,
        Dispatcher(svc.runtime.sessions, svc.settings, system_clock, svc.runtime.source),
        svc.settings,
        svc.alerts,
        svc.partners,
    )
    restarted.start()  # marks the attempts interrupted, then sends again with the same keys
    try:
        await eventually(lambda: _at_least(restarted.delivered(), len(alerts)), 10, "every alert delivered")
    finally:
        await restarted.crash()
        await restarted.dispatcher.webhooks.aclose()
    state = await gateway.state()
    assert (state["unique"], state["duplicates"], state["deliveries"]) == (5, 5, 10)
    for alert_id in alerts:
        assert await restarted.attempts(alert_id) == [("interrupted", None), ("delivered", 200)]


async def test_a_kept_alive_connection_the_gateway_closed_is_replaced_without_a_failed_attempt(
    service: Callable[..., Awaitable[Running]],
) -> None:
    brisk = Gateway(timeout_keep_alive=1)  # closes an idle connection after a second
    with brisk.server:
        svc = await service(brisk.url, webhook_keepalive_seconds=60)
        first, _ = await svc.request_alert()
        await eventually(lambda: _at_least(svc.delivered(), 1), 10, "the first alert delivered")
        await asyncio.sleep(1.5)  # idle past the gateway's keep-alive limit: it closes the connection
        second, _ = await svc.request_alert()
        await eventually(lambda: _at_least(svc.delivered(), 2), 10, "the second alert delivered")
    assert await svc.attempts(first) == [("delivered", 201)]
    assert await svc.attempts(second) == [("delivered", 201)]
    assert len(brisk.connections) == 2


def _payload() -> dict[str, Any]:
    return {"body": {"alert_id": str(uuid.uuid4()), "note": "test"}, "idempotency_key": str(uuid.uuid4())}


async def test_a_gateway_that_does_not_answer_in_time_is_a_failed_attempt_and_the_next_gets_through() -> None:
    slow = Gateway(delay=1.0)
    sender = WebhookSender({"police": WebhookRoute(SECRET.encode(), TlsOptions())}, timeout_seconds=0.3)
    with slow.server:
        try:
            late = await sender.send(slow.url + "/alerts", _payload(), "police")
            slow.delay = 0.0
            prompt = await sender.send(slow.url + "/alerts", _payload(), "police")
        finally:
            await sender.aclose()
    assert not late.delivered and late.status_code is None
    assert late.error == "TimeoutError: no answer within 0.3 s"
    assert prompt.delivered and prompt.status_code == 201


async def test_https_is_verified_against_the_configured_ca_and_an_unknown_certificate_is_refused(
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "gateway.crt", tmp_path / "gateway.key"
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await openssl.wait() == 0, "openssl could not make the test certificate"
    secure = Gateway(ssl_certfile=str(cert), ssl_keyfile=str(key))
    url = secure.url.replace("http://", "https://") + "/alerts"
    trusting = WebhookSender({"police": WebhookRoute(SECRET.encode(), TlsOptions(ca_bundle=str(cert)))}, 5.0)
    default = WebhookSender({"police": WebhookRoute(SECRET.encode(), TlsOptions())}, 5.0)
    with secure.server:
        try:
            verified = await trusting.send(url, _payload(), "police")
            refused = await default.send(url, _payload(), "police")
        finally:
            await trusting.aclose()
            await default.aclose()
    assert verified.delivered and verified.status_code == 201
    assert not refused.delivered and refused.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error


async def test_a_url_the_environment_sends_through_a_proxy_goes_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        seen.append((head[0], headers))
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    sender = WebhookSender({"police": WebhookRoute(SECRET.encode(), TlsOptions())}, 5.0)
    content = _payload()
    try:
        result = await sender.send("http://police-gateway.invalid/alerts", content, "police")
    finally:
        await sender.aclose()
        server.close()
        await server.wait_closed()
    assert result.delivered and result.status_code == 201
    assert [line for line, _ in seen] == ["POST http://police-gateway.invalid/alerts HTTP/1.1"]
    assert seen[0][1]["idempotency-key"] == content["idempotency_key"]
    assert seen[0][1]["x-dcsp-signature"].startswith("sha256=")
