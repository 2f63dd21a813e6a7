"""Settings every service shares. Each service adds its own with its own env prefix
(``INTAKE_``, ``TRIAGE_``, ...); Kafka settings are common to all (``KAFKA_``)."""

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka brokers, comma separated")
    topic_prefix: str = Field(default="", description="Put before every topic name (one cluster, many pipelines)")
    group_prefix: str = Field(default="", description="Put before every consumer group id")
    partitions: int = Field(default=3, ge=1, description="Partitions for topics this service creates")
    replication_factor: int = Field(default=1, ge=1, description="Replication for topics this service creates")
    linger_ms: int = Field(default=5, ge=0, description="Producer batching delay")
    # Transport security (issue #8): SASL/SCRAM over TLS for a secured cluster.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers; SASL_SSL in production"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    sasl_username: str | None = Field(default=None, description="SASL user of this service")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (prefer _FILE)")
    sasl_password_file: str | None = Field(
        default=None, description="File holding the SASL password (a mounted secret)"
    )
    ssl_cafile: str | None = Field(default=None, description="PEM of the CA that signed the brokers' certificates")
    ssl_certfile: str | None = Field(default=None, description="PEM client certificate, for mutual TLS")
    ssl_keyfile: str | None = Field(default=None, description="PEM key of the client certificate")
    ssl_check_hostname: bool = Field(default=True, description="Check the broker's certificate names its host")


class ReliabilitySettings(BaseSettings):
    """How hard a consumer tries before a message goes to the dead-letter topic."""

    model_config = SettingsConfigDict(env_prefix="RELIABILITY_", extra="ignore")

    max_attempts: int = Field(default=3, ge=1, description="Attempts per message before dead-lettering")
    retry_initial_seconds: float = Field(
        default=0.2, gt=0, description="Base of the exponential backoff between attempts (and its jitter)"
    )
    retry_max_seconds: float = Field(default=5.0, gt=0, description="Longest wait between attempts")
    outbox_batch_size: int = Field(default=500, ge=1)
    batch_max_records: int = Field(
        default=500, ge=1, description="Most records a consumer handles in one store transaction"
    )
    batch_timeout_ms: int = Field(
        default=25, ge=1, description="How long a consumer waits for records before polling again"
    )
    outbox_poll_seconds: float = Field(default=0.5, gt=0, description="Relay poll interval when not woken")


class ServiceSettings(BaseSettings):
    """Fields every service has; subclasses set the env prefix and defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="SQLAlchemy URL of this service's own store")
    http_host: str = "127.0.0.1"
    http_port: int = Field(ge=0, le=65535)
    log_level: str = "INFO"
    trace_sample_ratio: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of new traces logged message by message at INFO (a caller's sampled traceparent always is)",
    )
    # Security (issue #8). ``disabled`` lets every caller in with full access (dev, tests, demo);
    # production sets ``required`` and a credentials file (see shared.security).
    auth_mode: Literal["required", "disabled"] = Field(
        default="disabled", description="required: every /v1 and /officer call needs a credential"
    )
    auth_credentials_file: str | None = Field(
        default=None, description="JSON file of API key hashes, JWT issuers and roles (a mounted secret)"
    )
    auth_credentials: SecretStr | None = Field(default=None, description="The same JSON inline (prefer the file)")
    max_request_bytes: int = Field(default=256 * 1024, ge=1, description="Larger request bodies get 413")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    reliability: ReliabilitySettings = Field(default_factory=ReliabilitySettings)
