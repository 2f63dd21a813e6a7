"""Re-triage at scale: seed a triage store with realistic stored incidents, then time the real
re-triage command over it (issue #9: 1,000,000 incidents in under 5 minutes, <= 150 MB RSS).

    python -m bench.replay [--incidents 1000000] [--workdir var/bench]

The store holds six years of a busy partnership (460 incidents a day, inside the six-year case
retention): the demo day's reports as templates, about 20 % of victims reporting again within
weeks, a fifth of reports at a pool of council properties, a few hot places reported by several
partners, 1 % of reports arriving late (out of order), and non-crime hate incidents stored in
full as older rules kept them (re-triage now strips them). Each stored classification is what the
rules give the report on its own under an older rules version, so a re-triage rewrites every row
(the version changed) and stages ``IncidentRetriaged`` where the history changes the outcome
(repeat victims, duplicates, Case Review grounds): the run a rules release causes.

The re-triage runs as ops run it: ``python -m services.triage.retriage`` in its own process with
``TRIAGE_DATABASE_URL``; its peak RSS is the high-water mark of the largest of its processes
(the command forks one that runs the rules).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from demo import scenario
from services.intake.domain import accept, person_key
from services.triage import domain, store
from services.triage.settings import TriageSettings
from shared.contracts import Channel, Location, Person, ReportDetails
from shared.db import create_tables, make_engine
from shared.idempotency import ProcessedEvent
from shared.outbox import OutboxRecord

REPO = Path(__file__).resolve().parent.parent
INCIDENTS_PER_DAY = 460
PREVIOUS_RULES_VERSION = "2026.10-1"
REPEAT_VICTIM_SHARE = 0.20
IDENTIFIED_VICTIM_SHARE = 0.60  # repeat victims included
TEMPLATE_PLACE_SHARE = 0.02  # the demo day's own places: a few hot places (the busiest ~3 reports a day)
PROPERTY_POOL_SHARE = 0.20  # council properties reported again and again
LATE_SHARE = 0.01
EPISODE_INCIDENTS = 5_000  # about 11 days: repeat victims and properties are active for a stretch
EPISODE_VICTIMS = 200
EPISODE_PROPERTIES = 400
SEED_BATCH = 20_000
START = datetime(2020, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Variant:
    """One template as stored: its classification (rules version as it was) and linking facts."""

    classification: dict[str, Any]
    review_days: int | None
    kind: str
    hate_incident: bool
    violence_or_criminality: bool
    asb_qualifier: str
    risk_tier: str


NO_VICTIM, ONE_OFF_VICTIM, REPEAT_VICTIM = 0, 1, 2
# Stored in full, as rules before the non-crime hate incident rule kept it: re-triage strips it.
NON_CRIME_HATE = {
    "partner": "resident",
    "idempotency_key": "replay-nchi",
    "reported_at": START.isoformat(),
    "location": {"address": "4 Quay St", "postcode": "RV3 3QS"},
    "description": "Neighbour made a racist remark about us in the car park",
    "victim": {"name": "Ana Costa", "date_of_birth": "1990-02-02", "contact": "ana@example.org"},
}
NEUTRAL_PLACE = {"address": "1 Bench Street", "postcode": "RV9 9BN", "uprn": "900000000001"}


def _db_time(moment: datetime) -> str:
    # How SQLAlchemy's UTCDateTime stores a datetime in SQLite: UTC, naive, microseconds.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _victim(template: dict[str, Any], kind: int, name: str) -> dict[str, Any] | None:
    if kind == NO_VICTIM:
        return None
    victim = dict(template.get("victim") or {"date_of_birth": "1980-01-01"})
    if kind == REPEAT_VICTIM:
        # One person across templates: the same name and date of birth give the same victim key.
        victim.pop("age", None)
        victim["date_of_birth"] = "1980-01-01"
    victim["name"] = name
    return victim


class _Templates:
    """The demo day's reports, each triaged once on its own per variant (partner, victim or not,
    own or neutral place) under the current rules, stamped with the previous rules version."""

    def __init__(self, settings: TriageSettings) -> None:
        self.settings = settings
        self.reports = [item.report for item in scenario.build("replay", now=START)] + [NON_CRIME_HATE]
        self.validated = [ReportDetails.model_validate(r) for r in self.reports]
        self._variants: dict[tuple[int, str, int, bool], _Variant] = {}

    def variant(self, index: int, partner: str, victim_kind: int, own_place: bool) -> _Variant:
        key = (index, partner, victim_kind, own_place)
        found = self._variants.get(key)
        if found is None:
            body = {**self.reports[index], "partner": partner}
            if not own_place:
                body["location"] = NEUTRAL_PLACE
            body.pop("victim", None)
            victim = _victim(self.reports[index], victim_kind, "Bench Victim")
            if victim is not None:
                body["victim"] = victim
            accepted = accept(ReportDetails.model_validate(body), Channel.KAFKA, START)
            triaged = domain.triage(accepted.incident_id, accepted.victim_key, accepted.report, [], self.settings)
            c = triaged.classification
            review_days = (c.review_due - accepted.report.reported_at.date()).days if c.review_due else None
            found = _Variant(
                classification={**c.model_dump(mode="json"), "rules_version": PREVIOUS_RULES_VERSION},
                review_days=review_days,
                kind=triaged.facts.kind,
                hate_incident=triaged.facts.hate_incident,
                violence_or_criminality=c.violence_or_criminality,
                asb_qualifier=str(c.asb_qualifier),
                risk_tier=str(c.risk_tier),
            )
            self._variants[key] = found
        return found

    def victim_key(self, index: int, victim: dict[str, Any], location: dict[str, Any], partner: str) -> str | None:
        person = Person.model_validate(victim)
        report = self.validated[index]
        if person.date_of_birth is None:  # then the key may use the place's UPRN or the partner
            report = ReportDetails.model_validate({**self.reports[index], "location": location, "partner": partner})
        return person_key(person, report)


def _rows(incidents: int, seed: int = 9) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(triaged_incidents row, triage_accepted_log row) per incident, in the order triage saw them."""
    rng = random.Random(seed)
    templates = _Templates(TriageSettings())
    hot_partners = ["police", "housing", "csu"]
    repeat_keys: dict[str, str | None] = {}
    place_keys: dict[str, str | None] = {}
    for n in range(incidents):
        t = rng.randrange(len(templates.reports))
        template = templates.reports[t]
        episode = n // EPISODE_INCIDENTS
        where = rng.random()
        own_place = where < TEMPLATE_PLACE_SHARE
        partner = rng.choice(hot_partners) if own_place and rng.random() < 0.5 else template["partner"]
        if own_place:
            location = template["location"]
        elif where < TEMPLATE_PLACE_SHARE + PROPERTY_POOL_SHARE:
            p = episode * EPISODE_PROPERTIES + rng.randrange(EPISODE_PROPERTIES)
            location = {"address": f"{p % 400 + 1} Pool House", "postcode": "RV9 9BN", "uprn": str(800_000_000 + p)}
        elif rng.random() < 0.5:
            location = {"address": f"{n} Bench Street", "postcode": "RV9 9BN", "uprn": str(100_000_000 + n)}
        else:
            location = {"address": f"Flat {n % 97 + 1}, {n} Bench Road", "postcode": "RV9 9BR"}
        who = rng.random()
        if who < REPEAT_VICTIM_SHARE:
            kind, name = REPEAT_VICTIM, f"Repeat Victim {episode * EPISODE_VICTIMS + rng.randrange(EPISODE_VICTIMS)}"
        elif who < IDENTIFIED_VICTIM_SHARE:
            kind, name = ONE_OFF_VICTIM, f"Resident {n}"
        else:
            kind, name = NO_VICTIM, ""
        victim = _victim(template, kind, name)
        variant = templates.variant(t, partner, kind, own_place)

        reported = START + timedelta(days=n / INCIDENTS_PER_DAY, seconds=rng.uniform(0, 7200))
        if rng.random() < LATE_SHARE:
            reported -= timedelta(days=rng.uniform(1, 20))
        occurred = reported - timedelta(hours=rng.uniform(0, 48)) if rng.random() < 0.3 else None
        incident_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        victim_key = None
        if victim is not None:
            if kind == REPEAT_VICTIM:
                if name not in repeat_keys:
                    repeat_keys[name] = templates.victim_key(t, victim, location, partner)
                victim_key = repeat_keys[name]
            else:
                victim_key = templates.victim_key(t, victim, location, partner)
        address = location.get("uprn") or location["address"]
        if address not in place_keys:
            if len(place_keys) > 10_000:
                place_keys.clear()
            place_keys[address] = domain.place_key(Location.model_validate(location))
        report = {
            **template,
            "partner": partner,
            "idempotency_key": f"replay-{n}",
            "reported_at": _json_time(reported),
            "occurred_at": _json_time(occurred) if occurred else None,
            "location": location,
        }
        report.pop("victim", None)
        if victim is not None:
            report["victim"] = victim
        accepted = {
            "incident_id": str(incident_id),
            "channel": "kafka",
            "accepted_at": _json_time(reported),
            "victim_key": victim_key,
            "report": report,
        }
        classification = variant.classification
        if variant.review_days is not None:
            due = reported.date() + timedelta(days=variant.review_days)
            classification = {**classification, "review_due": due.isoformat()}
        ident = incident_id.hex
        yield (
            (
                ident,
                victim_key,
                _db_time(reported),
                _db_time(reported + timedelta(seconds=2)),
                variant.violence_or_criminality,
                variant.asb_qualifier,
                variant.risk_tier,
                PREVIOUS_RULES_VERSION,
                orjson.dumps(classification).decode(),
                partner,
                place_keys[address],
                f"victim:{victim_key}" if victim_key else f"partner:{partner}",
                _db_time(occurred or reported),
                variant.kind,
                variant.hate_incident,
                ident,
            ),
            (n + 1, ident, orjson.dumps(accepted).decode()),
        )


