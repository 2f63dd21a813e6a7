"""Metrics and traces as ops see them: /metrics on every service moves as reports flow, and one
report's W3C trace id appears in the logs of all four services."""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from demo.pipeline import SERVICES, Pipeline

from ..conftest import wait_for

pytestmark = pytest.mark.e2e


def scrape(pipeline: Pipeline, service: str) -> dict[str, float]:
    """Samples of one service's /metrics, keyed by name and labels."""
    text = httpx.get(pipeline.url(service) + "/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.startswith(name) and all(w in k for w in want))


def test_metrics_move_and_one_trace_crosses_all_four_services(pipeline: Pipeline) -> None:
    before = {s: scrape(pipeline, s) for s in SERVICES}
    trace_id = secrets.token_hex(16)
    body = {
        "partner": "police",
        "idempotency_key": f"obs-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "7 Signal Row", "postcode": "RV3 3SR"},
        "description": "Man threatened a neighbour with a knife on the stairs",
        "victim": {"name": f"Observed {uuid.uuid4().hex[:6]}", "date_of_birth": "1960-02-02"},
    }
    r = httpx.post(
        pipeline.url("intake") + "/v1/reports",
        json=body,
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    assert r.headers["traceparent"].split("-")[1] == trace_id
    incident_id = r.json()["incident_id"]

    def alert_delivered() -> bool:
        alerts = httpx.get(pipeline.url("notifications") + "/v1/alerts", params={"incident_id": incident_id}).json()
        return bool(alerts) and alerts[0]["status"] == "delivered"

    wait_for(alert_delivered, 60, "the police alert to be delivered")
    wait_for(
        lambda: (
            total(scrape(pipeline, "panels"), "dcsp_messages_consumed_total", outcome="processed")
            > total(before["panels"], "dcsp_messages_consumed_total", outcome="processed")
        ),
        30,
        "panels to count the triaged incident",
    )
    after = {s: scrape(pipeline, s) for s in SERVICES}

    assert total(after["intake"], "dcsp_messages_produced_total", topic="dcsp.incidents.accepted.v1") > total(
        before["intake"], "dcsp_messages_produced_total", topic="dcsp.incidents.accepted.v1"
    )
    for service, topic in [
        ("triage", "dcsp.incidents.accepted.v1"),
        ("notifications", "dcsp.police-alerts.requested.v1"),
        ("panels", "dcsp.incidents.triaged.v1"),
    ]:
        assert total(after[service], "dcsp_messages_consumed_total", topic=topic, outcome="processed") > total(
            before[service], "dcsp_messages_consumed_total", topic=topic, outcome="processed"
        ), service
        assert total(after[service], "dcsp_message_processing_seconds_count", topic=topic) > total(
            before[service], "dcsp_message_processing_seconds_count", topic=topic
        ), service
    assert total(after["notifications"], "dcsp_police_alert_delivery_seconds_count") > total(
        before["notifications"], "dcsp_police_alert_delivery_seconds_count"
    )
    for service in SERVICES:
        assert f'dcsp_outbox_backlog{{service="{service}"}}' in after[service], service

    # The same trace id in a log line of every service, each on behalf of this one report (the
    # caller's traceparent is sampled, so each service logs the messages it handles for it).
    def traced(service: str) -> bool:
        for line in (pipeline.workdir / f"{service}.log").read_text().splitlines():
            with contextlib.suppress(ValueError):
                if json.loads(line).get("trace_id") == trace_id:
                    return True
        return False

    def traced_everywhere() -> list[str] | None:
        missing = [s for s in SERVICES if not traced(s)]
        return None if missing else list(SERVICES)

    wait_for(traced_everywhere, 30, f"trace {trace_id} in the logs of {', '.join(SERVICES)}")


def test_each_service_serves_its_asyncapi_document(pipeline: Pipeline) -> None:
    for service in SERVICES:
        document = httpx.get(pipeline.url(service) + "/asyncapi", timeout=10).json()
        assert document["asyncapi"].startswith("3."), service
        addresses = {channel["address"] for channel in document["channels"].values()}
        # The service's own topic names, with this deployment's prefix.
        assert all(a.startswith(pipeline.namespace) for a in addresses), (service, addresses)
    intake = httpx.get(pipeline.url("intake") + "/asyncapi", timeout=10).json()
    assert any(c["address"].endswith("dcsp.partner-reports.v1") for c in intake["channels"].values())
