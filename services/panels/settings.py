"""Panels settings (env prefix ``PANELS_``): meeting schedules, cut-offs and agency contacts from the
domain brief, never literals in rules."""

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.contracts import PartnerAgency
from shared.retention import RetentionSettings
from shared.settings import ServiceSettings


class MeetingSchedule(BaseModel):
    """When a panel meets: the nth weekday of every month, or every n days from an anchor date."""

    kind: Literal["monthly", "every-n-days"]
    weekday: int = Field(default=1, ge=0, le=6, description="Monday 0 ... Sunday 6 (monthly)")
    week_of_month: int = Field(default=2, ge=1, le=4, description="1st to 4th such weekday of the month (monthly)")
    interval_days: int = Field(default=14, ge=1, description="Days between meetings (every-n-days)")
    anchor: date = Field(default=date(2026, 1, 6), description="One meeting date the series runs from (every-n-days)")
    cut_off_days: int = Field(
        default=5, ge=0, description="Referrals made on or before this many days before a meeting go on its agenda"
    )

    @model_validator(mode="after")
    def _cut_off_inside_the_cycle(self) -> "MeetingSchedule":
        if self.kind == "every-n-days" and self.cut_off_days >= self.interval_days:
            raise ValueError("cut_off_days must be shorter than interval_days")
        return self


class ComplexCasePanelSchedule(MeetingSchedule):
    """Defaults for the CCP, so one field (e.g. ``PANELS_CCP__CUT_OFF_DAYS``) can be set alone."""

    kind: Literal["monthly", "every-n-days"] = "monthly"


class SafeguardingPanelSchedule(MeetingSchedule):
    """Defaults for the VCSP, so one field can be set alone."""

    kind: Literal["monthly", "every-n-days"] = "every-n-days"


DEFAULT_AGENCY_CONTACTS: dict[PartnerAgency, str] = {
    PartnerAgency.POLICE: "asb-partnership@police.example.gov.uk",
    PartnerAgency.HOUSING: "tenancy-services@council.example.gov.uk",
    PartnerAgency.COMMUNITY_SAFETY_UNIT: "csu@council.example.gov.uk",
    PartnerAgency.ENVIRONMENTAL_HEALTH: "ehs@council.example.gov.uk",
    PartnerAgency.ENVIRONMENTAL_ENFORCEMENT: "enforcement@council.example.gov.uk",
    PartnerAgency.COUNTY_COUNCIL: "safeguarding@county.example.gov.uk",
    PartnerAgency.FIRE: "community-safety@fire.example.gov.uk",
    PartnerAgency.NHS: "safeguarding@nhs.example.net",
    PartnerAgency.NEIGHBOURING_PARTNERSHIP: "csp@neighbour.example.gov.uk",
}


class PanelsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANELS_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/panels.db"
    http_port: int = 8004
    timezone: str = Field(default="Europe/London", description="Meeting and due dates are dates here")
    ccp: ComplexCasePanelSchedule = Field(
        default_factory=ComplexCasePanelSchedule,
        description="Complex Case Panel: monthly, the second Tuesday",
    )
    vcsp: SafeguardingPanelSchedule = Field(
        default_factory=SafeguardingPanelSchedule,
        description="Vulnerability and Contextual Safeguarding Panel: fortnightly from the anchor date",
    )
    agency_contacts: dict[PartnerAgency, str] = Field(
        default_factory=lambda: dict(DEFAULT_AGENCY_CONTACTS),
        description="Who each agency's panel contact is (shown in packs)",
    )
    overdue_check_seconds: float = Field(default=60.0, gt=0, description="How often overdue actions are looked for")
    clock_fixed_at: AwareDatetime | None = Field(
        default=None, description="Fix the service's clock at this instant (demos and tests only); unset: real time"
    )
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
