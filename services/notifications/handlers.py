"""Notifications handlers: store each requested police alert first, then deliver it until the
police gateway has it, recording every attempt."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import domain, store
from services.notifications.settings import NotificationsSettings
from shared.consumer import Received
from shared.contracts import Event, PoliceAlertDelivered, PoliceAlertRequested
from shared.envelope import decode_event
from shared.logging import get_logger
from shared.outbox import add_events
from shared.runtime import ServiceRuntime

log = get_logger(__name__)

WEBHOOK_CHANNEL = "webhook"


class PoliceAlerts:
    """Creates alerts from requests and delivers them over the police webhook."""

    def __init__(self, runtime: ServiceRuntime, settings: NotificationsSettings) -> None:
        self._runtime = runtime
        self._settings = settings
        self._wake = asyncio.Event()
        self._in_flight: set[uuid.UUID] = set()

    async def on_alert_requested(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, request = decode_event(PoliceAlertRequested, received.headers, received.body)
        if await store.find_by_incident(session, request.incident_id) is not None:
            return []
        alert_id = domain.alert_id_for(request.incident_id)
        now = datetime.now(UTC)
        session.add(
            store.PoliceAlert(
                alert_id=alert_id,
                incident_id=request.incident_id,
                status=store.AlertStatus.PENDING,
                risk_tier=str(request.risk_tier),
                created_at=now,
                next_attempt_at=now,
                attempts=0,
                payload=domain.police_payload(alert_id, request),
            )
        )
        return []

    def wake(self) -> None:
        """Look for due alerts now (called once a new alert has been committed)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver due alerts until cancelled; restart-safe, as all state is in the store."""
        limit = asyncio.Semaphore(self._settings.delivery_concurrency)
        async with httpx.AsyncClient(timeout=self._settings.police_webhook_timeout_seconds) as client:
            tasks: set[asyncio.Task[None]] = set()
            try:
                while True:
                    self._wake.clear()
                    try:
                        async with self._runtime.sessions() as session:
                            due = await store.due_alerts(session, datetime.now(UTC), limit=500)
                    except Exception:
                        log.exception("could not read due alerts; will retry")
                        due = []
                    for alert_id in due:
                        if alert_id in self._in_flight:
                            continue
                        self._in_flight.add(alert_id)
                        task = asyncio.create_task(self._deliver(client, limit, alert_id))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._settings.delivery_poll_seconds)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, alert_id: uuid.UUID) -> None:
        try:
            async with limit:
                await self._attempt(client, alert_id)
        except Exception:
            log.exception("alert delivery bookkeeping failed; will retry", alert_id=str(alert_id))
        finally:
            self._in_flight.discard(alert_id)

    async def _attempt(self, client: httpx.AsyncClient, alert_id: uuid.UUID) -> None:
        async with self._runtime.sessions() as session:
            alert = await session.get(store.PoliceAlert, alert_id)
            if alert is None or alert.status != store.AlertStatus.PENDING:
                return
            body = orjson.dumps(alert.payload)
        secret = self._settings.police_webhook_secret.get_secret_value().encode()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(
                self._settings.police_webhook_url,
                content=body,
                headers={
                    "content-type": "application/json",
                    domain.IDEMPOTENCY_HEADER: str(alert_id),
                    domain.SIGNATURE_HEADER: domain.sign(secret, body),
                },
            )
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = datetime.now(UTC)
        delivered = error is None
        async with self._runtime.sessions.begin() as session:
            alert = await session.get(store.PoliceAlert, alert_id)
            if alert is None or alert.status != store.AlertStatus.PENDING:
                return
            alert.attempts += 1
            session.add(
                store.AlertAttempt(
                    alert_id=alert_id,
                    attempted_at=now,
                    channel=WEBHOOK_CHANNEL,
                    outcome="delivered" if delivered else "failed",
                    status_code=status_code,
                    error=error,
                )
            )
            if delivered:
                alert.status = store.AlertStatus.DELIVERED
                alert.delivered_at = now
                alert.next_attempt_at = None
                add_events(
                    session,
                    self._runtime.source,
                    [
                        PoliceAlertDelivered(
                            alert_id=alert_id,
                            incident_id=alert.incident_id,
                            delivered_at=now,
                            attempts=alert.attempts,
                            channel=WEBHOOK_CHANNEL,
                        )
                    ],
                )
            else:
                alert.next_attempt_at = now + domain.retry_delay(
                    alert.attempts, self._settings.retry_initial_seconds, self._settings.retry_max_seconds
                )
        if delivered:
            self._runtime.relay.wake()
            log.info("police alert delivered", alert_id=str(alert_id), attempts=alert.attempts)
        else:
            log.warning("police alert attempt failed", alert_id=str(alert_id), error=error)
            self._wake.set()
