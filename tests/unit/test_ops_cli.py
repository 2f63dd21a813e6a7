"""The ops CLI's own logic: option checking with errors that name the option, dead-letter ids and
selection, and reading /metrics text. (Against a real pipeline: tests/e2e/test_ops_redrive.py.)"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from ops import dead_letters as dl
from ops.cli import app, parse_since
from ops.status import read_metrics
from shared.contracts import DeadLetter
from shared.settings import KafkaSettings

runner = CliRunner()


def letter(service: str, topic: str, offset: int, failed_at: datetime, body: bytes = b"{}") -> dl.StoredDeadLetter:
    return dl.StoredDeadLetter(
        letter=DeadLetter(
            service=service,
            original_topic=topic,
            partition=0,
            offset=offset,
            key=None,
            headers={"ce_id": f"id-{offset}"},
            body=body.decode(),
            body_base64=base64.b64encode(body).decode(),
            error_type="ValueError",
            error="bad",
            attempts=1,
            failed_at=failed_at,
        ),
        event_id=f"{service}-{offset}",
        dead_letter_partition=0,
        dead_letter_offset=offset,
    )


def test_since_takes_a_duration_ago_or_an_iso_time() -> None:
    assert parse_since(None) is None
    assert abs(parse_since("2h") - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(seconds=5)  # type: ignore[operator]
    assert parse_since("2026-03-02") == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_since("2026-03-02T09:00+01:00") == datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["dead-letters", "list", "--since", "yesterday-ish"], "--since"),
        (["dead-letters", "list", "--service", "police"], "--service"),
        (["dead-letters", "show", "no-slashes"], "ID"),
        (["dead-letters", "redrive", "t/0/1", "--all"], "ID / --all"),
        (["dead-letters", "redrive", "t/0/1", "--since", "1h"], "--since"),
        (["briefing", "2026-02-30"], "DATE"),
        (["briefing", "2026-02-03", "--format", "pdf"], "--format"),
        (["agenda", "mac"], "PANEL"),
        (["retriage", "--batch-size", "0"], "--batch-size"),
        (["status", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(args: list[str], named: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_status_of_services_that_do_not_answer_exits_1() -> None:
    urls = [f"--{s}-url=http://127.0.0.1:9" for s in ("intake", "triage", "notifications", "panels")]
    result = runner.invoke(app, ["status", "--json", "--timeout", "1", *urls])
    assert result.exit_code == 1
    assert result.stdout.count('"unreachable (ConnectError)"') == 4


def test_an_id_is_topic_partition_offset_and_the_topic_may_contain_slashes_or_dots() -> None:
    assert dl.parse_id("dcsp.incidents.triaged.v1/2/40") == ("dcsp.incidents.triaged.v1", 2, 40)
    assert dl.parse_id("a/b/1/2") == ("a/b", 1, 2)
    for bad in ("x", "t/1", "/1/2", "t/one/2", "t/1/two"):
        with pytest.raises(dl.DeadLetterError):
            dl.parse_id(bad)


def test_a_letter_is_found_with_or_without_the_deployments_prefix_and_selected_by_service_and_time() -> None:
    now = datetime.now(UTC)
    letters = [
        letter("panels", "ns.dcsp.incidents.triaged.v1", 5, now - timedelta(hours=3)),
        letter("notifications", "ns.dcsp.incidents.triaged.v1", 5, now - timedelta(hours=3)),
        letter("intake", "ns.dcsp.partner-reports.v1", 9, now),
    ]
    kafka = KafkaSettings(topic_prefix="ns.")
    assert len(dl.find(letters, "dcsp.incidents.triaged.v1/0/5", kafka)) == 2
    assert len(dl.find(letters, "ns.dcsp.incidents.triaged.v1/0/5", kafka, "panels")) == 1
    assert dl.find(letters, "dcsp.incidents.triaged.v1/1/5", kafka) == []
    # Two services failed on one message: one redrive reaches both.
    assert [s.id for s in dl.unique_messages(letters)] == [
        "ns.dcsp.incidents.triaged.v1/0/5",
        "ns.dcsp.partner-reports.v1/0/9",
    ]
    assert [s.letter.service for s in dl.select_letters(letters, since=now - timedelta(hours=1))] == ["intake"]
    assert [s.letter.service for s in dl.select_letters(letters, service="panels")] == ["panels"]


def test_the_original_body_comes_back_byte_for_byte() -> None:
    raw = b'{"a": "\xc3\xa9"}'
    assert dl.original_body(letter("intake", "t", 1, datetime.now(UTC), raw).letter) == raw


def test_metrics_are_summed_for_the_named_service_only() -> None:
    text = "\n".join(
        [
            "# TYPE dcsp_consumer_lag gauge",
            'dcsp_consumer_lag{partition="0",service="panels",topic="a"} 3.0',
            'dcsp_consumer_lag{partition="1",service="panels",topic="a"} 4.0',
            'dcsp_consumer_lag{partition="0",service="triage",topic="a"} 100.0',
            "# TYPE dcsp_outbox_backlog gauge",
            'dcsp_outbox_backlog{service="panels"} 2.0',
            "# TYPE dcsp_dead_letters counter",
            'dcsp_dead_letters_total{service="panels",topic="a"} 1.0',
            'dcsp_dead_letters_created{service="panels",topic="a"} 1.7e9',
            "",
        ]
    )
    assert read_metrics(text, "panels") == {"consumer_lag": 7.0, "outbox_backlog": 2.0, "dead_letters": 1.0}
