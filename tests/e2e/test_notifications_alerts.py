"""Police alerts end to end: the four services as processes on a real broker, the police gateway
stand-in (demo.police_receiver, real HTTP) and a real SMTP server (aiosmtpd) on 127.0.0.1. The
gateway answers 503 to its first two deliveries."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from demo.partner import read_topic
from demo.pipeline import Pipeline, free_port
from demo.smtp_receiver import SmtpReceiver
from services.notifications import domain
from shared import topics

from ..conftest import wait_for

pytestmark = pytest.mark.e2e

GATEWAY_DOWN_FOR = 2


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver(free_port()) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, smtp: SmtpReceiver) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("alerts")
    pipe = Pipeline(
        workdir,
        kafka_bootstrap,
        namespace=f"e2e{uuid.uuid4().hex[:8]}.",
        receiver_fail_first=GATEWAY_DOWN_FOR,
        extra_env={
            "NOTIFICATIONS_POLICE_ALERT_CHANNELS": '["webhook", "email"]',
            "NOTIFICATIONS_POLICE_EMAIL_TO": '["alerts@police.example.uk"]',
            "NOTIFICATIONS_SMTP__PORT": str(smtp.port),
            "NOTIFICATIONS_RETRY_INITIAL_SECONDS": "0.2",
            "NOTIFICATIONS_RETRY_MAX_SECONDS": "1",
            "NOTIFICATIONS_DELIVERY_POLL_SECONDS": "0.2",
        },
    )
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()


def report(description: str) -> dict[str, Any]:
    return {
        "partner": "housing",
        "idempotency_key": f"e2e-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "Flat 2, Canal Walk", "uprn": "100023336777"},
        "description": description,
        "victim": {"name": f"Victim {uuid.uuid4().hex[:6]}", "date_of_birth": "1960-02-02"},
    }


def submit(pipeline: Pipeline, description: str) -> str:
    r = httpx.post(pipeline.url("intake") + "/v1/reports", json=report(description), timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


def gateway(pipeline: Pipeline) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(pipeline.url("receiver") + "/alerts", timeout=10).json()
    return state


def delivered_alert(pipeline: Pipeline, incident_id: str) -> dict[str, Any] | None:
    found = httpx.get(pipeline.url("notifications") + "/v1/alerts", params={"incident_id": incident_id}).json()
    if found and found[0]["status"] == "delivered":
        detail: dict[str, Any] = httpx.get(pipeline.url("notifications") + f"/v1/alerts/{found[0]['alert_id']}").json()
        return detail
    return None


def test_gateway_down_for_the_first_attempts_then_delivered_with_every_attempt_in_the_history(
    pipeline: Pipeline, smtp: SmtpReceiver
) -> None:
    incident_id = submit(pipeline, "He punched the caretaker in the stairwell")
    detail = wait_for(lambda: delivered_alert(pipeline, incident_id), 90, "the alert to be delivered")
    webhook = [(a["outcome"], a["status_code"]) for a in detail["attempt_history"] if a["channel"] == "webhook"]
    assert webhook == [("failed", 503)] * GATEWAY_DOWN_FOR + [("delivered", 201)]
    assert [a["outcome"] for a in detail["attempt_history"] if a["channel"] == "email"] == ["delivered"]
    state = gateway(pipeline)
    assert state["failed_on_purpose"] == GATEWAY_DOWN_FOR and state["rejected"] == 0
    assert state["alerts"][detail["alert_id"]]["alert"]["incident_id"] == incident_id


def test_an_alert_for_each_violent_or_criminal_case_and_none_for_the_others(
    pipeline: Pipeline, smtp: SmtpReceiver
) -> None:
    violent = [
        submit(pipeline, "A man was stabbed outside the chip shop"),
        submit(pipeline, "Someone smashed the bus shelter glass"),
        submit(pipeline, "My bike was stolen from the rack by the flats"),
    ]
    others = [submit(pipeline, "Loud music from number 4 every night"), submit(pipeline, "Fly-tipping by the garages")]
    for incident_id in violent:
        wait_for(lambda i=incident_id: delivered_alert(pipeline, i), 90, f"the alert for {incident_id}")
    for incident_id in others:
        wait_for(
            lambda i=incident_id: httpx.get(f"{pipeline.url('triage')}/v1/incidents/{i}").status_code == 200,
            60,
            "the other reports to be triaged",
        )
    alerted = {a["incident_id"] for a in httpx.get(pipeline.url("notifications") + "/v1/alerts").json()}
    assert set(violent) <= alerted and not set(others) & alerted

    state = gateway(pipeline)
    received = [a["alert"]["incident_id"] for a in state["alerts"].values()]
    assert all(received.count(i) == 1 for i in violent) and not set(others) & set(received)
    assert state["rejected"] == 0  # every signature verified
    assert state["duplicates"] == 0
    ids = {str(m["Message-ID"]).strip() for m in smtp.mailbox.to("alerts@police.example.uk")}
    for incident_id in violent:
        alert_id = domain.alert_id_for(uuid.UUID(incident_id))
        assert f"<police-alert.{alert_id}@dcsp.csp.example.gov.uk>" in ids
    assert smtp.mailbox.duplicates == 0


def test_redelivered_triaged_and_alert_requested_events_give_no_second_alert(
    pipeline: Pipeline, smtp: SmtpReceiver
) -> None:
    incident_id = submit(pipeline, "Two men fought with knives on the estate")
    wait_for(lambda: delivered_alert(pipeline, incident_id), 90, "the alert to be delivered")
    before_gateway, before_mail = gateway(pipeline), len(smtp.mailbox.snapshot())

    records: list[Any] = []
    for base in (topics.INCIDENTS_TRIAGED, topics.POLICE_ALERTS_REQUESTED):
        topic = topics.resolve(base, pipeline.namespace)
        records += [(topic, r) for r in asyncio.run(read_topic(pipeline.bootstrap_servers, topic, 10_000, within=4))]
    mine = [(t, r) for t, r in records if orjson.loads(r.value)["incident_id"] == incident_id]
    assert len(mine) == 2

    def processed() -> int:
        with sqlite3.connect(pipeline.database("notifications")) as conn:
            return int(conn.execute("select count(*) from processed_events").fetchone()[0])

    seen_before = processed()

    async def republish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap_servers)
        await producer.start()
        try:
            for topic, r in mine:
                same = list(r.headers)
                fresh = [(k, str(uuid.uuid4()).encode() if k == "ce_id" else v) for k, v in r.headers]
                await producer.send_and_wait(topic, r.value, key=r.key, headers=same)  # redelivery
                await producer.send_and_wait(topic, r.value, key=r.key, headers=fresh)  # re-published
        finally:
            await producer.stop()

    asyncio.run(republish())
    wait_for(lambda: processed() >= seen_before + 2, 60, "notifications to consume the re-published events")
    after = gateway(pipeline)
    assert (after["deliveries"], after["unique"], after["duplicates"]) == (
        before_gateway["deliveries"],
        before_gateway["unique"],
        before_gateway["duplicates"],
    )
    assert len(smtp.mailbox.snapshot()) == before_mail
    alerts = httpx.get(pipeline.url("notifications") + "/v1/alerts", params={"incident_id": incident_id}).json()
    assert len(alerts) == 1 and alerts[0]["attempts"] == 2
