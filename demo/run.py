"""`make run` / `make demo`: start a broker (unless KAFKA_BOOTSTRAP_SERVERS is set), the four
services and the police stand-in, play the scenario through both front doors (HTTP and the
ingress topic), and show what happened to each report.

    python -m demo.run            keep running until Ctrl-C
    python -m demo.run --exit     exit when done: 0 only if every expected outcome happened
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from demo import scenario
from demo.kafka import LocalKafka
from demo.partner import PartnerPublisher
from demo.pipeline import REPO, Pipeline
from services.intake.domain import incident_id_for
from shared.contracts import Panel, ReportDetails

console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass
class Outcome:
    item: scenario.ScenarioReport
    incident_id: str
    classification: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    panels: set[str] = field(default_factory=set)

    def ok(self) -> bool:
        return (
            self.classification is not None
            and (self.alert is not None and self.alert["status"] == "delivered") == self.item.expect_alert
            and self.panels == {str(p) for p in self.item.expect_panels}
        )


async def _publish(bootstrap: str, namespace: str, reports: list[dict[str, Any]]) -> None:
    async with PartnerPublisher(bootstrap, namespace) as partner:
        await partner.publish_reports(reports)


def play(pipeline: Pipeline, namespace: str, items: list[scenario.ScenarioReport], timeout: float) -> list[Outcome]:
    outcomes = [Outcome(item, str(incident_id_for(ReportDetails.model_validate(item.report)))) for item in items]
    with Progress(console=console, transient=False) as progress:
        sent = progress.add_task("reports sent", total=len(items))
        for item in items:
            if item.channel == "http":
                r = httpx.post(pipeline.url("intake") + "/v1/reports", json=item.report, timeout=10)
                r.raise_for_status()
            progress.advance(sent)
        kafka_items = [i.report for i in items if i.channel == "kafka"]
        asyncio.run(_publish(pipeline.bootstrap_servers, namespace, kafka_items))

        done_task = progress.add_task("outcomes settled", total=len(items))
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                alerts = {a["incident_id"]: a for a in http.get(pipeline.url("notifications") + "/v1/alerts").json()}
                referrals = http.get(pipeline.url("panels") + "/v1/referrals").json()
                for o in outcomes:
                    if o.classification is None:
                        r = http.get(f"{pipeline.url('triage')}/v1/incidents/{o.incident_id}")
                        if r.status_code == 200:
                            o.classification = r.json()["classification"]
                    o.alert = alerts.get(o.incident_id)
                    o.panels = {ref["panel"] for ref in referrals if o.incident_id in ref["incident_ids"]}
                settled = sum(1 for o in outcomes if o.ok())
                progress.update(done_task, completed=settled)
                if settled == len(outcomes):
                    break
                time.sleep(0.3)
    return outcomes


def report_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="What happened to each report")
    for col in ("#", "report", "via", "classification", "police alert", "panels", "as expected"):
        table.add_column(col)
    for n, o in enumerate(outcomes, 1):
        c = o.classification or {}
        cls = (
            f"{c.get('asb_qualifier')}/{c.get('asb_heading') or '-'}"
            + (f"; crime: {c['crime_category']}" if c.get("crime_category") else "")
            + ("; hate" if c.get("hate_incident") else "")
            + (f"; risk {c.get('risk_tier')}" if c else "")
            if c
            else "not triaged"
        )
        alert = (
            f"delivered ({o.alert['attempts']} attempt(s))"
            if o.alert and o.alert["status"] == "delivered"
            else (o.alert["status"] if o.alert else "-")
        )
        panels = ", ".join(sorted(p.upper() for p in o.panels)) or "-"
        expected = (
            "yes"
            if o.ok()
            else (
                f"NO: expected alert={o.item.expect_alert}, panels="
                f"{sorted(str(p) for p in o.item.expect_panels) or '-'}"
            )
        )
        table.add_row(
            str(n),
            o.item.title,
            o.item.channel,
            cls,
            alert,
            panels,
            f"[green]{expected}[/]" if o.ok() else f"[red]{expected}[/]",
        )
    return table


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exit", action="store_true", help="exit when the scenario has played")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every outcome")
    args = parser.parse_args(argv)

    run_id = datetime.now(UTC).strftime("run%Y%m%d%H%M%S")
    namespace = f"demo.{run_id}."
    kafka = LocalKafka()
    console.print("[bold]Starting Kafka[/] (deploy/kafka/kafka.sh; first run fetches the jars from Maven Central)")
    bootstrap = kafka.start()
    # `make run` keeps the documented ports (each overridable by its service's env var);
    # `make demo` takes free ones so it can run beside anything.
    defaults = {
        "intake": ("INTAKE_HTTP_PORT", 8001),
        "triage": ("TRIAGE_HTTP_PORT", 8002),
        "notifications": ("NOTIFICATIONS_HTTP_PORT", 8003),
        "panels": ("PANELS_HTTP_PORT", 8004),
        "receiver": ("RECEIVER_PORT", 8099),
        "mail": ("SMTP_RECEIVER_PORT", 2525),
    }
    fixed_ports = (
        None if args.exit else {name: int(os.environ.get(var, port)) for name, (var, port) in defaults.items()}
    )
    pipeline = Pipeline(
        REPO / "var" / "demo" / run_id, bootstrap, namespace=namespace, ports=fixed_ports, receiver_fail_first=2
    )
    try:
        console.print(f"[bold]Starting services[/] (logs and SQLite stores in {pipeline.workdir})")
        for name, seconds in pipeline.start().items():
            console.print(f"  {name:<14} ready in {seconds:.1f} s on 127.0.0.1:{pipeline.processes[name].port}")
        items = scenario.build(run_id)
        console.print(f"[bold]Playing {len(items)} reports[/] from partners (HTTP and the ingress topic)")
        outcomes = play(pipeline, namespace, items, args.timeout)
        console.print(report_table(outcomes))
        receiver = httpx.get(pipeline.url("receiver") + "/alerts", timeout=10).json()
        expected_alerts = sum(1 for o in outcomes if o.item.expect_alert)
        console.print(
            f"Police gateway stand-in: {receiver['unique']} distinct alerts received "
            f"(expected {expected_alerts}), {receiver['deliveries']} deliveries, "
            f"{receiver['failed_on_purpose']} refused on purpose to show retries, {receiver['duplicates']} duplicates."
        )
        referrals = httpx.get(pipeline.url("panels") + "/v1/referrals", timeout=10).json()
        for panel in Panel:
            count = sum(1 for r in referrals if r["panel"] == panel)
            console.print(f"{panel.upper()} referrals open: {count}")
        ok = all(o.ok() for o in outcomes) and receiver["unique"] == expected_alerts
        console.print("[bold green]Every expected outcome happened.[/]" if ok else "[bold red]Some outcomes differ.[/]")
        if args.exit:
            return 0 if ok else 1
        console.print(f"Services keep running (intake {pipeline.url('intake')}/docs). Ctrl-C stops everything.")
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)  # also when started in the background
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
        return 0 if ok else 1
    finally:
        console.print("Stopping services...")
        pipeline.stop()
        kafka.stop()


if __name__ == "__main__":
    sys.exit(main())
