"""The pipeline end to end: real processes, a real broker, real SQLite stores, a real HTTP
police receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from demo.partner import PartnerPublisher, read_topic
from demo.pipeline import Pipeline
from services.intake.domain import incident_id_for
from shared import topics
from shared.contracts import ReportDetails

from ..conftest import wait_for

pytestmark = pytest.mark.e2e


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partner": "police",
        "idempotency_key": f"e2e-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "3 Canal Walk, Riverside Estate", "uprn": "100023336777"},
        "description": "Tenant was punched and kicked by a neighbour on the landing",
        "victim": {"name": f"Victim {uuid.uuid4().hex[:6]}", "date_of_birth": "1970-05-05"},
    }
    body.update(overrides)
    return body


def query(db: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def receiver_alerts(pipeline: Pipeline) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(pipeline.url("receiver") + "/alerts", timeout=10).json()
    return result


def alert_received_for(pipeline: Pipeline, incident_id: str) -> dict[str, Any] | None:
    for alert in receiver_alerts(pipeline)["alerts"].values():
        if alert["alert"]["incident_id"] == incident_id:
            return dict(alert)
    return None


def test_http_report_is_alerted_to_police_and_referred_to_panel(pipeline: Pipeline) -> None:
    body = report(
        tenancy={
            "tenure": "council",
            "tenancy_ref": f"T-{uuid.uuid4().hex[:6]}",
            "tenant_role": "victim",
            "possession": {"notice_of_seeking_possession": True},
        }
    )
    r = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    assert r.status_code == 201, r.text
    incident_id = r.json()["incident_id"]

    alert = wait_for(lambda: alert_received_for(pipeline, incident_id), 60, "the police receiver to get the alert")
    assert alert["alert"]["crime_category"] == "violent-crime"
    assert any("punched" in reason for reason in alert["alert"]["reasons"])

    referrals = wait_for(
        lambda: query(
            pipeline.database("panels"),
            "select r.panel from panel_referrals r join panel_referral_incidents i using (referral_id) "
            "where i.incident_id = ?",
            uuid.UUID(incident_id).hex,
        ),
        30,
        "the referral in the panels store",
    )
    assert {p for (p,) in referrals} == {"ccp", "vcsp"}  # possession risk; violence makes the risk high

    # The record proves when the police were told, and by how many attempts.
    stored = wait_for(
        lambda: [
            a
            for a in httpx.get(pipeline.url("notifications") + "/v1/alerts", params={"incident_id": incident_id}).json()
            if a["status"] == "delivered"
        ],
        30,
        "the alert to be recorded as delivered",
    )
    detail = httpx.get(pipeline.url("notifications") + f"/v1/alerts/{stored[0]['alert_id']}").json()
    assert detail["attempt_history"][-1]["outcome"] == "delivered"
    assert detail["attempt_history"][-1]["status_code"] == 201


def test_same_idempotency_key_returns_first_result_and_creates_nothing(pipeline: Pipeline) -> None:
    body = report(description="Loud music from number 4 every night", victim=None)
    first = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    second = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["incident_id"] == first.json()["incident_id"]
    assert second.json()["replayed"] is True
    assert second.json()["accepted_at"] == first.json()["accepted_at"]

    incident_hex = uuid.UUID(first.json()["incident_id"]).hex
    assert query(
        pipeline.database("intake"), "select count(*) from accepted_reports where incident_id = ?", incident_hex
    ) == [(1,)]
    assert query(
        pipeline.database("intake"), "select count(*) from outbox where key = ?", first.json()["incident_id"]
    ) == [(1,)]

    changed = httpx.post(pipeline.url("intake") + "/v1/reports", json={**body, "description": "other"}, timeout=10)
    assert changed.status_code == 409
    assert changed.json()["errors"][0]["field"] == "idempotency_key"
    assert "different content" in changed.json()["errors"][0]["reason"]


@pytest.mark.parametrize(
    ("content", "field", "reason_part"),
    [
        (b'{"partner": "police", ', "(body)", "malformed JSON"),
        (orjson.dumps({k: v for k, v in report().items() if k != "description"}), "description", "Field required"),
        (orjson.dumps(report(reported_at=12.5e20)), "reported_at", ""),
        (orjson.dumps(report(location={"uprn": "not-a-uprn"})), "location.uprn", "pattern"),
        (orjson.dumps(report(partner="the-mayor")), "partner", "Input should be"),
    ],
)
def test_invalid_reports_get_422_naming_the_field(
    pipeline: Pipeline, content: bytes, field: str, reason_part: str
) -> None:
    r = httpx.post(
        pipeline.url("intake") + "/v1/reports",
        content=content,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field and reason_part in e["reason"] for e in errors), errors


def test_poison_messages_on_ingress_are_dead_lettered_and_the_next_good_one_is_processed(pipeline: Pipeline) -> None:
    good = report(description="Someone smashed the bus shelter glass", victim=None)
    good_id = str(incident_id_for(ReportDetails.model_validate(good)))
    marker = uuid.uuid4().hex
    ce = {
        "ce_specversion": "1.0",
        "ce_source": "/partners/test",
        "ce_type": "uk.gov.dcsp.report.received.v1",
        "content-type": "application/json",
    }

    async def publish() -> None:
        async with PartnerPublisher(pipeline.bootstrap_servers, pipeline.namespace) as partner:
            await partner.publish_raw(b'{"partner": "police", broken' + marker.encode(), {**ce, "ce_id": f"{marker}-1"})
            missing = {k: v for k, v in report().items() if k != "location"}
            await partner.publish_raw(orjson.dumps(missing), {**ce, "ce_id": f"{marker}-2"})
            await partner.publish_raw(b"\xff\xfe not utf-8", {**ce, "ce_id": f"{marker}-3"})
            await partner.publish_raw(orjson.dumps(report()), {"content-type": "application/json"})
            await partner.publish_report(good)

    asyncio.run(publish())
    wait_for(
        lambda: httpx.get(f"{pipeline.url('triage')}/v1/incidents/{good_id}").status_code == 200,
        60,
        "the good message after the poison ones to be triaged",
    )

    dead_topic = topics.resolve(topics.DEAD_LETTERS, pipeline.namespace)

    def letters() -> list[dict[str, Any]] | None:
        records = asyncio.run(read_topic(pipeline.bootstrap_servers, dead_topic, 1000, within=3))
        found = [orjson.loads(r.value) for r in records]
        mine = [f for f in found if marker in f["headers"].get("ce_id", "") or "ce_id" not in f["headers"]]
        return mine if len(mine) >= 4 else None

    found = wait_for(letters, 60, "four dead letters")
    by_id = {f["headers"].get("ce_id", "none"): f for f in found}
    assert "JSON" in by_id[f"{marker}-1"]["error"] or "json" in by_id[f"{marker}-1"]["error"]
    assert base64.b64decode(by_id[f"{marker}-1"]["body_base64"]).endswith(marker.encode())
    assert "location" in by_id[f"{marker}-2"]["error"] and "Field required" in by_id[f"{marker}-2"]["error"]
    assert base64.b64decode(by_id[f"{marker}-3"]["body_base64"]) == b"\xff\xfe not utf-8"
    assert "ce_id" in by_id["none"]["error"]
    for letter in found:
        assert letter["service"] == "intake"
        assert letter["original_topic"] == topics.resolve(topics.PARTNER_REPORTS, pipeline.namespace)
        assert letter["offset"] >= 0
