"""`python -m services.triage.retriage`: re-run the current rules over triage's stored history.

Replays the accepted log in the order triage first handled it, linking each report to the ones
before it exactly as the live handler did, so unchanged rules give unchanged results. Every stored
classification that differs is updated; an ``IncidentRetriaged`` event (previous and current
classification) is staged in the outbox only when the outcome changed, not just the wording or
the version stamp. The running triage service's relay publishes them. Settings come from the
``TRIAGE_*`` environment, as for the service.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.triage import domain, store
from services.triage.handlers import kept_payload, triage_accepted
from services.triage.settings import TriageSettings
from shared.clock import Clock, system_clock
from shared.contracts import Classification, Event, IncidentAccepted, IncidentRetriaged
from shared.db import create_tables, make_engine, session_factory
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord, add_events

SOURCE = "/dcsp/triage"  # the triage service's CloudEvents source: consumers dedupe by source and id
_WORDING = frozenset({"rules_version", "reasons", "explanations"})


def outcome(c: Classification) -> dict[str, Any]:
    """What a classification decides, without its wording or version stamp."""
    return c.model_dump(mode="json", exclude=set(_WORDING))


@dataclass
class RetriageReport:
    incidents: int = 0
    updated: int = 0
    changed: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.incidents / self.seconds if self.seconds > 0 else 0.0


class _History:
    """Facts of the reports replayed so far, by victim and by place, as the handler's query sees them."""

    def __init__(self) -> None:
        self.by_victim: dict[str, list[domain.ReportFacts]] = {}
        self.by_place: dict[str, list[domain.ReportFacts]] = {}

    def around(self, accepted: IncidentAccepted) -> list[domain.ReportFacts]:
        found: dict[uuid.UUID, domain.ReportFacts] = {}
        if accepted.victim_key is not None:
            found.update((f.incident_id, f) for f in self.by_victim.get(accepted.victim_key, ()))
        place = domain.place_key(accepted.report.location)
        if place is not None:
            found.update((f.incident_id, f) for f in self.by_place.get(place, ()))
        return list(found.values())

    def add(self, facts: domain.ReportFacts) -> None:
        if facts.victim_key is not None:
            self.by_victim.setdefault(facts.victim_key, []).append(facts)
        if facts.place_key is not None:
            self.by_place.setdefault(facts.place_key, []).append(facts)


async def _replay_batch(
    session: AsyncSession,
    after_seq: int,
    batch_size: int,
    history: _History,
    settings: TriageSettings,
    clock: Clock,
    report: RetriageReport,
    dry_run: bool,
) -> int | None:
    rows = (
        await session.execute(
            select(store.AcceptedLog, store.TriagedIncident)
            .join(store.TriagedIncident, store.TriagedIncident.incident_id == store.AcceptedLog.incident_id)
            .where(store.AcceptedLog.seq > after_seq)
            .order_by(store.AcceptedLog.seq)
            .limit(batch_size)
        )
    ).all()
    if not rows:
        return None
    events: list[Event] = []
    for log, row in rows:
        accepted = IncidentAccepted.model_validate(log.accepted)
        triaged = triage_accepted(accepted, history.around(accepted), settings)
        history.add(triaged.facts)
        report.incidents += 1
        current = triaged.classification
        new_json = current.model_dump(mode="json")
        if new_json == row.classification:
            continue
        report.updated += 1
        previous = Classification.model_validate(row.classification)
        if outcome(previous) != outcome(current):
            report.changed += 1
            events.append(
                IncidentRetriaged(incident_id=row.incident_id, previous=previous, current=current, retriaged_at=clock())
            )
        if dry_run:
            continue
        row.classification = new_json
        row.rules_version = current.rules_version
        row.risk_tier = str(current.risk_tier)
        row.asb_qualifier = str(current.asb_qualifier)
        row.violence_or_criminality = current.violence_or_criminality
        row.kind, row.hate_incident, row.root_id = (
            triaged.facts.kind,
            triaged.facts.hate_incident,
            triaged.facts.root_id,
        )
        if triaged.minimised:  # newer rules may strip what older ones kept, never the reverse
            log.accepted = kept_payload(accepted, triaged).model_dump(mode="json")
    if not dry_run:
        add_events(session, SOURCE, events)
    return int(rows[-1][0].seq)


@contextmanager
def _progress(total: int, show: bool, console: Console) -> Iterator[tuple[Progress, Any]]:
    progress = Progress(
        TextColumn("re-triage"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    with progress:
        yield progress, progress.add_task("re-triage", total=total)


async def retriage(
    settings: TriageSettings,
    *,
    clock: Clock = system_clock,
    batch_size: int = 1000,
    show_progress: bool = True,
    dry_run: bool = False,
    console: Console | None = None,
) -> RetriageReport:
    """Re-run the rules over the stored history; update what differs; stage events for changed outcomes."""
    console = console or Console(stderr=True)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    await create_tables(engine, [OutboxRecord.__table__, ProcessedEvent.__table__, *store.TABLES])
    report = RetriageReport()
    history = _History()
    try:
        async with sessions() as session:
            total = int((await session.execute(select(func.count()).select_from(store.AcceptedLog))).scalar_one())
        started = time.perf_counter()
        with _progress(total, show_progress, console) as (progress, task):
            seq = 0
            while True:
                async with sessions.begin() as session:
                    before = report.incidents
                    last = await _replay_batch(session, seq, batch_size, history, settings, clock, report, dry_run)
                if last is None:
                    break
                seq = last
                progress.advance(task, report.incidents - before)
        report.seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.triage.retriage",
        description="Re-run the current triage rules over the stored history; emit IncidentRetriaged for "
        "changed outcomes (through the outbox; the triage service's relay publishes them).",
    )
    parser.add_argument("--database-url", help="triage's store (default: TRIAGE_DATABASE_URL or its default)")
    parser.add_argument("--batch-size", type=int, default=1000, help="incidents per transaction (default 1000)")
    parser.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size: must be at least 1")
    settings = TriageSettings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    console = Console(stderr=True)
    result = asyncio.run(
        retriage(
            settings,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
            dry_run=args.dry_run,
            console=console,
        )
    )
    verb = "would change" if args.dry_run else "changed"
    print(
        f"re-triaged {result.incidents} incidents under rules {domain.RULES_VERSION} in {result.seconds:.1f} s "
        f"({result.rate:.0f} incidents/s): {result.updated} stored classifications differed, "
        f"{result.changed} outcomes {verb} (IncidentRetriaged {'not ' if args.dry_run else ''}staged)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
