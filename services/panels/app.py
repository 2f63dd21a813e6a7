"""Panels' composition root."""

from __future__ import annotations

from services.panels import api, store
from services.panels.handlers import on_incident_triaged
from services.panels.settings import PanelsSettings
from shared import topics
from shared.runtime import ServiceRuntime


def build(settings: PanelsSettings | None = None) -> ServiceRuntime:
    runtime = ServiceRuntime("panels", settings or PanelsSettings())
    runtime.use_tables(*store.TABLES)
    runtime.subscribe(topics.INCIDENTS_TRIAGED, on_incident_triaged)
    api.install(runtime.api, runtime)
    return runtime
