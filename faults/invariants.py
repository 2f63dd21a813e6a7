"""The invariants a fault run checks, on every report intake accepted (a 2xx over HTTP, or its
ingress offset committed by intake's consumer group):

- triaged exactly once (one stored triage, one IncidentTriaged event id);
- every violent or criminal one has exactly one police alert at the gateway, and no other alert;
- panel referrals exactly as the rules say, none duplicated;
- every poison message in the dead-letter topic, once, with its reason; nothing else dead-lettered;
- every consumer group's lag back to zero, every outbox drained.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from demo.pipeline import SERVICES
from shared import topics
from shared.envelope import header_dict
from shared.runtime import bootstrap_list

if TYPE_CHECKING:
    from faults.harness import Scenario

SHOW = 5  # examples per violated invariant


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, detail: str) -> None:
        self.violations.append(detail)


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _uuid(value: Any) -> str:
    return str(uuid.UUID(hex=value) if isinstance(value, str) and len(value) == 32 else uuid.UUID(str(value)))


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_list(bootstrap), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, recs in batch.items():
                records += [r for r in recs if r.offset < ends[tp]]
                if recs and recs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def lags(bootstrap: str, namespace: str) -> dict[str, int]:
    """Lag (end offset minus committed offset, summed over partitions) of each of the run's groups."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap), client_id="dcsp-faults-lag")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_list(bootstrap), group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if str(g[0]).startswith(namespace + "dcsp-"))
        out: dict[str, int] = {}
        for group in groups:
            base = group[len(namespace + "dcsp-") :].split(".", 1)[1]
            topic = topics.resolve(base, namespace)
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(tps) if tps else {}
            out[group] = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps)
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def committed(scenario: Scenario) -> dict[int, int]:
    """Intake's committed offset per partition of the ingress topic."""
    group = f"{scenario.namespace}dcsp-intake.{topics.PARTNER_REPORTS}"
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_list(scenario.broker.bootstrap_servers), client_id="dcsp-faults-lag"
    )
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == scenario.ingress_topic}


def accepted(scenario: Scenario, offsets: dict[int, int]) -> set[str]:
    """Incident ids intake accepted: a 2xx over HTTP, or the ingress record's offset committed."""
    out = set(scenario.sent.http_accepted)
    out |= {incident for p, o, incident in scenario.sent.ingress if offsets.get(p, 0) > o}
    return out


def outbox_backlog(scenario: Scenario) -> dict[str, int]:
    return {
        name: int(query(scenario.pipe.database(name), "select count(*) from outbox where sent_at is null")[0][0])
        for name in SERVICES
    }


async def settle(scenario: Scenario, within: float) -> bool:
    """Wait until every accepted report is triaged, alerts and referrals are all in, every group is
    caught up and every outbox drained (or ``within`` seconds pass)."""
    work = scenario.work
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        try:
            acc = accepted(scenario, await committed(scenario))
            triaged = query(scenario.pipe.database("triage"), "select count(*) from triaged_incidents")[0][0]
            alerts_expected = sum(1 for i in acc if work.expected[i].alert)
            unique = (await asyncio.to_thread(scenario.pipe.gateway_report))["unique"]
            lag = sum((await lags(scenario.broker.bootstrap_servers, scenario.namespace)).values())
            backlog = sum(outbox_backlog(scenario).values())
            state = (
                f"accepted {len(acc)}, triaged {triaged}, alerts {unique}/{alerts_expected}, "
                f"lag {lag}, outbox {backlog}"
            )
            if state != last:
                scenario.log(f"[{scenario._now():6.1f}s] settling: {state}")
                last = state
            given_up = len(scenario.sent.http_refused) + len(scenario.sent.http_gave_up)
            everything = len(acc) + given_up >= len(work.reports)
            if everything and triaged >= len(acc) and unique >= alerts_expected and lag == 0 == backlog:
                return True
        except Exception as exc:  # a broker or store still coming back: look again
            scenario.log(f"settle probe failed: {type(exc).__name__}: {exc}")
        await asyncio.sleep(3)
    return False


