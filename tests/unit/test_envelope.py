"""Unit tests for the CloudEvents envelope (shared.envelope) and the event contracts (shared.contracts)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared.contracts import (
    Channel,
    IncidentAccepted,
    Location,
    PartnerAgency,
    Person,
    PoliceAlertRequested,
    ReportDetails,
    ReportReceived,
    RiskTier,
)
from shared.envelope import (
    CONTENT_TYPE,
    SPEC_VERSION,
    Envelope,
    EnvelopeError,
    decode_event,
    encode_body,
    header_dict,
    new_envelope,
    read_envelope,
)

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
INCIDENT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
SOURCE = "urn:dcsp:intake"


def make_report(**changes: Any) -> ReportDetails:
    fields: dict[str, Any] = {
        "partner": PartnerAgency.HOUSING,
        "idempotency_key": "HSG-0001",
        "reported_at": NOW,
        "location": Location(postcode="AB1 2CD"),
        "description": "Loud music until 3am from the flat above.",
    }
    fields.update(changes)
    return ReportDetails(**fields)


def make_accepted() -> IncidentAccepted:
    return IncidentAccepted(
        incident_id=INCIDENT_ID,
        channel=Channel.HTTP,
        accepted_at=NOW,
        victim_key=None,
        report=make_report(),
    )


def valid_headers(**changes: str) -> dict[str, str]:
    headers = new_envelope(make_accepted(), SOURCE, event_id="evt-1", now=NOW).headers()
    headers.update(changes)
    return headers


# ---------------------------------------------------------------------------
# Envelope: headers out, headers in
# ---------------------------------------------------------------------------


def test_new_envelope_takes_type_and_subject_from_the_event() -> None:
    envelope = new_envelope(make_accepted(), SOURCE, event_id="evt-1", now=NOW)
    assert envelope == Envelope(
        id="evt-1",
        source=SOURCE,
        type="uk.gov.dcsp.incident.accepted.v1",
        time=NOW,
        subject=str(INCIDENT_ID),
        content_type="application/json",
    )


def test_headers_are_cloudevents_kafka_binary_mode() -> None:
    assert valid_headers() == {
        "ce_id": "evt-1",
        "ce_source": SOURCE,
        "ce_type": "uk.gov.dcsp.incident.accepted.v1",
        "ce_specversion": "1.0",
        "ce_time": "2026-11-02T10:30:00+00:00",
        "ce_subject": str(INCIDENT_ID),
        "content-type": "application/json",
    }


def test_header_round_trip_gives_the_same_envelope() -> None:
    sent = new_envelope(make_accepted(), SOURCE, event_id="evt-1", now=NOW)
    assert read_envelope(sent.headers()) == sent


def test_header_round_trip_through_kafka_bytes() -> None:
    sent = new_envelope(make_accepted(), SOURCE, event_id="evt-1", now=NOW)
    raw = [(k, v.encode()) for k, v in sent.headers().items()]
    assert read_envelope(header_dict(raw)) == sent


def test_round_trip_keeps_a_non_utc_offset() -> None:
    bst = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    received = read_envelope(new_envelope(make_accepted(), SOURCE, now=bst).headers())
    assert received.time == bst
    assert received.time.utcoffset() == timedelta(hours=1)


def test_subject_is_the_incident_or_the_partner_reference() -> None:
    alert = PoliceAlertRequested(
        incident_id=INCIDENT_ID,
        requested_at=NOW,
        crime_category=None,
        risk_tier=RiskTier.HIGH,
        reasons=["r"],
        occurred_at=None,
        location=Location(postcode="AB1 2CD"),
        description="d",
    )
    assert new_envelope(alert, SOURCE).headers()["ce_subject"] == str(INCIDENT_ID)
    received = ReportReceived(**make_report().model_dump())
    assert new_envelope(received, SOURCE).headers()["ce_subject"] == "housing:HSG-0001"


def test_envelope_without_subject_omits_the_header_and_reads_back_none() -> None:
    envelope = Envelope(id="e", source=SOURCE, type="t", time=NOW)
    assert "ce_subject" not in envelope.headers()
    assert read_envelope(envelope.headers()).subject is None


def test_new_envelope_ids_are_fresh_when_not_given() -> None:
    one = new_envelope(make_accepted(), SOURCE, now=NOW)
    two = new_envelope(make_accepted(), SOURCE, now=NOW)
    assert one.id != two.id
    assert uuid.UUID(one.id).version == 4


@pytest.mark.parametrize("missing", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_missing_required_header_is_named(missing: str) -> None:
    headers = valid_headers()
    del headers[missing]
    with pytest.raises(EnvelopeError, match=rf"missing CloudEvents header\(s\): {missing}$"):
        read_envelope(headers)


def test_empty_required_header_counts_as_missing() -> None:
    with pytest.raises(EnvelopeError, match=r"missing CloudEvents header\(s\): ce_id$"):
        read_envelope(valid_headers(ce_id=""))


def test_every_missing_header_is_named_at_once() -> None:
    with pytest.raises(EnvelopeError) as caught:
        read_envelope({"content-type": CONTENT_TYPE})
    assert str(caught.value) == "missing CloudEvents header(s): ce_id, ce_source, ce_type, ce_specversion"


@pytest.mark.parametrize("version", ["0.3", "1", "1.0.0", "2.0"])
def test_wrong_specversion_is_refused(version: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        read_envelope(valid_headers(ce_specversion=version))
    assert str(caught.value) == f"ce_specversion: expected '1.0', got {version!r}"
    assert SPEC_VERSION == "1.0"


@pytest.mark.parametrize("bad_time", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-02T25:00:00+00:00", "02/11/2026"])
def test_bad_ce_time_is_refused(bad_time: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        read_envelope(valid_headers(ce_time=bad_time))
    assert str(caught.value) == f"ce_time: not an RFC 3339 time: {bad_time!r}"
    assert isinstance(caught.value.__cause__, ValueError)


def test_rfc3339_z_suffix_is_accepted() -> None:
    assert read_envelope(valid_headers(ce_time="2026-11-02T10:30:00Z")).time == NOW


@pytest.mark.parametrize("not_rfc3339", ["2026-11-02T10:30:00", "2026-11-02"])
def test_ce_time_without_offset_is_refused(not_rfc3339: str) -> None:
    with pytest.raises(EnvelopeError, match="ce_time"):
        read_envelope(valid_headers(ce_time=not_rfc3339))


def test_absent_ce_time_defaults_to_an_aware_now() -> None:
    headers = valid_headers()
    del headers["ce_time"]
    before = datetime.now(UTC)
    time = read_envelope(headers).time
    assert before <= time <= datetime.now(UTC)
    assert time.tzinfo is not None


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/cloudevents+json"])
def test_wrong_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        read_envelope(valid_headers(**{"content-type": content_type}))
    assert str(caught.value) == f"content-type: expected application/json, got {content_type!r}"


def test_content_type_with_charset_is_accepted_and_kept() -> None:
    envelope = read_envelope(valid_headers(**{"content-type": "application/json; charset=utf-8"}))
    assert envelope.content_type == "application/json; charset=utf-8"


def test_absent_content_type_defaults_to_json() -> None:
    headers = valid_headers()
    del headers["content-type"]
    assert read_envelope(headers).content_type == "application/json"


# ---------------------------------------------------------------------------
# decode_event
# ---------------------------------------------------------------------------


def test_decode_event_round_trip() -> None:
    event = make_accepted()
    envelope, decoded = decode_event(IncidentAccepted, valid_headers(), encode_body(event))
    assert decoded == event
    assert envelope.type == IncidentAccepted.CE_TYPE


def test_decode_event_refuses_another_event_type() -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode_event(ReportReceived, valid_headers(), encode_body(make_accepted()))
    assert str(caught.value) == (
        "ce_type: expected 'uk.gov.dcsp.report.received.v1', got 'uk.gov.dcsp.incident.accepted.v1'"
    )


def test_decode_event_checks_the_envelope_before_the_body() -> None:
    headers = valid_headers()
    del headers["ce_source"]
    with pytest.raises(EnvelopeError, match="ce_source"):
        decode_event(IncidentAccepted, headers, b"not json")


def test_decode_event_body_error_names_the_field() -> None:
    body = orjson.loads(encode_body(make_accepted()))
    body["report"]["reported_at"] = "2026-11-02T10:30:00"  # naive: refused
    with pytest.raises(ValidationError) as caught:
        decode_event(IncidentAccepted, valid_headers(), orjson.dumps(body))
    assert [e["loc"] for e in caught.value.errors()] == [("report", "reported_at")]
    assert "report.reported_at" in str(caught.value)


def test_decode_event_body_missing_field_is_named() -> None:
    body = orjson.loads(encode_body(make_accepted()))
    del body["channel"]
    with pytest.raises(ValidationError) as caught:
        decode_event(IncidentAccepted, valid_headers(), orjson.dumps(body))
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("missing", ("channel",))]


def test_decode_event_body_that_is_not_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        decode_event(IncidentAccepted, valid_headers(), b"{not json")
    assert caught.value.errors()[0]["type"] == "json_invalid"


# ---------------------------------------------------------------------------
# header_dict
# ---------------------------------------------------------------------------


def test_header_dict_decodes_utf8() -> None:
    assert header_dict([("ce_source", "urn:café".encode())]) == {"ce_source": "urn:café"}


def test_header_dict_replaces_bad_bytes_instead_of_failing() -> None:
    headers = header_dict([("ce_id", b"abc\xff\xfedef"), ("ce_type", b"t")])
    assert headers == {"ce_id": "abc\ufffd\ufffddef", "ce_type": "t"}


def test_header_dict_none_value_and_none_headers() -> None:
    assert header_dict([("ce_subject", None)]) == {"ce_subject": ""}
    assert header_dict(None) == {}


# ---------------------------------------------------------------------------
# Contracts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        {"uprn": "100023336956"},
        {"address": "1 High Street"},
        {"postcode": "AB1 2CD"},
        {"latitude": 51.5, "longitude": -0.12},
        {"latitude": 0.0, "longitude": 0.0},
    ],
)
def test_location_needs_one_way_of_saying_where(where: dict[str, Any]) -> None:
    assert Location(**where).model_dump(exclude_none=True) == where


@pytest.mark.parametrize("nowhere", [{}, {"address": "   "}, {"postcode": ""}])
def test_location_with_nowhere_is_refused(nowhere: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Location(**nowhere)


def test_location_nowhere_error_says_what_to_give() -> None:
    with pytest.raises(ValidationError, match="give at least one of uprn, address, postcode or latitude/longitude"):
        Location()


@pytest.mark.parametrize("half", [{"latitude": 51.5}, {"postcode": "AB1 2CD", "longitude": -0.12}])
def test_latitude_and_longitude_go_together(half: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="latitude and longitude go together"):
        Location(**half)


@pytest.mark.parametrize(("lat", "long"), [(90.1, 0.0), (-90.1, 0.0), (0.0, 180.1), (0.0, -180.1)])
def test_coordinates_out_of_range_are_refused(lat: float, long: float) -> None:
    with pytest.raises(ValidationError):
        Location(latitude=lat, longitude=long)


@pytest.mark.parametrize(
    ("model", "fields"),
    [(Location, {"postcode": "AB1 2CD", "psotcode": "typo"}), (Person, {"name": "A Resident", "nmae": "typo"})],
)
def test_unknown_fields_are_refused(model: type[Location] | type[Person], fields: dict[str, Any]) -> None:
    typo = next(k for k in fields if k not in model.model_fields)
    with pytest.raises(ValidationError) as caught:
        model(**fields)
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("extra_forbidden", (typo,))]


def test_unknown_field_in_nested_report_is_refused() -> None:
    fields = make_report().model_dump()
    fields["location"]["ward"] = "North"
    with pytest.raises(ValidationError) as caught:
        ReportDetails(**fields)
    assert [e["loc"] for e in caught.value.errors()] == [("location", "ward")]


@pytest.mark.parametrize("uprn", ["1", "100023336956", "000000000001"])
def test_uprn_of_1_to_12_digits_is_accepted(uprn: str) -> None:
    assert Location(uprn=uprn).uprn == uprn


@pytest.mark.parametrize("uprn", ["", "1000233369561", "10002333695A", "-1", "12 34", "123\n", "1.5"])
def test_uprn_not_1_to_12_digits_is_refused(uprn: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Location(uprn=uprn, postcode="AB1 2CD")
    assert caught.value.errors()[0]["loc"] == ("uprn",)


@pytest.mark.parametrize("uprn", ["١٢٣", "１２３"])  # noqa: RUF001 - the point is non-ASCII digits
def test_uprn_with_non_ascii_digits_is_refused(uprn: str) -> None:
    with pytest.raises(ValidationError):
        Location(uprn=uprn)


@pytest.mark.parametrize("field", ["reported_at", "occurred_at"])
def test_report_times_must_be_timezone_aware(field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_report(**{field: datetime(2026, 11, 2, 10, 30)})  # naive on purpose
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("timezone_aware", (field,))]


def test_reported_at_string_without_offset_is_refused_and_with_offset_accepted() -> None:
    fields = make_report().model_dump(mode="json")
    assert ReportDetails(**{**fields, "reported_at": "2026-11-02T10:30:00Z"}).reported_at == NOW
    with pytest.raises(ValidationError, match="reported_at"):
        ReportDetails(**{**fields, "reported_at": "2026-11-02T10:30:00"})


def test_contracts_are_frozen() -> None:
    report = make_report()
    with pytest.raises(ValidationError):
        report.description = "changed"  # type: ignore[misc]


def test_person_vulnerabilities_and_dob_parse() -> None:
    person = Person(name="  A Resident ", date_of_birth="1980-01-31", vulnerabilities=["lives-alone"])
    assert person.name == "A Resident"
    assert person.date_of_birth == date(1980, 1, 31)
    assert [str(v) for v in person.vulnerabilities] == ["lives-alone"]
