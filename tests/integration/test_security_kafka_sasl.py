"""Transport security: the whole pipeline (four services as processes) runs against a real broker
that accepts only SASL/SCRAM-SHA-512 over TLS, with certificates and SCRAM users made for the test
(deploy/kafka/secure.sh); the service password comes from a mounted-style file. A client without
TLS, or with a wrong password, gets nowhere."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from demo.pipeline import Pipeline
from shared.security import kafka_client_options
from shared.settings import KafkaSettings

from ..conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    state: Path

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "dcsp",
            "KAFKA_SASL_PASSWORD_FILE": str(self.state / "client.password"),
            "KAFKA_SSL_CAFILE": str(self.state / "tls" / "ca.crt"),
        }


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    state = tmp_path_factory.mktemp("kafka-secure")
    port = free_port()
    env = {
        **os.environ,
        "SECURE_KAFKA_PORT": str(port),
        "SECURE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SECURE_KAFKA_STATE_DIR": str(state),
    }
    script = REPO / "deploy" / "kafka" / "secure.sh"
    subprocess.run([str(script), "start"], env=env, check=True, timeout=180)
    try:
        yield SecureBroker(f"127.0.0.1:{port}", state)
    finally:
        subprocess.run([str(script), "stop"], env=env, check=False, timeout=60)


def _refused(settings: KafkaSettings) -> str:
    async def attempt() -> str:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000, **kafka_client_options(settings)
        )
        try:
            await asyncio.wait_for(producer.start(), timeout=15)
        except (KafkaError, TimeoutError, OSError) as exc:
            return type(exc).__name__
        finally:
            await producer.stop()
        return ""

    return asyncio.run(attempt())


def test_clients_without_tls_or_with_a_wrong_password_are_refused(secure_broker: SecureBroker) -> None:
    assert _refused(KafkaSettings(bootstrap_servers=secure_broker.bootstrap))
    wrong = secure_broker.state / "wrong.password"
    wrong.write_text("not-the-password")
    assert _refused(
        KafkaSettings(
            bootstrap_servers=secure_broker.bootstrap,
            security_protocol="SASL_SSL",
            sasl_username="dcsp",
            sasl_password_file=str(wrong),
            ssl_cafile=str(secure_broker.state / "tls" / "ca.crt"),
        )
    )


def test_the_pipeline_runs_over_sasl_scram_and_tls(secure_broker: SecureBroker, tmp_path: Path) -> None:
    pipe = Pipeline(
        tmp_path / "pipeline",
        secure_broker.bootstrap,
        namespace=f"sasl{uuid.uuid4().hex[:6]}.",
        extra_env=secure_broker.env(),
    )
    try:
        pipe.start(timeout=90)
        body = {
            "partner": "police",
            "idempotency_key": f"sasl-{uuid.uuid4()}",
            "reported_at": datetime.now(UTC).isoformat(),
            "location": {"address": "3 Canal Walk, Riverside Estate", "uprn": "100023336777"},
            "description": "Tenant was punched and kicked by a neighbour on the landing",
            "victim": {"name": "Sasl Victim", "date_of_birth": "1950-05-05", "vulnerabilities": ["disability"]},
        }
        posted = httpx.post(pipe.url("intake") + "/v1/reports", json=body, timeout=10)
        assert posted.status_code == 201, posted.text
        incident_id = posted.json()["incident_id"]

        def alert_delivered() -> bool:
            alerts = httpx.get(pipe.url("notifications") + "/v1/alerts", params={"incident_id": incident_id}).json()
            return bool(alerts) and alerts[0]["delivery_status"] == "delivered"

        # intake -> triage -> notifications -> the police, and triage -> panels: every hop over SASL_SSL.
        wait_for(alert_delivered, 90, "the police alert, delivered over the SASL_SSL pipeline")
        triaged = httpx.get(pipe.url("triage") + f"/v1/incidents/{incident_id}", timeout=10)
        assert triaged.status_code == 200 and triaged.json()["classification"]["violence_or_criminality"]
        wait_for(lambda: httpx.get(pipe.url("panels") + "/v1/referrals", timeout=10).json(), 60, "a panel referral")
        for name in ("intake", "triage", "notifications", "panels"):
            log = (tmp_path / "pipeline" / f"{name}.log").read_text()
            assert (secure_broker.state / "client.password").read_text() not in log  # the secret is never logged
    finally:
        pipe.stop()
