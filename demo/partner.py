"""What a partner system does to publish straight to the ingress topic: CloudEvents headers in
Kafka binary mode and a JSON body, with any plain Kafka client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import topics
from shared.contracts import ReportReceived
from shared.envelope import encode_body, new_envelope

PARTNER_SOURCE = "/partners/demo"


class PartnerPublisher:
    def __init__(self, bootstrap_servers: str, namespace: str = "") -> None:
        self.topic = topics.resolve(topics.PARTNER_REPORTS, namespace)
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True)

    async def __aenter__(self) -> PartnerPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._producer.stop()

    async def publish_report(self, body: dict[str, Any]) -> None:
        event = ReportReceived.model_validate(body)
        headers = new_envelope(event, PARTNER_SOURCE).headers()
        await self.publish_raw(encode_body(event), headers, key=event.subject().encode())

    async def publish_reports(self, bodies: Iterable[dict[str, Any]]) -> None:
        for body in bodies:
            await self.publish_report(body)

    async def publish_raw(self, value: bytes, headers: dict[str, str], key: bytes | None = None) -> None:
        await self._producer.send_and_wait(
            self.topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )


async def read_topic(bootstrap_servers: str, topic: str, count: int, within: float = 30.0) -> list[Any]:
    """Read ``count`` records from the start of ``topic`` (fewer if ``within`` seconds pass first)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(records) < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records
