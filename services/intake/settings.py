"""Intake settings (env prefix ``INTAKE_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.retention import RetentionSettings
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/intake.db"
    http_port: int = 8001

    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    erasure_services: list[str] = Field(
        default_factory=lambda: ["intake", "triage", "notifications", "panels"],
        description="Services that must confirm an erasure request before it is complete",
    )
