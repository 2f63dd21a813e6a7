"""What every service runs on: its store, the Kafka broker, the outbox relay, reliable
subscribers, an HTTP app with /health and /ready, and background workers; started and stopped
together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics, security, topics, tracing
from shared.consumer import Handle, Received, ReliableConsumer
from shared.contracts import event_topics
from shared.db import create_tables, make_engine, ping, session_factory
from shared.logging import configure_logging, get_logger
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = get_logger(__name__)


STOP_TIMEOUT_SECONDS = 10.0


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A store that is locked or unreachable is the service's problem, not the caller's: 503 and
    a hint to retry (with the same idempotency key, nothing is stored twice)."""
    log.warning("store unavailable for a request", error_type=type(exc).__name__)
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "1"},
        content={
            "error": "store unavailable",
            "errors": [{"field": "(store)", "reason": "the service's store is busy or unreachable; retry shortly"}],
        },
    )


class TraceHTTP:
    """Continue the caller's W3C trace (or start one) for each HTTP request, and say which in the
    reply. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` costs more per request than the rest
    of the stack together."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), None)
        with tracing.continue_trace(incoming) as ctx:
            header = (b"traceparent", ctx.header().encode())

            async def send_with_trace(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), header]
                await send(message)

            await self.app(scope, receive, send_with_trace)


def bootstrap_list(servers: str) -> list[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` ("host:port,host:port") as the list Kafka clients take: given
    the whole string, aiokafka looks up one host named "a:1,b:2" and never reaches a cluster."""
    return [s.strip() for s in servers.split(",") if s.strip()]


async def _raw_body(msg: Any) -> Any:
    # Handlers decode and validate bodies themselves, so a malformed body is a dead letter
    # with a reason rather than a framework error.
    return msg.body


