"""Security through the whole pipeline (real processes, real broker, real SQLite stores), with
authentication required in every service:

- reports carrying unique markers in every personal field go through intake, triage, notifications
  and panels (police alert, VCSP and CCP referrals, a tenancy event, a panel referral request, and
  a malformed ingress message that is dead-lettered); no marker appears in any log line of any of
  the four services;
- an erasure request removes the person's data from all four stores (each store is queried), and
  every service's confirmation is stored and queryable at intake.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.partner import PartnerPublisher
from demo.pipeline import SERVICES, Pipeline
from shared.contracts import ReportReceived
from shared.envelope import new_envelope
from tests.auth_helpers import Keyring, make_credentials, store_text

from ..conftest import wait_for

pytestmark = pytest.mark.e2e


class Person:
    """A person whose every personal field carries a unique marker."""

    def __init__(self, dob: str) -> None:
        tag = secrets.token_hex(4)
        self.name = f"Zoltan Markerson{tag}"
        self.email = f"zq{tag}@mail.example.org"
        self.phone = f"07700 9{int(tag, 16) % 100000:05d}"
        self.dob = dob
        self.address = f"{int(tag, 16) % 900 + 100} Markerway{tag} Close"
        self.description_tag = f"Quillfeather{tag}"
        self.person_ref = f"REF{tag}"

    def person(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "date_of_birth": self.dob,
            "contact": f"{self.email} / {self.phone}",
            "person_ref": self.person_ref,
            "vulnerabilities": ["disability", "lives-alone", "isolated", "mental-health"],
        }

    def markers(self) -> list[str]:
        return [self.name, self.email, self.phone, self.dob, self.address, self.description_tag, self.person_ref]


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Keyring]]:
    creds = make_credentials(partners={"police": None, "housing": None, "nhs": None})
    workdir: Path = tmp_path_factory.mktemp("secured")
    namespace = f"sec{uuid.uuid4().hex[:8]}."
    pipe = Pipeline(workdir, kafka_bootstrap, namespace=namespace, extra_env=creds.env(workdir / "credentials.json"))
    try:
        pipe.start()
        yield pipe, creds
    finally:
        pipe.stop()


def post(pipe: Pipeline, creds: Keyring, who: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(pipe.url("intake") + path, json=body, headers=creds.headers(who), timeout=10)


def get(pipe: Pipeline, creds: Keyring, who: str, service: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(pipe.url(service) + path, headers=creds.headers(who), params=params, timeout=10)


def now() -> str:
    return datetime.now(UTC).isoformat()


def test_planted_markers_never_reach_a_log_line_and_erasure_clears_every_store(
    secured: tuple[Pipeline, Keyring], kafka_bootstrap: str
) -> None:
    pipe, creds = secured
    victim, tenant, bystander = Person("1931-07-19"), Person("1944-02-29"), Person("1927-11-03")
    location = {"address": victim.address, "postcode": "ZX9 8QW", "uprn": "100099990001"}

    # Unauthenticated: nothing gets in.
    assert httpx.post(pipe.url("intake") + "/v1/reports", json={}, timeout=10).status_code == 401

    # 1. A violent incident against the victim (police alert; VCSP referral: vulnerable, high risk).
    violent = post(pipe, creds, "partner:police", "/v1/reports", {
        "partner": "police", "idempotency_key": f"sec-{uuid.uuid4()}", "reported_at": now(),
        "location": location, "category": "violence",
        "description": f"{victim.name} ({victim.email}, {victim.phone}) was punched at {victim.address}; "
        f"born {victim.dob}. {victim.description_tag}",
        "victim": victim.person(),
    })  # fmt: skip
    assert violent.status_code == 201, violent.text
    incident_id = violent.json()["incident_id"]
    # 2. Housing: the tenant (perpetrator) with a notice of seeking possession (CCP referral).
    ccp = post(pipe, creds, "partner:housing", "/v1/reports", {
        "partner": "housing", "idempotency_key": f"sec-{uuid.uuid4()}", "reported_at": now(),
        "location": {"address": tenant.address, "uprn": "100099990002"},
        "description": f"Noise and threats by {tenant.name}, {tenant.phone}. {tenant.description_tag}",
        "victim": bystander.person(),
        "tenancy": {"tenure": "council", "tenancy_ref": f"T-{tenant.person_ref}", "tenant_role": "perpetrator",
                    "tenant": tenant.person(), "possession": {"notice_of_seeking_possession": True}},
    })  # fmt: skip
    assert ccp.status_code == 201, ccp.text
    tenancy = post(pipe, creds, "partner:housing", "/v1/tenancy-events", {
        "partner": "housing", "idempotency_key": f"sec-{uuid.uuid4()}", "tenancy_ref": f"T-{tenant.person_ref}",
        "tenure": "council", "tenant": tenant.person(), "stage": "proceedings-issued", "occurred_at": now(),
    })  # fmt: skip
    assert tenancy.status_code == 201, tenancy.text
    # 3. The NHS asks for the victim to go to the VCSP.
    request = post(pipe, creds, "partner:nhs", "/v1/panel-referral-requests", {
        "partner": "nhs", "idempotency_key": f"sec-{uuid.uuid4()}", "panel": "vcsp", "person": victim.person(),
        "reason": f"GP worried about {victim.name} at {victim.address}", "requested_at": now(), "consent_given": True,
    })  # fmt: skip
    assert request.status_code == 201, request.text
    # 4. A malformed ingress message full of personal data: dead-lettered, with the reason logged.
    bad = {"partner": "police", "idempotency_key": "bad-1", "reported_at": "yesterday",
           "location": {"address": bystander.address, "postcode": "QX7 1ZZ"},
           "description": f"{bystander.name} {bystander.email} {bystander.phone} {bystander.dob}",
           # Invalid values that validation errors quote back: the log must not repeat them.
           "victim": {**bystander.person(), "age": "old", "name": [bystander.name, bystander.person_ref],
                      "date_of_birth": f"born {bystander.dob}", "contact": {"email": bystander.email}}}  # fmt: skip
    headers = new_envelope(ReportReceived.model_construct(partner="police", idempotency_key="bad-1"), "/p").headers()

    async def publish_bad() -> None:
        async with PartnerPublisher(kafka_bootstrap, pipe.namespace) as partner:
            await partner.publish_raw(json.dumps(bad).encode(), headers)

    asyncio.run(publish_bad())

    # Everything flows: the police were told, both panels have referrals, the dead letter was logged.
    def alert_delivered() -> dict[str, Any] | None:
        r = get(pipe, creds, "police", "notifications", "/v1/alerts", incident_id=incident_id)
        alerts = r.json() if r.status_code == 200 else []
        return alerts[0] if alerts and alerts[0]["delivery_status"] == "delivered" else None

    wait_for(alert_delivered, 60, "the police alert delivered")

    def referrals() -> list[dict[str, Any]] | None:
        found = get(pipe, creds, "csu", "panels", "/v1/referrals").json()
        return found if {r["panel"] for r in found} == {"vcsp", "ccp"} else None

    wait_for(referrals, 60, "a VCSP and a CCP referral")
    wait_for(lambda: "dead-lettered" in (pipe.workdir / "intake.log").read_text(), 60, "the dead letter")
    # Reads are audited and then visible to the CSU.
    vcsp = next(r for r in referrals() or [] if r["panel"] == "vcsp")
    assert get(pipe, creds, "nhs", "panels", f"/v1/referrals/{vcsp['referral_id']}").status_code == 200
    audit = get(pipe, creds, "csu", "panels", "/v1/audit", resource_id=vcsp["referral_id"]).json()
    assert [e["actor"] for e in audit] == ["api-key:officer-nhs"]

    # 5. Erasure of the victim, asked by the CSU by name and date of birth.
    wait_for(lambda: victim.name in store_text(pipe.database("notifications")) or None, 30, "the briefing facts")
    erasure = post(pipe, creds, "csu", "/v1/erasure-requests", {
        "name": victim.name, "date_of_birth": victim.dob, "reason": "UK GDPR Art. 17 request"})  # fmt: skip
    assert erasure.status_code == 202, erasure.text
    request_id = erasure.json()["request_id"]
    assert incident_id in erasure.json()["incident_ids"]

    def complete() -> dict[str, Any] | None:
        status = get(pipe, creds, "csu", "intake", f"/v1/erasure-requests/{request_id}").json()
        return status if status["complete"] else None

    status = wait_for(complete, 60, "all four services to confirm the erasure")
    assert sorted(c["service"] for c in status["confirmations"]) == sorted(SERVICES)
    confirmed = {c["service"]: c["records"] for c in status["confirmations"]}
    assert confirmed["triage"]["triaged_incidents"] >= 1
    assert confirmed["notifications"]["police_alerts"] == 1
    assert confirmed["panels"]["panel_referrals"] >= 1
    for service in SERVICES:
        stored = store_text(pipe.database(service))
        left = [m for m in victim.markers() if m in stored]
        assert not left, f"{service} still holds {left}"
    # Not everyone else's: the tenant's case stays in panels.
    assert tenant.name in store_text(pipe.database("panels"))
    # The police alert's record of delivery stays (the proof of when the police were told).
    alert = get(pipe, creds, "police", "notifications", "/v1/alerts", incident_id=incident_id).json()
    assert alert and alert[0]["delivered_at"]

    # 6. No marker of anyone in any log line of any service.
    lines = 0
    for service in SERVICES:
        log = (pipe.workdir / f"{service}.log").read_text(errors="replace")
        lines += log.count("\n")
        for person in (victim, tenant, bystander):
            found = [m for m in person.markers() if m in log]
            assert not found, f"{service}.log contains {found}"
    assert lines > 20


def test_schemathesis_finds_no_server_error_and_no_schema_violation(secured: tuple[Pipeline, Keyring]) -> None:
    """Every documented operation of every service, fuzzed from its OpenAPI document with a
    credential holding every role (and, separately, with none: 401s only)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    pipe, creds = secured

    def fuzzer(operation: Any, base: str) -> Any:
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            for headers in (creds.headers("everything"), {}):
                response = case.call(base_url=base, headers=headers, timeout=10)
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                if not headers and case.path not in ("/health", "/ready"):
                    assert response.status_code == 401, (case.method, case.formatted_path, response.text)

        return fuzz

    operations = 0
    for service in SERVICES:
        base = pipe.url(service)
        schema = schemathesis.openapi.from_url(base + "/openapi.json")
        for result in schema.get_all_operations():
            fuzzer(result.ok(), base)()
            operations += 1
    assert operations >= 25
    for service in SERVICES:
        assert pipe.processes[service].alive()
