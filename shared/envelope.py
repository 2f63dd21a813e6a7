"""CloudEvents 1.0 in Kafka binary mode: attributes in ``ce_*`` headers, the payload as JSON."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel

from shared.contracts import Event

E = TypeVar("E", bound=Event)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


class EnvelopeError(ValueError):
    """A message whose CloudEvents headers are missing or wrong."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    content_type: str = CONTENT_TYPE

    def headers(self) -> dict[str, str]:
        headers = {
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_specversion": SPEC_VERSION,
            "ce_time": self.time.isoformat(),
            "content-type": self.content_type,
        }
        if self.subject:
            headers["ce_subject"] = self.subject
        return headers


def new_envelope(event: Event, source: str, *, event_id: str | None = None, now: datetime | None = None) -> Envelope:
    """An envelope for an event this service is about to emit."""
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event.CE_TYPE,
        time=now or datetime.now(UTC),
        subject=event.subject() or None,
    )


def encode_body(payload: BaseModel) -> bytes:
    return payload.model_dump_json().encode()


def header_dict(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as text; a header that is not UTF-8 is kept with its bad bytes replaced."""
    return {k: (v or b"").decode("utf-8", errors="replace") for k, v in (raw or ())}


def read_envelope(headers: dict[str, str]) -> Envelope:
    """The CloudEvents attributes of a received message, or EnvelopeError naming what is wrong."""
    missing = [h for h in ("ce_id", "ce_source", "ce_type", "ce_specversion") if not headers.get(h)]
    if missing:
        raise EnvelopeError(f"missing CloudEvents header(s): {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise EnvelopeError(f"ce_specversion: expected {SPEC_VERSION!r}, got {headers['ce_specversion']!r}")
    time_text = headers.get("ce_time")
    try:
        time = datetime.fromisoformat(time_text) if time_text else datetime.now(UTC)
    except ValueError as exc:
        raise EnvelopeError(f"ce_time: not an RFC 3339 time: {time_text!r}") from exc
    if time.tzinfo is None:
        raise EnvelopeError(f"ce_time: RFC 3339 needs a UTC offset or Z: {time_text!r}")
    content_type = headers.get("content-type") or CONTENT_TYPE
    if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        raise EnvelopeError(f"content-type: expected {CONTENT_TYPE}, got {content_type!r}")
    return Envelope(
        id=headers["ce_id"],
        source=headers["ce_source"],
        type=headers["ce_type"],
        time=time,
        subject=headers.get("ce_subject"),
        content_type=content_type,
    )


def decode_event(event_type: type[E], headers: dict[str, str], body: bytes) -> tuple[Envelope, E]:
    """Check the envelope names this event type, then validate the JSON body against its model."""
    envelope = read_envelope(headers)
    if envelope.type != event_type.CE_TYPE:
        raise EnvelopeError(f"ce_type: expected {event_type.CE_TYPE!r}, got {envelope.type!r}")
    return envelope, event_type.model_validate_json(body)
