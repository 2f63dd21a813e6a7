"""Triage settings (env prefix ``TRIAGE_``): thresholds from the domain brief, never literals in rules."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/triage.db"
    http_port: int = 8002
    vulnerability_threshold: int = Field(default=22, description="Score at or above which a victim is vulnerable")
    repeat_window_days: int = Field(default=182, description="Window for counting repeat reports (6 months)")
    repeat_victim_reports: int = Field(
        default=2, description="Reports in the window (this one included) that make a repeat victim"
    )
    case_review_reports: int = Field(default=3, description="Qualifying complaints that allow an ASB Case Review")
    high_risk_review_days: int = 14
    medium_risk_review_days: int = 28
