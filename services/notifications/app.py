"""Notifications' composition root."""

from __future__ import annotations

from services.notifications import api, store
from services.notifications.handlers import PoliceAlerts
from services.notifications.settings import NotificationsSettings
from shared import topics
from shared.runtime import ServiceRuntime


def build(settings: NotificationsSettings | None = None) -> ServiceRuntime:
    settings = settings or NotificationsSettings()
    runtime = ServiceRuntime("notifications", settings)
    runtime.use_tables(*store.TABLES)
    alerts = PoliceAlerts(runtime, settings)
    runtime.subscribe(topics.POLICE_ALERTS_REQUESTED, alerts.on_alert_requested, after_commit=alerts.wake)
    runtime.add_worker(alerts.run)
    api.install(runtime.api, runtime)
    return runtime
