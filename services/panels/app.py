"""Panels' composition root: settings -> clock -> runtime (store, broker, outbox) -> handlers -> HTTP."""

from __future__ import annotations

from services.panels import api, officer, store
from services.panels.handlers import Panels
from services.panels.settings import PanelsSettings
from shared import audit, retention, topics
from shared.clock import Clock, FrozenClock, system_clock
from shared.runtime import ServiceRuntime


def build(settings: PanelsSettings | None = None, clock: Clock | None = None) -> ServiceRuntime:
    return compose(settings, clock)[0]


def compose(settings: PanelsSettings | None = None, clock: Clock | None = None) -> tuple[ServiceRuntime, Panels]:
    """The wired service and its use cases (tests drive the use cases on a clock of their own)."""
    settings = settings or PanelsSettings()
    if clock is None:
        clock = FrozenClock(settings.clock_fixed_at) if settings.clock_fixed_at else system_clock
    runtime = ServiceRuntime("panels", settings)
    runtime.use_tables(*store.TABLES, *audit.TABLES, *retention.TABLES)
    panels = Panels(runtime, settings, clock)
    runtime.subscribe(topics.INCIDENTS_TRIAGED, panels.on_incident_triaged)
    runtime.subscribe(topics.TENANCY_POSSESSION, panels.on_possession_updated)
    runtime.subscribe(topics.PANEL_REFERRAL_REQUESTS, panels.on_referral_requested)
    runtime.add_worker(panels.run_overdue_checks)
    runtime.subscribe(topics.ERASURE_REQUESTS, retention.erasure_handler("panels", store.erase, clock))
    runtime.add_worker(retention.purge_worker(runtime.sessions, store.purge, settings.retention, clock))
    api.install(runtime.api, runtime, panels, settings)
    officer.install(runtime.api, settings)
    return runtime, panels
