"""Dead letters as ops sees them: read from the dead-letter topic, found by the position of the
message that failed, and redriven to the topic it came from.

A redriven copy keeps the original CloudEvents headers, so its event id is the original's: the
consuming service processes it once however many times it is redriven (its dead letter was
claimed under a separate key, see ``shared.consumer``), and services that had processed it
already drop it as a duplicate.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shared import topics
from shared.contracts import DeadLetter
from shared.envelope import EnvelopeError, decode_event, header_dict
from shared.settings import KafkaSettings

# Added to a redriven copy, so a copy that fails again is recognisable in its own dead letter.
REDRIVE_HEADER = "dcsp_redrive_of"

Progress = Callable[[int, int], None]  # (records read so far, records to read)


class DeadLetterError(Exception):
    """Something ops must fix before the command can work (named option, topic or id)."""


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """One dead letter and where it sits on the dead-letter topic."""

    letter: DeadLetter
    event_id: str
    dead_letter_partition: int
    dead_letter_offset: int

    @property
    def id(self) -> str:
        """What ops names it by: the original message's topic/partition/offset."""
        return message_id(self.letter)


def message_id(letter: DeadLetter) -> str:
    return f"{letter.original_topic}/{letter.partition}/{letter.offset}"


def dead_letter_topic(kafka: KafkaSettings) -> str:
    return topics.resolve(topics.DEAD_LETTERS, kafka.topic_prefix)


def parse_id(text: str) -> tuple[str, int, int]:
    """``topic/partition/offset`` -> its parts, or DeadLetterError saying what is wrong."""
    topic, sep1, rest = text.rpartition("/")
    topic, sep2, partition = topic.rpartition("/")
    if not (sep1 and sep2 and topic):
        raise DeadLetterError(f"ID {text!r}: expected TOPIC/PARTITION/OFFSET, e.g. dcsp.incidents.triaged.v1/0/42")
    try:
        return topic, int(partition), int(rest)
    except ValueError as exc:
        raise DeadLetterError(f"ID {text!r}: partition and offset must be whole numbers") from exc


async def read_dead_letters(kafka: KafkaSettings, progress: Progress | None = None) -> list[StoredDeadLetter]:
    """Every dead letter on the topic now, oldest first; a letter the relay published twice once."""
    topic = dead_letter_topic(kafka)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="dcsp-ops",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise DeadLetterError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} (--bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS): {exc}"
        ) from exc
    found: dict[str, StoredDeadLetter] = {}
    try:
        numbers = await _partitions(kafka, topic)
        if not numbers:
            raise DeadLetterError(
                f"dead-letter topic {topic!r} does not exist on {kafka.bootstrap_servers} "
                "(check --topic-prefix / KAFKA_TOPIC_PREFIX)"
            )
        assigned = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        start = await consumer.beginning_offsets(assigned)
        end = await consumer.end_offsets(assigned)
        total = sum(end[tp] - start[tp] for tp in assigned)
        read = 0
        if progress:
            progress(0, total)
        remaining = {tp for tp in assigned if end[tp] > start[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    read += 1
                    stored = _decode(record)
                    if stored is not None:
                        found.setdefault(stored.event_id, stored)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if progress:
                progress(read, total)
    finally:
        await consumer.stop()
    return sorted(found.values(), key=lambda s: (s.letter.failed_at, s.id))


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="dcsp-ops-admin")
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described for p in d.get("partitions", []))


def _decode(record: object) -> StoredDeadLetter | None:
    headers = header_dict(getattr(record, "headers", None))
    try:
        _envelope, letter = decode_event(DeadLetter, headers, getattr(record, "value", b"") or b"")
    except (EnvelopeError, ValidationError):
        return None  # not a dead letter this version understands; nothing ops can redrive
    return StoredDeadLetter(
        letter=letter,
        event_id=headers.get("ce_id") or f"{getattr(record, 'partition', 0)}/{getattr(record, 'offset', 0)}",
        dead_letter_partition=int(getattr(record, "partition", 0)),
        dead_letter_offset=int(getattr(record, "offset", 0)),
    )


def select_letters(
    letters: Sequence[StoredDeadLetter],
    *,
    since: datetime | None = None,
    service: str | None = None,
) -> list[StoredDeadLetter]:
    """The dead letters that failed at or after ``since`` in ``service``."""
    return [
        s
        for s in letters
        if (since is None or s.letter.failed_at >= since) and (service is None or s.letter.service == service)
    ]


def find(
    letters: Sequence[StoredDeadLetter], ident: str, kafka: KafkaSettings, service: str | None = None
) -> list[StoredDeadLetter]:
    """The dead letters of one original message (several if more than one service failed on it).
    The topic may be given with or without the deployment's prefix."""
    topic, partition, offset = parse_id(ident)
    wire = {topic, topics.resolve(topic, kafka.topic_prefix)}
    return [
        s
        for s in letters
        if s.letter.original_topic in wire
        and s.letter.partition == partition
        and s.letter.offset == offset
        and (service is None or s.letter.service == service)
    ]


def original_body(letter: DeadLetter) -> bytes:
    try:
        return base64.b64decode(letter.body_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DeadLetterError(f"dead letter {message_id(letter)}: body_base64 is not base64: {exc}") from exc


def unique_messages(letters: Sequence[StoredDeadLetter]) -> list[StoredDeadLetter]:
    """One dead letter per original message: a redrive reaches every service that consumes its topic."""
    seen: dict[str, StoredDeadLetter] = {}
    for s in letters:
        seen.setdefault(s.id, s)
    return list(seen.values())


async def redrive(
    kafka: KafkaSettings, letters: Sequence[StoredDeadLetter], progress: Progress | None = None
) -> list[str]:
    """Republish each original message, byte for byte with its original headers and key, to its
    original topic; returns the ids redriven."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, client_id="dcsp-ops-redrive"
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise DeadLetterError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} (--bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS): {exc}"
        ) from exc
    done: list[str] = []
    unique = unique_messages(letters)
    try:
        for n, stored in enumerate(unique, start=1):
            letter = stored.letter
            headers = {**letter.headers, REDRIVE_HEADER: stored.id}
            await producer.send_and_wait(
                letter.original_topic,
                original_body(letter),
                key=letter.key.encode() if letter.key is not None else None,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
            done.append(stored.id)
            if progress:
                progress(n, len(unique))
    finally:
        await producer.stop()
    return done
