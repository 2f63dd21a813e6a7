"""Poison on the ingress topic, every kind the fault harness uses, on the shared pipeline: each is
dead-lettered once with a reason naming what is wrong, and reports behind it still flow. The huge
payload is the case that once stopped intake's outbox for good (its dead letter, carrying the body
twice, was larger than the broker takes); a dead letter now keeps at most the first 128 KiB of the
body and says where the whole message is."""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
import uuid
from typing import Any

import orjson
import pytest

from demo.partner import PartnerPublisher, read_topic
from demo.pipeline import Pipeline
from faults.workload import POISON_KINDS, Poison, incident_of, make_report, poison
from shared import topics
from shared.consumer import DEAD_LETTER_BODY_LIMIT

from ..conftest import wait_for

pytestmark = pytest.mark.e2e


def triaged(pipeline: Pipeline, incident_id: str) -> bool:
    with sqlite3.connect(pipeline.database("triage")) as conn:
        row = conn.execute("select 1 from triaged_incidents where incident_id = ?", (uuid.UUID(incident_id).hex,))
        return row.fetchone() is not None


def test_every_kind_of_poison_is_dead_lettered_and_the_stream_goes_on(pipeline: Pipeline) -> None:
    run = uuid.uuid4().hex[:6]
    messages = [poison(kind, run, n) for n, kind in enumerate(POISON_KINDS)]
    after = make_report(run, 999, random.Random(1))
    ingress = topics.resolve(topics.PARTNER_REPORTS, pipeline.namespace)
    origin: dict[tuple[int, int], Poison] = {}

    async def publish() -> None:
        async with PartnerPublisher(pipeline.bootstrap_servers, pipeline.namespace) as partner:
            for p in messages:
                md = await partner._producer.send_and_wait(ingress, p.value, headers=p.headers)
                origin[(md.partition, md.offset)] = p
            await partner.publish_report(after)

    asyncio.run(publish())
    # The report behind the poison is triaged: no dead letter blocked intake's outbox.
    wait_for(lambda: triaged(pipeline, incident_of(after)), 90, "the report sent after the poison to be triaged")

    dead_letters = topics.resolve(topics.DEAD_LETTERS, pipeline.namespace)

    def letters() -> dict[str, list[dict[str, Any]]] | None:
        records = asyncio.run(read_topic(pipeline.bootstrap_servers, dead_letters, len(messages), within=5))
        found: dict[str, list[dict[str, Any]]] = {p.kind: [] for p in messages}
        for r in records:
            body = orjson.loads(r.value)
            p = origin.get((body["partition"], body["offset"]))
            if body["original_topic"] == ingress and p is not None:
                found[p.kind].append(body)
        return found if all(found.values()) else None

    found = wait_for(letters, 60, "a dead letter for each kind of poison")
    for p in messages:
        assert len(found[p.kind]) == 1, p.kind
        letter = found[p.kind][0]
        assert p.reason in letter["error"], (p.kind, letter["error"])
        assert letter["service"] == "intake"
    huge = found["huge-payload"][0]
    original = next(m for m in messages if m.kind == "huge-payload")
    assert len(base64.b64decode(huge["body_base64"])) == DEAD_LETTER_BODY_LIMIT < len(original.value)
    assert f"keeps the first {DEAD_LETTER_BODY_LIMIT} of {len(original.value)} bytes" in huge["error"]
    small = found["wrong-schema"][0]
    assert base64.b64decode(small["body_base64"]) == next(m for m in messages if m.kind == "wrong-schema").value
