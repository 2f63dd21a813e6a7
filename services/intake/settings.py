"""Intake settings (env prefix ``INTAKE_``)."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/intake.db"
    http_port: int = 8001
