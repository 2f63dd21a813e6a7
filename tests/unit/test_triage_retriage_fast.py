"""Re-triage at scale gives exactly what the plain replay gives: every report linked to all earlier
reports about the same victim or place. Checked on a seeded store (repeat victims, hot places, late
reports, non-crime hate incidents) with the facts held in memory, spilled to disk, in the rules
process and in process; plus the bounded history against brute force, a dry run, a rerun, and a
bad stored event."""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import shutil
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from bench.replay import PREVIOUS_RULES_VERSION, seed
from services.triage import domain
from services.triage.handlers import kept_payload, triage_accepted
from services.triage.retriage import (
    RetriageReport,
    RulesProcessError,
    _History,
    _RulesInProcess,
    _RulesSetup,
    _Store,
    outcome,
    retriage,
)
from services.triage.settings import TriageSettings
from shared import topics
from shared.clock import FrozenClock
from shared.contracts import Classification, IncidentAccepted
from shared.db import make_engine, session_factory

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
INCIDENTS = 2_000


@dataclass(frozen=True)
class Expected:
    classifications: dict[str, dict[str, Any]]  # by incident id hex
    facts: dict[str, tuple[str, bool, str]]  # kind, hate incident, root id hex
    kept: dict[str, dict[str, Any]]  # accepted events stored without personal data
    updated: set[str]
    changed: set[str]


def plain_replay(db: Path, settings: TriageSettings) -> Expected:
    """The replay without any of the speed-ups: every earlier fact of the victim or place, in memory."""
    conn = sqlite3.connect(db)
    stored = dict(conn.execute("SELECT incident_id, classification FROM triaged_incidents"))
    log = conn.execute("SELECT accepted FROM triage_accepted_log ORDER BY seq").fetchall()
    conn.close()
    by_victim: dict[str, list[domain.ReportFacts]] = {}
    by_place: dict[str, list[domain.ReportFacts]] = {}
    expected = Expected({}, {}, {}, set(), set())
    for (text,) in log:
        accepted = IncidentAccepted.model_validate_json(text)
        earlier: dict[uuid.UUID, domain.ReportFacts] = {}
        if accepted.victim_key is not None:
            earlier.update((f.incident_id, f) for f in by_victim.get(accepted.victim_key, ()))
        place = domain.place_key(accepted.report.location)
        if place is not None:
            earlier.update((f.incident_id, f) for f in by_place.get(place, ()))
        triaged = triage_accepted(accepted, list(earlier.values()), settings)
        facts = triaged.facts
        if facts.victim_key is not None:
            by_victim.setdefault(facts.victim_key, []).append(facts)
        if facts.place_key is not None:
            by_place.setdefault(facts.place_key, []).append(facts)
        key = accepted.incident_id.hex
        new = triaged.classification.model_dump(mode="json")
        expected.classifications[key] = new
        expected.facts[key] = (facts.kind, facts.hate_incident, facts.root_id.hex)
        previous = orjson.loads(stored[key])
        if previous != new:
            expected.updated.add(key)
            if triaged.minimised:
                expected.kept[key] = kept_payload(accepted, triaged).model_dump(mode="json")
            if outcome(Classification.model_validate(previous)) != outcome(triaged.classification):
                expected.changed.add(key)
    return expected


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("retriage") / "seeded.db"
    seed(db, INCIDENTS)
    return db


@pytest.fixture(scope="module")
def expected(seeded: Path) -> Expected:
    return plain_replay(seeded, TriageSettings())


def copy_of(seeded: Path, tmp_path: Path, name: str = "triage.db") -> Path:
    db = tmp_path / name
    shutil.copy(seeded, db)
    return db


def run(db: Path, **options: Any) -> RetriageReport:
    settings = TriageSettings(database_url=f"sqlite+aiosqlite:///{db}")
    quiet = Console(file=io.StringIO())
    return asyncio.run(retriage(settings, clock=FrozenClock(NOW), console=quiet, **options))


