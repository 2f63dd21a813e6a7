"""Triage's composition root."""

from __future__ import annotations

from services.triage import api, store
from services.triage.handlers import incident_accepted_handler
from services.triage.settings import TriageSettings
from shared import audit, retention, topics
from shared.runtime import ServiceRuntime


def build(settings: TriageSettings | None = None) -> ServiceRuntime:
    settings = settings or TriageSettings()
    runtime = ServiceRuntime("triage", settings)
    runtime.use_tables(*store.TABLES, *audit.TABLES, *retention.TABLES)
    runtime.subscribe(topics.INCIDENTS_ACCEPTED, incident_accepted_handler(settings))
    runtime.subscribe(topics.ERASURE_REQUESTS, retention.erasure_handler("triage", store.erase))
    runtime.add_worker(retention.purge_worker(runtime.sessions, store.purge, settings.retention))
    api.install(runtime.api, runtime)
    return runtime
