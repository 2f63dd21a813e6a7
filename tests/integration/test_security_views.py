"""Minimised views: the same referral (and the same triaged incident), read by each role through the
real HTTP API with real credentials, contains exactly that role's fields; every read is audited.

The expected field sets are written out here, not taken from the services' policies, so a change
to a policy that widens a view fails this test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.panels.app import compose
from services.panels.settings import PanelsSettings
from services.triage.app import build as build_triage
from services.triage.settings import TriageSettings
from shared.clock import FrozenClock
from shared.consumer import Received
from shared.contracts import Event, IncidentAccepted, Location, Person, ReportDetails, RiskTier
from shared.db import create_tables
from shared.envelope import encode_body, new_envelope
from shared.runtime import ServiceRuntime
from tests.auth_helpers import Keyring, make_credentials, settings_kwargs
from tests.unit.test_panels_service import NOW, tenancy, triaged

ROLES = ("csu", "police", "housing", "nhs", "neighbouring-partnership")

PACK_ALL = {
    "referral_id", "panel", "panel_name", "status", "referred_at", "reasons", "decision", "referring_partner",
    "person", "consent", "incidents", "risk_history", "agencies", "agenda_meeting", "actions", "closed_at",
    "close_reason", "cross_border",
}  # fmt: skip
INCIDENT_ALL = {
    "incident_id", "reported_at", "reported_by", "location", "description", "asb_qualifier", "asb_heading",
    "crime_category", "hate_incident", "risk_tier", "vulnerability_score", "triage_reasons",
}  # fmt: skip

# What each role sees of a cross-border VCSP referral (None: not at all, answered 404).
VCSP_EXPECTED: dict[str, tuple[set[str], set[str], set[str]] | None] = {
    # (pack fields, person fields, incident fields)
    "csu": (PACK_ALL, {"name", "age", "vulnerabilities", "role"}, INCIDENT_ALL),
    "police": (
        PACK_ALL - {"consent"},
        {"name", "age", "role"},
        INCIDENT_ALL - {"vulnerability_score"},
    ),
    "housing": None,  # Housing sees Complex Case Panel referrals only
    "nhs": (
        {
            "referral_id",
            "panel",
            "panel_name",
            "status",
            "referred_at",
            "reasons",
            "decision",
            "consent",
            "agencies",
            "risk_history",
            "agenda_meeting",
            "actions",
            "closed_at",
            "close_reason",
            "person",
            "incidents",
        },
        {"name", "age", "vulnerabilities", "role"},
        {
            "incident_id",
            "reported_at",
            "asb_qualifier",
            "asb_heading",
            "hate_incident",
            "risk_tier",
            "vulnerability_score",
        },
    ),
    "neighbouring-partnership": (
        {
            "referral_id",
            "panel",
            "panel_name",
            "status",
            "referred_at",
            "agencies",
            "cross_border",
            "person",
            "incidents",
        },
        {"name", "role"},
        {"incident_id", "reported_at", "location", "asb_qualifier", "asb_heading", "crime_category", "risk_tier"},
    ),
}


class Panels:
    def __init__(self, runtime: ServiceRuntime, http: httpx.AsyncClient, creds: Keyring) -> None:
        self.runtime, self.http, self.creds = runtime, http, creds

    async def deliver(self, event: Event) -> None:
        (consumer,) = [c for c in self.runtime.consumers if c.name == f"panels:{event.TOPIC}"]
        headers = new_envelope(event, "/test").headers()
        await consumer(Received(event.TOPIC, 0, 1, None, headers, encode_body(event)))

    async def referral_of(self, panel: str) -> str:
        r = await self.http.get("/v1/referrals", headers=self.creds.headers("csu"), params={"panel": panel})
        assert r.status_code == 200, r.text
        (row,) = r.json()
        return str(row["referral_id"])

    async def read(self, referral_id: str, role: str) -> httpx.Response:
        return await self.http.get(f"/v1/referrals/{referral_id}", headers=self.creds.headers(role))


@pytest.fixture
async def panels(tmp_path: Path) -> AsyncIterator[Panels]:
    creds = make_credentials()
    settings = PanelsSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'panels.db'}", http_port=0, **settings_kwargs(creds)
    )
    runtime, _ = compose(settings, FrozenClock(NOW))
    await create_tables(runtime.engine, runtime.tables)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.api), base_url="http://panels") as http:
        yield Panels(runtime, http, creds)
    await runtime.engine.dispose()


async def test_each_role_sees_exactly_its_fields_of_the_same_vcsp_referral(panels: Panels) -> None:
    await panels.deliver(triaged(risk_tier=RiskTier.HIGH, cross_border=True, crime_category=None))
    referral_id = await panels.referral_of("vcsp")
    for role in ROLES:
        response = await panels.read(referral_id, role)
        expected = VCSP_EXPECTED[role]
        if expected is None:
            assert response.status_code == 404, (role, response.text)
            continue
        assert response.status_code == 200, (role, response.text)
        pack = response.json()
        fields, person, incident = expected
        assert set(pack) == fields, role
        assert set(pack["person"]) == person, role
        assert {k for i in pack["incidents"] for k in i} == incident, role
    # The NHS never sees the account (it may name an offender) nor where it happened.
    nhs = (await panels.read(referral_id, "nhs")).json()
    assert "description" not in str(nhs) and "location" not in nhs["incidents"][0]


async def test_housing_sees_the_ccp_referral_with_its_tenancy_and_the_nhs_does_not(panels: Panels) -> None:
    await panels.deliver(triaged(tenancy_block=tenancy(nsp=True)))
    referral_id = await panels.referral_of("ccp")
    housing = await panels.read(referral_id, "housing")
    assert housing.status_code == 200, housing.text
    body = housing.json()
    assert set(body) == {
        "referral_id", "panel", "panel_name", "status", "referred_at", "reasons", "decision", "referring_partner",
        "person", "consent", "incidents", "risk_history", "agencies", "tenancy", "agenda_meeting", "actions",
        "closed_at", "close_reason",
    }  # fmt: skip
    assert body["tenancy"]["tenancy_ref"] == "T-1"
    assert {k for i in body["incidents"] for k in i} == {
        "incident_id", "reported_at", "reported_by", "location", "asb_qualifier", "asb_heading", "risk_tier",
        "tenant_role",
    }  # fmt: skip
    # The perpetrator tenant's CCP case is not the NHS's, and not cross-border.
    assert (await panels.read(referral_id, "nhs")).status_code == 404
    assert (await panels.read(referral_id, "neighbouring-partnership")).status_code == 404
    police = (await panels.read(referral_id, "police")).json()
    assert "tenancy" not in police and set(police["person"]) == {"name", "age", "role"}


async def test_listing_is_cut_per_role_and_every_read_is_audited_for_the_csu(panels: Panels) -> None:
    await panels.deliver(triaged(risk_tier=RiskTier.HIGH))  # VCSP, not cross-border
    await panels.deliver(triaged(tenancy_block=tenancy(nsp=True), victim_key=None))  # CCP
    listed = {}
    for role in ROLES:
        r = await panels.http.get("/v1/referrals", headers=panels.creds.headers(role))
        assert r.status_code == 200, r.text
        listed[role] = r.json()
    assert sorted(x["panel"] for x in listed["csu"]) == ["ccp", "vcsp"]
    assert [x["panel"] for x in listed["housing"]] == ["ccp"]
    assert [x["panel"] for x in listed["nhs"]] == ["vcsp"]
    assert listed["neighbouring-partnership"] == []
    assert all("person_key" not in x for role in ROLES[1:] for x in listed[role])
    vcsp = next(x["referral_id"] for x in listed["csu"] if x["panel"] == "vcsp")
    await panels.read(vcsp, "nhs")
    await panels.read(vcsp, "housing")
    audit = await panels.http.get(
        "/v1/audit", headers=panels.creds.headers("csu"), params={"resource_type": "referral", "resource_id": vcsp}
    )
    assert audit.status_code == 200, audit.text
    entries = audit.json()
    assert [(e["actor"], e["view"], e["outcome"]) for e in entries] == [
        ("api-key:officer-housing", None, "not-found"),
        ("api-key:officer-nhs", "nhs", "ok"),
    ]
    assert all(e["at"] for e in entries)
    # Only the CSU (or an admin) reads the audit trail.
    assert (await panels.http.get("/v1/audit", headers=panels.creds.headers("police"))).status_code == 403


# ---------------------------------------------------------------------------
# Triage: the same classification per role
# ---------------------------------------------------------------------------


async def test_each_role_sees_exactly_its_fields_of_the_same_triage_decision(tmp_path: Path) -> None:
    creds = make_credentials()
    settings = TriageSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'triage.db'}",
        http_port=0,
        cross_border_places=["Northbridge"],
        **settings_kwargs(creds),
    )
    runtime = build_triage(settings)
    await create_tables(runtime.engine, runtime.tables)
    report = ReportDetails(
        partner="police",
        idempotency_key="X-1",
        reported_at=NOW,
        location=Location(address="1 High St, Northbridge", postcode="NB1 1AA"),
        description="Assault outside the pub in Northbridge",
        category="violence",
        victim=Person(name="Val Victim", age=80, vulnerabilities=["lives-alone"]),
    )
    accepted = IncidentAccepted(
        incident_id=uuid.uuid4(), channel="http", accepted_at=NOW, victim_key="p-" + "b" * 32, report=report
    )
    (consumer,) = runtime.consumers[:1]
    headers = new_envelope(accepted, "/test").headers()
    await consumer(Received(accepted.TOPIC, 0, 1, None, headers, encode_body(accepted)))
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=runtime.api), base_url="http://triage") as http:
        for role in ROLES:
            r = await http.get(f"/v1/incidents/{accepted.incident_id}", headers=creds.headers(role))
            seen[role] = r.json()["classification"] if r.status_code == 200 else r.status_code
        assert (await http.get(f"/v1/incidents/{accepted.incident_id}")).status_code == 401
    await runtime.engine.dispose()
    assert seen["csu"]["cross_border"] is True
    assert set(seen["nhs"]) == {"vulnerable", "vulnerability_score", "risk_tier", "review_due", "hate_incident"}
    assert set(seen["housing"]) == {
        "asb_qualifier", "asb_heading", "risk_tier", "review_due", "owning_team", "supporting_teams",
        "response_tier", "first_contact_hours",
    }  # fmt: skip
    assert set(seen["neighbouring-partnership"]) == {
        "asb_qualifier",
        "asb_heading",
        "crime_category",
        "risk_tier",
        "cross_border",
    }
    assert "vulnerability_score" not in seen["police"] and "explanations" in seen["police"]
    assert "crime_category" not in seen["nhs"]
