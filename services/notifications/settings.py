"""Notifications settings (env prefix ``NOTIFICATIONS_``)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/notifications.db"
    http_port: int = 8003
    police_webhook_url: str = Field(
        default="http://127.0.0.1:8099/alerts", description="Where police alerts are POSTed"
    )
    police_webhook_secret: SecretStr = Field(
        default=SecretStr("change-me"), description="HMAC-SHA256 key for the X-DCSP-Signature header"
    )
    police_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_initial_seconds: float = Field(default=0.5, gt=0, description="First retry delay after a failure")
    retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest delay between attempts")
    delivery_concurrency: int = Field(default=8, ge=1)
    delivery_poll_seconds: float = Field(default=1.0, gt=0, description="How often due retries are looked for")
