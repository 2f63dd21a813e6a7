"""Triage is SIGKILLed in the middle of a stream of 500 reports and restarted: every report is
triaged exactly once, and every violent one is alerted exactly once."""

from __future__ import annotations

import asyncio
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

TOTAL = 500
VIOLENT_EVERY = 5


def count(db: Any, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def make_reports(run: str) -> list[dict[str, Any]]:
    reports = []
    for n in range(TOTAL):
        violent = n % VIOLENT_EVERY == 0
        reports.append(
            {
                "partner": "housing",
                "idempotency_key": f"{run}-{n}",
                "reported_at": datetime.now(UTC).isoformat(),
                "location": {"address": f"{n} Crash Test Road", "postcode": "RV2 2CT"},
                "description": "He punched the caretaker in the lobby" if violent else "Loud music late at night",
                "victim": {"name": f"Resident {run} {n}", "date_of_birth": "1980-01-01"},
            }
        )
    return reports


def test_sigkill_of_triage_mid_stream_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    run = uuid.uuid4().hex[:8]
    reports = make_reports(run)
    expected_ids = {str(incident_id_for(ReportDetails.model_validate(r))) for r in reports}
    violent = TOTAL // VIOLENT_EVERY
    triage_db = pipeline.database("triage")

    async def publish(part: list[dict[str, Any]]) -> None:
        async with PartnerPublisher(pipeline.bootstrap_servers, pipeline.namespace) as partner:
            await partner.publish_reports(part)

    asyncio.run(publish(reports[: TOTAL // 2]))
    wait_for(
        lambda: count(triage_db, "select count(*) from triaged_incidents") >= 50,
        60,
        "triage to be part-way through the stream",
    )
    pipeline.kill("triage")  # SIGKILL: no clean shutdown, no final commit
    at_kill = count(triage_db, "select count(*) from triaged_incidents")
    asyncio.run(publish(reports[TOTAL // 2 :]))
    pipeline.restart("triage")

    wait_for(
        lambda: count(triage_db, "select count(*) from triaged_incidents") == TOTAL,
        120,
        f"all {TOTAL} reports triaged after the restart (triaged {at_kill} before the kill)",
    )
    with sqlite3.connect(triage_db) as conn:
        stored = {str(uuid.UUID(hex=h)) for (h,) in conn.execute("select incident_id from triaged_incidents")}
        consumed = conn.execute("select count(*) from processed_events where consumer like 'triage:%'").fetchone()[0]
    assert stored == expected_ids
    assert consumed == TOTAL  # each incident-accepted event handled once, whatever was redelivered

    def delivered() -> list[dict[str, Any]] | None:
        alerts = httpx.get(pipeline.url("notifications") + "/v1/alerts", params={"status": "delivered"}).json()
        return alerts if len(alerts) >= violent else None

    alerts = wait_for(delivered, 120, f"{violent} delivered police alerts")
    assert len(alerts) == violent
    assert len({a["incident_id"] for a in alerts}) == violent
    assert {a["incident_id"] for a in alerts} <= expected_ids

    receiver = httpx.get(pipeline.url("receiver") + "/alerts").json()
    assert receiver["unique"] == violent
    assert receiver["rejected"] == 0

    # Downstream sees each incident triaged; a republished duplicate would carry the same event id.
    triaged_topic = topics.resolve(topics.INCIDENTS_TRIAGED, pipeline.namespace)
    records = asyncio.run(read_topic(pipeline.bootstrap_servers, triaged_topic, TOTAL, within=30))
    incidents = [orjson.loads(r.value)["incident_id"] for r in records]
    assert set(incidents) == expected_ids
    event_ids_per_incident: dict[str, set[str]] = {}
    for r in records:
        headers = {k: v.decode() for k, v in r.headers}
        event_ids_per_incident.setdefault(orjson.loads(r.value)["incident_id"], set()).add(headers["ce_id"])
    assert all(len(ids) == 1 for ids in event_ids_per_incident.values())

    panels_db = pipeline.database("panels")
    wait_for(
        lambda: count(panels_db, "select count(*) from panel_referrals where panel = 'vcsp'") >= violent,
        60,
        "a VCSP referral for each high-risk (violent) case",
    )
    assert count(panels_db, "select count(*) from panel_referrals where panel = 'vcsp'") == violent
    assert (
        count(
            panels_db,
            "select count(*) from (select incident_id from panel_referral_incidents"
            " group by incident_id having count(*) > 1)",
        )
        == 0
    )
