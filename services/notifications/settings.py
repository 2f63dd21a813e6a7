"""Notifications settings (env prefix ``NOTIFICATIONS_``; nested fields with ``__``, e.g.
``NOTIFICATIONS_SMTP__PORT=2525``, ``NOTIFICATIONS_POLICE_WEBHOOK_TLS__VERIFY=false``)."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.retention import RetentionSettings
from shared.settings import ServiceSettings

AlertChannel = Literal["webhook", "email"]


def _webhook() -> list[AlertChannel]:
    return ["webhook"]


def _email() -> list[AlertChannel]:
    return ["email"]


class TlsOptions(BaseModel):
    """TLS for an HTTPS webhook: server verification (on by default) and an optional client certificate."""

    verify: bool = Field(default=True, description="Verify the server's certificate (turn off only in a lab)")
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust instead of the system's")
    client_cert: str | None = Field(default=None, description="PEM client certificate, for mutual TLS")
    client_key: str | None = Field(default=None, description="PEM key of the client certificate, if not in it")


class SmtpSettings(BaseModel):
    """The mail server every email goes through (police mailbox, CSU duty, partners, briefing)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = Field(default=False, description="Implicit TLS (SMTPS, usually port 465)")
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = Field(default=None, description="File holding the SMTP password (a mounted secret)")
    timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "dcsp-notifications@csp.example.gov.uk"
    message_id_domain: str = Field(default="dcsp.csp.example.gov.uk", description="Right-hand side of Message-IDs")


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/notifications.db"
    http_port: int = 8003

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    # -- police alerts ---------------------------------------------------------------------
    police_alert_channels: list[AlertChannel] = Field(
        default_factory=_webhook,
        description='Channels every police alert must reach, e.g. ["webhook","email"]; delivered = all have it',
    )
    police_webhook_url: str = Field(
        default="http://127.0.0.1:8099/alerts", description="Where police alerts are POSTed"
    )
    police_webhook_secret: SecretStr = Field(
        default=SecretStr("change-me"), description="HMAC-SHA256 key for the X-DCSP-Signature header"
    )
    police_webhook_secret_file: str | None = Field(
        default=None, description="File holding the police webhook key (a mounted secret); wins over the value"
    )
    police_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    police_webhook_tls: TlsOptions = Field(default_factory=TlsOptions)
    police_email_to: list[str] = Field(
        default_factory=lambda: ["police-alerts@police.example.uk"], description="The police mailbox(es)"
    )
    retry_initial_seconds: float = Field(default=0.5, gt=0, description="First retry delay after a failure")
    retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest delay between attempts")
    delivery_concurrency: int = Field(
        default=32,
        ge=1,
        description="Most messages being sent at once (and webhook connections per destination kept open)",
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest wait between looks for due dispatches when not woken"
    )
    webhook_keepalive_seconds: float = Field(
        default=4.0,
        gt=0,
        description="How long an idle webhook connection is kept for reuse; below the receiver's own idle limit",
    )

    # -- acknowledgement and escalation ----------------------------------------------------
    ack_deadline_minutes: dict[str, int] = Field(
        default_factory=lambda: {"high": 15},
        description="Minutes the police have to acknowledge an alert, by risk tier",
    )
    ack_deadline_default_minutes: int = Field(default=240, ge=1, description="For tiers not listed above (4 hours)")
    escalation_channels: list[AlertChannel] = Field(
        default_factory=_email, description="How an overdue alert reaches the CSU duty contact"
    )
    csu_duty_email: list[str] = Field(default_factory=lambda: ["csu-duty@council.example.gov.uk"])
    csu_duty_webhook_url: str | None = Field(default=None, description="Signed with the police webhook secret")
    escalation_check_seconds: float = Field(default=15.0, gt=0, description="How often overdue alerts are looked for")

    # -- Daily Briefing ---------------------------------------------------------------------
    briefing_time: time = Field(default=time(8, 30), description="Local time the Daily Briefing is built and sent")
    briefing_timezone: str = "Europe/London"
    briefing_distribution: list[str] = Field(
        default_factory=list, description="Partner distribution list for the Daily Briefing (empty: not emailed)"
    )
    briefing_open_case_days: int = Field(
        default=14, ge=1, description="A high-risk case without a review date stays open this long (high: 14 days)"
    )
    briefing_lookback_days: int = Field(default=90, ge=1, description="How far back the briefing reads the store")
    briefing_summary_chars: int = Field(default=160, ge=0, description="Length of each case's description summary")
    briefing_check_seconds: float = Field(default=30.0, gt=0)

    # -- cross-border and partner updates -----------------------------------------------------
    neighbour_webhook_url: str | None = Field(
        default=None, description="The neighbouring partnership's channel for cross-border cases (none: not sent)"
    )
    neighbour_webhook_secret: SecretStr = Field(default=SecretStr("change-me"))
    neighbour_webhook_secret_file: str | None = Field(default=None, description="File holding the neighbour's key")
    neighbour_webhook_tls: TlsOptions = Field(default_factory=TlsOptions)
    partnership_contact: str = Field(
        default="csu@council.example.gov.uk", description="Who a neighbouring partnership contacts about a case"
    )
    partner_contacts: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Email of each referring agency, told of panel outcomes, e.g. {"housing": ["asb@..."]}',
    )

    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @model_validator(mode="after")
    def _secrets_from_files(self) -> NotificationsSettings:
        # Mounted secret files win over values, so a key never has to sit in the environment.
        from shared.security import read_secret

        if self.police_webhook_secret_file:
            self.police_webhook_secret = SecretStr(read_secret(None, self.police_webhook_secret_file) or "")
        if self.neighbour_webhook_secret_file:
            self.neighbour_webhook_secret = SecretStr(read_secret(None, self.neighbour_webhook_secret_file) or "")
        if self.smtp.password_file:
            self.smtp.password = SecretStr(read_secret(None, self.smtp.password_file) or "")
        return self

    @field_validator("briefing_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def ack_deadline(self, risk_tier: str) -> timedelta:
        """How long the police have to acknowledge an alert of this risk tier."""
        return timedelta(minutes=self.ack_deadline_minutes.get(risk_tier, self.ack_deadline_default_minutes))
