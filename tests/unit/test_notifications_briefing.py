"""Unit tests for the Daily Briefing (services.notifications.briefing) and the partner-update
rules: pure, no store, no clock."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from services.notifications import briefing, domain
from services.notifications.briefing import AlertFact, CaseReviewFact, Facts, IncidentFact, ReferralFact
from shared.contracts import (
    AsbQualifier,
    Classification,
    CrimeCategory,
    IncidentTriaged,
    PanelAction,
    PanelOutcomeRecorded,
    PartnerAgency,
    ReportDetails,
    RiskTier,
)

LONDON = ZoneInfo("Europe/London")
AT = time(8, 30)
DAY = date(2026, 7, 15)  # British Summer Time: 08:30 local is 07:30 UTC
CUT = datetime(2026, 7, 15, 7, 30, tzinfo=UTC)


def incident(n: int, at: datetime, **changes: Any) -> IncidentFact:
    fields: dict[str, Any] = {
        "incident_id": f"00000000-0000-4000-8000-{n:012d}",
        "triaged_at": at,
        "partner": "housing",
        "asb_qualifier": "personal",
        "asb_heading": "rowdy/nuisance neighbours",
        "crime_category": None,
        "risk_tier": "medium",
        "hate_strands": (),
        "hate_incident": False,
        "vulnerable": True,
        "repeat_victim": False,
        "cross_border": False,
        "owning_team": "housing-asb",
        "victim_key": f"vk-{n}",
        "location": f"{n} Canal Walk, AB1 2CD",
        "summary": "Shouting at night",
        "review_due": None,
    }
    fields.update(changes)
    return IncidentFact(**fields)


def facts() -> Facts:
    return Facts(
        incidents=[
            incident(1, CUT - timedelta(hours=3)),
            incident(2, CUT - timedelta(hours=2), risk_tier="high", crime_category="violent-crime"),
            incident(3, CUT - timedelta(days=3), risk_tier="high"),  # older, still open
            incident(4, CUT - timedelta(days=20), risk_tier="high"),  # past the open window
            incident(5, CUT - timedelta(hours=1), cross_border=True, repeat_victim=True, victim_key="vk-shared"),
            incident(6, CUT - timedelta(hours=5), repeat_victim=True, victim_key="vk-shared"),
            incident(7, CUT + timedelta(minutes=1)),  # after the cut-off: tomorrow's
            incident(8, CUT - timedelta(hours=4), summary="<script>alert('x')</script> & more"),
        ],
        case_reviews=[
            CaseReviewFact(
                kind="prompt-due",
                incident_id="00000000-0000-4000-8000-000000000005",
                victim_key="vk-shared",
                complaints_in_window=2,
                window_days=183,
                grounds=(),
                raised_at=CUT - timedelta(hours=1),
            ),
        ],
        referrals=[
            ReferralFact(
                referral_id=str(uuid.UUID(int=9)),
                panel="vcsp",
                incident_id="00000000-0000-4000-8000-000000000002",
                person_key="pk-2",
                reasons=("risk high",),
                created_at=CUT - timedelta(hours=1),
            ),
        ],
        alerts=[
            AlertFact(  # overdue at the cut-off; acknowledged only an hour after it
                alert_id="a-late",
                incident_id="i-2",
                risk_tier="high",
                crime_category="violent-crime",
                raised_at=CUT - timedelta(hours=2),
                acknowledge_by=CUT - timedelta(hours=1, minutes=45),
                acknowledged_at=CUT + timedelta(hours=1),
                delivered_at=CUT - timedelta(hours=2),
                escalated_at=CUT - timedelta(hours=1),
            ),
            AlertFact(  # acknowledged in time
                alert_id="a-acked",
                incident_id="i-9",
                risk_tier="high",
                crime_category="robbery",
                raised_at=CUT - timedelta(hours=2),
                acknowledge_by=CUT - timedelta(hours=1),
                acknowledged_at=CUT - timedelta(hours=1, minutes=30),
                delivered_at=CUT - timedelta(hours=2),
                escalated_at=None,
            ),
        ],
    )


def section(b: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in b["sections"] if s["name"] == name)


def test_cut_off_is_local_briefing_time_across_daylight_saving() -> None:
    assert briefing.cut_off_for(date(2026, 7, 15), AT, LONDON) == datetime(2026, 7, 15, 7, 30, tzinfo=UTC)
    assert briefing.cut_off_for(date(2026, 1, 15), AT, LONDON) == datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
    # The clocks go forward at 01:00 on 29 March 2026: that day's briefing covers 23 hours.
    w = briefing.window_for(date(2026, 3, 29), AT, LONDON)
    assert w.cut_off - w.previous_cut_off == timedelta(hours=23)


def test_briefing_is_due_only_from_the_local_time() -> None:
    assert briefing.briefing_due(CUT - timedelta(seconds=1), AT, LONDON) is None
    assert briefing.briefing_due(CUT, AT, LONDON) == DAY
    # 23:30 UTC on 15 July is 00:30 on the 16th in London: the 16th's briefing is not due yet.
    assert briefing.briefing_due(datetime(2026, 7, 15, 23, 30, tzinfo=UTC), AT, LONDON) is None


def test_briefing_sections_hold_the_right_cases() -> None:
    b = briefing.build_briefing(DAY, AT, "Europe/London", facts(), open_case_days=14)
    ids = {
        s["name"]: [i.get("incident_id") or i.get("victim_key") or i.get("alert_id") for i in s["items"]]
        for s in b["sections"]
    }
    new = ids["new_issues_of_concern"]
    assert set(new) == {f"00000000-0000-4000-8000-{n:012d}" for n in (1, 2, 5, 6, 8)}
    assert set(ids["open_high_risk_cases"]) == {f"00000000-0000-4000-8000-{n:012d}" for n in (2, 3)}
    assert ids["repeat_victims"] == ["vk-shared"]
    assert section(b, "repeat_victims")["items"][0]["incident_ids"] == [
        "00000000-0000-4000-8000-000000000005",
        "00000000-0000-4000-8000-000000000006",
    ]
    assert ids["cross_border_cases"] == ["00000000-0000-4000-8000-000000000005"]
    assert [a["alert_id"] for a in section(b, "overdue_alerts")["items"]] == [
        "a-late"
    ]  # acknowledged only after the cut-off
    assert section(b, "overdue_alerts")["items"][0]["escalated"] is True
    assert section(b, "case_review_prompts")["count"] == 1
    assert section(b, "panel_referrals")["count"] == 1
    assert b["cut_off"] == "2026-07-15T07:30:00Z" and b["cut_off_local"] == "2026-07-15 08:30 BST"


def test_same_facts_in_any_order_give_byte_identical_output() -> None:
    f = facts()
    shuffled = Facts(*(random.Random(seed).sample(list(part), len(part)) for seed, part in enumerate(
        (f.incidents, f.case_reviews, f.referrals, f.alerts)
    )))  # fmt: skip
    one = briefing.build_briefing(DAY, AT, "Europe/London", f, open_case_days=14)
    two = briefing.build_briefing(DAY, AT, "Europe/London", shuffled, open_case_days=14)
    assert briefing.render_json(one) == briefing.render_json(two)
    assert briefing.render_html(one) == briefing.render_html(two)
    assert briefing.render_text(one) == briefing.render_text(two)
    assert orjson.loads(briefing.render_json(one)) == one


def test_changes_since_the_previous_briefing() -> None:
    today = briefing.build_briefing(DAY, AT, "Europe/London", facts(), open_case_days=14)
    tomorrow = briefing.build_briefing(DAY + timedelta(days=1), AT, "Europe/London", facts(), open_case_days=14)
    open_cases = section(tomorrow, "open_high_risk_cases")
    assert open_cases["changes"]["previous_count"] == 2
    assert open_cases["changes"]["added"] == []
    assert section(today, "open_high_risk_cases")["changes"]["added"] == ["00000000-0000-4000-8000-000000000002"]
    overdue = section(tomorrow, "overdue_alerts")
    assert overdue["changes"]["removed"] == ["a-late"]  # acknowledged since


def test_html_has_a_table_of_cases_and_escapes_what_partners_wrote() -> None:
    html = briefing.render_html(briefing.build_briefing(DAY, AT, "Europe/London", facts(), open_case_days=14))
    assert '<table class="cases">' in html
    assert "<td>00000000-0000-4000-8000-000000000008</td>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    text = briefing.render_text(briefing.build_briefing(DAY, AT, "Europe/London", facts(), open_case_days=14))
    assert "<script>" in text  # plain text is not HTML: kept as written


def test_is_overdue_only_when_past_deadline_and_not_acknowledged_in_time() -> None:
    due = CUT
    assert not domain.is_overdue(due, None, due - timedelta(seconds=1))
    assert domain.is_overdue(due, None, due)
    assert not domain.is_overdue(due, due - timedelta(minutes=1), due + timedelta(hours=1))
    assert domain.is_overdue(due, due + timedelta(hours=2), due + timedelta(hours=1))


def test_issue_of_concern_excludes_plain_standard_nuisance() -> None:
    base = Classification(
        asb_qualifier=AsbQualifier.NUISANCE, asb_heading="noise", crime_category=None, violence_or_criminality=False,
        hate_incident=False, vulnerable=False, vulnerability_score=0, risk_tier=RiskTier.STANDARD,
        repeat_victim=False, prior_reports_6_months=0, reasons=[], rules_version="t",
    )  # fmt: skip
    assert not domain.is_issue_of_concern(base)
    assert domain.is_issue_of_concern(base.model_copy(update={"cross_border": True}))
    assert domain.is_issue_of_concern(base.model_copy(update={"risk_tier": RiskTier.MEDIUM}))


def test_cross_border_payload_carries_only_the_documented_fields() -> None:
    c = Classification(
        asb_qualifier=AsbQualifier.PERSONAL, asb_heading=None, crime_category=CrimeCategory.VIOLENT_CRIME,
        violence_or_criminality=True, hate_incident=True, hate_strands=["race"], vulnerable=True,
        vulnerability_score=25, risk_tier=RiskTier.HIGH, repeat_victim=True, prior_reports_6_months=2,
        reasons=["x"], rules_version="t", cross_border=True, owning_team="csu",
    )  # fmt: skip
    report = ReportDetails.model_validate(
        {
            "partner": "police",
            "idempotency_key": "k",
            "reported_at": "2026-07-15T06:00:00+00:00",
            "location": {
                "address": "1 High St",
                "postcode": "AB1 2CD",
                "uprn": "123",
                "latitude": 51.5,
                "longitude": 0.1,
            },
            "description": "Jane Doe of 1 High St was attacked",
            "victim": {"name": "Jane Doe", "date_of_birth": "1980-01-01", "contact": "07700 900123"},
        }
    )
    event = IncidentTriaged(incident_id=uuid.uuid4(), triaged_at=CUT, victim_key="vk", classification=c, report=report)
    payload = domain.cross_border_payload(event, "csu@example.gov.uk")
    assert tuple(payload) == domain.CROSS_BORDER_FIELDS
    assert payload["location"] == {"uprn": "123", "postcode": "AB1 2CD"}
    text = orjson.dumps(payload).decode()
    for personal in ("Jane", "Doe", "1980", "07700", "High St", "attacked"):
        assert personal not in text


def test_panel_outcome_email_lists_decision_and_actions() -> None:
    outcome = PanelOutcomeRecorded(
        referral_id=uuid.UUID(int=5), panel="vcsp", referring_partner=PartnerAgency.HOUSING,
        decision="Joint visit and support plan",
        actions=[PanelAction(action_id=uuid.UUID(int=1), description="Joint visit", owner_agency=PartnerAgency.POLICE,
                             due=date(2026, 8, 1), tool="community-protection-notice")],
        recorded_at=CUT,
    )  # fmt: skip
    subject, text = domain.panel_outcome_email(outcome)
    assert "Vulnerability and Contextual Safeguarding Panel" in subject
    assert "Joint visit and support plan" in text and "community-protection-notice" in text and "2026-08-01" in text
