"""Panels settings (env prefix ``PANELS_``)."""

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PanelsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PANELS_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/panels.db"
    http_port: int = 8004
