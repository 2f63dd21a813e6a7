"""Input hardening of the event decoders: arbitrary bytes and headers never crash a decoder; each
bad message is a clear permanent error (EnvelopeError, ValidationError, PermanentError) and, through
intake's real ReliableConsumer on a real SQLite store, a dead letter naming the reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.intake.app import build
from services.intake.settings import IntakeSettings
from shared import topics
from shared.consumer import PERMANENT_ERRORS, Received
from shared.contracts import (
    DeadLetter,
    ErasureRequested,
    IncidentAccepted,
    IncidentTriaged,
    PanelReferralRequested,
    ReportReceived,
    TenancyPossessionUpdated,
    event_types,
)
from shared.db import create_tables
from shared.envelope import decode_event
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime

INGRESS_TYPES = [ReportReceived.CE_TYPE, PanelReferralRequested.CE_TYPE, TenancyPossessionUpdated.CE_TYPE]
VALID_REPORT = {
    "partner": "police",
    "idempotency_key": "H-1",
    "reported_at": "2026-03-01T10:00:00+00:00",
    "location": {"postcode": "AB1 2CD"},
    "description": "Noise",
}

header_values = st.one_of(st.text(max_size=40), st.sampled_from(["1.0", "", "2026-03-01T10:00:00Z", "not a time"]))
envelopes = st.fixed_dictionaries(
    {
        "ce_id": st.text(min_size=0, max_size=20),
        "ce_source": st.text(min_size=0, max_size=20),
        "ce_type": st.one_of(st.sampled_from([*INGRESS_TYPES, IncidentAccepted.CE_TYPE]), st.text(max_size=30)),
        "ce_specversion": st.one_of(st.just("1.0"), header_values),
    },
    optional={"ce_time": header_values, "content-type": st.sampled_from(["application/json", "text/plain", ""])},
)
headers = st.one_of(envelopes, st.dictionaries(st.text(max_size=15), st.text(max_size=30), max_size=6))


def _mutated(doc: dict[str, Any]) -> st.SearchStrategy[bytes]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
        max_leaves=8,
    )
    return st.builds(
        lambda key, value: json.dumps({**doc, key: value}).encode(),
        st.sampled_from([*doc, "victim", "tenancy", "extra"]),
        json_values,
    )


bodies = st.one_of(st.binary(max_size=300), _mutated(VALID_REPORT), st.just(b""), st.just(b"\xff\xfe{"))


@settings(max_examples=300, deadline=None)
@given(event_type=st.sampled_from(event_types()), headers=headers, body=bodies)
def test_decode_event_never_crashes_and_names_the_problem(
    event_type: Any, headers: dict[str, str], body: bytes
) -> None:
    try:
        decode_event(event_type, headers, body)
    except PERMANENT_ERRORS as exc:
        assert str(exc).strip(), "a permanent error must say what is wrong"


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, ServiceRuntime]]:
    loop = asyncio.new_event_loop()
    path: Path = tmp_path_factory.mktemp("decoders") / "intake.db"
    runtime = build(IntakeSettings(database_url=f"sqlite+aiosqlite:///{path}", http_port=0))
    loop.run_until_complete(create_tables(runtime.engine, runtime.tables))
    yield loop, runtime
    loop.run_until_complete(runtime.engine.dispose())
    loop.close()


_offsets = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=headers, body=bodies)
def test_intake_ingress_turns_any_bad_message_into_a_dead_letter(
    intake: tuple[asyncio.AbstractEventLoop, ServiceRuntime], headers: dict[str, str], body: bytes
) -> None:
    loop, runtime = intake
    (consumer,) = [c for c in runtime.consumers if c.name == f"intake:{topics.PARTNER_REPORTS}"]
    offset = next(_offsets)
    if headers.get("ce_id") and headers.get("ce_source"):
        # Each example is a new message: a repeated id would (rightly) be dropped as a duplicate.
        headers = {**headers, "ce_id": f"{headers['ce_id']}#{offset}"}

    async def run() -> list[OutboxRecord]:
        await consumer(Received(topics.PARTNER_REPORTS, 0, offset, None, headers, body))
        async with runtime.sessions() as session:
            rows = await session.execute(select(OutboxRecord).order_by(OutboxRecord.id.desc()).limit(1))
            return list(rows.scalars())

    (last,) = loop.run_until_complete(run())
    if last.headers["ce_type"] == DeadLetter.CE_TYPE:
        letter = DeadLetter.model_validate(orjson.loads(last.body))
        if letter.offset == offset:
            assert letter.error_type in {"EnvelopeError", "ValidationError", "UnknownEventType", "IdempotencyConflict"}
            assert letter.error and letter.body_base64 is not None
            return
    # Not dead-lettered: then it was a valid message, accepted (or a duplicate of one).
    assert headers.get("ce_type") in INGRESS_TYPES, (headers, body)


def test_erasure_contract_refuses_unknown_fields() -> None:
    with pytest.raises(PERMANENT_ERRORS):
        decode_event(
            ErasureRequested,
            {"ce_id": "1", "ce_source": "/x", "ce_type": ErasureRequested.CE_TYPE, "ce_specversion": "1.0"},
            b'{"request_id": "x", "name": "someone"}',
        )
    assert IncidentTriaged.CE_TYPE != ErasureRequested.CE_TYPE
