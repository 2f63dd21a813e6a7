"""The Daily Briefing and partner updates on a real SQLite store, with a real SMTP server and a
real HTTP server for the neighbouring partnership, and an injected clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from demo.pipeline import free_port
from demo.police_receiver import build_app
from demo.smtp_receiver import SmtpReceiver
from services.notifications import briefing, domain
from shared.contracts import (
    CaseReviewPromptDue,
    CrimeCategory,
    PanelAction,
    PanelOutcomeRecorded,
    PanelReferralCreated,
    PartnerAgency,
    RiskTier,
)
from shared.outbox import OutboxRecord

from .test_notifications_alerts import ServerThread, Service, classification, start_service, triaged

DAY = date(2026, 3, 2)  # GMT: 08:30 local is 08:30 UTC
CUT = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
NEIGHBOUR_SECRET = "neighbour-secret"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver(free_port()) as receiver:
        yield receiver


@pytest.fixture
def neighbour() -> Iterator[ServerThread]:
    with ServerThread(build_app(NEIGHBOUR_SECRET)) as server:
        yield server


@pytest.fixture
async def service(tmp_path: Path, smtp: SmtpReceiver, neighbour: ServerThread) -> AsyncIterator[Service]:
    svc = await start_service(
        tmp_path,
        police_alert_channels=["email"],
        smtp={"port": smtp.port},
        briefing_distribution=["briefing@csp.example.gov.uk", "police-briefing@police.example.uk"],
        neighbour_webhook_url=neighbour.url + "/alerts",
        neighbour_webhook_secret=NEIGHBOUR_SECRET,
        partner_contacts={"housing": ["asb-team@housing.example.gov.uk"]},
    )
    svc.clock.now = CUT - timedelta(hours=6)
    yield svc
    await svc.parts.dispatcher.webhooks.aclose()
    await svc.runtime.engine.dispose()


async def feed(svc: Service) -> dict[str, str]:
    """A morning's events: a violent high-risk case, a cross-border hate incident, a repeat victim
    with a Case Review prompt, a panel referral, and a plain nuisance report (not of concern)."""
    p = svc.parts.partners
    violent = triaged(
        classification(
            violence_or_criminality=True,
            crime_category=CrimeCategory.VIOLENT_CRIME,
            risk_tier=RiskTier.HIGH,
            reasons=["violence"],
        ),
        at=CUT - timedelta(hours=5),
        description="Punched on the landing <b>by</b> a neighbour",
    )
    cross = triaged(
        classification(hate_incident=True, hate_strands=["race"], cross_border=True, owning_team="csu"),
        at=CUT - timedelta(hours=4),
    )
    repeat = triaged(classification(repeat_victim=True, prior_reports_6_months=2), at=CUT - timedelta(hours=3))
    quiet = triaged(classification(), at=CUT - timedelta(hours=2), description="Bins left out")
    for event in (violent, cross, repeat, quiet):
        await svc.consume(p.on_incident_triaged, event)
    await svc.consume(
        p.on_case_review_prompt,
        CaseReviewPromptDue(
            incident_id=repeat.incident_id,
            victim_key=repeat.victim_key or "",
            qualifying_incident_ids=[repeat.incident_id],
            complaints_in_window=2,
            window_days=183,
            raised_at=CUT - timedelta(hours=3),
        ),
    )
    referral_id = uuid.uuid4()
    await svc.consume(
        p.on_panel_referral,
        PanelReferralCreated(
            referral_id=referral_id,
            panel="vcsp",
            person_key="pk-1",
            incident_id=violent.incident_id,
            reasons=["high risk"],
            created_at=CUT - timedelta(hours=1),
        ),
    )
    return {
        "violent": str(violent.incident_id),
        "cross": str(cross.incident_id),
        "repeat": str(repeat.incident_id),
        "quiet": str(quiet.incident_id),
        "referral": str(referral_id),
    }


async def test_building_the_briefing_twice_from_the_same_store_is_byte_identical_and_html_has_tables(
    service: Service,
) -> None:
    ids = await feed(service)
    service.clock.now = CUT + timedelta(hours=2)
    first = await service.parts.briefings.build(DAY)
    second = await service.parts.briefings.build(DAY)
    assert briefing.render_json(first) == briefing.render_json(second)
    assert briefing.render_html(first) == briefing.render_html(second)
    assert briefing.render_text(first) == briefing.render_text(second)

    async with service.http() as http:
        as_json = await http.get(f"/v1/briefings/{DAY}")
        again = await http.get(f"/v1/briefings/{DAY}")
        as_html = await http.get(f"/v1/briefings/{DAY}", headers={"accept": "text/html"})
        by_param = await http.get(f"/v1/briefings/{DAY}", params={"format": "html"})
        too_early = await http.get(f"/v1/briefings/{DAY + timedelta(days=1)}")
        bad = await http.get("/v1/briefings/2026-02-30")
    assert as_json.status_code == 200 and as_json.content == again.content == briefing.render_json(first)
    assert as_html.headers["content-type"].startswith("text/html") and as_html.text == by_param.text
    html = as_html.text
    assert html.count('<table class="cases">') >= 5
    assert f"<td>{ids['violent']}</td>" in html and ids["quiet"] not in html
    assert "&lt;b&gt;by&lt;/b&gt;" in html  # what a partner wrote is escaped
    assert too_early.status_code == 404 and too_early.json()["errors"][0]["field"] == "briefing_date"
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "briefing_date"

    sections = {s["name"]: s for s in as_json.json()["sections"]}
    assert {i["incident_id"] for i in sections["new_issues_of_concern"]["items"]} == {
        ids["violent"],
        ids["cross"],
        ids["repeat"],
    }
    assert [i["incident_id"] for i in sections["open_high_risk_cases"]["items"]] == [ids["violent"]]
    assert [i["incident_id"] for i in sections["cross_border_cases"]["items"]] == [ids["cross"]]
    assert sections["case_review_prompts"]["items"][0]["incident_id"] == ids["repeat"]
    assert [r["referral_id"] for r in sections["panel_referrals"]["items"]] == [ids["referral"]]
    # The violent case's alert was raised 5 h before the cut-off and never acknowledged.
    assert [a["incident_id"] for a in sections["overdue_alerts"]["items"]] == [ids["violent"]]


async def test_briefing_is_published_once_at_its_local_time_and_emailed_as_text_and_html(
    service: Service, smtp: SmtpReceiver
) -> None:
    await feed(service)
    service.clock.now = CUT - timedelta(seconds=1)
    assert await service.parts.briefings.publish_due() is None
    service.clock.now = CUT
    assert await service.parts.briefings.publish_due() == DAY
    service.clock.advance(minutes=30)
    assert await service.parts.briefings.publish_due() is None
    await service.deliver_until_settled()

    mails = smtp.mailbox.to("briefing@csp.example.gov.uk")
    assert len(mails) == 1 and mails[0]["To"] == "briefing@csp.example.gov.uk, police-briefing@police.example.uk"
    assert mails[0]["Subject"].startswith(f"Daily Briefing {DAY}: 3 new issues of concern")
    parts = {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in mails[0].iter_parts()}
    rebuilt = await service.parts.briefings.build(DAY)
    assert parts["text/plain"] == briefing.render_text(rebuilt)
    assert parts["text/html"] == briefing.render_html(rebuilt)
    async with service.runtime.sessions() as session:
        published = (
            (await session.execute(select(OutboxRecord.body).where(OutboxRecord.topic == "dcsp.daily-briefings.v1")))
            .scalars()
            .all()
        )
    assert len(published) == 1
    assert orjson.loads(published[0])["sha256"] == briefing.digest(rebuilt)


async def test_cross_border_case_goes_to_the_neighbour_signed_and_minimised_and_the_referrer_hears_the_outcome(
    service: Service, smtp: SmtpReceiver, neighbour: ServerThread
) -> None:
    ids = await feed(service)
    outcome = PanelOutcomeRecorded(
        referral_id=uuid.UUID(ids["referral"]),
        panel="vcsp",
        referring_partner=PartnerAgency.HOUSING,
        decision="Joint visit; Community Protection Notice warning",
        actions=[
            PanelAction(
                action_id=uuid.uuid4(),
                description="Joint visit",
                owner_agency=PartnerAgency.POLICE,
                due=date(2026, 3, 9),
            )
        ],
        recorded_at=CUT,
    )
    await service.consume(service.parts.partners.on_panel_outcome, outcome)
    await service.consume(service.parts.partners.on_panel_outcome, outcome)  # redelivered
    unknown = outcome.model_copy(update={"referring_partner": PartnerAgency.FIRE, "recorded_at": CUT + timedelta(1)})
    await service.consume(service.parts.partners.on_panel_outcome, unknown)  # no contact configured
    await service.deliver_until_settled()

    async with httpx.AsyncClient() as client:
        state = (await client.get(neighbour.url + "/alerts", timeout=5)).json()
    assert (state["unique"], state["duplicates"], state["rejected"]) == (1, 0, 0)  # signature verified
    sent = next(iter(state["alerts"].values()))["alert"]
    assert tuple(sent) == domain.CROSS_BORDER_FIELDS and sent["incident_id"] == ids["cross"]
    text = orjson.dumps(sent).decode()
    assert "Alice" not in text and "07700" not in text and "Canal Walk" not in text and "shouting" not in text

    to_housing = smtp.mailbox.to("asb-team@housing.example.gov.uk")
    assert len(to_housing) == 1
    assert ids["referral"] in to_housing[0]["Subject"] and "Joint visit" in to_housing[0].get_content()
    async with service.http() as http:
        outcomes = (await http.get("/v1/dispatches", params={"kind": "panel-outcome"})).json()
        crossings = (await http.get("/v1/dispatches", params={"kind": "cross-border"})).json()
    assert len(outcomes) == 1 and outcomes[0]["status"] == "delivered"
    assert crossings[0]["attempt_history"][0]["status_code"] == 201
