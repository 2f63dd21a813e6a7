"""Intake's acceptance of the panels' partner events (panel referral requests, tenancy possession
updates), in one process on a real SQLite store: HTTP through ASGI, the ingress topic through the real
ReliableConsumer. Delivery over Kafka is shown in tests/e2e/test_panels_flow.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from services.intake.app import build
from services.intake.domain import person_key
from services.intake.settings import IntakeSettings
from shared import topics
from shared.consumer import Received
from shared.contracts import PanelReferralRequested, ReportDetails, TenancyPossessionUpdated
from shared.db import create_tables
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime


def tenancy_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partner": "housing",
        "idempotency_key": f"TEN-{uuid.uuid4().hex[:8]}",
        "tenancy_ref": "T-77",
        "tenure": "council",
        "stage": "notice-of-seeking-possession",
        "mandatory_grounds": [],
        "occurred_at": "2026-03-01T10:00:00+00:00",
    }
    body.update(overrides)
    return body


def referral_request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partner": "nhs",
        "idempotency_key": f"REQ-{uuid.uuid4().hex[:8]}",
        "panel": "vcsp",
        "person": {"name": "Ada Lovelace", "date_of_birth": "1941-12-10"},
        "reason": "Repeated harassment; GP worried about her safety",
        "consent_given": True,
        "requested_at": "2026-03-01T10:00:00+00:00",
    }
    body.update(overrides)
    return body


@dataclass
class Intake:
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    async def outbox(self) -> list[OutboxRecord]:
        async with self.runtime.sessions() as session:
            return list((await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars())

    async def ingress(self, ce_type: str, body: bytes, ce_id: str) -> None:
        headers = {"ce_id": ce_id, "ce_source": "/partners/test", "ce_type": ce_type, "ce_specversion": "1.0"}
        (consumer,) = [c for c in self.runtime.consumers if c.name == f"intake:{topics.PARTNER_REPORTS}"]
        await consumer(Received(topics.PARTNER_REPORTS, 0, 0, None, headers, body))


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    runtime = build(IntakeSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", http_port=0))
    await create_tables(runtime.engine, runtime.tables)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.api), base_url="http://intake") as http:
        yield Intake(runtime, http)
    await runtime.engine.dispose()


async def test_tenancy_event_over_http_is_accepted_once_and_republished(intake: Intake) -> None:
    body = tenancy_event()
    first = await intake.http.post("/v1/tenancy-events", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["event_type"] == TenancyPossessionUpdated.CE_TYPE and first.json()["replayed"] is False
    again = await intake.http.post("/v1/tenancy-events", json=body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    changed = await intake.http.post("/v1/tenancy-events", json={**body, "stage": "hearing-listed"})
    assert changed.status_code == 409
    assert changed.json()["errors"][0]["field"] == "idempotency_key"
    assert "tenancy event with different content" in changed.json()["errors"][0]["reason"]

    (row,) = await intake.outbox()
    assert row.topic == topics.TENANCY_POSSESSION
    assert row.headers["ce_type"] == TenancyPossessionUpdated.CE_TYPE
    assert row.key == "tenancy:T-77"
    assert TenancyPossessionUpdated.model_validate_json(row.body).stage == "notice-of-seeking-possession"


async def test_referral_request_gets_the_victims_person_key(intake: Intake) -> None:
    r = await intake.http.post("/v1/panel-referral-requests", json=referral_request())
    assert r.status_code == 201, r.text
    (row,) = await intake.outbox()
    assert row.topic == topics.PANEL_REFERRAL_REQUESTS
    published = PanelReferralRequested.model_validate_json(row.body)
    # The same person reported as a victim (any partner, any property) has the same key.
    report = ReportDetails.model_validate(
        {
            "partner": "police",
            "idempotency_key": "x",
            "reported_at": "2026-03-01T10:00:00+00:00",
            "location": {"uprn": "100023336956"},
            "description": "harassment",
            "victim": {"name": "ADA  LOVELACE", "date_of_birth": "1941-12-10"},
        }
    )
    assert published.person_key is not None
    assert published.person_key == person_key(report.victim, report)


@pytest.mark.parametrize(
    ("path", "body", "field", "error"),
    [
        ("/v1/tenancy-events", tenancy_event(stage="bailiffs"), "stage", "invalid tenancy event"),
        ("/v1/tenancy-events", tenancy_event(tenancy_ref=""), "tenancy_ref", "invalid tenancy event"),
        ("/v1/tenancy-events", tenancy_event(mandatory_grounds=["rent-arrears"]), "mandatory_grounds.0", ""),
        ("/v1/panel-referral-requests", referral_request(panel="daily-briefing"), "panel", ""),
        ("/v1/panel-referral-requests", referral_request(reason=" "), "reason", "invalid panel referral request"),
        ("/v1/panel-referral-requests", referral_request(requested_at="2026-03-01T10:00:00"), "requested_at", ""),
    ],
)
async def test_invalid_partner_events_get_422_naming_the_field(
    intake: Intake, path: str, body: dict[str, Any], field: str, error: str
) -> None:
    r = await intake.http.post(path, json=body)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert error in r.json()["error"]
    assert await intake.outbox() == []


async def test_ingress_topic_accepts_both_types_and_dead_letters_an_unknown_one(intake: Intake) -> None:
    await intake.ingress(TenancyPossessionUpdated.CE_TYPE, orjson.dumps(tenancy_event(idempotency_key="K1")), "a")
    await intake.ingress(TenancyPossessionUpdated.CE_TYPE, orjson.dumps(tenancy_event(idempotency_key="K1")), "b")
    await intake.ingress(PanelReferralRequested.CE_TYPE, orjson.dumps(referral_request()), "c")
    await intake.ingress("uk.gov.dcsp.tenancy.rent-arrears.v1", orjson.dumps(tenancy_event()), "d")
    await intake.ingress(PanelReferralRequested.CE_TYPE, orjson.dumps(tenancy_event()), "e")

    rows = await intake.outbox()
    assert [r.topic for r in rows] == [
        topics.TENANCY_POSSESSION,  # K1 once: "b" is the same event under a new id
        topics.PANEL_REFERRAL_REQUESTS,
        topics.DEAD_LETTERS,
        topics.DEAD_LETTERS,
    ]
    unknown, wrong_shape = (orjson.loads(r.body) for r in rows[2:])
    assert "uk.gov.dcsp.tenancy.rent-arrears.v1" in unknown["error"] and unknown["error"].startswith("ce_type")
    assert "panel" in wrong_shape["error"] and "Field required" in wrong_shape["error"]
