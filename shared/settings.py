"""Settings every service shares. Each service adds its own with its own env prefix
(``INTAKE_``, ``TRIAGE_``, ...); Kafka settings are common to all (``KAFKA_``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka brokers, comma separated")
    topic_prefix: str = Field(default="", description="Put before every topic name (one cluster, many pipelines)")
    group_prefix: str = Field(default="", description="Put before every consumer group id")
    partitions: int = Field(default=3, ge=1, description="Partitions for topics this service creates")
    replication_factor: int = Field(default=1, ge=1, description="Replication for topics this service creates")
    linger_ms: int = Field(default=5, ge=0, description="Producer batching delay")


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
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    reliability: ReliabilitySettings = Field(default_factory=ReliabilitySettings)
