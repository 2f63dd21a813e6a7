"""Per-stage cost, in process: what each service's consumers and outbox relay spend per message,
with no broker and no other process competing for the CPU.

    python -m bench.stages [--reports 5000] [--profile]

Each service is built as in production, on a SQLite store in a temporary directory. Synthetic
partner reports go to intake's consumer in batches; the events intake stages in its outbox are
fed to the consumers that subscribe to their topics (triage, then panels and notifications), and
so on down the pipeline, as the brokers would deliver them. Each relay drains its outbox to a
publisher that only counts. The table gives milliseconds per message for every stage, which is
where an optimisation shows first. Costs are CPU time of this process, so other work on the
machine does not move them much; ``make bench`` measures the whole pipeline over Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from shared import topics
from shared.consumer import Received, ReliableConsumer
from shared.db import create_tables
from shared.outbox import OutboxRecord
from shared.runtime import ServiceRuntime

console = Console(width=None if sys.stdout.isatty() else 140)
ORDER = ("intake", "triage", "panels", "notifications")


def runtimes(workdir: Path) -> dict[str, ServiceRuntime]:
    from services.intake.app import build as intake
    from services.intake.settings import IntakeSettings
    from services.notifications.app import build as notifications
    from services.notifications.settings import NotificationsSettings
    from services.panels.app import build as panels
    from services.panels.settings import PanelsSettings
    from services.triage.app import build as triage
    from services.triage.settings import TriageSettings

    def url(name: str) -> str:
        return f"sqlite+aiosqlite:///{workdir / name}.db"

    builders: dict[str, Callable[[], ServiceRuntime]] = {
        "intake": lambda: intake(IntakeSettings(database_url=url("intake"), http_port=0)),
        "triage": lambda: triage(TriageSettings(database_url=url("triage"), http_port=0)),
        "panels": lambda: panels(PanelsSettings(database_url=url("panels"), http_port=0)),
        "notifications": lambda: notifications(NotificationsSettings(database_url=url("notifications"), http_port=0)),
    }
    return {name: build() for name, build in builders.items()}


def base_topic(consumer: ReliableConsumer) -> str:
    return consumer.name.split(":", 1)[1]


async def _published(_topic: str, _body: bytes, _key: bytes | None, _headers: dict[str, str]) -> Any:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def drain(runtime: ServiceRuntime) -> list[Received]:
    """The outbox as consumers downstream will receive it, then the relay's cost to publish it."""
    async with runtime.sessions() as session:
        rows = (await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
        out = [
            Received(row.topic, 0, row.id, row.key.encode() if row.key else None, dict(row.headers), row.body)
            for row in rows
        ]
    return out


async def run(reports: int, batch: int) -> dict[str, tuple[int, float]]:
    from bench.run import encoded_reports

    costs: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        services = runtimes(Path(tmp))
        for rt in services.values():
            await create_tables(rt.engine, rt.tables)
            rt.relay._publish = _published
        inbox: dict[str, list[Received]] = defaultdict(list)
        inbox[topics.PARTNER_REPORTS] = [
            Received(topics.PARTNER_REPORTS, 0, i, key, {k: v.decode() for k, v in headers}, value)
            for i, (key, value, headers) in enumerate(encoded_reports("stages", reports))
        ]
        for name in ORDER:
            rt = services[name]
            for consumer in rt.consumers:
                messages = inbox.get(base_topic(consumer), [])
                if not messages:
                    continue
                started = time.process_time()
                for i in range(0, len(messages), batch):
                    await consumer.process_batch(messages[i : i + batch])
                costs[consumer.name] = (len(messages), time.process_time() - started)
            for received in await drain(rt):
                inbox[received.topic].append(received)
            started = time.process_time()
            published = 0
            while n := await rt.relay.drain_once():
                published += n
            costs[f"{name}:outbox relay"] = (published, time.process_time() - started)
        for rt in services.values():
            await rt.engine.dispose()
    return costs


def discard_logs(level: str = "INFO") -> None:
    """Logs at the services' level cost what they cost in production, but go nowhere."""
    from shared.logging import configure_logging

    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        configure_logging("bench", level)
    finally:
        sys.stdout = stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500, help="records per consumer batch, as from Kafka")
    parser.add_argument("--log-level", default="INFO", help="the services' log level (logs are discarded)")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile of the run")
    args = parser.parse_args(argv)
    discard_logs(args.log_level)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    costs = asyncio.run(run(args.reports, args.batch))
    if args.profile:
        profiler.stop()
        console.print(profiler.output_text(unicode=True, color=False, show_all=False))
    table = Table(title=f"per-stage cost, {args.reports} reports, batches of {args.batch}")
    table.add_column("stage")
    table.add_column("messages", justify="right")
    table.add_column("CPU ms / message", justify="right")
    table.add_column("messages / s", justify="right")
    total = 0.0
    for stage, (n, seconds) in costs.items():
        total += seconds
        if n:
            table.add_row(stage, str(n), f"{1000 * seconds / n:.3f}", f"{n / seconds:,.0f}" if seconds else "-")
    table.add_row("all stages, per report", str(args.reports), f"{1000 * total / args.reports:.3f}", "")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