def stored_state(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    triaged = {
        row[0]: (orjson.loads(row[1]), row[2], row[3], bool(row[4]), row[5], row[6], row[7], bool(row[8]))
        for row in conn.execute(
            "SELECT incident_id, classification, kind, root_id, hate_incident, rules_version, risk_tier, "
            "asb_qualifier, violence_or_criminality FROM triaged_incidents"
        )
    }
    log = {
        row[0]: orjson.loads(row[1]) for row in conn.execute("SELECT incident_id, accepted FROM triage_accepted_log")
    }
    events = [
        orjson.loads(row[0])
        for row in conn.execute("SELECT body FROM outbox WHERE topic = ? ORDER BY id", (topics.INCIDENTS_RETRIAGED,))
    ]
    conn.close()
    return {"triaged": triaged, "log": log, "events": events}


def assert_matches(state: dict[str, Any], expected: Expected, before: dict[str, Any]) -> None:
    for key, row in state["triaged"].items():
        classification, kind, root, hate, version, tier, qualifier, violence = row
        assert classification == expected.classifications[key], key
        assert (kind, hate, root) == expected.facts[key], key
        assert (version, tier, qualifier, violence) == (
            classification["rules_version"],
            classification["risk_tier"],
            classification["asb_qualifier"],
            classification["violence_or_criminality"],
        )
    for key, accepted in state["log"].items():
        assert accepted == expected.kept.get(key, before["log"][key]), key
    assert {uuid.UUID(e["incident_id"]).hex for e in state["events"]} == expected.changed
    assert len(state["events"]) == len(expected.changed)
    for event in state["events"]:
        key = uuid.UUID(event["incident_id"]).hex
        assert event["current"] == expected.classifications[key]
        assert event["previous"] == Classification.model_validate(before["triaged"][key][0]).model_dump(mode="json")
        assert event["retriaged_at"].startswith("2027-01-04T09:00:00")


def test_seeded_store_exercises_linking(seeded: Path, expected: Expected) -> None:
    # Guards the other tests' meaning: repeat victims, duplicates, privacy and changed outcomes all occur.
    repeat = [c for c in expected.classifications.values() if c["repeat_victim"]]
    duplicates = [k for k, (_kind, _hate, root) in expected.facts.items() if root != k]
    assert len(repeat) > INCIDENTS // 10
    assert duplicates
    assert expected.kept
    assert 0 < len(expected.changed) < len(expected.updated) == INCIDENTS
    conn = sqlite3.connect(seeded)
    in_order = (
        "SELECT t.reported_at FROM triage_accepted_log l JOIN triaged_incidents t USING (incident_id) ORDER BY l.seq"
    )
    reported = [r for (r,) in conn.execute(in_order)]
    conn.close()
    assert any(later < earlier for earlier, later in itertools.pairwise(reported))  # late reports


@pytest.mark.parametrize(
    ("history_in_memory", "rules_process"),
    [(100_000, True), (40, True), (40, False)],
    ids=["in-memory", "spilled", "spilled-in-process"],
)
def test_retriage_writes_what_the_plain_replay_gives(
    seeded: Path, expected: Expected, tmp_path: Path, history_in_memory: int, rules_process: bool
) -> None:
    db = copy_of(seeded, tmp_path)
    before = stored_state(db)
    report = run(db, history_in_memory=history_in_memory, rules_process=rules_process, batch_size=300)
    assert (report.incidents, report.updated, report.changed) == (
        INCIDENTS,
        len(expected.updated),
        len(expected.changed),
    )
    assert_matches(stored_state(db), expected, before)


def test_rules_process_spawned_when_threads_are_running(seeded: Path, expected: Expected, tmp_path: Path) -> None:
    # A process with threads does not fork (a copied lock could be held): the spawned rules agree.
    db = copy_of(seeded, tmp_path)
    before = stored_state(db)
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    try:
        report = run(db, history_in_memory=40, batch_size=700)
    finally:
        stop.set()
        helper.join()
    assert (report.updated, report.changed) == (len(expected.updated), len(expected.changed))
    assert_matches(stored_state(db), expected, before)


def test_rerun_and_dry_run_change_nothing(seeded: Path, expected: Expected, tmp_path: Path) -> None:
    db = copy_of(seeded, tmp_path)
    before = db.read_bytes()
    dry = run(db, dry_run=True, history_in_memory=40)
    assert (dry.updated, dry.changed) == (len(expected.updated), len(expected.changed))
    assert stored_state(db)["events"] == []
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert db.read_bytes() == before

    run(db)
    again = run(db, history_in_memory=40)
    assert (again.incidents, again.updated, again.changed) == (INCIDENTS, 0, 0)
    assert len(stored_state(db)["events"]) == len(expected.changed)


def test_a_bad_stored_event_stops_the_run_with_its_reason(seeded: Path, tmp_path: Path) -> None:
    db = copy_of(seeded, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute('UPDATE triage_accepted_log SET accepted = \'{"incident_id": "nope"}\' WHERE seq = 1500')
    conn.commit()
    conn.close()
    with pytest.raises(RulesProcessError, match="incident_id"):
        run(db, batch_size=500)
    # Pages before the bad one were written; the bad one and after were not.
    conn = sqlite3.connect(db)
    by_page = (
        "SELECT l.seq <= 1000, t.rules_version FROM triage_accepted_log l JOIN triaged_incidents t USING (incident_id) "
        "GROUP BY 1, 2"
    )
    versions = conn.execute(by_page).fetchall()
    conn.close()
    assert sorted(versions) == [(0, PREVIOUS_RULES_VERSION), (1, domain.RULES_VERSION)]


def test_an_incident_erased_during_the_run_gets_no_event(seeded: Path, expected: Expected, tmp_path: Path) -> None:
    # Pages are read ahead of the writes: an erasure may land in between.
    db = copy_of(seeded, tmp_path)

    async def first_page_with_an_erasure() -> tuple[RetriageReport, str]:
        engine = make_engine(f"sqlite+aiosqlite:///{db}", inline_sqlite=False)
        sessions = session_factory(engine)
        rules = _RulesInProcess()
        rules.start(_RulesSetup(TriageSettings(), 1_000, INCIDENTS))
        report = RetriageReport()
        side = _Store(FrozenClock(NOW), report, dry_run=False)
        async with sessions() as session:
            rows = await side.read(session, 0, 500)
        rules.send([(row[2], True) for row in rows])
        verdicts = rules.receive()
        erased = next(row[1].hex for row in rows if row[1].hex in expected.changed)
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM triaged_incidents WHERE incident_id = ?", (erased,))
        conn.commit()
        conn.close()
        async with sessions.begin() as session:
            await side.write(session, rows, verdicts)
        rules.close()
        await engine.dispose()
        return report, erased

    report, erased = asyncio.run(first_page_with_an_erasure())
    page = set(list(expected.classifications)[:500])
    assert (report.incidents, report.updated, report.changed) == (
        500,
        len(page & expected.updated) - 1,
        len(page & expected.changed) - 1,
    )
    events = {uuid.UUID(e["incident_id"]).hex for e in stored_state(db)["events"]}
    assert events == (page & expected.changed) - {erased}


def fact(rng: random.Random, n: int, start: datetime) -> domain.ReportFacts:
    reported = start + timedelta(hours=n * 6 - rng.choice([0, 0, 0, 24 * rng.randint(1, 400)]))
    occurred = reported - timedelta(hours=rng.choice([0, 0, 3, 30, 24 * 300]))
    incident = uuid.UUID(int=rng.getrandbits(128))
    return domain.ReportFacts(
        incident_id=incident,
        partner=rng.choice(["police", "housing", "csu"]),
        victim_key=rng.choice([None, f"p-{rng.randrange(40)}", f"p-once-{n}"]),
        place_key=rng.choice([f"uprn:{rng.randrange(30)}", f"addr:{n} high street"]),
        complainant_key="partner:police",
        reported_at=reported,
        occurred_at=occurred,
        kind=rng.choice(["asb:noise", "crime:violent-crime"]),
        hate_incident=rng.random() < 0.1,
        root_id=incident,
    )


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_bounded_history_finds_every_fact_a_report_can_link_to(seed_value: int) -> None:
    settings = TriageSettings()
    window = timedelta(days=settings.repeat_window_days)
    same = timedelta(hours=settings.duplicate_window_hours)
    rng = random.Random(seed_value)
    facts = [fact(rng, n, datetime(2024, 1, 1, tzinfo=UTC)) for n in range(3_000)]
    seen: dict[str, int] = {}
    for f in facts:
        for key in (f.victim_key, f.place_key):
            if key is not None:
                seen[key] = seen.get(key, 0) + 1

    def repeated(f: domain.ReportFacts) -> bool:
        # Some repeats are not flagged (a stored key may differ from today's): the spill must answer.
        return any(k is not None and seen[k] > 1 and not k.startswith("uprn:1") for k in (f.victim_key, f.place_key))

    history = _History(settings, in_memory=25, expected=len(facts))
    everything: list[domain.ReportFacts] = []
    for n, subject in enumerate(facts):
        found = history.around(subject.victim_key, subject.place_key, subject.reported_at, subject.occurred_at)
        wanted = {
            e.incident_id
            for e in everything
            if ((e.victim_key is not None and e.victim_key == subject.victim_key) or e.place_key == subject.place_key)
            and (
                subject.reported_at - window <= e.reported_at <= subject.reported_at
                or abs(e.occurred_at - subject.occurred_at) <= same
            )
        }
        assert {f.incident_id for f in found} == wanted, n
        assert {f.incident_id: f for f in found} == {f.incident_id: f for f in everything if f.incident_id in wanted}
        history.add(subject, repeated(subject))
        everything.append(subject)
        if n % 10 == 9:
            history.trim()
            assert len(history.order) <= 25
    assert history.spill_lookups > 0
    history.close()
