"""Notification rules: alert identity, the police payload, signatures and retry timing. Pure."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from datetime import timedelta
from typing import Any

from shared.contracts import PoliceAlertRequested

ALERT_NAMESPACE = uuid.UUID("0d7c1e55-2a8b-4f6e-b7e3-91c4d2a6f8b0")
SIGNATURE_HEADER = "X-DCSP-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def alert_id_for(incident_id: uuid.UUID) -> uuid.UUID:
    """One alert per incident, with the same id however often it is requested."""
    return uuid.uuid5(ALERT_NAMESPACE, str(incident_id))


def police_payload(alert_id: uuid.UUID, request: PoliceAlertRequested) -> dict[str, Any]:
    """What the police gateway receives: the incident, why it is criminal, where and when."""
    return {
        "alert_id": str(alert_id),
        "incident_id": str(request.incident_id),
        "crime_category": request.crime_category,
        "risk_tier": request.risk_tier,
        "reasons": request.reasons,
        "occurred_at": request.occurred_at.isoformat() if request.occurred_at else None,
        "location": request.location.model_dump(mode="json", exclude_none=True),
        "description": request.description,
    }


def sign(secret: bytes, body: bytes) -> str:
    """HMAC-SHA256 of the exact body bytes, as ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_delay(
    attempts: int, initial_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> timedelta:
    """Exponential backoff with equal jitter (between half and all of the step) after ``attempts``
    failed attempts (1, 2, ...), capped at ``max_seconds``."""
    # Cap the exponent: after enough failures 2**n would overflow a float, and an outage of the
    # police gateway must never stop the retries.
    exponent = min(max(0, attempts - 1), 64)
    ceiling = min(max_seconds, initial_seconds * 2.0**exponent)
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))
