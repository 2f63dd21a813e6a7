"""`make bench`: end-to-end numbers for the pipeline against a bare aiokafka relay, measured in
the same run on the same broker (only ratios are stable on a shared 2-core machine).

    python -m bench.run [--reports 20000] [--latency-seconds 30] [--rate 200]

Writes bench/results/<date>.json and a PNG chart, and prints a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from demo.kafka import LocalKafka
from demo.pipeline import REPO, SERVICES, Pipeline
from shared import topics
from shared.contracts import ReportReceived
from shared.envelope import encode_body, new_envelope

console = Console(width=None if sys.stdout.isatty() else 140)
RESULTS = REPO / "bench" / "results"
VIOLENT_EVERY = 5


def synthetic_report(run: str, n: int) -> dict[str, Any]:
    violent = n % VIOLENT_EVERY == 0
    body: dict[str, Any] = {
        "partner": "housing",
        "idempotency_key": f"{run}-{n}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": f"{n} Bench Street", "postcode": "RV9 9BN", "uprn": str(100000000 + n)},
        "description": "He punched the caretaker in the lobby" if violent else "Loud music late at night again",
        "victim": {"name": f"Resident {run} {n}", "date_of_birth": "1980-01-01"},
    }
    if n % 10 == 3:
        body["tenancy"] = {
            "tenure": "council",
            "tenancy_ref": f"B-{run}-{n}",
            "tenant_role": "perpetrator",
            "possession": {"notice_of_seeking_possession": True},
        }
    return body


def encoded_reports(run: str, count: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    out = []
    for n in range(count):
        event = ReportReceived.model_validate(synthetic_report(run, n))
        headers = new_envelope(event, "/partners/bench").headers()
        out.append((event.subject().encode(), encode_body(event), [(k, v.encode()) for k, v in headers.items()]))
    return out


async def publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=20)
    await producer.start()
    start = time.monotonic()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - start


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


def count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    done: list[int] = field(default_factory=list)


def peak_rss_mb(pipeline: Pipeline) -> dict[str, float]:
    out = {}
    for name, proc in pipeline.processes.items():
        if proc.popen is None or not proc.alive():
            continue
        status = Path(f"/proc/{proc.popen.pid}/status").read_text()
        hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
        out[name] = int(hwm.split()[1]) / 1024
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far."""
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[name] = times.user + times.system
    return out


def process_ids(pipeline: Pipeline, bootstrap: str) -> dict[str, int]:
    """The pipeline's processes and, when it runs here, the broker's JVM."""
    pids = {name: proc.popen.pid for name, proc in pipeline.processes.items() if proc.popen is not None}
    return {**pids, **broker_pid(bootstrap)}


def broker_pid(bootstrap: str) -> dict[str, int]:
    """The local broker's JVM (started by deploy/kafka/kafka.sh), if it runs here."""
    pid_file = REPO / ".local" / f"kafka-{bootstrap.rsplit(':', 1)[-1]}" / "broker.pid"
    return {"kafka broker": int(pid_file.read_text().strip())} if pid_file.exists() else {}


def run_pipeline_throughput(pipeline: Pipeline, n: int, progress: Progress) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    records = encoded_reports(run, n)
    ingress = topics.resolve(topics.PARTNER_REPORTS, pipeline.namespace)
    violent = len([i for i in range(n) if i % VIOLENT_EVERY == 0])
    task = progress.add_task("pipeline: triaged", total=n)
    series = Series()
    pids = process_ids(pipeline, pipeline.bootstrap_servers)
    cpu_before = cpu_seconds(pids)
    start = time.monotonic()
    publish_seconds = asyncio.run(publish(pipeline.bootstrap_servers, ingress, records))
    triage_db, panels_db, notif_db = (pipeline.database(s) for s in ("triage", "panels", "notifications"))
    deadline = start + max(600.0, n / 20)
    triaged = delivered = on_record = 0
    while time.monotonic() < deadline:
        triaged = count(triage_db, "select count(*) from triaged_incidents")
        delivered = count(notif_db, "select count(*) from police_alerts where status = 'delivered'")
        series.t.append(time.monotonic() - start)
        series.done.append(triaged)
        progress.update(task, completed=triaged)
        if triaged >= n and delivered >= violent:
            # Panels records every triaged incident, referred or not: the last hop of all.
            on_record = count(panels_db, "select count(*) from panel_incidents")
            if on_record >= n:
                break
        time.sleep(0.25)
    elapsed = time.monotonic() - start
    cpu_after = cpu_seconds(pids)
    cpu_ms_per_report = {k: round(1000 * (cpu_after[k] - cpu_before[k]) / n, 3) for k in cpu_after if k in cpu_before}
    referrals = count(panels_db, "select count(*) from panel_referral_incidents")
    return {
        "reports": n,
        "seconds": round(elapsed, 2),
        "reports_per_second": round(n / elapsed, 1),
        "publish_seconds": round(publish_seconds, 2),
        "triaged": triaged,
        "alerts_delivered": delivered,
        "alerts_expected": violent,
        "referral_links": referrals,
        "panels_incidents_on_record": on_record,
        "cpu_ms_per_report": cpu_ms_per_report,
        "complete": triaged >= n and delivered >= violent and on_record >= n,
        "series": {"t": series.t, "triaged": series.done},
    }


