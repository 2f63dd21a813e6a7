"""`dcsp`: the operator's command line.

Exit codes: 0 done; 1 the system is not as asked (a service not ready or unreachable, Kafka
unreachable, no such dead letter, a service refusing the request); 2 bad usage (the message names
the option).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops import dead_letters as dl
from ops.status import DEFAULT_PORTS, SERVICES, ServiceStatus, service_status
from shared.contracts import Panel
from shared.settings import KafkaSettings

app = typer.Typer(
    name="dcsp",
    help="Operate the community safety partnership platform: status, dead letters, re-triage, briefings, agendas.",
    no_args_is_help=True,
    add_completion=False,
)
dead_letters_app = typer.Typer(help="List, inspect and redrive dead letters.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

FAILED = 1


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(FAILED)


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A progress bar on stderr, shown only on a terminal so piped output stays clean."""
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )
    with bar:
        yield bar


# -- shared options ----------------------------------------------------------------------------

BootstrapOption = Annotated[
    str,
    typer.Option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka brokers, comma separated."),
]
PrefixOption = Annotated[
    str,
    typer.Option("--topic-prefix", envvar="KAFKA_TOPIC_PREFIX", help="The deployment's topic prefix, if any."),
]


def _check_service(value: str | None) -> str | None:
    if value is not None and value not in SERVICES:
        raise typer.BadParameter(f"{value!r} is not a service; expected one of {', '.join(SERVICES)}")
    return value


