"""The one way a service consumes a topic: idempotent, transactional, with bounded retries and a
dead-letter topic.

For each message: in one transaction of the service's store, claim the event id, run the
handler, and stage the events it emits in the outbox. The offset is committed only after that
transaction commits (the subscriber's ack policy is NACK_ON_ERROR, never ACK_FIRST). A message
that cannot be processed (bad envelope, bad payload, or a handler error that persists for
``max_attempts``) is written to the dead-letter topic, through the outbox, with its body, origin
and error; then the consumer moves on. A store that is down is not the message's fault: those
errors are retried without limit and never dead-lettered.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from shared import metrics, tracing
from shared.contracts import DeadLetter, Event
from shared.envelope import EnvelopeError, header_dict
from shared.idempotency import claim, claim_many
from shared.logging import get_logger
from shared.outbox import OutboxRelay, add_events
from shared.settings import ReliabilitySettings

log = get_logger(__name__)


class PermanentError(Exception):
    """The message itself is wrong: retrying cannot help, so it goes straight to dead letters."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (PermanentError, EnvelopeError, ValidationError, ValueError)
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Received:
    """A consumed Kafka record, as the handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        """The id deduplication uses: CloudEvents source + id, else the record's position."""
        ce_id, ce_source = self.headers.get("ce_id"), self.headers.get("ce_source")
        if ce_id and ce_source:
            return f"{ce_source}|{ce_id}"
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def from_record(cls, record: Any) -> Received:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            headers=header_dict(record.headers),
            body=record.value or b"",
        )


Handle = Callable[[AsyncSession, Received], Awaitable[Sequence[Event]]]


DEAD_LETTER_CLAIM = "dead-letter|"

# A dead letter carries the body twice (as text and as base64) beside the original headers, and
# must fit in one Kafka record (1 MiB by default): an outbox row the broker refuses would stop the
# relay, and every event behind it, for good. Bodies above this are cut to it; the whole message
# stays at its original topic/partition/offset.
DEAD_LETTER_BODY_LIMIT = 128 * 1024


def _is_infrastructure(exc: BaseException | None) -> bool:
    return isinstance(exc, INFRASTRUCTURE_ERRORS)


