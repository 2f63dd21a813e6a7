"""Notifications handlers: store what is consumed, create one police alert per violent or criminal
incident (stored before any attempt), deliver every dispatch on its channel until it is accepted
(recording every attempt), escalate unacknowledged alerts, and publish the Daily Briefing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifications import briefing, domain, store
from services.notifications.channels import EmailSender, SendResult, WebhookRoute, WebhookSender
from services.notifications.settings import NotificationsSettings
from shared import metrics
from shared.clock import Clock
from shared.consumer import Received
from shared.contracts import (
    CaseReviewEligible,
    CaseReviewPromptDue,
    DailyBriefingPublished,
    Event,
    IncidentRetriaged,
    IncidentTriaged,
    PanelOutcomeRecorded,
    PanelReferralCreated,
    PoliceAlertAcknowledged,
    PoliceAlertDelivered,
    PoliceAlertEscalated,
    PoliceAlertRequested,
    RiskTier,
)
from shared.envelope import decode_event
from shared.logging import get_logger
from shared.outbox import add_events

log = get_logger(__name__)

POLICE_ALERT = "police-alert"
ESCALATION = "escalation"
CROSS_BORDER = "cross-border"
PANEL_OUTCOME = "panel-outcome"
BRIEFING = "briefing"


def _wake_nothing() -> None:
    return None


def dispatch_row(
    *,
    kind: str,
    subject_id: str,
    channel: str,
    destination: str,
    content: dict[str, Any],
    now: datetime,
    alert_id: uuid.UUID | None = None,
    secret_name: str | None = None,
) -> dict[str, Any]:
    """A new dispatch, due now, as a row of the dispatches table."""
    return {
        "dispatch_id": domain.dispatch_id_for(kind, subject_id, channel),
        "kind": kind,
        "subject_id": subject_id,
        "alert_id": alert_id,
        "channel": channel,
        "destination": destination,
        "secret_name": secret_name,
        "content": content,
        "status": store.DispatchStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "delivered_at": None,
        "last_error": None,
    }


class Outgoing:
    """Creates dispatches: one message, one destination, one channel; recreating one is a no-op."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self._settings = settings

    async def add(
        self,
        session: AsyncSession,
        *,
        kind: str,
        subject_id: str,
        channel: str,
        destination: str,
        content: dict[str, Any],
        now: datetime,
        alert_id: uuid.UUID | None = None,
        secret_name: str | None = None,
    ) -> bool:
        """Store the dispatch unless it is already stored; True if this call created it."""
        row = dispatch_row(
            kind=kind,
            subject_id=subject_id,
            channel=channel,
            destination=destination,
            content=content,
            now=now,
            alert_id=alert_id,
            secret_name=secret_name,
        )
        return await store.insert_if_absent(session, store.DISPATCHES, row)

    def email(
        self, dispatch_kind: str, subject_id: str, subject: str, text: str, now: datetime, **extra: Any
    ) -> dict[str, Any]:
        """Email content whose Message-ID derives from the dispatch id (so resends are spotted)."""
        dispatch_id = domain.dispatch_id_for(dispatch_kind, subject_id, "email")
        return {
            "subject": subject,
            "text": text,
            "message_id": domain.message_id_for(dispatch_id, dispatch_kind, self._settings.smtp.message_id_domain),
            "date": now.isoformat(),
            **extra,
        }


