"""ASB Case Review on the real broker: three complaints from one victim over two months produce the
2-in-6 prompt and then the 3-in-6 eligibility event, once each, although complaints are redelivered
(same event id) and re-published (new event id). Triage's explanation endpoint shows the reasons."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from demo.partner import read_topic
from demo.pipeline import Pipeline
from services.intake.domain import incident_id_for, person_key
from shared import topics
from shared.contracts import ReportDetails

from ..conftest import wait_for

pytestmark = pytest.mark.e2e


def count(db: Any, sql: str, *args: Any) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def complaint(run: str, n: int, days_ago: int, partner: str) -> dict[str, Any]:
    return {
        "partner": partner,
        "idempotency_key": f"cr-{run}-{n}",
        "reported_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "location": {"address": f"{run} Lock Street", "uprn": str(int(run, 16) % 10**9)},
        "description": "Youths kicking a football against her windows and swearing at her",
        "victim": {"name": f"Maya {run}", "date_of_birth": "1962-03-03"},
    }


def post(pipeline: Pipeline, body: dict[str, Any]) -> str:
    r = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


@dataclass(frozen=True)
class Published:
    key: bytes | None
    value: bytes
    headers: dict[str, str]


def accepted_record(pipeline: Pipeline, incident_id: str) -> Published:
    """The incident-accepted event exactly as intake published it (from intake's outbox)."""
    with sqlite3.connect(pipeline.database("intake")) as conn:
        rows = conn.execute(
            "select key, body, headers from outbox where topic = ? and key = ?",
            (topics.INCIDENTS_ACCEPTED, incident_id),
        ).fetchall()
    ((key, body, headers),) = rows
    return Published(key.encode() if key else None, bytes(body), json.loads(headers))


def redeliver(pipeline: Pipeline, record: Published) -> str:
    """Publish the accepted event again with its own event id, then a copy under a new event id
    (same key, so same partition and in this order); returns the new event id."""
    topic = topics.resolve(topics.INCIDENTS_ACCEPTED, pipeline.namespace)
    headers = record.headers
    new_id = str(uuid.uuid4())

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap_servers, enable_idempotence=True)
        await producer.start()
        try:
            for h in (headers, {**headers, "ce_id": new_id}):
                await producer.send_and_wait(
                    topic, record.value, key=record.key, headers=[(k, v.encode()) for k, v in h.items()]
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    return new_id


def notices(pipeline: Pipeline, base: str, victim_key: str) -> list[dict[str, Any]]:
    topic = topics.resolve(base, pipeline.namespace)
    records = asyncio.run(read_topic(pipeline.bootstrap_servers, topic, 10_000, within=2))
    return [body for r in records if (body := orjson.loads(r.value))["victim_key"] == victim_key]


def settled(pipeline: Pipeline, event_id: str) -> bool:
    """Triage has handled this event (so everything before it on its partition) and published its outbox."""
    db = pipeline.database("triage")
    handled = count(db, "select count(*) from processed_events where event_id like ?", f"%|{event_id}")
    return handled == 1 and count(db, "select count(*) from outbox where sent_at is null") == 0


def test_three_complaints_prompt_then_eligible_once_each_despite_redelivery(pipeline: Pipeline) -> None:
    run = uuid.uuid4().hex[:8]
    bodies = [complaint(run, 0, 60, "housing"), complaint(run, 1, 31, "csu"), complaint(run, 2, 1, "police")]
    victim_key = person_key(ReportDetails.model_validate(bodies[0]).victim, ReportDetails.model_validate(bodies[0]))
    assert victim_key is not None
    ids = [str(incident_id_for(ReportDetails.model_validate(b))) for b in bodies]

    assert post(pipeline, bodies[0]) == ids[0]
    assert post(pipeline, bodies[1]) == ids[1]
    prompts = wait_for(lambda: notices(pipeline, topics.CASE_REVIEW_PROMPTS, victim_key), 60, "the Case Review prompt")
    assert [p["incident_id"] for p in prompts] == [ids[1]]
    assert prompts[0]["qualifying_incident_ids"] == ids[:2]
    assert prompts[0]["complaints_in_window"] == 2
    assert notices(pipeline, topics.CASE_REVIEW_ELIGIBILITY, victim_key) == []

    # The second complaint comes round again, twice, before the third arrives.
    second_again = redeliver(pipeline, accepted_record(pipeline, ids[1]))
    wait_for(lambda: settled(pipeline, second_again), 60, "triage to handle the redelivered second complaint")
    assert post(pipeline, bodies[2]) == ids[2]
    eligible = wait_for(
        lambda: notices(pipeline, topics.CASE_REVIEW_ELIGIBILITY, victim_key), 60, "the Case Review eligibility"
    )
    # And the third and first come round again after it.
    for incident in (ids[2], ids[0]):
        new_id = redeliver(pipeline, accepted_record(pipeline, incident))
        wait_for(lambda: settled(pipeline, new_id), 60, f"triage to handle the redelivered {incident}")  # noqa: B023

    prompts = notices(pipeline, topics.CASE_REVIEW_PROMPTS, victim_key)
    eligible = notices(pipeline, topics.CASE_REVIEW_ELIGIBILITY, victim_key)
    assert [p["incident_id"] for p in prompts] == [ids[1]]
    assert [e["incident_id"] for e in eligible] == [ids[2]]
    assert eligible[0]["qualifying_incident_ids"] == ids
    assert eligible[0]["complaints_in_window"] == 3
    assert any("3 reports about this victim" in g for g in eligible[0]["grounds"])
    db = pipeline.database("triage")
    assert count(db, "select count(*) from triaged_incidents where victim_key = ?", victim_key) == 3

    # Triage explains itself: every rule that fired, with its id, sentence and evidence.
    r = httpx.get(pipeline.url("triage") + f"/v1/incidents/{ids[2]}/triage", timeout=10)
    assert r.status_code == 200, r.text
    explained = r.json()
    assert explained["rules_version"]
    assert explained["decision"]["repeat_victim"] is True
    assert explained["decision"]["prior_reports_6_months"] == 2
    rules = {reason["rule_id"]: reason for reason in explained["reasons"]}
    assert {"repeat.victim", "case-review.eligible.complaints", "vulnerability.factor.repeat-target"} <= set(rules)
    assert set(ids[:2]) <= set(rules["case-review.eligible.complaints"]["evidence"])
    assert httpx.get(pipeline.url("triage") + f"/v1/incidents/{uuid.uuid4()}/triage", timeout=10).status_code == 404
