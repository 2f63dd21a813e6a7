"""Unit tests for the panels' pure rules beyond referral triggers: meeting schedules and cut-offs,
agenda priority, possession records, homelessness risk and overdue days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.panels import domain
from services.panels.settings import MeetingSchedule, PanelsSettings
from shared.contracts import (
    MandatoryGround,
    Person,
    PossessionRisk,
    PossessionStage,
    RiskTier,
    Tenancy,
    TenantRole,
    Tenure,
)

CCP = PanelsSettings().ccp
VCSP = PanelsSettings().vcsp


@pytest.mark.parametrize(
    ("today", "meeting"),
    [
        (date(2026, 3, 2), date(2026, 3, 10)),  # second Tuesday of March 2026
        (date(2026, 3, 10), date(2026, 3, 10)),  # the meeting day itself
        (date(2026, 3, 11), date(2026, 4, 14)),
        (date(2026, 12, 9), date(2027, 1, 12)),  # across the year end
        (date(2026, 9, 1), date(2026, 9, 8)),  # a month starting on a Tuesday
    ],
)
def test_ccp_meets_on_the_second_tuesday(today: date, meeting: date) -> None:
    assert domain.next_meeting(CCP, today) == meeting
    assert meeting.weekday() == 1


@pytest.mark.parametrize(
    ("today", "meeting"),
    [
        (date(2026, 1, 6), date(2026, 1, 6)),  # the anchor
        (date(2026, 1, 7), date(2026, 1, 20)),
        (date(2025, 12, 31), date(2026, 1, 6)),  # before the anchor
        (date(2025, 12, 20), date(2025, 12, 23)),  # the series runs backwards too
        (date(2026, 3, 3), date(2026, 3, 3)),
    ],
)
def test_vcsp_meets_fortnightly_from_its_anchor(today: date, meeting: date) -> None:
    assert domain.next_meeting(VCSP, today) == meeting


def test_schedules_come_from_settings() -> None:
    weekly_thursday = MeetingSchedule(kind="every-n-days", interval_days=7, anchor=date(2026, 1, 1), cut_off_days=2)
    assert domain.next_meeting(weekly_thursday, date(2026, 3, 2)) == date(2026, 3, 5)
    first_monday = MeetingSchedule(kind="monthly", weekday=0, week_of_month=1, cut_off_days=3)
    assert domain.next_meeting(first_monday, date(2026, 3, 3)) == date(2026, 4, 6)
    with pytest.raises(ValueError, match="cut_off_days"):
        MeetingSchedule(kind="every-n-days", interval_days=7, cut_off_days=7)


@pytest.mark.parametrize(
    ("referred_on", "meeting"),
    [
        (date(2026, 3, 4), date(2026, 3, 10)),
        (date(2026, 3, 5), date(2026, 3, 10)),  # on the cut-off day: still in
        (date(2026, 3, 6), date(2026, 4, 14)),  # a day late: the following meeting
        (date(2026, 3, 10), date(2026, 4, 14)),
    ],
)
def test_cut_off_decides_the_meeting(referred_on: date, meeting: date) -> None:
    assert domain.cut_off(CCP, date(2026, 3, 10)) == date(2026, 3, 5)
    assert domain.meeting_for_referral(CCP, referred_on) == meeting


def test_dates_are_london_dates() -> None:
    assert domain.local_date(datetime(2026, 7, 1, 23, 30, tzinfo=UTC), "Europe/London") == date(2026, 7, 2)
    assert domain.local_date(datetime(2026, 1, 1, 23, 30, tzinfo=UTC), "Europe/London") == date(2026, 1, 1)


def test_agenda_priority_is_tier_then_score_then_age() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)

    def c(name: str, tier: RiskTier | None, score: int, days_old: int) -> domain.AgendaCandidate:
        return domain.AgendaCandidate(name, t0 - timedelta(days=days_old), tier, score)

    ordered = domain.priority_order(
        [
            c("standard-old", RiskTier.STANDARD, 30, 20),
            c("no-tier", None, 50, 30),
            c("high-10-new", RiskTier.HIGH, 10, 1),
            c("medium-40", RiskTier.MEDIUM, 40, 5),
            c("high-10-old", RiskTier.HIGH, 10, 9),
            c("high-25", RiskTier.HIGH, 25, 0),
        ]
    )
    assert [x.referral_id for x in ordered] == [
        "high-25",
        "high-10-old",
        "high-10-new",
        "medium-40",
        "standard-old",
        "no-tier",
    ]


@pytest.mark.parametrize(
    ("stage", "grounds", "level"),
    [
        (None, (), domain.HomelessnessRisk.LOW),
        (PossessionStage.WITHDRAWN, (MandatoryGround.INJUNCTION_BREACH,), domain.HomelessnessRisk.LOW),
        (PossessionStage.NOTICE_SERVED, (), domain.HomelessnessRisk.MEDIUM),
        (PossessionStage.NOTICE_SERVED, (MandatoryGround.CBO_BREACH_CONVICTION,), domain.HomelessnessRisk.HIGH),
        (PossessionStage.HEARING_LISTED, (), domain.HomelessnessRisk.HIGH),
        (PossessionStage.WARRANT_ISSUED, (), domain.HomelessnessRisk.IMMINENT),
        (PossessionStage.EVICTED, (), domain.HomelessnessRisk.HOMELESS),
    ],
)
def test_homelessness_risk(
    stage: PossessionStage | None, grounds: tuple[MandatoryGround, ...], level: domain.HomelessnessRisk
) -> None:
    assert domain.homelessness_risk(stage, grounds)[0] == level


def _block(tenure: Tenure = Tenure.COUNCIL, nsp: bool = False) -> Tenancy:
    return Tenancy(
        tenure=tenure,
        tenancy_ref="T-9",
        tenant_role=TenantRole.VICTIM,
        possession=PossessionRisk(notice_of_seeking_possession=nsp),
    )


def test_the_housing_systems_word_beats_a_reports() -> None:
    housing = domain.tenancy_from_housing(
        "T-9", Tenure.PRIVATE_RENTED, PossessionStage.WITHDRAWN, [], Person(name="T"), None, None
    )
    after = domain.tenancy_from_report(_block(nsp=True), "123", housing)
    assert after is not None
    assert after.tenure == Tenure.PRIVATE_RENTED and after.stage == PossessionStage.WITHDRAWN
    assert after.uprn == "123" and after.tenant == Person(name="T")


def test_a_report_sets_a_notice_only_when_nothing_is_on_record() -> None:
    first = domain.tenancy_from_report(_block(nsp=True), None, None)
    assert first is not None and first.stage == PossessionStage.NOTICE_SERVED
    assert domain.tenancy_from_report(_block(nsp=False), None, None) == domain.TenancyRecord("T-9", Tenure.COUNCIL)


def test_grounds_accumulate() -> None:
    one = domain.tenancy_from_housing(
        "T-9", Tenure.COUNCIL, PossessionStage.NOTICE_SERVED, [MandatoryGround.INJUNCTION_BREACH], None, None, None
    )
    two = domain.tenancy_from_housing(
        "T-9", Tenure.COUNCIL, PossessionStage.HEARING_LISTED, [MandatoryGround.CLOSURE_ORDER_OVER_48H], None, None, one
    )
    assert two.mandatory_grounds == (MandatoryGround.INJUNCTION_BREACH, MandatoryGround.CLOSURE_ORDER_OVER_48H)


@pytest.mark.parametrize(
    ("tenure", "stage", "roles", "refers"),
    [
        (Tenure.COUNCIL, PossessionStage.NOTICE_SERVED, [TenantRole.PERPETRATOR], True),
        (Tenure.COUNCIL, PossessionStage.EVICTED, [TenantRole.VICTIM], True),
        (Tenure.COUNCIL, PossessionStage.NOTICE_SERVED, [], False),  # no ASB on record
        (Tenure.COUNCIL, PossessionStage.WITHDRAWN, [TenantRole.VICTIM], False),
        (Tenure.PRIVATE_RENTED, PossessionStage.ORDER_GRANTED, [TenantRole.VICTIM], False),
        (Tenure.HOUSING_ASSOCIATION, PossessionStage.NOTICE_SERVED, [TenantRole.PERPETRATOR], False),
    ],
)
def test_decide_on_possession(tenure: Tenure, stage: PossessionStage, roles: list[TenantRole], refers: bool) -> None:
    record = domain.TenancyRecord("T-9", tenure, stage)
    decision = domain.decide_on_possession(record, roles)
    assert (decision is not None) == refers
    if decision is not None:
        assert decision.person_key == "tenancy:T-9" and decision.reasons[0].startswith("council tenant")


def test_minimised_person_has_no_date_of_birth_or_contact() -> None:
    person = Person(name="N", date_of_birth=date(2000, 3, 2), contact="07700 900000", person_ref="X1")
    assert domain.minimised_person(person, date(2026, 3, 1)) == {"name": "N", "age": 25, "vulnerabilities": []}


def test_days_overdue() -> None:
    assert domain.days_overdue(date(2026, 3, 1), date(2026, 3, 1)) == 0
    assert domain.days_overdue(date(2026, 3, 1), date(2026, 3, 4)) == 3
