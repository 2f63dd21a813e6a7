"""Panels end to end: real processes, a real broker, real SQLite stores. Partners' reports go in over
HTTP, possession news over the ingress topic (CloudEvents headers) and HTTP; panels' clock is fixed
with PANELS_CLOCK_FIXED_AT so meeting dates and overdue actions are known."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from demo.partner import PartnerPublisher, read_topic
from demo.pipeline import Pipeline
from services.intake.domain import person_key
from services.panels import domain
from services.panels.settings import PanelsSettings
from shared import topics
from shared.contracts import PartnerAgency, PossessionStage, ReportDetails, TenancyPossessionUpdated, Tenure

from ..conftest import wait_for

pytestmark = pytest.mark.e2e

FIXED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The module-scoped pipeline of tests/e2e/conftest.py, with panels' clock fixed."""
    namespace = f"e2e{uuid.uuid4().hex[:8]}."
    workdir: Path = tmp_path_factory.mktemp("panels-pipeline")
    pipe = Pipeline(
        workdir,
        kafka_bootstrap,
        namespace=namespace,
        extra_env={"PANELS_CLOCK_FIXED_AT": FIXED_AT.isoformat(), "PANELS_OVERDUE_CHECK_SECONDS": "0.5"},
    )
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partner": "housing",
        "idempotency_key": f"e2e-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "4 Canal Walk, Riverside Estate", "uprn": "100023336778"},
        "description": "Loud music and shouting from the flat above until 3am",
    }
    body.update(overrides)
    return body


