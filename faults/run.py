"""Run the fault scenarios and print what was injected and what was violated (exit 1 on any).

    python -m faults.run                      # the defaults (make faults)
    python -m faults.run --reports 2000 --kills 5 --no-cluster

Scenario "single broker": N reports (half over HTTP, half on the ingress topic) with poison mixed in,
random SIGKILLs of the four services (each restarted), a broker restart, the police gateway down
then slow then back, and stores locked for a few seconds. Scenario "3-broker cluster": reports on a
KRaft cluster (RF 3, min.insync.replicas=2) whose leader of the ingress topic's partition 0 is
SIGKILLed mid-stream. Each runs on brokers of its own (never the shared one on 9092).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from demo.pipeline import free_port
from faults.brokers import Cluster, SingleBroker
from faults.harness import Outcome, Plan, Scenario

console = Console(width=None if sys.stdout.isatty() else 160)


def plans(args: argparse.Namespace) -> list[Plan]:
    single = Plan(
        "single-broker",
        reports=args.reports,
        rate=args.rate,
        kills=args.kills,
        broker_restart=not args.no_broker_restart,
        gateway_down_seconds=args.gateway_down,
        gateway_slow_seconds=args.gateway_slow,
        store_locks=args.store_locks,
        store_lock_seconds=args.store_lock_seconds,
        poison=args.poison,
        settle_seconds=args.settle,
        seed=args.seed,
    )
    out = [] if args.only == "cluster" else [single]
    if not args.no_cluster and args.only != "single":
        out.append(
            Plan(
                "3-broker-cluster",
                reports=args.cluster_reports,
                rate=args.rate,
                kills=args.cluster_kills,
                leader_kill=True,
                poison=6,
                settle_seconds=args.settle,
                seed=args.seed + 1,
            )
        )
    return out


async def run_plan(plan: Plan, workdir: Path) -> Outcome:
    if plan.leader_kill:
        broker: SingleBroker | Cluster = Cluster(_cluster_port(), workdir / "kafka-cluster")
    else:
        broker = SingleBroker(free_port(), free_port(), workdir / "kafka")
    console.log(f"{plan.name}: starting {'3 brokers' if isinstance(broker, Cluster) else 'a broker'}")
    await asyncio.to_thread(broker.start)
    try:
        return await Scenario(plan, broker, workdir, console.log).run()
    finally:
        await asyncio.to_thread(broker.stop)


def _cluster_port() -> int:
    """A base port whose next five ports are free too (three brokers and their controllers)."""
    import socket

    for _ in range(50):
        base = free_port()
        try:
            socks = []
            for p in range(base, base + 6):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of six free ports found")


def table(outcomes: list[Outcome]) -> tuple[Table, Table]:
    faults = Table(title="Faults injected")
    faults.add_column("scenario")
    faults.add_column("fault")
    faults.add_column("count", justify="right")
    faults.add_column("targets")
    for o in outcomes:
        kinds = Counter(f.kind for f in o.faults if f.kind not in ("restarted", "store unlocked", "gateway up"))
        for kind, n in kinds.items():
            targets = Counter(f.target for f in o.faults if f.kind == kind)
            faults.add_row(o.plan.name, kind, str(n), ", ".join(f"{t} x{c}" for t, c in sorted(targets.items())))
        faults.add_row(o.plan.name, "poison messages", str(o.stats["poison"]), "ingress topic")
    checks = Table(title="Invariants")
    checks.add_column("scenario")
    checks.add_column("invariant")
    checks.add_column("checked", justify="right")
    checks.add_column("violations", justify="right")
    checks.add_column("examples")
    for o in outcomes:
        for c in o.checks:
            style = "red" if c.violations else "green"
            checks.add_row(
                o.plan.name, c.name, str(c.checked), f"[{style}]{len(c.violations)}[/]", "\n".join(c.violations[:5])
            )
    return faults, checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m faults.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=10_000, help="reports in the single-broker scenario")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of a random service (each restarted)")
    ap.add_argument("--rate", type=float, default=None, help="reports/s (default: spread over the kills)")
    ap.add_argument("--no-broker-restart", action="store_true")
    ap.add_argument("--gateway-down", type=float, default=60.0, help="seconds the police gateway is down")
    ap.add_argument("--gateway-slow", type=float, default=30.0, help="then seconds it answers slowly")
    ap.add_argument("--store-locks", type=int, default=2, help="times a random store is locked exclusively")
    ap.add_argument("--store-lock-seconds", type=float, default=8.0)
    ap.add_argument("--poison", type=int, default=30, help="poison messages on the ingress topic")
    ap.add_argument("--no-cluster", action="store_true", help="skip the 3-broker leader-kill scenario")
    ap.add_argument("--only", choices=["single", "cluster"], help="run one scenario")
    ap.add_argument("--cluster-reports", type=int, default=3000)
    ap.add_argument("--cluster-kills", type=int, default=2)
    ap.add_argument("--settle", type=float, default=600.0, help="most seconds to wait for the pipeline to settle")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="keep stores, logs and broker state here")
    args = ap.parse_args(argv)
    # Clients are expected to lose the broker here: its connection errors are the faults, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dcsp-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    crashed = 0
    for plan in plans(args):
        try:
            outcomes.append(asyncio.run(run_plan(plan, workdir)))
        except Exception:
            crashed += 1
            console.print_exception()
            console.print(f"[bold red]{plan.name}: the harness could not finish this scenario[/]")
            continue
        faults, checks = table(outcomes[-1:])
        console.print(faults, checks, f"{plan.name}: {outcomes[-1].stats}")
    if len(outcomes) > 1:
        faults, checks = table(outcomes)
        console.print(faults, checks)
    violations = sum(o.violations for o in outcomes) + crashed
    console.print(
        f"[bold {'red' if violations else 'green'}]{violations} violation(s)[/] "
        f"over {sum(o.stats['reports'] for o in outcomes)} reports; logs and stores in {workdir}"
    )
    if not violations and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
