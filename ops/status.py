"""Each service's health as ops reads it: its /ready answer and the gauges on its /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ("intake", "triage", "notifications", "panels")
DEFAULT_PORTS = {"intake": 8001, "triage": 8002, "notifications": 8003, "panels": 8004}


@dataclass
class ServiceStatus:
    service: str
    url: str
    reachable: bool = False
    ready: bool = False
    failing_checks: dict[str, str] = field(default_factory=dict)
    consumer_lag: float | None = None
    outbox_backlog: float | None = None
    dead_letters: float | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "url": self.url,
            "reachable": self.reachable,
            "ready": self.ready,
            "failing_checks": self.failing_checks,
            "consumer_lag": self.consumer_lag,
            "outbox_backlog": self.outbox_backlog,
            "dead_letters": self.dead_letters,
            "error": self.error,
        }


def read_metrics(text: str, service: str) -> dict[str, float]:
    """Consumer lag (all partitions), outbox backlog and dead letters of ``service`` from /metrics text."""
    totals: dict[str, float] = {}
    wanted = {
        "dcsp_consumer_lag": "consumer_lag",
        "dcsp_outbox_backlog": "outbox_backlog",
        "dcsp_dead_letters_total": "dead_letters",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = wanted.get(sample.name)
            if name is None or sample.labels.get("service") != service:
                continue
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals


async def service_status(client: httpx.AsyncClient, service: str, url: str) -> ServiceStatus:
    """Ask one service for /ready and /metrics; an unreachable service is reported, not raised."""
    status = ServiceStatus(service, url)
    try:
        ready = await client.get(f"{url}/ready")
    except httpx.HTTPError as exc:
        status.error = f"unreachable ({type(exc).__name__})"
        return status
    status.reachable = True
    try:
        body = ready.json()
    except ValueError:
        body = {}
    status.ready = ready.status_code == 200 and bool(body.get("ready"))
    status.failing_checks = {k: str(v) for k, v in (body.get("checks") or {}).items() if v != "ok"}
    if ready.status_code not in (200, 503):
        status.error = f"/ready answered HTTP {ready.status_code}"
    try:
        metrics = await client.get(f"{url}/metrics")
        metrics.raise_for_status()
    except httpx.HTTPError as exc:
        status.error = f"/metrics: {type(exc).__name__}: {exc}".rstrip(": ")
        return status
    found = read_metrics(metrics.text, service)
    # A gauge not yet set means nothing to report yet (e.g. no partition assigned): zero.
    status.consumer_lag = found.get("consumer_lag", 0.0)
    status.outbox_backlog = found.get("outbox_backlog", 0.0)
    status.dead_letters = found.get("dead_letters", 0.0)
    return status
