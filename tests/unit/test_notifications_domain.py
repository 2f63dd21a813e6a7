"""Unit tests for the notification rules (services.notifications.domain): pure, no broker, no HTTP."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.notifications.domain import ALERT_NAMESPACE, alert_id_for, police_payload, retry_delay, sign
from shared.contracts import CrimeCategory, Location, PoliceAlertRequested, RiskTier

NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
INCIDENT_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")


def make_request(**changes: Any) -> PoliceAlertRequested:
    fields: dict[str, Any] = {
        "incident_id": INCIDENT_ID,
        "requested_at": NOW,
        "crime_category": CrimeCategory.VIOLENT_CRIME,
        "risk_tier": RiskTier.HIGH,
        "reasons": ["violence or criminality: 'punched' suggests violent-crime", "risk high: violence"],
        "occurred_at": datetime(2026, 11, 1, 22, 15, tzinfo=UTC),
        "location": Location(uprn="100023336956", postcode="AB1 2CD"),
        "description": "He punched me outside the flats.",
    }
    fields.update(changes)
    return PoliceAlertRequested(**fields)


# ---------------------------------------------------------------------------
# alert_id_for
# ---------------------------------------------------------------------------


def test_alert_id_is_uuid5_of_the_incident() -> None:
    alert_id = alert_id_for(INCIDENT_ID)
    assert alert_id == uuid.uuid5(ALERT_NAMESPACE, str(INCIDENT_ID))
    assert alert_id.version == 5


def test_alert_id_is_the_same_however_often_requested() -> None:
    assert alert_id_for(INCIDENT_ID) == alert_id_for(uuid.UUID(str(INCIDENT_ID)))


def test_alert_id_differs_per_incident_and_from_the_incident_id() -> None:
    other = uuid.UUID("11111111-2222-4333-8444-555555555556")
    assert alert_id_for(INCIDENT_ID) != alert_id_for(other)
    assert alert_id_for(INCIDENT_ID) != INCIDENT_ID


# ---------------------------------------------------------------------------
# sign
# ---------------------------------------------------------------------------


def test_sign_is_hmac_sha256_of_the_body() -> None:
    secret, body = b"s3cret", b'{"alert_id":"x"}'
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == f"sha256={expected}"


def test_sign_known_vector() -> None:
    # RFC 4231 test case 2.
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"Jefe", b"what do ya want for nothing?") == f"sha256={digest}"


def test_sign_changes_with_body_and_secret() -> None:
    base = sign(b"secret", b"body")
    assert sign(b"secret", b"body ") != base
    assert sign(b"secret2", b"body") != base
    assert sign(b"secret", b"body") == base


def test_signature_verifies_against_the_encoded_payload() -> None:
    body = orjson.dumps(police_payload(alert_id_for(INCIDENT_ID), make_request()))
    signature = sign(b"change-me", body)
    assert hmac.compare_digest(signature.removeprefix("sha256="), hmac.new(b"change-me", body, "sha256").hexdigest())


# ---------------------------------------------------------------------------
# retry_delay
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (8, 60.0)])
def test_retry_delay_within_half_ceiling_and_ceiling(attempts: int, ceiling: float) -> None:
    rng = random.Random(7)
    delays = [retry_delay(attempts, 0.5, 60.0, rng).total_seconds() for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert min(delays) < ceiling * 0.55  # jitter fills the range, not just one end
    assert max(delays) > ceiling * 0.95


def test_retry_delay_grows_exponentially() -> None:
    # Same seed, so the same jitter fraction each time: the delay doubles per attempt.
    delays = [retry_delay(n, 1.0, 1000.0, random.Random(3)).total_seconds() for n in range(1, 7)]
    ratios = [later / earlier for earlier, later in itertools.pairwise(delays)]
    assert ratios == pytest.approx([2.0] * 5)


def test_retry_delay_is_capped_at_max() -> None:
    rng = random.Random(11)
    for attempts in (8, 9, 20, 64, 1000):
        delay = retry_delay(attempts, 0.5, 60.0, rng)
        assert timedelta(seconds=30) <= delay <= timedelta(seconds=60)


def test_retry_delay_is_reproducible_with_a_seed() -> None:
    assert retry_delay(3, 0.5, 60.0, random.Random(42)) == retry_delay(3, 0.5, 60.0, random.Random(42))
    expected = random.Random(42).uniform(1.0, 2.0)
    assert retry_delay(3, 0.5, 60.0, random.Random(42)).total_seconds() == pytest.approx(expected, abs=1e-6)


def test_retry_delay_before_any_failure_uses_the_initial_delay() -> None:
    assert timedelta(seconds=0.25) <= retry_delay(0, 0.5, 60.0, random.Random(1)) <= timedelta(seconds=0.5)


def test_retry_delay_max_below_initial_caps_the_first_retry() -> None:
    assert timedelta(seconds=1) <= retry_delay(1, 5.0, 2.0, random.Random(1)) <= timedelta(seconds=2)


def test_retry_delay_after_very_many_attempts_is_still_capped() -> None:
    # About 17 hours of failing every 60 s reaches this many attempts.
    delay = retry_delay(1025, 0.5, 60.0, random.Random(5))
    assert timedelta(seconds=30) <= delay <= timedelta(seconds=60)


# ---------------------------------------------------------------------------
# police_payload
# ---------------------------------------------------------------------------


def test_police_payload_contents() -> None:
    request = make_request()
    alert_id = alert_id_for(INCIDENT_ID)
    assert police_payload(alert_id, request) == {
        "alert_id": str(alert_id),
        "incident_id": str(INCIDENT_ID),
        "crime_category": "violent-crime",
        "risk_tier": "high",
        "reasons": ["violence or criminality: 'punched' suggests violent-crime", "risk high: violence"],
        "occurred_at": "2026-11-01T22:15:00+00:00",
        "location": {"uprn": "100023336956", "postcode": "AB1 2CD"},
        "description": "He punched me outside the flats.",
    }


def test_police_payload_location_has_no_none_fields() -> None:
    payload = police_payload(alert_id_for(INCIDENT_ID), make_request(location=Location(latitude=51.5, longitude=0.0)))
    assert payload["location"] == {"latitude": 51.5, "longitude": 0.0}


def test_police_payload_is_json_with_plain_values() -> None:
    payload = police_payload(alert_id_for(INCIDENT_ID), make_request())
    decoded = orjson.loads(orjson.dumps(payload))
    assert decoded["crime_category"] == "violent-crime"
    assert decoded["risk_tier"] == "high"
    assert decoded["incident_id"] == str(INCIDENT_ID)


def test_police_payload_without_category_or_time() -> None:
    payload = police_payload(alert_id_for(INCIDENT_ID), make_request(crime_category=None, occurred_at=None))
    assert payload["crime_category"] is None
    assert payload["occurred_at"] is None


def test_police_payload_carries_no_victim_identity() -> None:
    # Data minimisation: the request has no victim fields, so neither does the payload.
    payload = police_payload(alert_id_for(INCIDENT_ID), make_request())
    assert set(payload) == {
        "alert_id",
        "incident_id",
        "crime_category",
        "risk_tier",
        "reasons",
        "occurred_at",
        "location",
        "description",
    }
