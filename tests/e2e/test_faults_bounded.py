"""The fault harness, bounded for `make test`: 2,000 reports (half over HTTP, half on the ingress
topic, poison of every kind mixed in) through the four services on a broker of the test's own, with
5 SIGKILLs of random services, one broker restart, the police gateway down then slow, and a store
locked; then every invariant on what intake accepted. Any violation fails the build."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest

from faults import run
from faults.harness import Plan
from faults.workload import POISON_KINDS

pytestmark = pytest.mark.e2e

PLAN = Plan(
    "bounded",
    reports=2000,
    kills=5,
    broker_restart=True,
    gateway_down_seconds=10.0,
    gateway_slow_seconds=6.0,
    store_locks=1,
    store_lock_seconds=4.0,
    poison=len(POISON_KINDS),
    settle_seconds=150.0,
    seed=11,
)


def test_nothing_is_lost_or_duplicated_under_faults(tmp_path: Path) -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    outcome = asyncio.run(run.run_plan(PLAN, tmp_path))
    faults_table, checks_table = run.table([outcome])
    run.console.print(faults_table, checks_table, outcome.stats)

    injected = Counter(f.kind for f in outcome.faults)
    assert injected["SIGKILL"] == PLAN.kills
    assert injected["restarted"] == PLAN.kills
    assert injected["broker restarted"] == 1
    assert injected["gateway down"] == injected["gateway slow"] == injected["gateway up"] == 1
    assert injected["store unlocked"] == PLAN.store_locks
    assert sorted(outcome.stats["poison_kinds"]) == sorted(POISON_KINDS)
    assert outcome.stats["accepted"] == PLAN.reports
    violations = {c.name: c.violations[:5] for c in outcome.checks if c.violations}
    assert not violations, f"{outcome.violations} violation(s) (logs under {tmp_path}): {violations}"
