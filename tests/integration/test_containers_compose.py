"""docker-compose.yml under a real engine (Podman here, via podman-compose): the whole stack from
the images deploy/images/build.sh makes, on PostgreSQL. A report posted to intake reaches the
police receiver as an alert and panels' own PostgreSQL database as a referral; then the stack is
torn down with its volumes. Never skipped: no engine, no pass."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ..conftest import (
    DEFAULT_KAFKA_IMAGE,
    DEFAULT_POSTGRES_IMAGE,
    REPO,
    _kafka_answers,
    _postgres_answers,
    free_port,
    require_engine,
    require_image,
    wait_for,
)

SERVICES = ("intake", "triage", "notifications", "panels")


def compose_command() -> list[str]:
    """`docker compose` where the plugin exists, else podman-compose (installed with the dev extras)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    beside_python = Path(sys.executable).with_name("podman-compose")
    found = str(beside_python) if beside_python.exists() else shutil.which("podman-compose")
    if not found:
        pytest.fail("neither `docker compose` nor podman-compose is installed (pip install -e '.[dev]')")
    return [found]


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    ports: dict[str, int]
    command: list[str]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, "-p", self.project, "-f", str(REPO / "docker-compose.yml"), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def logs(self) -> str:
        out = []
        for name in (*SERVICES, "police-receiver", "kafka", "postgres"):
            r = subprocess.run(
                ["podman", "logs", "--tail", "15", f"{self.project}_{name}_1"], capture_output=True, text=True
            )
            out.append(f"--- {name}\n{(r.stdout + r.stderr)[-2500:]}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    engine = require_engine("the compose smoke test")
    registry = os.environ.get("DCSP_IMAGE_REGISTRY", "localhost/")
    tag = os.environ.get("DCSP_IMAGE_TAG", "dev")
    images = {
        "DCSP_KAFKA_IMAGE": os.environ.get("DCSP_KAFKA_IMAGE", DEFAULT_KAFKA_IMAGE),
        "DCSP_POSTGRES_IMAGE": os.environ.get("DCSP_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE),
    }
    for image in [*images.values(), *(f"{registry}dcsp-{n}:{tag}" for n in (*SERVICES, "police-receiver"))]:
        require_image(engine, image)
    ports = {name: free_port() for name in (*SERVICES, "receiver", "postgres", "kafka")}
    env = {
        **os.environ,
        **images,
        "DCSP_IMAGE_REGISTRY": registry,
        "DCSP_IMAGE_TAG": tag,
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "PANELS_DB_PASSWORD": uuid.uuid4().hex,
        "POLICE_WEBHOOK_SECRET": uuid.uuid4().hex,
        **{f"DCSP_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    s = Stack(f"dcsp-smoke-{uuid.uuid4().hex[:6]}", env, ports, compose_command())
    try:
        # Kafka and PostgreSQL first: services started earlier only crash-loop (restart:
        # on-failure), and on two shared cores their restarts slow the broker's start-up.
        infra = s.compose("up", "-d", "--no-build", "kafka", "postgres")
        assert infra.returncode == 0, f"compose up failed:\n{infra.stdout[-3000:]}\n{infra.stderr[-3000:]}"
        wait_for(lambda: asyncio.run(_kafka_answers(f"127.0.0.1:{ports['kafka']}")), 180, "Kafka in compose")
        wait_for(lambda: asyncio.run(_postgres_answers(postgres_url(s))), 120, "PostgreSQL in compose")
        up = s.compose("up", "-d", "--no-build")
        assert up.returncode == 0, f"compose up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        for name in SERVICES:
            try:
                wait_for(lambda n=name: ready(s.url(n) + "/ready"), 180, f"{name} in compose to be ready")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{s.logs()}") from None
        wait_for(lambda: ready(s.url("receiver") + "/health"), 60, "the police receiver")
        yield s
    finally:
        down = s.compose("down", "-v", "-t", "5")
        assert down.returncode == 0, f"compose down failed:\n{down.stderr[-3000:]}"


def postgres_url(stack: Stack) -> str:
    return f"postgresql://postgres:{stack.env['POSTGRES_PASSWORD']}@127.0.0.1:{stack.ports['postgres']}/postgres"


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def alert_for(stack: Stack, incident_id: str) -> dict[str, Any] | None:
    alerts = httpx.get(stack.url("receiver") + "/alerts", timeout=10).json()["alerts"]
    return next((a for a in alerts.values() if a["alert"]["incident_id"] == incident_id), None)


async def panels_referrals(stack: Stack, incident_id: str) -> list[str]:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=stack.ports["postgres"],
        user="panels",
        password=stack.env["PANELS_DB_PASSWORD"],
        database="panels",
        timeout=10,
    )
    try:
        rows = await conn.fetch(
            "select r.panel from panel_referrals r join panel_referral_incidents i using (referral_id) "
            "where i.incident_id = $1",
            uuid.UUID(incident_id),
        )
    finally:
        await conn.close()
    return sorted(r["panel"] for r in rows)


async def connect_as_panels_to(stack: Stack, database: str) -> None:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=stack.ports["postgres"],
        user="panels",
        password=stack.env["PANELS_DB_PASSWORD"],
        database=database,
        timeout=10,
    )
    await conn.close()


def test_report_becomes_police_alert_and_panel_referral_in_postgres(stack: Stack) -> None:
    body = {
        "partner": "police",
        "idempotency_key": f"smoke-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "3 Canal Walk, Riverside Estate", "uprn": "100023336777"},
        "description": "Tenant was punched and kicked by a neighbour on the landing",
        "victim": {"name": f"Victim {uuid.uuid4().hex[:6]}", "date_of_birth": "1970-05-05"},
        "tenancy": {
            "tenure": "council",
            "tenancy_ref": f"T-{uuid.uuid4().hex[:6]}",
            "tenant_role": "victim",
            "possession": {"notice_of_seeking_possession": True},
        },
    }
    r = httpx.post(stack.url("intake") + "/v1/reports", json=body, timeout=10)
    assert r.status_code == 201, r.text
    incident_id = r.json()["incident_id"]

    try:
        alert = wait_for(lambda: alert_for(stack, incident_id), 90, "the police alert at the receiver")
        panels = wait_for(
            lambda: asyncio.run(panels_referrals(stack, incident_id)), 60, "the referral in panels' PostgreSQL database"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
    assert alert["alert"]["crime_category"] == "violent-crime"
    assert "vcsp" in panels


def test_each_service_has_its_own_database_and_login(stack: Stack) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(connect_as_panels_to(stack, "intake"))