def post(pipeline: Pipeline, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(pipeline.url(service) + path, json=body, timeout=10)
    assert r.status_code in (200, 201), r.text
    result: dict[str, Any] = r.json()
    return result


def get(pipeline: Pipeline, path: str, **params: Any) -> Any:
    r = httpx.get(pipeline.url("panels") + path, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def referrals_for(pipeline: Pipeline, panel: str, key: str) -> list[dict[str, Any]]:
    return [r for r in get(pipeline, "/v1/referrals", panel=panel) if r["person_key"] == key]


def read_all(pipeline: Pipeline, base_topic: str, within: float = 3) -> list[Any]:
    topic = topics.resolve(base_topic, pipeline.namespace)
    return asyncio.run(read_topic(pipeline.bootstrap_servers, topic, 10_000, within=within))


def test_tenants_asb_reports_and_a_possession_notice_make_one_ccp_referral_on_the_next_agenda(
    pipeline: Pipeline,
) -> None:
    ref = f"T-{uuid.uuid4().hex[:8]}"
    block = {
        "tenure": "council",
        "tenancy_ref": ref,
        "tenant_role": "perpetrator",
        "tenant": {"name": "Pat Tenant", "date_of_birth": "1985-04-01"},
    }
    incidents = [
        post(pipeline, "intake", "/v1/reports", report(tenancy=block))["incident_id"],
        post(pipeline, "intake", "/v1/reports", report(tenancy=block, description="Drug dealing from flat 4"))[
            "incident_id"
        ],
    ]
    notice = TenancyPossessionUpdated(
        partner=PartnerAgency.HOUSING,
        idempotency_key=f"NSP-{ref}",
        tenancy_ref=ref,
        tenure=Tenure.COUNCIL,
        stage=PossessionStage.NOTICE_SERVED,
        occurred_at=datetime(2026, 2, 27, 12, tzinfo=UTC),
    )

    async def publish() -> None:
        headers = {
            "ce_id": str(uuid.uuid4()),
            "ce_source": "/partners/housing-system",
            "ce_type": TenancyPossessionUpdated.CE_TYPE,
            "ce_specversion": "1.0",
            "ce_time": datetime.now(UTC).isoformat(),
            "content-type": "application/json",
        }
        async with PartnerPublisher(pipeline.bootstrap_servers, pipeline.namespace) as partner:
            await partner.publish_raw(notice.model_dump_json().encode(), headers, key=ref.encode())

    asyncio.run(publish())

    def referral_with_both() -> dict[str, Any] | None:
        found = referrals_for(pipeline, "ccp", f"tenancy:{ref}")
        return found[0] if found and len(found[0]["incident_ids"]) == 2 else None

    referral = wait_for(referral_with_both, 60, "one CCP referral with both incidents")
    # Only the possession notice can have made this referral (the reports carry no possession risk).
    pack = get(pipeline, f"/v1/referrals/{referral['referral_id']}")
    assert sorted(i["incident_id"] for i in pack["incidents"]) == sorted(incidents)
    assert all(i["triage_reasons"] for i in pack["incidents"])
    assert pack["tenancy"]["possession_stage"] == "notice-of-seeking-possession"
    assert pack["person"]["name"] == "Pat Tenant" and "date_of_birth" not in pack["person"]

    expected = domain.next_meeting(PanelsSettings().ccp, domain.local_date(FIXED_AT, "Europe/London"))
    assert expected == date(2026, 3, 10)  # the second Tuesday of March 2026
    agenda = get(pipeline, "/v1/panels/ccp/meetings/next/agenda")
    assert agenda["meeting_date"] == expected.isoformat()
    assert referral["referral_id"] in [i["referral_id"] for i in agenda["items"]]
    html = httpx.get(pipeline.url("panels") + "/v1/panels/ccp/meetings/next/agenda?format=html", timeout=10)
    assert "Complex Case Panel" in html.text and "Pat Tenant" in html.text

    # The court lists a hearing; the housing system tells intake over HTTP; the pack follows.
    post(
        pipeline,
        "intake",
        "/v1/tenancy-events",
        {**notice.model_dump(mode="json"), "idempotency_key": f"HRG-{ref}", "stage": "hearing-listed"},
    )
    wait_for(
        lambda: (
            get(pipeline, f"/v1/referrals/{referral['referral_id']}")["tenancy"]["possession_stage"] == "hearing-listed"
        ),
        30,
        "the pack to show the hearing",
    )
    assert len(referrals_for(pipeline, "ccp", f"tenancy:{ref}")) == 1


def test_high_risk_vulnerable_victim_has_one_vcsp_referral_even_when_events_are_redelivered(
    pipeline: Pipeline,
) -> None:
    victim = {
        "name": f"Val {uuid.uuid4().hex[:6]}",
        "date_of_birth": "1948-02-02",
        "vulnerabilities": ["disability", "mental-health", "lives-alone"],
    }
    first = report(partner="police", victim=victim, description="She was punched and kicked on the landing")
    key = person_key(ReportDetails.model_validate(first).victim, ReportDetails.model_validate(first))
    assert key is not None
    first_id = post(pipeline, "intake", "/v1/reports", first)["incident_id"]
    (referral,) = wait_for(lambda: referrals_for(pipeline, "vcsp", key), 60, "the VCSP referral")
    second_id = post(
        pipeline, "intake", "/v1/reports", report(partner="csu", victim=victim, description="Shouted threats at her")
    )["incident_id"]
    wait_for(lambda: second_id in referrals_for(pipeline, "vcsp", key)[0]["incident_ids"], 60, "the second incident")

    # Redeliver the first IncidentTriaged with its own ce_id and under a new one, then a marker
    # event on the same partition: once the marker is attached, the redeliveries have been handled.
    records = read_all(pipeline, topics.INCIDENTS_TRIAGED)
    (original,) = [r for r in records if orjson.loads(r.value)["incident_id"] == first_id]
    headers = {k: v.decode() for k, v in original.headers}
    marker = orjson.loads(original.value)
    marker["incident_id"] = str(uuid.uuid4())

    async def redeliver() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap_servers, enable_idempotence=True)
        await producer.start()
        try:
            for hdrs, value in (
                (headers, original.value),
                ({**headers, "ce_id": str(uuid.uuid4())}, original.value),
                ({**headers, "ce_id": str(uuid.uuid4())}, orjson.dumps(marker)),
            ):
                await producer.send_and_wait(
                    original.topic, value, key=original.key, headers=[(k, v.encode()) for k, v in hdrs.items()]
                )
        finally:
            await producer.stop()

    asyncio.run(redeliver())
    wait_for(lambda: marker["incident_id"] in referrals_for(pipeline, "vcsp", key)[0]["incident_ids"], 60, "the marker")
    (after,) = referrals_for(pipeline, "vcsp", key)
    assert after["referral_id"] == referral["referral_id"]
    assert sorted(after["incident_ids"]) == sorted([first_id, second_id, marker["incident_id"]])
    history = get(pipeline, f"/v1/referrals/{referral['referral_id']}/history")
    assert [h["event_type"] for h in history].count("incident-attached") == 3
    assert [h["event_type"] for h in history].count("referral-created") == 1


def test_outcome_with_two_actions_is_published_and_the_late_action_is_overdue(pipeline: Pipeline) -> None:
    person = {"name": f"Rae {uuid.uuid4().hex[:6]}", "date_of_birth": "1990-09-09"}
    request = {
        "partner": "county-council",
        "idempotency_key": f"REQ-{uuid.uuid4().hex[:8]}",
        "panel": "vcsp",
        "person": person,
        "reason": "Young adult targeted by a gang; safeguarding concern",
        "consent_given": True,
        "requested_at": FIXED_AT.isoformat(),
    }
    post(pipeline, "intake", "/v1/panel-referral-requests", request)

    def requested() -> list[dict[str, Any]]:
        return [
            r
            for r in get(pipeline, "/v1/referrals", panel="vcsp")
            if any(
                h["event_type"] == "partner-request" and h["detail"]["request"].endswith(request["idempotency_key"])
                for h in get(pipeline, f"/v1/referrals/{r['referral_id']}/history")
            )
        ]

    (referral,) = wait_for(requested, 60, "the requested VCSP referral")
    rid = referral["referral_id"]
    assert get(pipeline, f"/v1/referrals/{rid}")["consent"] == "given"
    outcome = post(
        pipeline,
        "panels",
        f"/v1/referrals/{rid}/outcome",
        {
            "decision": "Multi-agency safety plan",
            "actions": [
                {"description": "Home safety visit", "owner_agency": "fire", "due": "2026-02-20"},
                {
                    "description": "Seek a civil injunction against the gang's leader",
                    "owner_agency": "police",
                    "due": "2026-04-30",
                    "tool": "civil-injunction",
                },
            ],
        },
    )
    late, later = (a["action_id"] for a in outcome["actions"])

    def published_outcome() -> dict[str, Any] | None:
        found = [orjson.loads(r.value) for r in read_all(pipeline, topics.PANEL_OUTCOMES)]
        return next((o for o in found if o["referral_id"] == rid), None)

    event = wait_for(published_outcome, 60, "the outcome event on the outcomes topic")
    assert event["referring_partner"] == "county-council"
    assert [a["action_id"] for a in event["actions"]] == [late, later]

    overdue = [a for a in get(pipeline, "/v1/actions/overdue") if a["referral_id"] == rid]
    assert [(a["action_id"], a["days_overdue"]) for a in overdue] == [(late, 10)]

    def overdue_events() -> list[dict[str, Any]]:
        found = [orjson.loads(r.value) for r in read_all(pipeline, topics.PANEL_ACTIONS_OVERDUE)]
        return [o for o in found if o["referral_id"] == rid]

    wait_for(overdue_events, 60, "the overdue event")
    # read_all listens for 3 s, in which the worker looks again about six times: still one event.
    assert [o["action"]["action_id"] for o in overdue_events()] == [late]
    history = get(pipeline, f"/v1/referrals/{rid}/history")
    assert [h["event_type"] for h in history].count("action-overdue") == 1


def test_unknown_event_type_on_the_ingress_topic_is_a_dead_letter_naming_it(pipeline: Pipeline) -> None:
    marker = uuid.uuid4().hex
    headers = {
        "ce_id": marker,
        "ce_source": "/partners/housing-system",
        "ce_type": "uk.gov.dcsp.tenancy.rent-arrears.v1",
        "ce_specversion": "1.0",
        "content-type": "application/json",
    }

    async def publish() -> None:
        async with PartnerPublisher(pipeline.bootstrap_servers, pipeline.namespace) as partner:
            await partner.publish_raw(b'{"tenancy_ref": "T-1"}', headers)

    asyncio.run(publish())

    def letter() -> dict[str, Any] | None:
        found = [orjson.loads(r.value) for r in read_all(pipeline, topics.DEAD_LETTERS)]
        return next((f for f in found if f["headers"].get("ce_id") == marker), None)

    found = wait_for(letter, 60, "the dead letter")
    assert found["service"] == "intake"
    assert "uk.gov.dcsp.tenancy.rent-arrears.v1" in found["error"]
