"""One fault scenario: start the pipeline on a broker the run owns, stream reports in through HTTP
and the ingress topic with poison mixed in, inject the planned faults while it flows, wait for the
pipeline to settle, then check the invariants on everything intake accepted."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from demo.pipeline import SERVICES
from faults import invariants, workload
from faults.brokers import Cluster, SingleBroker, partition_leader
from faults.pipeline import FaultPipeline
from shared import topics
from shared.runtime import bootstrap_list

MAX_RATE = 120.0  # reports/s: about what the pipeline sustains on a small shared machine
SECONDS_PER_KILL = 12.0


@dataclass
class Plan:
    """What to send and what to break. Times are fractions of the nominal stream (reports / rate)."""

    name: str
    reports: int
    http_share: float = 0.5
    rate: float | None = None  # reports/s; None: slow enough that every kill lands mid-stream
    kills: int = 0
    broker_restart: bool = False
    broker_down_seconds: float = 5.0
    leader_kill: bool = False
    leader_down_seconds: float = 20.0
    gateway_down_seconds: float = 0.0
    gateway_slow_seconds: float = 0.0
    store_locks: int = 0
    store_lock_seconds: float = 8.0
    poison: int = 0
    settle_seconds: float = 600.0
    seed: int = 7
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    at: float  # seconds since the stream started
    target: str
    detail: str = ""


@dataclass
class Outcome:
    plan: Plan
    faults: list[Fault]
    checks: list[invariants.Check]
    stats: dict[str, Any]

    @property
    def violations(self) -> int:
        return sum(len(c.violations) for c in self.checks)


@dataclass
class Sent:
    """What intake accepted, as the senders saw it."""

    http_accepted: dict[str, str] = field(default_factory=dict)  # incident id -> idempotency key
    http_refused: list[str] = field(default_factory=list)
    http_gave_up: list[str] = field(default_factory=list)
    http_retries: int = 0
    ingress: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, offset, incident id)
    ingress_retries: int = 0
    poison: list[tuple[int, int, workload.Poison]] = field(default_factory=list)


class Scenario:
    def __init__(self, plan: Plan, broker: SingleBroker | Cluster, workdir: Path, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.broker = broker
        self.rng = random.Random(plan.seed)
        self.log = log
        self.namespace = f"faults{uuid.uuid4().hex[:8]}."
        env = {"PYTHONWARNINGS": "ignore", **plan.extra_env}
        if isinstance(broker, Cluster):
            env["KAFKA_REPLICATION_FACTOR"] = "3"
        self.pipe = FaultPipeline(
            workdir / plan.name, broker.bootstrap_servers, namespace=self.namespace, extra_env=env
        )
        self.ingress_topic = topics.resolve(topics.PARTNER_REPORTS, self.namespace)
        self.faults: list[Fault] = []
        self.sent = Sent()
        self.t0 = 0.0
        self.work = workload.build(plan.reports, plan.http_share, self.rng)

    # -- the stream -----------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _record(self, kind: str, target: str, detail: str = "") -> None:
        self.faults.append(Fault(kind, round(self._now(), 1), target, detail))
        self.log(f"[{self._now():6.1f}s] {kind}: {target} {detail}")

    async def _http_worker(self, queue: asyncio.Queue[dict[str, Any] | None], client: httpx.AsyncClient) -> None:
        url = self.pipe.url("intake") + "/v1/reports"
        while (body := await queue.get()) is not None:
            deadline = time.monotonic() + self.plan.settle_seconds
            pause = 0.2
            while True:
                try:
                    r = await client.post(url, json=body)
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code in (200, 201):
                    self.sent.http_accepted[r.json()["incident_id"]] = body["idempotency_key"]
                    break
                if r is not None and r.status_code in (409, 422):
                    self.sent.http_refused.append(f"{body['idempotency_key']}: HTTP {r.status_code} {r.text[:200]}")
                    break
                if time.monotonic() > deadline:
                    self.sent.http_gave_up.append(body["idempotency_key"])
                    break
                # A partner retries with the same idempotency key until intake answers.
                self.sent.http_retries += 1
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    def _producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap_list(self.broker.bootstrap_servers),
            enable_idempotence=True,
            request_timeout_ms=15000,
            max_request_size=2_000_000,
            linger_ms=5,
        )

    async def _ingress_worker(self, queue: asyncio.Queue[tuple[str, Any] | None]) -> None:
        producer = self._producer()
        await producer.start()
        try:
            while (item := await queue.get()) is not None:
                kind, payload = item
                if kind == "report":
                    value, headers, key = workload.ingress_record(payload)
                else:
                    p: workload.Poison = payload
                    value, headers, key = p.value, p.headers, None
                deadline = time.monotonic() + self.plan.settle_seconds
                while True:
                    try:
                        md = await producer.send_and_wait(self.ingress_topic, value, key=key, headers=headers)
                        break
                    except (KafkaError, TimeoutError) as exc:
                        if time.monotonic() > deadline:
                            raise
                        # The same record again (same ce_id): intake drops a copy that got through.
                        self.sent.ingress_retries += 1
                        if not getattr(exc, "retriable", False):
                            # aiokafka's idempotent producer does not recover from a lost sequence
                            # (OutOfOrderSequenceNumber after a broker restart): start a new one.
                            with contextlib.suppress(Exception):
                                await producer.stop()
                            producer = self._producer()
                            await producer.start()
                        await asyncio.sleep(0.5)
                if kind == "report":
                    self.sent.ingress.append((md.partition, md.offset, workload.incident_of(payload)))
                else:
                    self.sent.poison.append((md.partition, md.offset, p))
        finally:
            await producer.stop()

    async def stream(self) -> None:
        http_q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        kafka_q: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        workers = 8
        poison_at = {
            self.rng.randrange(self.plan.reports): workload.POISON_KINDS[i % len(workload.POISON_KINDS)]
            for i in range(self.plan.poison)
        }
        while len(poison_at) < self.plan.poison:  # positions collided: add the missing kinds anywhere
            poison_at[self.rng.randrange(self.plan.reports)] = workload.POISON_KINDS[len(poison_at) % 6]
        run = uuid.uuid4().hex[:6]
        async with httpx.AsyncClient(timeout=60) as client:
            tasks = [asyncio.create_task(self._http_worker(http_q, client)) for _ in range(workers)]
            tasks.append(asyncio.create_task(self._ingress_worker(kafka_q)))
            for i, (body, channel) in enumerate(zip(self.work.reports, self.work.channels, strict=True)):
                delay = self.t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if channel == "http":
                    http_q.put_nowait(body)
                else:
                    kafka_q.put_nowait(("report", body))
                if i in poison_at:
                    kafka_q.put_nowait(("poison", workload.poison(poison_at[i], run, i)))
            for _ in range(workers):
                http_q.put_nowait(None)
            kafka_q.put_nowait(None)
            await asyncio.gather(*tasks)
        self.log(
            f"[{self._now():6.1f}s] stream sent: {len(self.sent.http_accepted)} accepted over HTTP "
            f"({self.sent.http_retries} retries), {len(self.sent.ingress)} on the ingress topic "
            f"({self.sent.ingress_retries} retries), {len(self.sent.poison)} poison"
        )

    # -- the faults -----------------------------------------------------------------------

    @property
    def rate(self) -> float:
        if self.plan.rate:
            return self.plan.rate
        # A kill and its restart take about 10 s here, one after another: stretch the stream over
        # them, so that intake is also killed while HTTP requests are in flight.
        return min(MAX_RATE, self.plan.reports / max(1.0, SECONDS_PER_KILL * self.plan.kills))

    @property
    def nominal(self) -> float:
        return self.plan.reports / self.rate

    async def _at(self, fraction: float) -> None:
        delay = self.t0 + fraction * self.nominal - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _kills(self) -> None:
        moments = sorted(self.rng.uniform(0.05, 0.95) for _ in range(self.plan.kills))
        for n, moment in enumerate(moments):
            await self._at(moment)
            # The first kill is intake's, early, so that partners' HTTP requests are cut mid-flight.
            name = "intake" if n == 0 else self.rng.choice(SERVICES)
            await asyncio.to_thread(self.pipe.kill, name, signal.SIGKILL)
            self._record("SIGKILL", name)
            await asyncio.sleep(self.rng.uniform(0, 2))
            took, attempts = await asyncio.to_thread(self.pipe.restart_until_ready, name)
            starts = f" ({attempts} starts)" if attempts > 1 else ""
            self._record("restarted", name, f"ready in {took:.1f} s{starts}")

    async def _broker_restart(self) -> None:
        assert isinstance(self.broker, SingleBroker)
        await self._at(0.45)
        self._record("broker stop", self.broker.bootstrap_servers)
        await asyncio.to_thread(self.broker.stop)
        await asyncio.sleep(self.plan.broker_down_seconds)
        started = time.monotonic()
        await asyncio.to_thread(self.broker.start)
        took = time.monotonic() - started
        self._record("broker restarted", self.broker.bootstrap_servers, f"answering in {took:.1f} s")

    async def _leader_kill(self) -> None:
        assert isinstance(self.broker, Cluster)
        await self._at(0.4)
        leader = await partition_leader(self.broker.bootstrap_servers, self.ingress_topic, 0)
        await asyncio.to_thread(self.broker.kill_node, leader)
        self._record("leader SIGKILL", f"node {leader}", f"leader of {topics.PARTNER_REPORTS}[0]")
        await asyncio.sleep(self.plan.leader_down_seconds)
        await asyncio.to_thread(self.broker.start_node, leader)
        self._record("node restarted", f"node {leader}")

    async def _gateway(self) -> None:
        await self._at(0.15)
        await asyncio.to_thread(self.pipe.gateway, "down")
        self._record("gateway down", "police gateway", f"for {self.plan.gateway_down_seconds:.0f} s")
        await asyncio.sleep(self.plan.gateway_down_seconds)
        if self.plan.gateway_slow_seconds:
            await asyncio.to_thread(self.pipe.gateway, "slow", min_delay=0.5, max_delay=8.0)
            slow = self.plan.gateway_slow_seconds
            self._record("gateway slow", "police gateway", f"0.5-8 s answers for {slow:.0f} s")
            await asyncio.sleep(self.plan.gateway_slow_seconds)
        await asyncio.to_thread(self.pipe.gateway, "up")
        self._record("gateway up", "police gateway")

    def _hold_lock(self, name: str, seconds: float) -> float:
        conn = sqlite3.connect(self.pipe.database(name), timeout=60, isolation_level=None)
        try:
            started = time.monotonic()
            conn.execute("BEGIN EXCLUSIVE")
            waited = time.monotonic() - started
            time.sleep(seconds)
            conn.execute("ROLLBACK")
            return waited
        finally:
            conn.close()

    async def _store_locks(self) -> None:
        for i in range(self.plan.store_locks):
            await self._at((i + 1) / (self.plan.store_locks + 1))
            name = self.rng.choice(SERVICES)
            self._record("store locked", f"{name}.db", f"exclusive lock for {self.plan.store_lock_seconds:.0f} s")
            await asyncio.to_thread(self._hold_lock, name, self.plan.store_lock_seconds)
            self._record("store unlocked", f"{name}.db")

    async def inject(self) -> None:
        jobs: list[Awaitable[None]] = []
        if self.plan.kills:
            jobs.append(self._kills())
        if self.plan.broker_restart:
            jobs.append(self._broker_restart())
        if self.plan.leader_kill:
            jobs.append(self._leader_kill())
        if self.plan.gateway_down_seconds:
            jobs.append(self._gateway())
        if self.plan.store_locks:
            jobs.append(self._store_locks())
        await asyncio.gather(*jobs)

    # -- run ------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        self.log(f"{self.plan.name}: starting the pipeline on {self.broker.bootstrap_servers} ({self.namespace})")
        try:
            await asyncio.to_thread(self.pipe.start)
            self.t0 = time.monotonic()
            await asyncio.gather(self.stream(), self.inject())
            sent_done = self._now()
            settled = await invariants.settle(self, self.plan.settle_seconds)
            self.log(f"[{self._now():6.1f}s] {'settled' if settled else 'did NOT settle'}; checking invariants")
            checks = await invariants.check(self)
            stats = {
                "reports": self.plan.reports,
                "accepted": len(invariants.accepted(self, await invariants.committed(self))),
                "http": len(self.sent.http_accepted),
                "ingress": len(self.sent.ingress),
                "poison": len(self.sent.poison),
                "poison_kinds": sorted(p.kind for _, _, p in self.sent.poison),
                "http_retries": self.sent.http_retries,
                "ingress_retries": self.sent.ingress_retries,
                "rate": round(self.rate, 1),
                "stream_seconds": round(sent_done, 1),
                "total_seconds": round(self._now(), 1),
                "gateway": {k: v for k, v in self.pipe.gateway_report().items() if isinstance(v, int)},
            }
            return Outcome(self.plan, self.faults, checks, stats)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pipe.stop)