class ReliableConsumer:
    """Wraps a handler with dedupe, one transaction per message, retries and dead-lettering."""

    def __init__(
        self,
        *,
        service: str,
        name: str,
        source: str,
        sessions: async_sessionmaker[AsyncSession],
        relay: OutboxRelay,
        reliability: ReliabilitySettings,
        handle: Handle,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._after_commit = after_commit
        self.service = service
        self.name = name
        self._source = source
        self._sessions = sessions
        self._relay = relay
        self._settings = reliability
        self._handle = handle
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0

    def _stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if _is_infrastructure(exc):
            return False
        return state.attempt_number >= self._settings.max_attempts

    @staticmethod
    def _scope(received: Received) -> contextlib.AbstractContextManager[tracing.TraceContext]:
        """Log fields and trace of one message, for everything done on its behalf."""
        headers = received.headers
        return tracing.continue_trace(
            headers.get(tracing.HEADER),
            event_id=headers.get("ce_id"),
            incident_id=headers.get("ce_subject"),
            topic=received.topic,
            offset=received.offset,
        )

    def _count(self, received: Received, outcome: str, n: int = 1) -> None:
        metrics.CONSUMED.labels(self.service, _base_topic(received.topic), outcome).inc(n)

    async def __call__(self, received: Received) -> None:
        with self._scope(received) as trace:
            await self._process(received)
            if trace.sampled:
                log.info("message handled")

    async def process_batch(self, batch: Sequence[Received]) -> None:
        """Handle a batch in one transaction; if any message fails, fall back to one transaction
        per message, so a bad message is dead-lettered alone and the others still commit."""
        if len(batch) == 1:
            await self(batch[0])
            return
        duplicates = 0
        started = time.perf_counter()
        try:
            async with self._sessions.begin() as session:
                unclaimed = await claim_many(session, self.name, [received.event_id for received in batch])
                for received in batch:
                    if received.event_id not in unclaimed:
                        duplicates += 1
                        continue
                    unclaimed.discard(received.event_id)  # a second copy in the same batch is a duplicate
                    with self._scope(received) as trace:
                        events = await self._handle(session, received)
                        add_events(session, self._source, events)
                        if trace.sampled:
                            log.info("message handled", events=len(events))
        except Exception as exc:
            log.info("batch failed; retrying message by message", size=len(batch), error_type=type(exc).__name__)
            for received in batch:
                await self(received)
            return
        self.duplicates += duplicates
        self.processed += len(batch) - duplicates
        topic = _base_topic(batch[0].topic)
        per_message = (time.perf_counter() - started) / len(batch)
        for _ in batch:
            metrics.PROCESSING_SECONDS.labels(self.service, topic).observe(per_message)
        self._count(batch[0], "processed", len(batch) - duplicates)
        if duplicates:
            self._count(batch[0], "duplicate", duplicates)
        # One line per batch: a line per message would cost more than most handlers at full rate.
        log.info(
            "batch processed",
            topic=batch[0].topic,
            size=len(batch),
            duplicates=duplicates,
            first_offset=batch[0].offset,
            ms=round(per_message * len(batch) * 1000, 1),
        )
        if self._after_commit is not None and duplicates < len(batch):
            self._after_commit()
        self._relay.wake()

    async def _process(self, received: Received) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: not isinstance(exc, PERMANENT_ERRORS) or _is_infrastructure(exc)),
            stop=self._stop,
            wait=wait_exponential_jitter(
                multiplier=self._settings.retry_initial_seconds,
                jitter=self._settings.retry_initial_seconds,
                max=self._settings.retry_max_seconds,
            ),
            reraise=True,
        )
        attempts = 0
        started = time.perf_counter()
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    outcome = await self._apply(received)
        except Exception as exc:
            if _is_infrastructure(exc):
                raise
            await self._dead_letter(received, exc, attempts)
            return
        metrics.PROCESSING_SECONDS.labels(self.service, _base_topic(received.topic)).observe(
            time.perf_counter() - started
        )
        self._count(received, outcome)
        if outcome == "duplicate":
            self.duplicates += 1
            log.info("duplicate event ignored")
        else:
            self.processed += 1
            if self._after_commit is not None:
                self._after_commit()
        self._relay.wake()

    async def _apply(self, received: Received) -> str:
        async with self._sessions.begin() as session:
            if not await claim(session, self.name, received.event_id):
                return "duplicate"
            events = await self._handle(session, received)
            add_events(session, self._source, events)
        return "processed"

    async def _dead_letter(self, received: Received, exc: Exception, attempts: int) -> None:
        body, error = received.body, describe_error(exc)
        if len(body) > DEAD_LETTER_BODY_LIMIT:
            error += (
                f" [dead letter keeps the first {DEAD_LETTER_BODY_LIMIT} of {len(body)} bytes of the body;"
                f" the whole message is at {received.topic}/{received.partition}/{received.offset}]"
            )
            body = body[:DEAD_LETTER_BODY_LIMIT]
        letter = DeadLetter(
            service=self.service,
            original_topic=received.topic,
            partition=received.partition,
            offset=received.offset,
            key=received.key.decode("utf-8", errors="replace") if received.key else None,
            headers=received.headers,
            body=body.decode("utf-8", errors="replace"),
            body_base64=base64.b64encode(body).decode(),
            error_type=type(exc).__name__,
            error=error,
            attempts=attempts,
            failed_at=datetime.now(UTC),
        )
        async with self._sessions.begin() as session:
            # A claim of its own: the event id stays free, so a redriven copy (same ce_id, after the
            # cause is fixed) is processed exactly once, while a redelivery is not dead-lettered twice.
            if await claim(session, self.name, DEAD_LETTER_CLAIM + received.event_id):
                add_events(session, self._source, [letter])
        self.dead_lettered += 1
        self._count(received, "dead_lettered")
        metrics.DEAD_LETTERS.labels(self.service, _base_topic(received.topic)).inc()
        log.warning("message dead-lettered", error_type=letter.error_type, error=letter.error)
        self._relay.wake()


def _base_topic(topic: str) -> str:
    """The topic without a deployment's prefix, so metric labels are the same everywhere."""
    cut = topic.find("dcsp.")
    return topic[cut:] if cut > 0 else topic


def describe_error(exc: BaseException) -> str:
    """A reason a partner can act on: for validation errors, each bad field and why."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "(body)"
            parts.append(f"{field}: {err['msg']}")
        return "; ".join(parts)
    return str(exc) or type(exc).__name__