class PoliceAlerts:
    """One alert per violent or criminal incident; acknowledgement; escalation when overdue."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        clock: Clock,
        source: str,
        outgoing: Outgoing,
        wake_dispatcher: Callable[[], None] = _wake_nothing,
        wake_relay: Callable[[], None] = _wake_nothing,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._source = source
        self._outgoing = outgoing
        self._wake_dispatcher = wake_dispatcher
        self._wake_relay = wake_relay
        self._channels: list[str] = list(dict.fromkeys(settings.police_alert_channels))

    async def on_alert_requested(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, request = decode_event(PoliceAlertRequested, received.headers, received.body)
        await self.ensure_alert(session, request)
        return []

    async def ensure_alert(self, session: AsyncSession, request: PoliceAlertRequested) -> uuid.UUID:
        """The id of the incident's alert: a new alert, with a dispatch per configured channel, is
        stored when the transaction commits unless the incident has one by then."""
        alert_id = domain.alert_id_for(request.incident_id)
        if not store.alert_staged(session, alert_id):
            store.stage_alert(session, alert_id, lambda: self._new_alert(alert_id, request))
        return alert_id

    async def ensure_alert_for_triaged(self, session: AsyncSession, triaged: IncidentTriaged) -> uuid.UUID | None:
        """The alert a violent or criminal triaged incident calls for (see ``ensure_alert``), else None."""
        if not triaged.classification.violence_or_criminality:
            return None
        alert_id = domain.alert_id_for(triaged.incident_id)
        if not store.alert_staged(session, alert_id):
            # Most often the alert request got there first: the request is built only if not.
            store.stage_alert(session, alert_id, lambda: self._new_alert_for_triaged(alert_id, triaged))
        return alert_id

    def _new_alert_for_triaged(
        self, alert_id: uuid.UUID, triaged: IncidentTriaged
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        request = domain.alert_request_from_triaged(triaged)
        assert request is not None, "only a violent or criminal incident is alerted"
        return self._new_alert(alert_id, request)

    def _new_alert(
        self, alert_id: uuid.UUID, request: PoliceAlertRequested
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The alert's row and a dispatch row per configured channel."""
        now = self._clock()
        payload = domain.police_payload(alert_id, request)
        channels = self._channels
        risk_tier = str(request.risk_tier)
        alert = {
            "alert_id": alert_id,
            "incident_id": request.incident_id,
            "status": store.AlertStatus.PENDING.value,
            "risk_tier": risk_tier,
            "crime_category": str(request.crime_category) if request.crime_category else None,
            "channels": channels,
            "created_at": now,
            "acknowledge_by": domain.acknowledge_by(now, self._settings.ack_deadline(risk_tier)),
            "delivered_at": None,
            "attempts": 0,
            "acknowledged_at": None,
            "acknowledged_by": None,
            "escalated_at": None,
            "payload": payload,
        }
        dispatches = []
        for channel in channels:
            if channel == "webhook":
                dispatches.append(
                    dispatch_row(
                        kind=POLICE_ALERT,
                        subject_id=str(alert_id),
                        channel="webhook",
                        destination=self._settings.police_webhook_url,
                        content={"body": payload, "idempotency_key": str(alert_id)},
                        now=now,
                        alert_id=alert_id,
                        secret_name="police",
                    )
                )
            else:
                subject, text = domain.police_alert_email(payload)
                content = self._outgoing.email(
                    POLICE_ALERT,
                    str(alert_id),
                    subject,
                    text,
                    now,
                    headers={"X-DCSP-Alert-Id": str(alert_id), "X-DCSP-Incident-Id": str(request.incident_id)},
                )
                # The Message-ID is the alert's, whatever the channel bookkeeping: a mailbox that has
                # seen <police-alert.{alert_id}@...> has this alert.
                content["message_id"] = domain.message_id_for(
                    alert_id, POLICE_ALERT, self._settings.smtp.message_id_domain
                )
                dispatches.append(
                    dispatch_row(
                        kind=POLICE_ALERT,
                        subject_id=str(alert_id),
                        channel="email",
                        destination=", ".join(self._settings.police_email_to),
                        content=content,
                        now=now,
                        alert_id=alert_id,
                    )
                )
        return alert, dispatches

    async def acknowledge(self, alert_id: uuid.UUID, acknowledged_by: str) -> tuple[store.PoliceAlert | None, bool]:
        """Record who acknowledged the alert and when; (alert, False) if it was already acknowledged."""
        async with self._sessions.begin() as session:
            alert = await session.get(store.PoliceAlert, alert_id, with_for_update=True)
            if alert is None:
                return None, False
            if alert.acknowledged_at is not None:
                return alert, False
            alert.acknowledged_at = self._clock()
            alert.acknowledged_by = acknowledged_by
            add_events(
                session,
                self._source,
                [
                    PoliceAlertAcknowledged(
                        alert_id=alert.alert_id,
                        incident_id=alert.incident_id,
                        acknowledged_by=acknowledged_by,
                        acknowledged_at=alert.acknowledged_at,
                    )
                ],
            )
        self._wake_relay()
        return alert, True

    async def escalate_overdue(self) -> list[uuid.UUID]:
        """Escalate every unacknowledged alert past its deadline to the CSU duty contact, once per
        deadline; returns the alerts escalated by this call."""
        now = self._clock()
        escalated: list[uuid.UUID] = []
        async with self._sessions.begin() as session:
            overdue = await store.unacknowledged_past_deadline(session, now)
            done = await store.escalated_deadlines(session, [a.alert_id for a in overdue])
            events: list[Event] = []
            for alert in overdue:
                if (alert.alert_id, alert.acknowledge_by) in done:
                    continue
                channels = await self._escalate(session, alert, now)
                escalated.append(alert.alert_id)
                events.append(
                    PoliceAlertEscalated(
                        alert_id=alert.alert_id,
                        incident_id=alert.incident_id,
                        risk_tier=RiskTier(alert.risk_tier),
                        acknowledge_by=alert.acknowledge_by,
                        escalated_at=now,
                        channels=channels,
                    )
                )
            add_events(session, self._source, events)
        if escalated:
            log.warning("police alerts escalated to the CSU duty contact", alert_ids=[str(a) for a in escalated])
            self._wake_dispatcher()
            self._wake_relay()
        return escalated

    async def _escalate(self, session: AsyncSession, alert: store.PoliceAlert, now: datetime) -> list[str]:
        subject_id = f"{alert.alert_id}|{alert.acknowledge_by.isoformat()}"
        subject, text = domain.escalation_email(
            alert.payload, alert.created_at, alert.acknowledge_by, alert.status == store.AlertStatus.DELIVERED
        )
        channels: list[str] = []
        for channel in dict.fromkeys(self._settings.escalation_channels):
            if channel == "email" and self._settings.csu_duty_email:
                content = self._outgoing.email(ESCALATION, subject_id, subject, text, now)
                destination = ", ".join(self._settings.csu_duty_email)
                secret = None
            elif channel == "webhook" and self._settings.csu_duty_webhook_url:
                content = {
                    "body": {"escalation": "police alert not acknowledged", **alert.payload,
                             "acknowledge_by": alert.acknowledge_by.isoformat()},
                    "idempotency_key": str(domain.dispatch_id_for(ESCALATION, subject_id, "webhook")),
                }  # fmt: skip
                destination, secret = self._settings.csu_duty_webhook_url, "police"
            else:
                log.error("escalation channel not configured", channel=channel)
                continue
            await self._outgoing.add(
                session,
                kind=ESCALATION,
                subject_id=subject_id,
                channel=channel,
                destination=destination,
                content=content,
                now=now,
                secret_name=secret,
            )
            channels.append(channel)
        session.add(
            store.AlertEscalation(
                alert_id=alert.alert_id, acknowledge_by=alert.acknowledge_by, escalated_at=now, channels=channels
            )
        )
        if alert.escalated_at is None:
            alert.escalated_at = now
        return channels

    async def run_escalations(self) -> None:
        """Check for overdue alerts every ``escalation_check_seconds`` until cancelled."""
        while True:
            try:
                await self.escalate_overdue()
            except Exception:
                log.exception("escalation check failed; will retry")
            await asyncio.sleep(self._settings.escalation_check_seconds)


