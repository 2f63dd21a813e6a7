"""The ops CLI against a real pipeline on a real broker: a message that failed for a fixable reason
is dead-lettered, the cause is fixed, `dcsp dead-letters redrive` sends it back, and it is processed
exactly once (a second redrive changes nothing). Also `dcsp status`, `agenda`, `briefing` and
`retriage` against the same pipeline.

The fixable cause is a real misconfiguration: panels started with a mistyped time zone
(PANELS_TIMEZONE=Europe/Londn) cannot date a referral, so the triaged incident that should refer a
vulnerable victim to the VCSP fails on every attempt and goes to the dead-letter topic. Ops corrects
the setting and restarts panels; the committed offset means panels does not see the message again
until it is redriven.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner, Result

from demo.partner import read_topic
from demo.pipeline import Pipeline
from ops.cli import app
from shared import topics

from ..conftest import wait_for

pytestmark = pytest.mark.e2e

MISTYPED_ZONE = "Europe/Londn"
TRIAGED = topics.INCIDENTS_TRIAGED


@pytest.fixture(scope="module")
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


def dcsp(runner: CliRunner, pipeline: Pipeline, *args: str) -> Result:
    env = {"KAFKA_BOOTSTRAP_SERVERS": pipeline.bootstrap_servers, "KAFKA_TOPIC_PREFIX": pipeline.namespace}
    for name in ("intake", "triage", "notifications", "panels"):
        env[f"DCSP_{name.upper()}_URL"] = pipeline.url(name)
    return runner.invoke(app, list(args), env=env)


def vulnerable_victim_report() -> dict[str, Any]:
    return {
        "partner": "police",
        "idempotency_key": f"ops-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "7 Canal Walk, Riverside Estate", "uprn": "100023336790"},
        "description": "She was punched and kicked on the landing",
        "victim": {
            "name": f"Vi {uuid.uuid4().hex[:6]}",
            "date_of_birth": "1946-05-05",
            "vulnerabilities": ["disability", "mental-health", "lives-alone"],
        },
    }


def submit(pipeline: Pipeline, body: dict[str, Any]) -> str:
    r = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


def referrals_with(pipeline: Pipeline, incident_id: str) -> list[dict[str, Any]]:
    r = httpx.get(pipeline.url("panels") + "/v1/referrals", params={"panel": "vcsp"}, timeout=10)
    r.raise_for_status()
    return [x for x in r.json() if incident_id in x["incident_ids"]]


def consumed(pipeline: Pipeline, service: str, outcome: str) -> float:
    """Messages of incidents.triaged the service counted with this outcome (from its /metrics)."""
    text = httpx.get(pipeline.url(service) + "/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dcsp_messages_consumed_total"
        and s.labels.get("service") == service
        and s.labels.get("topic") == TRIAGED
        and s.labels.get("outcome") == outcome
    )


def referrals_created_for(pipeline: Pipeline, incident_id: str) -> int:
    topic = topics.resolve(topics.PANEL_REFERRALS, pipeline.namespace)
    records = asyncio.run(read_topic(pipeline.bootstrap_servers, topic, 10_000, within=3))
    return sum(1 for r in records if orjson.loads(r.value)["incident_id"] == incident_id)


def restart_panels(pipeline: Pipeline, timezone: str | None) -> None:
    env = pipeline.processes["panels"].env
    if timezone is None:
        env.pop("PANELS_TIMEZONE", None)
    else:
        env["PANELS_TIMEZONE"] = timezone
    pipeline.restart("panels")


def test_a_dead_letter_redriven_with_the_cli_after_its_cause_is_fixed_is_processed_exactly_once(
    pipeline: Pipeline, runner: CliRunner
) -> None:
    restart_panels(pipeline, MISTYPED_ZONE)
    incident_id = submit(pipeline, vulnerable_victim_report())

    def dead_letter_listed() -> dict[str, Any] | None:
        result = dcsp(runner, pipeline, "dead-letters", "list", "--service", "panels", "--since", "10m", "--json")
        assert result.exit_code == 0, result.output
        letters = [d for d in orjson.loads(result.stdout) if d["ce_type"] == "uk.gov.dcsp.incident.triaged.v1"]
        return letters[0] if letters else None

    letter = wait_for(dead_letter_listed, 60, "panels' dead letter for the triaged incident")
    assert letter["error_type"] == "ZoneInfoNotFoundError"
    assert MISTYPED_ZONE in letter["error"]
    assert letter["attempts"] == 3
    ident = letter["id"]

    shown = dcsp(runner, pipeline, "dead-letters", "show", ident)
    assert shown.exit_code == 0, shown.output
    detail = orjson.loads(shown.stdout)
    assert detail["body"]["incident_id"] == incident_id
    assert detail["original_topic"] == topics.resolve(TRIAGED, pipeline.namespace)
    assert referrals_with(pipeline, incident_id) == []  # nothing was half-done

    # The fix: the right time zone, and a restart. Panels does not see the message again by itself.
    restart_panels(pipeline, None)
    duplicates_in_notifications = consumed(pipeline, "notifications", "duplicate")

    first = dcsp(runner, pipeline, "dead-letters", "redrive", ident, "--yes")
    assert first.exit_code == 0, first.output
    assert f"Redriven 1 message(s): {ident}" in first.stdout
    (referral,) = wait_for(lambda: referrals_with(pipeline, incident_id), 60, "the VCSP referral after the redrive")
    assert consumed(pipeline, "panels", "processed") >= 1
    # Notifications had processed the original: the redriven copy reached it too and was dropped.
    wait_for(
        lambda: consumed(pipeline, "notifications", "duplicate") > duplicates_in_notifications,
        30,
        "notifications to drop the redriven copy as a duplicate",
    )

    duplicates_before = consumed(pipeline, "panels", "duplicate")
    second = dcsp(runner, pipeline, "dead-letters", "redrive", ident, "--yes")
    assert second.exit_code == 0, second.output
    wait_for(
        lambda: consumed(pipeline, "panels", "duplicate") == duplicates_before + 1,
        30,
        "panels to drop the second redrive as a duplicate",
    )
    (after,) = referrals_with(pipeline, incident_id)
    assert after["referral_id"] == referral["referral_id"]
    history = httpx.get(pipeline.url("panels") + f"/v1/referrals/{referral['referral_id']}/history", timeout=10).json()
    kinds = [h["event_type"] for h in history]
    assert kinds.count("referral-created") == 1
    assert kinds.count("incident-attached") == 1
    assert referrals_created_for(pipeline, incident_id) == 1


def test_redrive_names_what_is_wrong(pipeline: Pipeline, runner: CliRunner) -> None:
    missing = dcsp(runner, pipeline, "dead-letters", "redrive", "dcsp.incidents.triaged.v1/0/999999", "--yes")
    assert missing.exit_code == 1
    assert "no dead letter dcsp.incidents.triaged.v1/0/999999" in missing.stderr
    malformed = dcsp(runner, pipeline, "dead-letters", "redrive", "not-an-id", "--yes")
    assert malformed.exit_code == 2
    assert "TOPIC/PARTITION/OFFSET" in malformed.output
    neither = dcsp(runner, pipeline, "dead-letters", "redrive", "--yes")
    assert neither.exit_code == 2
    assert "give either an ID or --all" in neither.output
    unconfirmed = dcsp(runner, pipeline, "dead-letters", "redrive", "--all", "--since", "1m", "--service", "intake")
    assert unconfirmed.exit_code == 0  # nothing of intake's to redrive, so nothing to confirm
    assert "No dead letters to redrive." in unconfirmed.stdout


def test_status_shows_every_service_ready_with_lag_and_backlog(pipeline: Pipeline, runner: CliRunner) -> None:
    result = dcsp(runner, pipeline, "status", "--json")
    assert result.exit_code == 0, result.output
    found = {s["service"]: s for s in orjson.loads(result.stdout)}
    assert set(found) == {"intake", "triage", "notifications", "panels"}
    for s in found.values():
        assert s["ready"] is True, s
        assert s["consumer_lag"] is not None and s["outbox_backlog"] is not None
    table = dcsp(runner, pipeline, "status")
    assert table.exit_code == 0 and "notifications" in table.stdout

    down = dcsp(runner, pipeline, "status", "--panels-url", "http://127.0.0.1:9", "--json")
    assert down.exit_code == 1
    panels = next(s for s in orjson.loads(down.stdout) if s["service"] == "panels")
    assert panels["reachable"] is False and panels["error"].startswith("unreachable")


def test_agenda_briefing_and_retriage(pipeline: Pipeline, runner: CliRunner) -> None:
    agenda = dcsp(runner, pipeline, "agenda", "VCSP", "--json")
    assert agenda.exit_code == 0, agenda.output
    assert orjson.loads(agenda.stdout)["panel"] == "vcsp"
    table = dcsp(runner, pipeline, "agenda", "ccp")
    assert table.exit_code == 0 and "Complex Case Panel" in table.stdout
    bad_panel = dcsp(runner, pipeline, "agenda", "xyz")
    assert bad_panel.exit_code == 2 and "PANEL" in bad_panel.output

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    text = dcsp(runner, pipeline, "briefing", yesterday)
    assert text.exit_code == 0, text.output
    assert "Daily Briefing" in text.stdout
    html = dcsp(runner, pipeline, "briefing", yesterday, "--format", "html")
    assert html.exit_code == 0 and html.stdout.lstrip().startswith("<!DOCTYPE html>")
    future = dcsp(runner, pipeline, "briefing", (datetime.now(UTC) + timedelta(days=3)).date().isoformat())
    assert future.exit_code == 1
    assert "briefing_date: the briefing for" in future.stderr

    retriaged = dcsp(
        runner,
        pipeline,
        "retriage",
        "--database-url",
        f"sqlite+aiosqlite:///{pipeline.database('triage')}",
        "--dry-run",
        "--no-progress",
    )
    assert retriaged.exit_code == 0, retriaged.output
    assert "re-triaged" in retriaged.stdout
