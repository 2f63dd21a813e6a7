"""Intake's composition root: settings -> runtime (store, broker, outbox) -> handlers -> HTTP."""

from __future__ import annotations

from services.intake import api, store
from services.intake.handlers import on_partner_report
from services.intake.settings import IntakeSettings
from shared import topics
from shared.runtime import ServiceRuntime


def build(settings: IntakeSettings | None = None) -> ServiceRuntime:
    runtime = ServiceRuntime("intake", settings or IntakeSettings())
    runtime.use_tables(*store.TABLES)
    runtime.subscribe(topics.PARTNER_REPORTS, on_partner_report)
    api.install(runtime.api, runtime)
    return runtime