def _location_summary(triaged: IncidentTriaged) -> str:
    loc = triaged.report.location
    parts = [p for p in (loc.address, loc.postcode) if p]
    if not parts and loc.uprn:
        parts.append(f"UPRN {loc.uprn}")
    if not parts and loc.latitude is not None:
        parts.append(f"{loc.latitude:.5f}, {loc.longitude:.5f}")
    return ", ".join(parts)


def incident_fact(triaged: IncidentTriaged, summary_chars: int) -> dict[str, Any]:
    """What the briefing keeps about an incident of concern (JSON form of briefing.IncidentFact)."""
    c = triaged.classification
    description = " ".join(triaged.report.description.split())
    summary = description if len(description) <= summary_chars else description[: max(0, summary_chars - 1)] + "…"
    return {
        "incident_id": str(triaged.incident_id),
        "triaged_at": triaged.triaged_at.isoformat(),
        "partner": str(triaged.report.partner),
        "asb_qualifier": str(c.asb_qualifier),
        "asb_heading": c.asb_heading,
        "crime_category": str(c.crime_category) if c.crime_category else None,
        "risk_tier": str(c.risk_tier),
        "hate_strands": sorted(c.hate_strands),
        "hate_incident": c.hate_incident,
        "vulnerable": c.vulnerable,
        "repeat_victim": c.repeat_victim,
        "cross_border": c.cross_border,
        "owning_team": c.owning_team,
        "victim_key": triaged.victim_key,
        "location": _location_summary(triaged),
        "summary": summary,
        "review_due": c.review_due.isoformat() if c.review_due else None,
    }


