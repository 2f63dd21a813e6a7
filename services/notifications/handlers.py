"""Notifications handlers: store what is consumed, create one police alert per violent or criminal
incident (stored before any attempt), deliver every dispatch on its channel until it is accepted
(recording every attempt), escalate unacknowledged alerts, and publish the Daily Briefing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
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
    ) -> store.Dispatch:
        dispatch_id = domain.dispatch_id_for(kind, subject_id, channel)
        existing = await session.get(store.Dispatch, dispatch_id)
        if existing is not None:
            return existing
        dispatch = store.Dispatch(
            dispatch_id=dispatch_id,
            kind=kind,
            subject_id=subject_id,
            alert_id=alert_id,
            channel=channel,
            destination=destination,
            secret_name=secret_name,
            content=content,
            status=store.DispatchStatus.PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        session.add(dispatch)
        return dispatch

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

    async def on_alert_requested(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, request = decode_event(PoliceAlertRequested, received.headers, received.body)
        await self.ensure_alert(session, request)
        return []

    async def ensure_alert(self, session: AsyncSession, request: PoliceAlertRequested) -> store.PoliceAlert:
        """The incident's alert, created with a dispatch per configured channel if it is new."""
        existing = await store.find_by_incident(session, request.incident_id)
        if existing is not None:
            return existing
        now = self._clock()
        alert_id = domain.alert_id_for(request.incident_id)
        payload = domain.police_payload(alert_id, request)
        channels = list(dict.fromkeys(self._settings.police_alert_channels))
        alert = store.PoliceAlert(
            alert_id=alert_id,
            incident_id=request.incident_id,
            status=store.AlertStatus.PENDING,
            risk_tier=str(request.risk_tier),
            crime_category=str(request.crime_category) if request.crime_category else None,
            channels=channels,
            created_at=now,
            acknowledge_by=domain.acknowledge_by(now, self._settings.ack_deadline(str(request.risk_tier))),
            attempts=0,
            payload=payload,
        )
        session.add(alert)
        await session.flush()  # the alert row exists before any dispatch refers to it
        for channel in channels:
            if channel == "webhook":
                await self._outgoing.add(
                    session,
                    kind=POLICE_ALERT,
                    subject_id=str(alert_id),
                    channel="webhook",
                    destination=self._settings.police_webhook_url,
                    content={"body": payload, "idempotency_key": str(alert_id)},
                    now=now,
                    alert_id=alert_id,
                    secret_name="police",
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
                await self._outgoing.add(
                    session,
                    kind=POLICE_ALERT,
                    subject_id=str(alert_id),
                    channel="email",
                    destination=", ".join(self._settings.police_email_to),
                    content=content,
                    now=now,
                    alert_id=alert_id,
                )
        log.info("police alert stored", alert_id=str(alert_id), channels=channels)
        return alert

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
        request = domain.alert_request_from_triaged(triaged)
        if request is not None:
            await self._alerts.ensure_alert(session, request)
        c = triaged.classification
        if domain.is_issue_of_concern(c) and await session.get(store.IncidentOfConcern, triaged.incident_id) is None:
            session.add(
                store.IncidentOfConcern(
                    incident_id=triaged.incident_id,
                    triaged_at=triaged.triaged_at,
                    fact=incident_fact(triaged, self._settings.briefing_summary_chars),
                )
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
        stored = await session.get(store.IncidentOfConcern, retriaged.incident_id)
        if stored is not None:
            c = retriaged.current
            stored.fact = {
                **stored.fact,
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
        existing = await session.execute(
            select(store.CaseReviewNotice).where(
                store.CaseReviewNotice.kind == kind,
                store.CaseReviewNotice.victim_key == event.victim_key,
                store.CaseReviewNotice.incident_id == event.incident_id,
            )
        )
        if existing.first() is not None:
            return
        session.add(
            store.CaseReviewNotice(
                kind=kind,
                victim_key=event.victim_key,
                incident_id=event.incident_id,
                raised_at=event.raised_at,
                fact={
                    "kind": kind,
                    "incident_id": str(event.incident_id),
                    "victim_key": event.victim_key,
                    "complaints_in_window": event.complaints_in_window,
                    "window_days": event.window_days,
                    "grounds": sorted(grounds),
                    "raised_at": event.raised_at.isoformat(),
                },
            )
        )

    async def on_panel_referral(self, session: AsyncSession, received: Received) -> list[Event]:
        _envelope, referral = decode_event(PanelReferralCreated, received.headers, received.body)
        if await session.get(store.ReferralSeen, referral.referral_id) is None:
            session.add(
                store.ReferralSeen(
                    referral_id=referral.referral_id,
                    created_at=referral.created_at,
                    fact={
                        "referral_id": str(referral.referral_id),
                        "panel": str(referral.panel),
                        "incident_id": str(referral.incident_id),
                        "person_key": referral.person_key,
                        "reasons": sorted(referral.reasons),
                        "created_at": referral.created_at.isoformat(),
                    },
                )
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


class Dispatcher:
    """Delivers every pending dispatch on its channel until accepted: each attempt is recorded
    before the send (so a crash mid-send leaves a trace) and completed after it; failures are
    retried with exponential backoff and jitter, without limit."""

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
        self._in_flight: set[uuid.UUID] = set()
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
        )
        self.email = EmailSender(settings.smtp)

    def wake(self) -> None:
        """Look for due dispatches now (called once a new one has been committed)."""
        self._wake.set()

    async def recover_interrupted(self) -> int:
        """Mark attempts left 'sending' by a crash as interrupted; their dispatches are still due."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(store.DispatchAttempt)
                .where(store.DispatchAttempt.outcome == store.AttemptOutcome.SENDING)
                .values(
                    outcome=store.AttemptOutcome.INTERRUPTED,
                    error="the service stopped during this attempt; outcome unknown, so it is sent again",
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def deliver_due(self) -> int:
        """One pass: attempt every dispatch due now; returns how many were attempted."""
        async with self._sessions() as session:
            due = await store.due_dispatches(session, self._clock(), limit=500)
        limit = asyncio.Semaphore(self._settings.delivery_concurrency)
        await asyncio.gather(*(self._attempt_limited(limit, d) for d in due))
        return len(due)

    async def run(self) -> None:
        """Deliver due dispatches until cancelled; restart-safe, as all state is in the store."""
        await self.recover_interrupted()
        limit = asyncio.Semaphore(self._settings.delivery_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                try:
                    async with self._sessions() as session:
                        due = await store.due_dispatches(session, self._clock(), limit=500)
                except Exception:
                    log.exception("could not read due dispatches; will retry")
                    due = []
                for dispatch_id in due:
                    if dispatch_id in self._in_flight:
                        continue
                    self._in_flight.add(dispatch_id)
                    task = asyncio.create_task(self._attempt_limited(limit, dispatch_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._settings.delivery_poll_seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.webhooks.aclose()

    async def _attempt_limited(self, limit: asyncio.Semaphore, dispatch_id: uuid.UUID) -> None:
        try:
            async with limit:
                await self.attempt(dispatch_id)
        except Exception:
            log.exception("dispatch bookkeeping failed; will retry", dispatch_id=str(dispatch_id))
        finally:
            self._in_flight.discard(dispatch_id)

    async def attempt(self, dispatch_id: uuid.UUID) -> SendResult | None:
        """Send one dispatch once and record the outcome; None if it needs no attempt."""
        async with self._sessions.begin() as session:
            dispatch = await session.get(store.Dispatch, dispatch_id)
            if dispatch is None or dispatch.status != store.DispatchStatus.PENDING:
                return None
            attempt = store.DispatchAttempt(
                dispatch_id=dispatch_id,
                alert_id=dispatch.alert_id,
                attempted_at=self._clock(),
                channel=dispatch.channel,
                destination=dispatch.destination,
                outcome=store.AttemptOutcome.SENDING,
            )
            session.add(attempt)
            await session.flush()
            attempt_id = attempt.id
            channel, destination, content = dispatch.channel, dispatch.destination, dispatch.content
            secret_name = dispatch.secret_name or "police"
        if channel == "webhook":
            result = await self.webhooks.send(destination, content, secret_name)
        else:
            result = await self.email.send([a.strip() for a in destination.split(",") if a.strip()], content)
        await self._record(dispatch_id, attempt_id, result)
        return result

    async def _record(self, dispatch_id: uuid.UUID, attempt_id: int, result: SendResult) -> None:
        now = self._clock()
        delivered_alert: store.PoliceAlert | None = None
        async with self._sessions.begin() as session:
            dispatch = await session.get(store.Dispatch, dispatch_id)
            attempt = await session.get(store.DispatchAttempt, attempt_id)
            if dispatch is None or attempt is None:
                return
            attempt.finished_at = now
            attempt.outcome = store.AttemptOutcome.DELIVERED if result.delivered else store.AttemptOutcome.FAILED
            attempt.status_code = result.status_code
            attempt.error = result.error
            dispatch.attempts += 1
            if dispatch.alert_id is not None:
                if result.delivered:
                    metrics.ALERT_DELIVERY_SECONDS.labels(dispatch.channel).observe(
                        max(0.0, (now - dispatch.created_at).total_seconds())
                    )
                else:
                    metrics.ALERT_DELIVERY_FAILURES.labels(dispatch.channel).inc()
            if result.delivered:
                dispatch.status = store.DispatchStatus.DELIVERED
                dispatch.delivered_at = now
                dispatch.next_attempt_at = None
                dispatch.last_error = None
            else:
                dispatch.last_error = result.error
                dispatch.next_attempt_at = now + domain.retry_delay(
                    dispatch.attempts, self._settings.retry_initial_seconds, self._settings.retry_max_seconds, self._rng
                )
            if dispatch.alert_id is not None:
                delivered_alert = await self._update_alert(session, dispatch.alert_id, now)
        if delivered_alert is not None:
            self._wake_relay()
            log.info(
                "police alert delivered", alert_id=str(delivered_alert.alert_id), attempts=delivered_alert.attempts
            )
        elif not result.delivered:
            log.warning("delivery attempt failed", dispatch_id=str(dispatch_id), error=result.error)
            self._wake.set()

    async def _update_alert(
        self, session: AsyncSession, alert_id: uuid.UUID, now: datetime
    ) -> store.PoliceAlert | None:
        alert = await session.get(store.PoliceAlert, alert_id)
        if alert is None:
            return None
        alert.attempts += 1
        if alert.status == store.AlertStatus.DELIVERED:
            return None
        dispatches = await store.dispatches_for_alert(session, alert_id)
        if all(d.status == store.DispatchStatus.DELIVERED for d in dispatches):
            alert.status = store.AlertStatus.DELIVERED
            alert.delivered_at = now
            add_events(
                session,
                self._source,
                [
                    PoliceAlertDelivered(
                        alert_id=alert_id,
                        incident_id=alert.incident_id,
                        delivered_at=now,
                        attempts=alert.attempts,
                        channel="+".join(sorted(d.channel for d in dispatches)),
                    )
                ],
            )
            return alert
        failing = any(d.last_error is not None for d in dispatches if d.status != store.DispatchStatus.DELIVERED)
        alert.status = store.AlertStatus.FAILED if failing else store.AlertStatus.PENDING
        return None


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
