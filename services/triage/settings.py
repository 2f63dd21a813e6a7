"""Triage settings (env prefix ``TRIAGE_``): thresholds from the domain brief, never literals in rules.

Lists and mappings are given as JSON in the environment, e.g.
``TRIAGE_CROSS_BORDER_PLACES='["Northbridge"]'`` or ``TRIAGE_VULNERABILITY_WEIGHTS='{"lives-alone": 7}'``.
"""

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.retention import RetentionSettings
from shared.settings import ServiceSettings

# The documented question set (see services.triage.domain): weights a partnership may retune.
DEFAULT_VULNERABILITY_WEIGHTS: dict[str, int] = {
    "age-under-18": 8,
    "age-75-plus": 8,
    "disability": 8,
    "mental-health": 8,
    "lives-alone": 6,
    "isolated": 6,
    "children-in-household": 4,
    "fear-of-reprisal": 6,
    "impact-on-daily-life": 6,
    "repeat-target": 8,
    "hate-incident": 8,
    "violence": 8,
}


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/triage.db"
    http_port: int = 8002

    # Vulnerability question set and referral threshold.
    vulnerability_threshold: int = Field(default=22, description="Score at or above which a victim is vulnerable")
    vulnerability_weights: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_VULNERABILITY_WEIGHTS),
        description="Points per question-set factor (missing factors keep their default weight)",
    )
    child_under_age: int = Field(default=18, description="A victim younger than this scores age-under-18")
    older_from_age: int = Field(default=75, description="A victim this age or older scores age-75-plus")

    # Repeat reports and the ASB Case Review.
    repeat_window_days: int = Field(default=182, description="Window for counting repeat reports (6 months)")
    repeat_victim_reports: int = Field(
        default=2,
        description="Complaints in the window (this one included) that make a repeat victim and prompt the "
        "victim to be told about the ASB Case Review",
    )
    case_review_reports: int = Field(default=3, description="Qualifying complaints that allow an ASB Case Review")
    case_review_different_complainants: int = Field(
        default=5,
        description="Complaints from different people about the same problem at the same property that allow a "
        "Case Review (0 turns this condition off)",
    )
    case_review_hate_incidents: int = Field(
        default=1, description="Hate incidents in the window that allow a Case Review (0 turns this condition off)"
    )
    duplicate_window_hours: int = Field(
        default=24,
        description="Reports of the same kind at the same property or place, from different partners, this close "
        "in time are one incident",
    )

    # Risk reviews.
    high_risk_review_days: int = Field(default=14, description="High-risk cases are reviewed within this many days")
    medium_risk_review_days: int = Field(default=28, description="Medium-risk cases are reviewed within this many days")

    # Non-crime hate incidents: personal data kept only on a real risk of significant harm.
    nchi_retain_vulnerability_score: int = Field(
        default=22, description="Vulnerability score at which a non-crime hate incident keeps personal data"
    )

    # Proportionate response: first-contact targets per response tier.
    urgent_first_contact_hours: int = Field(default=4, description="First contact target for high-risk cases")
    priority_first_contact_hours: int = Field(default=24, description="First contact target for medium-risk cases")
    routine_first_contact_hours: int = Field(
        default=72, description="First contact target for standard cases (about 3 working days)"
    )

    # Ownership.
    council_estates: list[str] = Field(
        default_factory=lambda: ["Riverside Estate"],
        description="Council estate names; a report at one belongs to the Housing ASB team",
    )

    # Cross-border cases with the neighbouring borough's partnership.
    cross_border_places: list[str] = Field(
        default_factory=lambda: ["Northbridge"],
        description="Place names in the neighbouring borough (matched in the address or description)",
    )
    cross_border_postcode_prefixes: list[str] = Field(
        default_factory=lambda: ["NB"],
        description="Postcode areas (letters, e.g. NB) or outward codes (e.g. RV9) of the neighbouring borough",
    )
    cross_border_offenders: list[str] = Field(
        default_factory=list, description="Named offenders active in both town centres (matched in the description)"
    )

    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("vulnerability_weights")
    @classmethod
    def _complete_weights(cls, weights: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(weights) - set(DEFAULT_VULNERABILITY_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown vulnerability factor(s): {', '.join(unknown)}")
        return {**DEFAULT_VULNERABILITY_WEIGHTS, **weights}
