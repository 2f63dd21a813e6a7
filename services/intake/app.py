"""Intake's composition root: settings -> runtime (store, broker, outbox) -> handlers -> HTTP."""

from __future__ import annotations

from services.intake import api, store
from services.intake.handlers import on_partner_report
from services.intake.settings import IntakeSettings
from shared import audit, retention, topics
from shared.runtime import ServiceRuntime


def build(settings: IntakeSettings | None = None) -> ServiceRuntime:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime("intake", settings)
    runtime.use_tables(*store.TABLES, *audit.TABLES, *retention.TABLES)
    runtime.subscribe(topics.PARTNER_REPORTS, on_partner_report)
    # Every service's erasure confirmation is kept here, so an erasure request is auditable in one place.
    runtime.subscribe(topics.ERASURE_CONFIRMATIONS, retention.confirmation_handler())
    runtime.add_worker(retention.purge_worker(runtime.sessions, store.purge, settings.retention))
    api.install(runtime.api, runtime, settings)
    return runtime
