"""Notifications' composition root."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifications import api, officer, store
from services.notifications.handlers import DailyBriefings, Dispatcher, Outgoing, PartnerUpdates, PoliceAlerts
from services.notifications.settings import NotificationsSettings
from shared import audit, retention, topics
from shared.clock import Clock, system_clock
from shared.runtime import ServiceRuntime


@dataclass(frozen=True)
class Notifications:
    """The service's parts, wired to one store and one clock."""

    alerts: PoliceAlerts
    partners: PartnerUpdates
    dispatcher: Dispatcher
    briefings: DailyBriefings


def wire(runtime: ServiceRuntime, settings: NotificationsSettings, clock: Clock = system_clock) -> Notifications:
    """Build the parts and install the HTTP API; subscriptions and workers are added by ``build``."""
    runtime.use_tables(*store.TABLES, *audit.TABLES, *retention.TABLES)
    outgoing = Outgoing(settings)
    dispatcher = Dispatcher(runtime.sessions, settings, clock, runtime.source, wake_relay=runtime.relay.wake)
    alerts = PoliceAlerts(
        runtime.sessions, settings, clock, runtime.source, outgoing, dispatcher.wake, runtime.relay.wake
    )
    partners = PartnerUpdates(settings, clock, outgoing, alerts)
    briefings = DailyBriefings(
        runtime.sessions, settings, clock, runtime.source, outgoing, dispatcher.wake, runtime.relay.wake
    )
    parts = Notifications(alerts, partners, dispatcher, briefings)
    api.install(runtime.api, runtime, settings, clock, parts.alerts, parts.briefings)
    officer.install(runtime.api, runtime, settings, clock, parts.alerts, parts.briefings)
    return parts


def build(settings: NotificationsSettings | None = None, clock: Clock = system_clock) -> ServiceRuntime:
    settings = settings or NotificationsSettings()
    runtime = ServiceRuntime("notifications", settings)
    parts = wire(runtime, settings, clock)
    wake = parts.dispatcher.wake
    runtime.subscribe(topics.POLICE_ALERTS_REQUESTED, parts.alerts.on_alert_requested, after_commit=wake)
    runtime.subscribe(topics.INCIDENTS_TRIAGED, parts.partners.on_incident_triaged, after_commit=wake)
    runtime.subscribe(topics.INCIDENTS_RETRIAGED, parts.partners.on_incident_retriaged)
    runtime.subscribe(topics.CASE_REVIEW_PROMPTS, parts.partners.on_case_review_prompt)
    runtime.subscribe(topics.CASE_REVIEW_ELIGIBILITY, parts.partners.on_case_review_eligible)
    runtime.subscribe(topics.PANEL_REFERRALS, parts.partners.on_panel_referral)
    runtime.subscribe(topics.PANEL_OUTCOMES, parts.partners.on_panel_outcome, after_commit=wake)
    runtime.add_worker(parts.dispatcher.run)
    runtime.add_worker(parts.alerts.run_escalations)
    runtime.add_worker(parts.briefings.run)
    runtime.subscribe(topics.ERASURE_REQUESTS, retention.erasure_handler("notifications", store.erase, clock))
    runtime.add_worker(retention.purge_worker(runtime.sessions, store.purge, settings.retention, clock))
    return runtime