async def check(scenario: Scenario) -> list[Check]:
    pipe, work = scenario.pipe, scenario.work
    bootstrap, ns = scenario.broker.bootstrap_servers, scenario.namespace
    acc = accepted(scenario, await committed(scenario))
    checks: list[Check] = []

    intake = Check("every report sent is accepted (2xx or ingress offset committed)", len(work.reports))
    for refused in scenario.sent.http_refused:
        intake.fail(f"valid report refused: {refused}")
    for key in scenario.sent.http_gave_up:
        intake.fail(f"no 2xx before the deadline: {key}")
    missing = set(work.expected) - acc
    if missing:
        intake.fail(f"{len(missing)} reports never accepted, e.g. {sorted(missing)[:SHOW]}")
    stored = {_uuid(i) for (i,) in query(pipe.database("intake"), "select incident_id from accepted_reports")}
    if acc - stored:
        intake.fail(f"{len(acc - stored)} accepted but not stored by intake, e.g. {sorted(acc - stored)[:SHOW]}")
    checks.append(intake)

    # Triaged exactly once: one stored triage and one IncidentTriaged event id per accepted report.
    once = Check("triaged exactly once", len(acc))
    rows = Counter(_uuid(i) for (i,) in query(pipe.database("triage"), "select incident_id from triaged_incidents"))
    ids_per_incident: dict[str, set[str]] = defaultdict(set)
    for r in await read_all(bootstrap, topics.resolve(topics.INCIDENTS_TRIAGED, ns)):
        ids_per_incident[orjson.loads(r.value)["incident_id"]].add(header_dict(r.headers)["ce_id"])
    for incident in sorted(acc):
        if rows[incident] != 1:
            once.fail(f"{incident}: stored {rows[incident]} times by triage")
        if len(ids_per_incident.get(incident, ())) != 1:
            once.fail(f"{incident}: {len(ids_per_incident.get(incident, ()))} IncidentTriaged event ids")
    for incident in set(rows) | set(ids_per_incident):
        if incident not in acc:
            once.fail(f"{incident}: triaged but never accepted")
    checks.append(once)

    # Exactly one police alert per violent/criminal report, as the gateway counts them; no others.
    gateway = await asyncio.to_thread(pipe.gateway_report)
    alerts = Check("one police alert per violent/criminal report, no others", len(acc))
    keys_per_incident: dict[str, set[str]] = defaultdict(set)
    for key, alert in gateway["alerts"].items():
        keys_per_incident[str(alert["incident_id"])].add(key)
    for incident in sorted(acc):
        n = len(keys_per_incident.get(incident, ()))
        one = 1 if work.expected[incident].alert else 0
        if n != one:
            alerts.fail(f"{incident}: {n} alerts at the gateway, expected {one}")
    for incident in set(keys_per_incident) - acc:
        alerts.fail(f"{incident}: alerted but never accepted")
    if gateway["rejected"]:
        alerts.fail(f"the gateway rejected {gateway['rejected']} deliveries (bad signature or no key)")
    checks.append(alerts)

    # Panel referrals exactly as the rules say: the same (panel, person) pairs, each once.
    referrals = Check("panel referrals as the rules say, none duplicated", len(acc))
    want = Counter(pair for i in acc for pair in work.expected[i].referrals)
    made = query(pipe.database("panels"), "select panel, person_key from panel_referrals")
    have = Counter((panel, person) for panel, person in made)
    for pair in sorted(set(want) | set(have)):
        if have[pair] != want[pair]:
            referrals.fail(f"{pair[0]} referral for {pair[1]}: {have[pair]} made, expected {want[pair]}")
    created: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in await read_all(bootstrap, topics.resolve(topics.PANEL_REFERRALS, ns)):
        body = orjson.loads(r.value)
        created[(body["panel"], body["person_key"])].add(header_dict(r.headers)["ce_id"])
    for pair, ids in sorted(created.items()):
        if len(ids) > 1:
            referrals.fail(f"{pair[0]} referral for {pair[1]}: PanelReferralCreated published {len(ids)} times")
    checks.append(referrals)

    # Every poison message dead-lettered once, with its reason; nothing else dead-lettered.
    poison = Check("every poison message dead-lettered once with its reason", len(scenario.sent.poison))
    letters: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in await read_all(bootstrap, topics.resolve(topics.DEAD_LETTERS, ns)):
        body = orjson.loads(r.value)
        letters[(body["original_topic"], body["partition"], body["offset"])][header_dict(r.headers)["ce_id"]] = body
    expected_origins: set[tuple[str, int, int]] = set()
    for partition, offset, p in scenario.sent.poison:
        origin = (scenario.ingress_topic, partition, offset)
        expected_origins.add(origin)
        found = list(letters.get(origin, {}).values())
        if len(found) != 1:
            poison.fail(f"{p.kind} at {partition}/{offset}: {len(found)} dead letters")
        elif p.reason not in found[0]["error"]:
            poison.fail(f"{p.kind} at {partition}/{offset}: reason {found[0]['error'][:200]!r} lacks {p.reason!r}")
    for origin, by_id in letters.items():
        if origin not in expected_origins:
            body = next(iter(by_id.values()))
            poison.fail(f"unexpected dead letter from {origin}: {body['error_type']}: {body['error'][:200]}")
    checks.append(poison)

    # Consumer lag back to zero for every group of the run, and every outbox drained.
    drained = Check("consumer lag zero and outboxes drained")
    group_lags = await lags(bootstrap, ns)
    drained.checked = len(group_lags) + len(SERVICES)
    for group, lag in group_lags.items():
        if lag:
            drained.fail(f"group {group}: lag {lag}")
    for service in SERVICES:
        if not any(g.startswith(f"{ns}dcsp-{service}.") for g in group_lags):
            drained.fail(f"no consumer group of {service} found")
    for service, backlog in outbox_backlog(scenario).items():
        if backlog:
            drained.fail(f"{service}: {backlog} outbox rows never published")
    checks.append(drained)
    return checks
