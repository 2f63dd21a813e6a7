"""Unit tests for the intake rules (services.intake.domain): pure, no broker, no database."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.domain import INCIDENT_NAMESPACE, accept, content_hash, incident_id_for, person_key
from shared.contracts import Channel, IncidentAccepted, Location, PartnerAgency, Person, ReportDetails

REPORTED_AT = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
DOB = date(1980, 1, 31)
KEY_FORMAT = re.compile(r"^p-[0-9a-f]{32}$")


def make_report(**changes: Any) -> ReportDetails:
    fields: dict[str, Any] = {
        "partner": PartnerAgency.HOUSING,
        "idempotency_key": "HSG-0001",
        "reported_at": REPORTED_AT,
        "location": Location(postcode="AB1 2CD"),
        "description": "Loud music until 3am from the flat above.",
    }
    fields.update(changes)
    return ReportDetails(**fields)


# ---------------------------------------------------------------------------
# incident_id_for
# ---------------------------------------------------------------------------


def test_incident_id_is_uuid5_of_partner_and_key() -> None:
    expected = uuid.uuid5(INCIDENT_NAMESPACE, "housing|HSG-0001")
    assert incident_id_for(make_report()) == expected
    assert expected.version == 5


def test_incident_id_is_deterministic_whatever_the_content() -> None:
    one = make_report(description="First wording")
    other = make_report(description="Other wording", location=Location(uprn="100023336956"))
    assert incident_id_for(one) == incident_id_for(other) == incident_id_for(make_report())


def test_incident_id_differs_by_partner() -> None:
    housing = make_report(partner=PartnerAgency.HOUSING)
    police = make_report(partner=PartnerAgency.POLICE)
    assert incident_id_for(housing) != incident_id_for(police)


def test_incident_id_differs_by_idempotency_key() -> None:
    assert incident_id_for(make_report(idempotency_key="A-1")) != incident_id_for(make_report(idempotency_key="A-2"))


def test_incident_id_is_unique_across_all_partners() -> None:
    ids = {incident_id_for(make_report(partner=p)) for p in PartnerAgency}
    assert len(ids) == len(PartnerAgency)


# ---------------------------------------------------------------------------
# content_hash
# ---------------------------------------------------------------------------


def test_content_hash_is_sha256_hex_and_stable() -> None:
    digest = content_hash(make_report())
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == content_hash(make_report())


def test_content_hash_ignores_how_the_report_was_built() -> None:
    from_json = ReportDetails.model_validate_json(make_report().model_dump_json())
    assert content_hash(from_json) == content_hash(make_report())


@pytest.mark.parametrize(
    "change",
    [
        {"description": "Loud music until 4am from the flat above."},
        {"idempotency_key": "HSG-0002"},
        {"partner": PartnerAgency.COMMUNITY_SAFETY_UNIT},
        {"reported_at": REPORTED_AT + timedelta(seconds=1)},
        {"location": Location(postcode="AB1 2CE")},
        {"category": "noise"},
        {"perceived_as_hate": True},
        {"victim": Person(name="A Resident")},
    ],
)
def test_content_hash_changes_with_content(change: dict[str, Any]) -> None:
    assert content_hash(make_report(**change)) != content_hash(make_report())


# ---------------------------------------------------------------------------
# person_key
# ---------------------------------------------------------------------------


def test_name_and_dob_key_matches_across_partners() -> None:
    victim = Person(name="Jane Smith", date_of_birth=DOB)
    housing = person_key(victim, make_report(partner=PartnerAgency.HOUSING))
    police = person_key(victim, make_report(partner=PartnerAgency.POLICE, location=Location(uprn="1")))
    assert housing == police
    assert housing is not None and KEY_FORMAT.fullmatch(housing)


def test_name_and_dob_key_is_the_documented_hash() -> None:
    basis = "nd|jane smith|1980-01-31"
    expected = "p-" + hashlib.sha256(basis.encode()).hexdigest()[:32]
    assert person_key(Person(name="Jane Smith", date_of_birth=DOB), make_report()) == expected


@pytest.mark.parametrize(
    "name", ["JANE SMITH", "jane smith", "  Jane   Smith ", "Jane\tSmith", "Jàne Smíth", "Jane Smith"]
)
def test_name_and_dob_key_ignores_case_whitespace_and_accents(name: str) -> None:
    plain = person_key(Person(name="Jane Smith", date_of_birth=DOB), make_report())
    assert person_key(Person(name=name, date_of_birth=DOB), make_report()) == plain


def test_composed_and_decomposed_accents_give_the_same_key() -> None:
    composed = Person(name="Zo\u00eb Brontë", date_of_birth=DOB)
    decomposed = Person(name="Zoe\u0308 Bronte\u0308", date_of_birth=DOB)
    assert person_key(composed, make_report()) == person_key(decomposed, make_report())


def test_different_name_or_dob_gives_a_different_key() -> None:
    base = person_key(Person(name="Jane Smith", date_of_birth=DOB), make_report())
    assert person_key(Person(name="Jane Smyth", date_of_birth=DOB), make_report()) != base
    assert person_key(Person(name="Jane Smith", date_of_birth=date(1980, 1, 30)), make_report()) != base


@pytest.mark.parametrize(
    ("one", "other"), [("Ольга Петрова", "Иван Иванов"), ("李小龙", "王芳"), ("Νίκος Παππάς", "Γιώργος Λάμπρου")]
)
def test_different_non_latin_names_give_different_keys(one: str, other: str) -> None:
    first = person_key(Person(name=one, date_of_birth=DOB), make_report())
    second = person_key(Person(name=other, date_of_birth=DOB), make_report())
    assert first != second


def test_name_and_dob_beats_uprn_and_reference() -> None:
    victim = Person(name="Jane Smith", date_of_birth=DOB, person_ref="H-9")
    at_one = person_key(victim, make_report(location=Location(uprn="100023336956")))
    at_other = person_key(victim, make_report(location=Location(uprn="200000000001")))
    assert at_one == at_other


def test_name_at_uprn_is_the_fallback_without_dob() -> None:
    victim = Person(name="Jane Smith", person_ref="H-9")
    here = make_report(location=Location(uprn="100023336956"))
    key = person_key(victim, here)
    assert key == "p-" + hashlib.sha256(b"nu|jane smith|100023336956").hexdigest()[:32]
    # Same person, same property, another partner: same key.
    police_here = make_report(partner=PartnerAgency.POLICE, location=Location(uprn="100023336956"))
    assert person_key(Person(name=" JANE  SMITH "), police_here) == key
    # Another property: another key.
    assert person_key(victim, make_report(location=Location(uprn="100023336957"))) != key


def test_name_at_uprn_differs_from_name_and_dob() -> None:
    at_uprn = person_key(Person(name="Jane Smith"), make_report(location=Location(uprn="19800131")))
    with_dob = person_key(Person(name="Jane Smith", date_of_birth=DOB), make_report())
    assert at_uprn is not None and with_dob is not None
    assert at_uprn != with_dob


def test_partner_reference_is_the_last_fallback_and_stays_within_the_partner() -> None:
    victim = Person(name="Jane Smith", person_ref="H-9")  # no dob, and the location has no UPRN
    housing = person_key(victim, make_report(partner=PartnerAgency.HOUSING))
    assert housing == "p-" + hashlib.sha256(b"ref|housing|H-9").hexdigest()[:32]
    assert person_key(Person(person_ref="H-9"), make_report(partner=PartnerAgency.HOUSING)) == housing
    assert person_key(victim, make_report(partner=PartnerAgency.POLICE)) != housing
    assert person_key(Person(person_ref="H-10"), make_report()) != housing


@pytest.mark.parametrize(
    ("person", "location"),
    [
        (None, Location(uprn="100023336956")),
        (Person(), Location(uprn="100023336956")),
        (Person(name="Jane Smith"), Location(postcode="AB1 2CD")),
        (Person(date_of_birth=DOB), Location(uprn="100023336956")),
        (Person(age=40, contact="07700 900000"), Location(uprn="100023336956")),
    ],
)
def test_unidentifiable_person_has_no_key(person: Person | None, location: Location) -> None:
    assert person_key(person, make_report(location=location)) is None


# ---------------------------------------------------------------------------
# accept
# ---------------------------------------------------------------------------


def test_accept_builds_incident_accepted() -> None:
    victim = Person(name="Jane Smith", date_of_birth=DOB)
    report = make_report(victim=victim)
    now = REPORTED_AT + timedelta(minutes=5)
    event = accept(report, Channel.KAFKA, now)
    assert event == IncidentAccepted(
        incident_id=incident_id_for(report),
        channel=Channel.KAFKA,
        accepted_at=now,
        victim_key=person_key(victim, report),
        report=report,
    )
    assert event.victim_key is not None
    assert event.subject() == str(incident_id_for(report))
    assert IncidentAccepted.CE_TYPE == "uk.gov.dcsp.incident.accepted.v1"


def test_accept_without_victim_has_no_victim_key() -> None:
    event = accept(make_report(), Channel.HTTP, REPORTED_AT)
    assert event.victim_key is None
    assert event.channel == Channel.HTTP


def test_accept_same_report_by_either_channel_names_the_same_incident() -> None:
    report = make_report()
    assert (
        accept(report, Channel.HTTP, REPORTED_AT).incident_id == accept(report, Channel.KAFKA, REPORTED_AT).incident_id
    )


def test_accept_refuses_a_naive_clock() -> None:
    with pytest.raises(ValidationError, match="accepted_at"):
        accept(make_report(), Channel.HTTP, datetime(2026, 11, 2, 10, 30))  # naive on purpose