class PartnerUpdates:
    """Stores what the briefing is built from; sends cross-border cases and panel outcomes."""

    def __init__(self, settings: NotificationsSettings, clock: Clock, outgoing: Outgoing, alerts: PoliceAlerts) -> None:
        self._settings = settings
        self._clock = clock
        self._outgoing = outgoing
        self._alerts = alerts

    async def on_incident_triaged(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, triaged = decode_event(IncidentTriaged, received.headers, received.body)
        # The police must hear of every violent or criminal case even if the alert request is lost
        # or late: the triaged event is a second, independent route to the same (single) alert.
        await self._alerts.ensure_alert_for_triaged(session, triaged)
        c = triaged.classification
        if domain.is_issue_of_concern(c):
            store.stage_if_absent(
                session,
                store.INCIDENTS_OF_CONCERN,
                {
                    "incident_id": triaged.incident_id,
                    "triaged_at": triaged.triaged_at,
                    "fact": incident_fact(triaged, self._settings.briefing_summary_chars),
                },
            )
        if c.cross_border:
            await self._send_cross_border(session, triaged)
        return []

    async def _send_cross_border(self, session: AsyncSession, triaged: IncidentTriaged) -> None:
        url = self._settings.neighbour_webhook_url
        if not url:
            log.warning("cross-border case not sent: no neighbour_webhook_url", incident_id=str(triaged.incident_id))
            return
        subject_id = str(triaged.incident_id)
        await self._outgoing.add(
            session,
            kind=CROSS_BORDER,
            subject_id=subject_id,
            channel="webhook",
            destination=url,
            content={
                "body": domain.cross_border_payload(triaged, self._settings.partnership_contact),
                "idempotency_key": str(domain.dispatch_id_for(CROSS_BORDER, subject_id, "webhook")),
            },
            now=self._clock(),
            secret_name="neighbour",
        )

    async def on_incident_retriaged(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, retriaged = decode_event(IncidentRetriaged, received.headers, received.body)
        stored = await store.incident_fact(session, retriaged.incident_id)
        if stored is not None:
            c = retriaged.current
            fact = {
                **stored,
                "asb_qualifier": str(c.asb_qualifier),
                "asb_heading": c.asb_heading,
                "crime_category": str(c.crime_category) if c.crime_category else None,
                "risk_tier": str(c.risk_tier),
                "hate_strands": sorted(c.hate_strands),
                "hate_incident": c.hate_incident,
                "vulnerable": c.vulnerable,
                "repeat_victim": c.repeat_victim,
                "cross_border": c.cross_border,
                "owning_team": c.owning_team,
                "review_due": c.review_due.isoformat() if c.review_due else None,
            }
            await store.replace_incident_fact(session, retriaged.incident_id, fact)
        return []

    async def on_case_review_prompt(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, prompt = decode_event(CaseReviewPromptDue, received.headers, received.body)
        await self._case_review(session, "prompt-due", prompt, [])
        return []

    async def on_case_review_eligible(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, eligible = decode_event(CaseReviewEligible, received.headers, received.body)
        await self._case_review(session, "eligible", eligible, eligible.grounds)
        return []

    async def _case_review(
        self, session: AsyncSession, kind: str, event: CaseReviewPromptDue | CaseReviewEligible, grounds: list[str]
    ) -> None:
        await store.add_case_review_notice(
            session,
            {
                "kind": kind,
                "victim_key": event.victim_key,
                "incident_id": event.incident_id,
                "raised_at": event.raised_at,
                "fact": {
                    "kind": kind,
                    "incident_id": str(event.incident_id),
                    "victim_key": event.victim_key,
                    "complaints_in_window": event.complaints_in_window,
                    "window_days": event.window_days,
                    "grounds": sorted(grounds),
                    "raised_at": event.raised_at.isoformat(),
                },
            },
        )

    async def on_panel_referral(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, referral = decode_event(PanelReferralCreated, received.headers, received.body)
        store.stage_if_absent(
            session,
            store.REFERRALS_SEEN,
            {
                "referral_id": referral.referral_id,
                "created_at": referral.created_at,
                "fact": {
                    "referral_id": str(referral.referral_id),
                    "panel": str(referral.panel),
                    "incident_id": str(referral.incident_id),
                    "person_key": referral.person_key,
                    "reasons": sorted(referral.reasons),
                    "created_at": referral.created_at.isoformat(),
                },
            },
        )
        return []

    async def on_panel_outcome(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, outcome = decode_event(PanelOutcomeRecorded, received.headers, received.body)
        seen = await session.execute(
            select(store.OutcomeSeen.id).where(
                store.OutcomeSeen.referral_id == outcome.referral_id,
                store.OutcomeSeen.recorded_at == outcome.recorded_at,
            )
        )
        if seen.first() is not None:
            return []
        partner = str(outcome.referring_partner) if outcome.referring_partner else None
        session.add(
            store.OutcomeSeen(
                referral_id=outcome.referral_id,
                recorded_at=outcome.recorded_at,
                panel=str(outcome.panel),
                referring_partner=partner,
                decision=outcome.decision,
            )
        )
        contacts = self._settings.partner_contacts.get(partner or "", [])
        if not contacts:
            log.warning("panel outcome not sent: no contact for the referring agency", referring_partner=partner)
            return []
        now = self._clock()
        subject_id = f"{outcome.referral_id}|{outcome.recorded_at.isoformat()}"
        subject, text = domain.panel_outcome_email(outcome)
        await self._outgoing.add(
            session,
            kind=PANEL_OUTCOME,
            subject_id=subject_id,
            channel="email",
            destination=", ".join(contacts),
            content=self._outgoing.email(PANEL_OUTCOME, subject_id, subject, text, now),
            now=now,
        )
        return []


@dataclass(slots=True)
class _Sending:
    """A dispatch whose attempt is recorded as 'sending': what the send needs, then how it went."""

    dispatch_id: uuid.UUID
    attempt_id: int
    alert_id: uuid.UUID | None
    channel: str
    destination: str
    secret_name: str
    content: dict[str, Any]
    attempts_before: int
    created_at: datetime
    result: SendResult | None = None
    finished_at: datetime | None = None


class Dispatcher:
    """Delivers every pending dispatch on its channel until accepted: each attempt is recorded
    before the send (so a crash mid-send leaves a trace) and completed after it; failures are
    retried with exponential backoff and jitter, without limit.

    Woken when a dispatch is committed, it records the 'sending' attempts of everything due in one
    transaction, sends them at once (at most ``delivery_concurrency`` on the wire, over kept-alive
    connections), and records the outcomes that have come back in one transaction each time. A
    dispatch is recorded delivered only once its channel accepted it; one claimed and not yet
    recorded is never sent again by this process, and after a crash its attempt is marked
    interrupted and it is sent again with the same idempotency key."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        clock: Clock,
        source: str,
        wake_relay: Callable[[], None] = _wake_nothing,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._source = source
        self._wake_relay = wake_relay
        self._rng = rng
        self._wake = asyncio.Event()
        self._in_flight: set[uuid.UUID] = set()  # claimed, and the outcome not yet recorded
        self._sending = 0  # sends on the wire now
        self._more_due = False  # the last look found more due than there were free sends
        self._finished: list[_Sending] = []
        self._finished_ready = asyncio.Event()
        self._next_retry: datetime | None = None
        self.webhooks = WebhookSender(
            {
                "police": WebhookRoute(
                    settings.police_webhook_secret.get_secret_value().encode(), settings.police_webhook_tls
                ),
                "neighbour": WebhookRoute(
                    settings.neighbour_webhook_secret.get_secret_value().encode(), settings.neighbour_webhook_tls
                ),
            },
            settings.police_webhook_timeout_seconds,
            max_connections=settings.delivery_concurrency,
            keepalive_seconds=settings.webhook_keepalive_seconds,
        )
        self.email = EmailSender(settings.smtp)

    def wake(self) -> None:
        """Look for due dispatches now (called once a new one has been committed)."""
        self._wake.set()

    async def recover_interrupted(self) -> int:
        """Mark attempts left 'sending' by a crash as interrupted; their dispatches are still due."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(store.ATTEMPTS)
                .where(store.ATTEMPTS.c.outcome == store.AttemptOutcome.SENDING.value)
                .values(
                    outcome=store.AttemptOutcome.INTERRUPTED.value,
                    error="the service stopped during this attempt; outcome unknown, so it is sent again",
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def deliver_due(self) -> int:
        """One pass: attempt every dispatch due now, ``delivery_concurrency`` at a time; returns
        how many were attempted."""
        async with self._sessions() as session:
            due = [r.dispatch_id for r in await store.sendable(session, self._clock(), limit=500)]
        attempted = 0
        step = self._settings.delivery_concurrency
        for i in range(0, len(due), step):
            claimed = await self._claim(step, due[i : i + step])
            try:
                await asyncio.gather(*(self._send(c) for c in claimed))
                await self._record(claimed)
            except Exception:
                log.exception("could not record delivery attempts; will retry", attempts=len(claimed))
            finally:
                # Unrecorded (a failure or a cancellation), the attempts stay 'sending', to be
                # marked interrupted, and the dispatches due: sent again, with the same keys.
                self._in_flight.difference_update(c.dispatch_id for c in claimed)
            attempted += len(claimed)
        return attempted

    async def attempt(self, dispatch_id: uuid.UUID) -> SendResult | None:
        """Send one dispatch once and record the outcome; None if it needs no attempt."""
        claimed = await self._claim(1, [dispatch_id])
        if not claimed:
            return None
        try:
            await self._send(claimed[0])
            await self._record(claimed)
        finally:
            self._in_flight.discard(dispatch_id)
        return claimed[0].result

    async def run(self) -> None:
        """Deliver due dispatches until cancelled; restart-safe, as all state is in the store."""
        await self.recover_interrupted()
        recorder = asyncio.create_task(self._record_finished(), name="notifications-dispatch-recorder")
        sends: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                free = self._settings.delivery_concurrency - self._sending
                claimed: list[_Sending] = []
                if free > 0:
                    try:
                        claimed = await self._claim(free)
                    except Exception:
                        log.exception("could not read due dispatches; will retry")
                self._more_due = free <= 0 or len(claimed) == free
                for c in claimed:
                    self._sending += 1
                    task = asyncio.create_task(self._send_then_queue(c))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_seconds())
        finally:
            for task in (*sends, recorder):
                task.cancel()
            await asyncio.gather(*sends, recorder, return_exceptions=True)
            # What was claimed and not recorded is left 'sending' in the store, to be interrupted
            # and sent again by the next run.
            self._in_flight.clear()
            self._finished.clear()
            self._sending = 0
            await self.webhooks.aclose()

    def _idle_seconds(self) -> float:
        """How long to wait unless woken: the poll interval, or less if a retry falls due sooner."""
        wait = self._settings.delivery_poll_seconds
        if self._next_retry is not None:
            until = (self._next_retry - self._clock()).total_seconds()
            if until <= 0:
                self._next_retry = None
            wait = max(0.0, min(wait, until))
        return wait

    async def _claim(self, limit: int, ids: list[uuid.UUID] | None = None) -> list[_Sending]:
        """Record a 'sending' attempt for up to ``limit`` pending dispatches (those due now, or
        those of ``ids``) in one transaction, before anything is sent."""
        now = self._clock()
        taken: list[uuid.UUID] = []
        try:
            async with self._sessions.begin() as session:
                rows = await store.sendable(session, now, limit + len(self._in_flight), ids)
                rows = [r for r in rows if r.dispatch_id not in self._in_flight][:limit]
                if not rows:
                    return []
                taken = [r.dispatch_id for r in rows]
                self._in_flight.update(taken)
                claimed = [
                    _Sending(
                        dispatch_id=r.dispatch_id,
                        attempt_id=0,
                        alert_id=r.alert_id,
                        channel=r.channel,
                        destination=r.destination,
                        secret_name=r.secret_name or "police",
                        content=r.content,
                        attempts_before=r.attempts,
                        created_at=r.created_at,
                    )
                    for r in rows
                ]
                attempt_ids = await store.start_attempts(
                    session,
                    [
                        {
                            "dispatch_id": c.dispatch_id,
                            "alert_id": c.alert_id,
                            "attempted_at": now,
                            "channel": c.channel,
                            "destination": c.destination,
                            "outcome": store.AttemptOutcome.SENDING.value,
                        }
                        for c in claimed
                    ],
                )
                for c, attempt_id in zip(claimed, attempt_ids, strict=True):
                    c.attempt_id = attempt_id
        except BaseException:
            self._in_flight.difference_update(taken)
            raise
        return claimed

    async def _send(self, c: _Sending) -> None:
        try:
            if c.channel == "webhook":
                result = await self.webhooks.send(c.destination, c.content, c.secret_name)
            else:
                result = await self.email.send([a.strip() for a in c.destination.split(",") if a.strip()], c.content)
        except Exception as exc:
            # Whatever went wrong, the attempt is recorded as failed and retried, never left 'sending'.
            result = SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        c.result, c.finished_at = result, self._clock()

    async def _send_then_queue(self, c: _Sending) -> None:
        try:
            await self._send(c)
        finally:
            self._sending -= 1
            if self._more_due:
                self._wake.set()
        self._finished.append(c)
        self._finished_ready.set()

    async def _record_finished(self) -> None:
        """Record the outcomes of finished sends, all that have come back in one transaction."""
        failures = 0
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            batch, self._finished = self._finished, []
            try:
                await self._record(batch)
                failures = 0
            except Exception:
                # Kept (and still in flight, so not sent again) until the store takes them; if the
                # process stops first, the attempts are interrupted and resent after the restart.
                failures += 1
                log.exception("could not record delivery attempts; will retry", attempts=len(batch))
                self._finished[:0] = batch
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                self._finished_ready.set()

    async def _record(self, finished: list[_Sending]) -> None:
        """Complete the attempts and their dispatches, and settle their alerts, in one transaction."""
        if not finished:
            return
        attempts: list[dict[str, Any]] = []
        dispatches: list[dict[str, Any]] = []
        failed: list[tuple[_Sending, datetime]] = []
        for c in finished:
            assert c.result is not None and c.finished_at is not None
            result, at = c.result, c.finished_at
            attempts.append(
                {
                    "b_id": c.attempt_id,
                    "b_finished_at": at,
                    "b_outcome": (
                        store.AttemptOutcome.DELIVERED if result.delivered else store.AttemptOutcome.FAILED
                    ).value,
                    "b_status_code": result.status_code,
                    "b_error": result.error,
                }
            )
            if result.delivered:
                status, retry_at = store.DispatchStatus.DELIVERED.value, None
            else:
                status = store.DispatchStatus.PENDING.value
                retry_at = at + domain.retry_delay(
                    c.attempts_before + 1,
                    self._settings.retry_initial_seconds,
                    self._settings.retry_max_seconds,
                    self._rng,
                )
                failed.append((c, retry_at))
            dispatches.append(
                {
                    "b_id": c.dispatch_id,
                    "b_status": status,
                    "b_delivered_at": at if result.delivered else None,
                    "b_next_attempt_at": retry_at,
                    "b_last_error": result.error if not result.delivered else None,
                }
            )
        async with self._sessions.begin() as session:
            await store.finish_attempts(session, attempts, dispatches)
            delivered = await self._settle_alerts(session, finished)
        self._in_flight.difference_update(c.dispatch_id for c in finished)
        for c in finished:
            if c.alert_id is None:
                continue
            assert c.result is not None and c.finished_at is not None
            if c.result.delivered:
                seconds = max(0.0, (c.finished_at - c.created_at).total_seconds())
                metrics.ALERT_DELIVERY_SECONDS.labels(c.channel).observe(seconds)
            else:
                metrics.ALERT_DELIVERY_FAILURES.labels(c.channel).inc()
        if delivered:
            self._wake_relay()
            log.debug("police alerts delivered", alert_ids=[str(a) for a in delivered])
        for c, retry_at in failed:
            assert c.result is not None
            log.warning("delivery attempt failed", dispatch_id=str(c.dispatch_id), error=c.result.error)
            if self._next_retry is None or retry_at < self._next_retry:
                self._next_retry = retry_at
        if failed:
            self._wake.set()  # so the loop waits for the earliest retry, not a whole poll interval

    async def _settle_alerts(self, session: AsyncSession, finished: list[_Sending]) -> list[uuid.UUID]:
        """Count the attempts on each alert and mark it delivered (with its event) once every
        channel has it; returns the alerts delivered now."""
        tries: dict[uuid.UUID, int] = {}
        last_delivery: dict[uuid.UUID, datetime] = {}
        for c in finished:
            if c.alert_id is None:
                continue
            tries[c.alert_id] = tries.get(c.alert_id, 0) + 1
            if c.result is not None and c.result.delivered and c.finished_at is not None:
                last_delivery[c.alert_id] = max(c.finished_at, last_delivery.get(c.alert_id, c.finished_at))
        if not tries:
            return []
        alerts, dispatches = await store.alerts_to_settle(session, list(tries))
        channels: dict[uuid.UUID, list[Any]] = {}
        for d in dispatches:
            channels.setdefault(d.alert_id, []).append(d)
        updates: list[dict[str, Any]] = []
        events: list[Event] = []
        for a in alerts:
            attempts = a.attempts + tries[a.alert_id]
            status, delivered_at = a.status, a.delivered_at
            if status != store.AlertStatus.DELIVERED:
                mine = channels.get(a.alert_id, [])
                if all(d.status == store.DispatchStatus.DELIVERED for d in mine):
                    status = store.AlertStatus.DELIVERED.value
                    delivered_at = last_delivery.get(a.alert_id) or self._clock()
                    events.append(
                        PoliceAlertDelivered(
                            alert_id=a.alert_id,
                            incident_id=a.incident_id,
                            delivered_at=delivered_at,
                            attempts=attempts,
                            channel="+".join(sorted(d.channel for d in mine)),
                        )
                    )
                else:
                    failing = any(d.last_error is not None for d in mine if d.status != store.DispatchStatus.DELIVERED)
                    status = (store.AlertStatus.FAILED if failing else store.AlertStatus.PENDING).value
            updates.append(
                {"b_id": a.alert_id, "b_attempts": attempts, "b_status": status, "b_delivered_at": delivered_at}
            )
        if updates:
            await store.settle_alerts(session, updates)
        add_events(session, self._source, events)
        return [e.alert_id for e in events if isinstance(e, PoliceAlertDelivered)]


def _incident_from(fact: dict[str, Any]) -> briefing.IncidentFact:
    return briefing.IncidentFact(
        incident_id=fact["incident_id"],
        triaged_at=datetime.fromisoformat(fact["triaged_at"]),
        partner=fact["partner"],
        asb_qualifier=fact["asb_qualifier"],
        asb_heading=fact["asb_heading"],
        crime_category=fact["crime_category"],
        risk_tier=fact["risk_tier"],
        hate_strands=tuple(fact["hate_strands"]),
        hate_incident=fact["hate_incident"],
        vulnerable=fact["vulnerable"],
        repeat_victim=fact["repeat_victim"],
        cross_border=fact["cross_border"],
        owning_team=fact["owning_team"],
        victim_key=fact["victim_key"],
        location=fact["location"],
        summary=fact["summary"],
        review_due=date.fromisoformat(fact["review_due"]) if fact["review_due"] else None,
    )


class DailyBriefings:
    """Builds the Daily Briefing for any date from the store, and publishes today's when it is due."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: NotificationsSettings,
        clock: Clock,
        source: str,
        outgoing: Outgoing,
        wake_dispatcher: Callable[[], None] = _wake_nothing,
        wake_relay: Callable[[], None] = _wake_nothing,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._source = source
        self._outgoing = outgoing
        self._wake_dispatcher = wake_dispatcher
        self._wake_relay = wake_relay
        self.zone = ZoneInfo(settings.briefing_timezone)

    def cut_off(self, day: date) -> datetime:
        """When the briefing for ``day`` closes (local briefing time, as UTC)."""
        return briefing.cut_off_for(day, self._settings.briefing_time, self.zone)

    async def build(self, day: date) -> dict[str, Any]:
        """The briefing for ``day`` from stored events only (any past date, on demand)."""
        window = briefing.window_for(day, self._settings.briefing_time, self.zone)
        since = window.previous_cut_off - timedelta(days=self._settings.briefing_lookback_days + 1)
        async with self._sessions() as session:
            incidents, reviews, referrals, alerts = await store.briefing_rows(session, since, window.cut_off)
        facts = briefing.Facts(
            incidents=[_incident_from(i.fact) for i in incidents],
            case_reviews=[
                briefing.CaseReviewFact(
                    kind=r.fact["kind"],
                    incident_id=r.fact["incident_id"],
                    victim_key=r.fact["victim_key"],
                    complaints_in_window=r.fact["complaints_in_window"],
                    window_days=r.fact["window_days"],
                    grounds=tuple(r.fact["grounds"]),
                    raised_at=datetime.fromisoformat(r.fact["raised_at"]),
                )
                for r in reviews
            ],
            referrals=[
                briefing.ReferralFact(
                    referral_id=r.fact["referral_id"],
                    panel=r.fact["panel"],
                    incident_id=r.fact["incident_id"],
                    person_key=r.fact["person_key"],
                    reasons=tuple(r.fact["reasons"]),
                    created_at=datetime.fromisoformat(r.fact["created_at"]),
                )
                for r in referrals
            ],
            alerts=[
                briefing.AlertFact(
                    alert_id=str(a.alert_id),
                    incident_id=str(a.incident_id),
                    risk_tier=a.risk_tier,
                    crime_category=a.crime_category,
                    raised_at=a.created_at,
                    acknowledge_by=a.acknowledge_by,
                    acknowledged_at=a.acknowledged_at,
                    delivered_at=a.delivered_at,
                    escalated_at=a.escalated_at,
                )
                for a in alerts
            ],
        )
        return briefing.build_briefing(
            day,
            self._settings.briefing_time,
            self._settings.briefing_timezone,
            facts,
            open_case_days=self._settings.briefing_open_case_days,
        )

    async def publish_due(self) -> date | None:
        """Build, store and send today's briefing if its time has come and it has not gone yet."""
        now = self._clock()
        day = briefing.briefing_due(now, self._settings.briefing_time, self.zone)
        if day is None:
            return None
        async with self._sessions() as session:
            if await session.get(store.PublishedBriefing, day) is not None:
                return None
        content = await self.build(day)
        sha = briefing.digest(content)
        async with self._sessions.begin() as session:
            if await session.get(store.PublishedBriefing, day) is not None:
                return None
            session.add(
                store.PublishedBriefing(
                    briefing_date=day,
                    cut_off=self.cut_off(day),
                    sha256=sha,
                    content=briefing.render_json(content).decode(),
                    published_at=now,
                )
            )
            if self._settings.briefing_distribution:
                await self._outgoing.add(
                    session,
                    kind=BRIEFING,
                    subject_id=day.isoformat(),
                    channel="email",
                    destination=", ".join(self._settings.briefing_distribution),
                    content=self._outgoing.email(
                        BRIEFING,
                        day.isoformat(),
                        briefing.email_subject(content),
                        briefing.render_text(content),
                        now,
                        html=briefing.render_html(content),
                    ),
                    now=now,
                )
            else:
                log.warning("Daily Briefing built but not emailed: briefing_distribution is empty")
            add_events(
                session,
                self._source,
                [
                    DailyBriefingPublished(
                        briefing_date=day,
                        cut_off=self.cut_off(day),
                        previous_cut_off=self.cut_off(day - timedelta(days=1)),
                        sha256=sha,
                        counts=briefing.counts(content),
                        published_at=now,
                    )
                ],
            )
        log.info("Daily Briefing published", briefing_date=day.isoformat(), sha256=sha)
        self._wake_dispatcher()
        self._wake_relay()
        return day

    async def run(self) -> None:
        """Publish each day's briefing once its local time has passed, until cancelled."""
        while True:
            try:
                await self.publish_due()
            except Exception:
                log.exception("Daily Briefing failed; will retry")
            await asyncio.sleep(self._settings.briefing_check_seconds)