class ServiceRuntime:
    """Composition of one service's infrastructure; a service's app.py adds its handlers."""

    def __init__(self, name: str, settings: ServiceSettings, *, version: str = "1") -> None:
        self.name = name
        self.settings = settings
        self.source = f"/dcsp/{name}"
        tracing.sample(settings.trace_sample_ratio)
        self.engine = make_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        kafka = settings.kafka
        self.broker = KafkaBroker(
            bootstrap_list(kafka.bootstrap_servers),
            security=security.kafka_security(kafka),
            client_id=f"dcsp-{name}",
            enable_idempotence=True,  # forces acks=all
            linger_ms=kafka.linger_ms,
            logger=None,
            graceful_timeout=10.0,
        )
        self.relay = OutboxRelay(
            self.sessions,
            self._publish,
            service=name,
            topic_prefix=kafka.topic_prefix,
            batch_size=settings.reliability.outbox_batch_size,
            poll_seconds=settings.reliability.outbox_poll_seconds,
        )
        self.consumers: list[ReliableConsumer] = []
        self.tables: list[Any] = []
        self._workers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.api = FastAPI(title=f"dcsp {name}", version=version, lifespan=self._lifespan)
        self.api.add_api_route("/health", self._health, methods=["GET"], tags=["ops"])
        self.api.add_api_route("/ready", self._ready, methods=["GET"], tags=["ops"])
        self.api.add_api_route("/metrics", self._metrics, methods=["GET"], tags=["ops"], include_in_schema=False)
        self.api.add_api_route("/asyncapi", self._asyncapi, methods=["GET"], tags=["ops"], include_in_schema=False)
        self.api.add_middleware(TraceHTTP)
        # Security seams (issue #8): who is calling (routes declare what they need), and a cap on
        # request bodies. /health, /ready and /metrics need no credential.
        self.auth = security.Authenticator.from_settings(settings)
        self.api.state.authenticator = self.auth
        self.api.add_exception_handler(security.Denied, security.denied_handler)
        self.api.add_exception_handler(sa_exc.OperationalError, _store_unavailable)
        self.api.add_exception_handler(sa_exc.InterfaceError, _store_unavailable)
        self.api.add_middleware(security.AuthenticationGate, authenticator=self.auth)
        self.api.add_middleware(security.RequestSizeLimit, max_bytes=settings.max_request_bytes)
        self._subscribers: list[tuple[str, Any]] = []
        self.add_worker(self._update_gauges)

    # -- wiring ---------------------------------------------------------------------------

    def topic(self, base: str) -> str:
        return topics.resolve(base, self.settings.kafka.topic_prefix)

    def use_tables(self, *tables: Any) -> None:
        from shared.idempotency import ProcessedEvent
        from shared.outbox import OutboxRecord

        self.tables = [OutboxRecord.__table__, ProcessedEvent.__table__, *tables]

    def subscribe(
        self, base_topic: str, handle: Handle, *, after_commit: Callable[[], None] | None = None
    ) -> ReliableConsumer:
        """Consume a topic with dedupe, one transaction per message, retries and dead letters.

        ``after_commit`` runs once a message's transaction has committed (e.g. to wake a worker).
        """
        consumer = ReliableConsumer(
            service=self.name,
            name=f"{self.name}:{base_topic}",
            source=self.source,
            sessions=self.sessions,
            relay=self.relay,
            reliability=self.settings.reliability,
            handle=handle,
            after_commit=after_commit,
        )
        self.consumers.append(consumer)

        subscriber = self.broker.subscriber(
            self.topic(base_topic),
            # One group per service and topic: a rebalance on one topic does not pause the others.
            group_id=f"{self.settings.kafka.group_prefix}dcsp-{self.name}.{base_topic}",
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_raw_body,
            batch=True,
            max_records=self.settings.reliability.batch_max_records,
            batch_timeout_ms=self.settings.reliability.batch_timeout_ms,
        )

        @subscriber
        async def _on_batch(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            await consumer.process_batch([Received.from_record(r) for r in records])

        self._subscribers.append((base_topic, subscriber))

        return consumer

    def add_worker(self, worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A background loop started with the service and cancelled when it stops."""
        self._workers.append(worker)

    async def _publish(self, topic: str, body: bytes, key: bytes | None, headers: dict[str, str]) -> Any:
        return await self.broker.publish(body, topic, key=key, headers=headers, no_confirm=True)

    # -- lifecycle ------------------------------------------------------------------------

    async def ensure_topics(self) -> None:
        kafka = self.settings.kafka
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_list(kafka.bootstrap_servers),
            client_id=f"dcsp-{self.name}-admin",
            **security.kafka_client_options(kafka),
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [self.topic(t) for t in event_topics()]
            missing = [
                NewTopic(t, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor)
                for t in wanted
                if t not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await admin.close()

    async def start(self) -> None:
        await create_tables(self.engine, self.tables)
        await self.ensure_topics()
        await self.broker.start()
        self._tasks = [asyncio.create_task(self.relay.run(), name=f"{self.name}-outbox-relay")]
        self._tasks += [asyncio.create_task(w(), name=f"{self.name}-worker") for w in self._workers]
        self.started = True
        # What start-up allocated (modules, app, compiled statements) lives as long as the process:
        # out of the collector's reach, a full collection no longer pauses every consumer for it.
        gc.collect()
        gc.freeze()
        log.info("service started", http_port=self.settings.http_port)

    async def stop(self) -> None:
        """Stop the relay and workers first (so nothing publishes on a closed producer), then the
        subscribers, then the store. A task that ignores its cancellation is reported, not awaited
        for ever: everything it had not committed is redone from the outbox or redelivered."""
        self.started = False
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            if pending:
                log.warning("background tasks did not stop in time", tasks=[t.get_name() for t in pending])
        self._tasks = []
        await self.broker.stop()
        await self.engine.dispose()
        log.info("service stopped")

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- ops endpoints ----------------------------------------------------------------------

    async def _update_gauges(self) -> None:
        """Outbox backlog and consumer lag, refreshed every few seconds for /metrics."""
        while True:
            with contextlib.suppress(Exception):
                metrics.OUTBOX_BACKLOG.labels(self.name).set(await self.relay.backlog())
            for base_topic, subscriber in self._subscribers:
                kafka_consumer = getattr(subscriber, "consumer", None)
                if kafka_consumer is None:
                    continue
                with contextlib.suppress(Exception):
                    for tp in kafka_consumer.assignment():
                        high = kafka_consumer.highwater(tp)
                        if high is None:
                            continue
                        position = await kafka_consumer.position(tp)
                        metrics.CONSUMER_LAG.labels(self.name, base_topic, str(tp.partition)).set(
                            max(0, high - position)
                        )
            await asyncio.sleep(5)

    async def _asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of this service's topics, as it runs (its own topic names)."""
        spec = AsyncAPI(self.broker, title=f"dcsp {self.name}", version="1")
        document: dict[str, Any] = spec.to_specification().to_jsonable()
        return document

    async def _metrics(self) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def _health(self) -> dict[str, str]:
        return {"status": "ok", "service": self.name}

    async def _ready(self) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(self.engine), timeout=2)
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unreachable: {type(exc).__name__}"
        try:
            checks["broker"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        for task in self._tasks:
            if task.done():
                checks[task.get_name()] = "stopped"
        ready = self.started and all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM; logs as JSON lines."""
        configure_logging(self.name, self.settings.log_level)
        uvicorn.run(
            self.api,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
        )