ServiceOption = Annotated[
    str | None,
    typer.Option(
        "--service", callback=_check_service, help=f"Only dead letters of this service ({', '.join(SERVICES)})."
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each HTTP answer.")]


def _url_option(service: str) -> Any:
    return typer.Option(
        f"--{service}-url",
        envvar=f"DCSP_{service.upper()}_URL",
        help=f"Base URL of the {service} service.",
    )


IntakeUrl = Annotated[str, _url_option("intake")]
TriageUrl = Annotated[str, _url_option("triage")]
NotificationsUrl = Annotated[str, _url_option("notifications")]
PanelsUrl = Annotated[str, _url_option("panels")]


DEFAULT_URLS = {service: f"http://127.0.0.1:{port}" for service, port in DEFAULT_PORTS.items()}
INTAKE_DEFAULT, TRIAGE_DEFAULT = DEFAULT_URLS["intake"], DEFAULT_URLS["triage"]
NOTIFICATIONS_DEFAULT, PANELS_DEFAULT = DEFAULT_URLS["notifications"], DEFAULT_URLS["panels"]


def _kafka(bootstrap_servers: str, topic_prefix: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix)


_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None) -> datetime | None:
    """``2h``/``30m``/``7d``/``1w`` ago, or an ISO date or date-time (UTC if no offset)."""
    if value is None:
        return None
    text = value.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return datetime.now(UTC) - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: expected a duration ago (30m, 2h, 7d, 1w) or an ISO date/time (2026-03-02, 2026-03-02T09:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_since(value: str | None) -> str | None:
    parse_since(value)
    return value


# -- status ------------------------------------------------------------------------------------


@app.command()
def status(
    intake_url: IntakeUrl = INTAKE_DEFAULT,
    triage_url: TriageUrl = TRIAGE_DEFAULT,
    notifications_url: NotificationsUrl = NOTIFICATIONS_DEFAULT,
    panels_url: PanelsUrl = PANELS_DEFAULT,
    timeout: TimeoutOption = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Each service's readiness, consumer lag and outbox backlog (from /ready and /metrics).

    Exits 1 if any service is unreachable or not ready."""
    urls = dict(zip(SERVICES, (intake_url, triage_url, notifications_url, panels_url), strict=True))

    async def gather() -> list[ServiceStatus]:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return list(await asyncio.gather(*(service_status(client, s, u.rstrip("/")) for s, u in urls.items())))

    found = asyncio.run(gather())
    if as_json:
        out.print_json(orjson.dumps([s.as_json() for s in found]).decode())
    else:
        table = Table(title="dcsp services")
        table.add_column("Service", no_wrap=True)
        table.add_column("URL", overflow="fold")
        table.add_column("Ready", no_wrap=True)
        for column in ("Consumer lag", "Outbox backlog", "Dead letters"):
            table.add_column(column, justify="right")
        table.add_column("Problems", overflow="fold")
        for s in found:
            problems = "; ".join([*(f"{k}: {v}" for k, v in s.failing_checks.items()), *([s.error] if s.error else [])])
            table.add_row(
                s.service,
                s.url,
                "[green]ready[/]" if s.ready else ("[red]not ready[/]" if s.reachable else "[red]unreachable[/]"),
                _number(s.consumer_lag),
                _number(s.outbox_backlog),
                _number(s.dead_letters),
                escape(problems) or "-",
            )
        out.print(table)
    if not all(s.ready for s in found):
        raise typer.Exit(FAILED)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# -- dead letters ------------------------------------------------------------------------------


def _read(kafka: KafkaSettings) -> list[dl.StoredDeadLetter]:
    with progress_bar("reading dead letters") as bar:
        task = bar.add_task("read", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            return asyncio.run(dl.read_dead_letters(kafka, advance))
        except dl.DeadLetterError as exc:
            fail(str(exc))


@dead_letters_app.command("list")
def list_dead_letters(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            callback=_check_since,
            help="Only letters that failed since then: 30m, 2h, 7d, 1w, or an ISO date/time.",
        ),
    ] = None,
    service: ServiceOption = None,
    bootstrap_servers: BootstrapOption = "127.0.0.1:9092",
    topic_prefix: PrefixOption = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Dead letters, oldest first: ID (original topic/partition/offset), service, error."""
    after = parse_since(since)
    kafka = _kafka(bootstrap_servers, topic_prefix)
    letters = dl.select_letters(_read(kafka), since=after, service=service)
    if as_json:
        out.print_json(orjson.dumps([_letter_summary(s) for s in letters]).decode())
        return
    table = Table(title=f"Dead letters on {dl.dead_letter_topic(kafka)} ({len(letters)})")
    for column in ("ID", "Service", "Failed at (UTC)", "Type", "Error"):
        table.add_column(column, overflow="fold")
    for s in letters:
        table.add_row(
            escape(s.id),
            s.letter.service,
            s.letter.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape(s.letter.headers.get("ce_type", "-")),
            escape(f"{s.letter.error_type}: {s.letter.error}"),
        )
    out.print(table)


def _letter_summary(s: dl.StoredDeadLetter) -> dict[str, Any]:
    return {
        "id": s.id,
        "service": s.letter.service,
        "failed_at": s.letter.failed_at.isoformat(),
        "ce_type": s.letter.headers.get("ce_type"),
        "ce_id": s.letter.headers.get("ce_id"),
        "error_type": s.letter.error_type,
        "error": s.letter.error,
        "attempts": s.letter.attempts,
    }


@dead_letters_app.command("show")
def show_dead_letter(
    ident: Annotated[str, typer.Argument(metavar="ID", help="TOPIC/PARTITION/OFFSET of the original message.")],
    service: ServiceOption = None,
    bootstrap_servers: BootstrapOption = "127.0.0.1:9092",
    topic_prefix: PrefixOption = "",
) -> None:
    """Everything a dead letter holds: origin, headers, key, body and the error (JSON)."""
    kafka = _kafka(bootstrap_servers, topic_prefix)
    try:
        dl.parse_id(ident)
    except dl.DeadLetterError as exc:
        raise typer.BadParameter(str(exc), param_hint="ID") from None
    matches = dl.find(_read(kafka), ident, kafka, service)
    if not matches:
        fail(f"no dead letter {ident}{f' of {service}' if service else ''} on {dl.dead_letter_topic(kafka)}")
    shown = []
    for s in matches:
        body: Any = s.letter.body
        try:
            body = orjson.loads(dl.original_body(s.letter))
        except (orjson.JSONDecodeError, dl.DeadLetterError):
            pass  # shown as the text the dead letter carries
        shown.append(
            {
                **_letter_summary(s),
                "original_topic": s.letter.original_topic,
                "partition": s.letter.partition,
                "offset": s.letter.offset,
                "key": s.letter.key,
                "headers": s.letter.headers,
                "body": body,
                "dead_letter": {"partition": s.dead_letter_partition, "offset": s.dead_letter_offset},
            }
        )
    out.print_json(orjson.dumps(shown[0] if len(shown) == 1 else shown).decode())


@dead_letters_app.command("redrive")
def redrive_dead_letters(
    ident: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="TOPIC/PARTITION/OFFSET of the original message.")
    ] = None,
    redrive_all: Annotated[
        bool, typer.Option("--all", help="Redrive every dead letter (with --service/--since).")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", callback=_check_since, help="With --all: only letters that failed since.")
    ] = None,
    service: ServiceOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bootstrap_servers: BootstrapOption = "127.0.0.1:9092",
    topic_prefix: PrefixOption = "",
) -> None:
    """Republish dead letters to their original topic (same body, key and headers) once the cause is
    fixed. The same event id means the consuming service processes it exactly once, however often
    it is redriven; services that had processed it drop it as a duplicate."""
    if (ident is None) == (not redrive_all):
        raise typer.BadParameter("give either an ID or --all (not both)", param_hint="ID / --all")
    if since is not None and not redrive_all:
        raise typer.BadParameter("--since goes with --all", param_hint="--since")
    after = parse_since(since)
    if ident is not None:
        try:
            dl.parse_id(ident)
        except dl.DeadLetterError as exc:
            raise typer.BadParameter(str(exc), param_hint="ID") from None
    kafka = _kafka(bootstrap_servers, topic_prefix)
    letters = _read(kafka)
    if ident is not None:
        chosen = dl.find(letters, ident, kafka, service)
        if not chosen:
            fail(f"no dead letter {ident}{f' of {service}' if service else ''} on {dl.dead_letter_topic(kafka)}")
    else:
        chosen = dl.select_letters(letters, since=after, service=service)
        if not chosen:
            out.print("No dead letters to redrive.")
            return
    messages = dl.unique_messages(chosen)
    for s in messages:
        out.print(f"{escape(s.id)}  ({s.letter.service}: {escape(s.letter.error_type)}: {escape(s.letter.error)})")
    if not yes and not typer.confirm(f"Redrive {len(messages)} message(s) to their original topics?"):
        fail("not redriven (not confirmed; --yes skips the question)")
    with progress_bar("redriving") as bar:
        task = bar.add_task("redrive", total=len(messages))

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            done = asyncio.run(dl.redrive(kafka, chosen, advance))
        except dl.DeadLetterError as exc:
            fail(str(exc))
    out.print(f"Redriven {len(done)} message(s): {', '.join(escape(i) for i in done)}")


# -- re-triage ---------------------------------------------------------------------------------


@app.command()
def retriage(
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Triage's store (default: TRIAGE_DATABASE_URL or its default)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Incidents per transaction.")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would change; write nothing.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Re-run the current triage rules over triage's stored history (`python -m services.triage.retriage`);
    changed outcomes are published as IncidentRetriaged by the running triage service."""
    from services.triage.retriage import main as retriage_main

    argv = ["--batch-size", str(batch_size)]
    if database_url:
        argv += ["--database-url", database_url]
    if dry_run:
        argv.append("--dry-run")
    if no_progress:
        argv.append("--no-progress")
    raise typer.Exit(retriage_main(argv))


# -- briefing and agenda -----------------------------------------------------------------------


def _get(url: str, timeout: float, **params: str) -> httpx.Response:
    try:
        response = httpx.get(url, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {type(exc).__name__}: {exc}")
    if response.status_code >= 400:
        fail(f"{url} answered HTTP {response.status_code}: {_reason(response)}")
    return response


def _reason(response: httpx.Response) -> str:
    """The partnership's error shape as one line: each field and why."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in errors)
    return str(body)[:300]


def _briefing_date(value: str) -> date:
    text = value.strip().lower()
    if text == "today":
        return date.today()
    if text == "yesterday":
        return date.today() - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected YYYY-MM-DD, today or yesterday", param_hint="DATE") from None


@app.command()
def briefing(
    day: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD, today or yesterday.")],
    fmt: Annotated[str, typer.Option("--format", help="text, html or json.")] = "text",
    notifications_url: NotificationsUrl = NOTIFICATIONS_DEFAULT,
    timeout: TimeoutOption = 30.0,
) -> None:
    """The CSU Daily Briefing for a date, rebuilt from notifications' store."""
    wanted = _briefing_date(day)
    if fmt not in ("text", "html", "json"):
        raise typer.BadParameter(f"{fmt!r}: expected text, html or json", param_hint="--format")
    response = _get(f"{notifications_url.rstrip('/')}/v1/briefings/{wanted.isoformat()}", timeout, format=fmt)
    if fmt == "json":
        out.print_json(response.text)
    else:
        typer.echo(response.text, nl=not response.text.endswith("\n"))


@app.command()
def agenda(
    panel: Annotated[Panel, typer.Argument(metavar="PANEL", help="ccp or vcsp.", case_sensitive=False)],
    panels_url: PanelsUrl = PANELS_DEFAULT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """The next meeting's agenda of a panel, in priority order."""
    body = _get(f"{panels_url.rstrip('/')}/v1/panels/{panel.value}/meetings/next/agenda", timeout, format="json")
    found = body.json()
    if as_json:
        out.print_json(body.text)
        return
    table = Table(
        title=f"{found['panel_name']}: meeting {found['meeting_date']} (referrals up to {found['cut_off']})",
        show_lines=True,
    )
    columns = ["#", "Person", "Risk", "Score", "Referred", "By", "Incidents", "Consent"]
    if found["panel"] == Panel.CCP:
        columns.append("Possession stage")
    columns.append("Reasons")
    for column in columns:
        table.add_column(column, overflow="fold")
    for item in found["items"]:
        person = item.get("person") or {}
        row = [
            str(item["position"]),
            escape(person.get("name") or "(not named)"),
            item.get("risk_tier") or "not assessed",
            str(item.get("vulnerability_score", 0)),
            item["referred_at"][:10],
            escape(item.get("referring_partner") or "triage rules"),
            str(item.get("incident_count", 0)),
            escape(str(item.get("consent") or "-")),
        ]
        if found["panel"] == Panel.CCP:
            row.append(escape(item.get("possession_stage") or "none on record"))
        row.append(escape("\n".join(item.get("reasons") or [])))
        table.add_row(*row)
    out.print(table)
    if not found["items"]:
        out.print("No referrals for this meeting.")
    if found.get("after_cut_off"):
        out.print(
            f"{len(found['after_cut_off'])} later referral(s) go to the meeting on {found['following_meeting_date']}."
        )


if __name__ == "__main__":
    app()