def run_bare_relay(bootstrap: str, n: int, progress: Progress) -> dict[str, Any]:
    """The same three hops (ingress -> accepted -> triaged -> alert) with bare relays."""
    ns = f"bare{uuid.uuid4().hex[:6]}."
    hops = [f"{ns}hop{i}" for i in range(4)]
    records = encoded_reports(uuid.uuid4().hex[:8], n)
    relays = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", bootstrap, hops[i], hops[i + 1], f"{ns}g{i}"], cwd=REPO
        )
        for i in range(3)
    ]
    task = progress.add_task("bare relay: last hop", total=n)
    pids = {**{f"relay {i}": p.pid for i, p in enumerate(relays)}, **broker_pid(bootstrap)}
    try:
        cpu_before = cpu_seconds(pids)
        start = time.monotonic()
        asyncio.run(publish(bootstrap, hops[0], records))
        done = 0
        while time.monotonic() - start < 600:
            done = asyncio.run(topic_size(bootstrap, hops[-1]))
            progress.update(task, completed=done)
            if done >= n:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - start
        cpu_after = cpu_seconds(pids)
    finally:
        for p in relays:
            p.terminate()
        for p in relays:
            p.wait(timeout=20)
    return {
        "reports": n,
        "seconds": round(elapsed, 2),
        "reports_per_second": round(n / elapsed, 1),
        "complete": done >= n,
        "cpu_ms_per_report": {
            k: round(1000 * (cpu_after[k] - cpu_before[k]) / n, 3) for k in cpu_after if k in cpu_before
        },
    }