def create_store(db: Path) -> None:
    """An empty triage store with every table the service and the re-triage command create."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)

    async def create() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db}")
        await create_tables(engine, [OutboxRecord.__table__, ProcessedEvent.__table__, *store.TABLES])
        await engine.dispose()

    asyncio.run(create())


def seed(db: Path, incidents: int, on_progress: Callable[[int], None] = lambda _n: None) -> None:
    """Write ``incidents`` stored incidents into a fresh triage store at ``db``."""
    create_store(db)
    triaged_sql = (
        "INSERT INTO triaged_incidents (incident_id, victim_key, reported_at, triaged_at, violence_or_criminality, "
        "asb_qualifier, risk_tier, rules_version, classification, partner, place_key, complainant_key, "
        "occurred_at, kind, hate_incident, root_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    log_sql = "INSERT INTO triage_accepted_log (seq, incident_id, accepted) VALUES (?,?,?)"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        triaged: list[tuple[Any, ...]] = []
        logged: list[tuple[Any, ...]] = []
        done = 0

        def flush() -> None:
            conn.execute("BEGIN")
            conn.executemany(triaged_sql, triaged)
            conn.executemany(log_sql, logged)
            conn.execute("COMMIT")
            triaged.clear()
            logged.clear()

        for row, log_row in _rows(incidents):
            triaged.append(row)
            logged.append(log_row)
            if len(triaged) >= SEED_BATCH:
                done += len(triaged)
                flush()
                on_progress(done)
        if triaged:
            done += len(triaged)
            flush()
            on_progress(done)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@dataclass
class _Watch:
    """Peak resident memory of a process and its children (the re-triage forks one for the rules)."""

    pid: int
    peak_kb: dict[int, int]

    def sample(self) -> None:
        for pid in self._family():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), int(line.split()[1]))

    def _family(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo.extend(int(c) for c in children)
        return found


def _read_progress(stream: Any, on_done: Callable[[int], None], tail: list[str]) -> None:
    for line in stream:
        tail.append(line)
        del tail[:-20]
        match = PROGRESS_LINE.match(line)
        if match:
            on_done(int(match.group(1)))


PROGRESS_LINE = re.compile(r"re-triage: (\d+)/(\d+) incidents")


def retriage_store(db: Path, progress: Progress, total: int) -> dict[str, Any]:
    """Run ``python -m services.triage.retriage`` on the store as ops would; its summary and peak RSS."""
    env = {**os.environ, "TRIAGE_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    task = progress.add_task("replay: re-triage", total=total)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.triage.retriage", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    tail: list[str] = []
    reader = threading.Thread(
        target=_read_progress, args=(proc.stderr, lambda n: progress.update(task, completed=n), tail), daemon=True
    )
    reader.start()
    watch = _Watch(proc.pid, {})
    while proc.poll() is None:
        watch.sample()
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    reader.join(timeout=5)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"re-triage failed (exit {proc.returncode}):\n{''.join(tail)}")
    summary: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    progress.update(task, completed=summary["incidents"])
    # The command's own high-water marks (read at its end) cover what sampling may have missed.
    sampled = max(watch.peak_kb.values(), default=0) / 1024
    summary["peak_rss_mb"] = round(max(sampled, summary["peak_rss_mb"]), 1)
    summary["wall_seconds"] = round(seconds, 2)
    return summary


def run_replay(incidents: int, workdir: Path, progress: Progress) -> dict[str, Any]:
    """Seed a triage store with ``incidents`` stored incidents, then re-triage it with the real command."""
    db = workdir / "replay" / "triage.db"
    seed_task = progress.add_task("replay: seed store", total=incidents)
    started = time.perf_counter()
    seed(db, incidents, lambda n: progress.update(seed_task, completed=n))
    seed_seconds = time.perf_counter() - started
    summary = retriage_store(db, progress, incidents)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    seconds = summary["wall_seconds"]
    return {
        "incidents": summary["incidents"],
        "seconds": seconds,
        "incidents_per_second": round(summary["incidents"] / seconds, 1) if seconds else 0.0,
        "seed_seconds": round(seed_seconds, 2),
        "updated": summary["updated"],
        "changed": summary["changed"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "peak_rss_mb_by_process": {"store": summary["peak_rss_mb_store"], "rules": summary["peak_rss_mb_rules"]},
        "retriage_seconds": summary["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=1_000_000, help="stored incidents (default 1,000,000)")
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "bench", help="where the store goes")
    args = parser.parse_args(argv)
    if args.incidents < 1:
        parser.error("--incidents: must be at least 1")
    console = Console()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        result = run_replay(args.incidents, args.workdir, progress)
    table = Table(title=f"Re-triage of {result['incidents']:,} stored incidents")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("seed (s)", f"{result['seed_seconds']:.1f}")
    table.add_row("re-triage, command wall time (s)", f"{result['seconds']:.1f}")
    table.add_row("incidents/s", f"{result['incidents_per_second']:,.0f}")
    table.add_row("classifications rewritten", f"{result['updated']:,}")
    table.add_row("outcomes changed (IncidentRetriaged)", f"{result['changed']:,}")
    table.add_row("peak RSS, largest process (MB)", f"{result['peak_rss_mb']:.0f}")
    by = result["peak_rss_mb_by_process"]
    table.add_row("peak RSS store / rules process (MB)", f"{by['store']:.0f} / {by['rules']:.0f}")
    console.print(table)
    console.print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