def run_latency(pipeline: Pipeline, rate: float, seconds: float, progress: Progress) -> dict[str, Any]:
    """Police alert latency, from intake's acceptance (HTTP 201) to the receiver, at a steady rate."""
    run = uuid.uuid4().hex[:8]
    total = int(rate * seconds)
    accepted: dict[str, float] = {}
    task = progress.add_task(f"latency at {rate:.0f}/s", total=total)

    async def drive() -> None:
        async with httpx.AsyncClient(base_url=pipeline.url("intake"), timeout=30) as client:
            start = time.monotonic()
            pending: set[asyncio.Task[None]] = set()

            async def one(n: int) -> None:
                r = await client.post("/v1/reports", json=synthetic_report(run, n * VIOLENT_EVERY))
                r.raise_for_status()
                accepted[r.json()["incident_id"]] = time.time()
                progress.advance(task)

            for n in range(total):
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                t = asyncio.create_task(one(n))
                pending.add(t)
                t.add_done_callback(pending.discard)
            await asyncio.gather(*pending)

    asyncio.run(drive())
    deadline = time.monotonic() + 120
    received: dict[str, float] = {}
    while time.monotonic() < deadline:
        alerts = httpx.get(pipeline.url("receiver") + "/alerts", timeout=30).json()["alerts"]
        received = {
            a["alert"]["incident_id"]: datetime.fromisoformat(a["received_at"]).timestamp()
            for a in alerts.values()
            if a["alert"]["incident_id"] in accepted
        }
        if len(received) >= len(accepted):
            break
        time.sleep(0.5)
    latencies = sorted((received[i] - accepted[i]) * 1000 for i in received)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1) if latencies else -1.0

    return {
        "rate": rate,
        "sent": total,
        "alerts_received": len(received),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else -1,
        "latencies_ms": latencies,
    }


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    s = result["throughput"]["series"]
    rates = [0.0] + [
        (s["triaged"][i] - s["triaged"][i - 1]) / max(1e-6, s["t"][i] - s["t"][i - 1]) for i in range(1, len(s["t"]))
    ]
    ax1.plot(s["t"], rates, label="reports triaged per second")
    ax1.axhline(result["bare_relay"]["reports_per_second"], color="grey", linestyle="--", label="bare relay (mean)")
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("reports/s")
    ax1.set_title("End-to-end throughput over time")
    ax1.legend()
    lat = result["latency"]["latencies_ms"]
    ax2.hist(lat, bins=50)
    for p in ("p50_ms", "p95_ms", "p99_ms"):
        ax2.axvline(result["latency"][p], linestyle=":", label=f"{p[:-3]} {result['latency'][p]} ms")
    ax2.set_xlabel("ms from intake acceptance to police receiver")
    ax2.set_title(f"Police alert latency at {result['latency']['rate']:.0f} reports/s")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def stage_costs(reports: int = 2000) -> dict[str, float]:
    """CPU ms per message of each consumer and relay, in process (``python -m bench.stages``)."""
    from bench.stages import discard_logs
    from bench.stages import run as run_stages

    discard_logs()
    costs = asyncio.run(run_stages(reports, 500))
    return {stage: round(1000 * seconds / n, 3) for stage, (n, seconds) in costs.items() if n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000, help="reports for the throughput runs")
    parser.add_argument("--rate", type=float, default=200.0, help="steady rate for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--replay-incidents", type=int, default=1_000_000, help="stored incidents to re-triage (0: skip the replay)"
    )
    args = parser.parse_args(argv)

    kafka = LocalKafka(port=19292)  # its own broker, clear of make run (9092), tests (19092), compose (29092)
    bootstrap = kafka.start()
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "cpus": psutil.cpu_count()}
    workdir = REPO / "var" / "bench" / datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    try:
        with Progress(console=console) as progress:
            result["bare_relay"] = run_bare_relay(bootstrap, args.reports, progress)
            pipeline = Pipeline(workdir / "throughput", bootstrap, namespace=f"bench{uuid.uuid4().hex[:6]}.")
            try:
                result["ready_seconds"] = {k: round(v, 2) for k, v in pipeline.start().items()}
                result["throughput"] = run_pipeline_throughput(pipeline, args.reports, progress)
                result["peak_rss_mb_after_throughput"] = peak_rss_mb(pipeline)
                # As ops deploy them: each service started on its own (on the store it has now).
                result["ready_seconds_alone"] = {s: round(pipeline.restart(s), 2) for s in SERVICES}
            finally:
                pipeline.stop()
            pipeline = Pipeline(workdir / "latency", bootstrap, namespace=f"lat{uuid.uuid4().hex[:6]}.")
            try:
                pipeline.start()
                result["latency"] = run_latency(pipeline, args.rate, args.latency_seconds, progress)
                result["peak_rss_mb_after_latency"] = peak_rss_mb(pipeline)
            finally:
                pipeline.stop()
            if args.replay_incidents:
                from bench.replay import run_replay

                result["replay"] = run_replay(args.replay_incidents, workdir, progress)
            result["stages_cpu_ms"] = stage_costs()
    finally:
        kafka.stop()

    result["ratio_pipeline_to_bare"] = round(
        result["throughput"]["reports_per_second"] / result["bare_relay"]["reports_per_second"], 3
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    (RESULTS / f"{stamp}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    chart(result, RESULTS / f"{stamp}.png")

    table = Table(title="make bench")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    tp, bare, lat = result["throughput"], result["bare_relay"], result["latency"]
    table.add_row("end-to-end throughput (reports/s)", f"{tp['reports_per_second']}", ">= 3000")
    table.add_row("bare relay, same hops (reports/s)", f"{bare['reports_per_second']}", "")
    table.add_row("pipeline / bare", f"{result['ratio_pipeline_to_bare']:.1%}", ">= 40%")
    table.add_row(
        "alert latency p50 / p95 / p99 (ms)", f"{lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']}", "p99 <= 250"
    )
    if "replay" in result:
        replay = result["replay"]
        table.add_row(
            f"re-triage of {replay['incidents']:,} stored incidents (incidents/s)",
            f"{replay['incidents_per_second']:,.0f} ({replay['seconds']:.0f} s)",
            f">= {1_000_000 / 300:,.0f} (1M < 5 min)",
        )
        table.add_row("peak RSS re-triage (MB)", f"{replay['peak_rss_mb']:.0f}", "<= 150")
    after = (result["peak_rss_mb_after_throughput"], result["peak_rss_mb_after_latency"])
    for name in after[0]:
        mb = max(run.get(name, 0.0) for run in after)
        table.add_row(f"peak RSS {name} (MB)", f"{mb:.0f}", "<= 150")
    for name, s in result["ready_seconds_alone"].items():
        table.add_row(f"start-up to /ready, {name} alone (s)", f"{s}", "<= 3")
    bare_cpu = sum(bare["cpu_ms_per_report"].values())
    table.add_row("CPU per report, bare relay, all processes (ms)", f"{bare_cpu:.2f}", "")
    table.add_row("CPU per report, pipeline, all processes (ms)", f"{sum(tp['cpu_ms_per_report'].values()):.2f}", "")
    for name, ms in tp["cpu_ms_per_report"].items():
        table.add_row(f"CPU per report in the throughput run: {name} (ms)", f"{ms:.2f}", "")
    for stage, ms in result["stages_cpu_ms"].items():
        table.add_row(f"in-process CPU per message: {stage} (ms)", f"{ms:.3f}", "")
    console.print(table)
    console.print(f"Wrote {RESULTS / (stamp + '.json')} and {RESULTS / (stamp + '.png')}")
    complete = tp["complete"] and bare["complete"] and lat["alerts_received"] == lat["sent"]
    if not complete:
        console.print("[red]Some work did not complete within the time limit; numbers are partial.[/]")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
