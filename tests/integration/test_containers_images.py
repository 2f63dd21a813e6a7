"""Each service image on its own: non-root, a HEALTHCHECK on /health, only its own code, and
ready (GET /ready 200) from env vars alone once Kafka and its PostgreSQL database are reachable.
Runs on a container engine (Podman here, see deploy/podman/setup.sh); never skipped."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.engine import make_url

from ..conftest import (
    Engine,
    _container_logs,
    _create_database,
    _drop_database,
    free_port,
    require_engine,
    require_image,
    wait_for,
)

SERVICES = ("intake", "triage", "notifications", "panels")


def service_image(name: str) -> str:
    registry = os.environ.get("DCSP_IMAGE_REGISTRY", "localhost/")
    return f"{registry}dcsp-{name}:{os.environ.get('DCSP_IMAGE_TAG', 'dev')}"


@pytest.fixture
def service_database(postgres_server: str) -> Iterator[str]:
    """A database of its own for the service under test, on the test PostgreSQL."""
    server = make_url(postgres_server)
    name = f"svc_{uuid.uuid4().hex[:10]}"
    asyncio.run(_create_database(postgres_server, name))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(postgres_server, name))


def image_healthcheck(engine: Engine, image: str) -> list[str]:
    """The image's HEALTHCHECK command (Podman's Docker API leaves it out; its own API has it)."""
    config = engine.client.images.get(image).attrs["Config"]
    if config.get("Healthcheck"):
        return list(config["Healthcheck"]["Test"])
    api = engine.client.api
    libpod = api._result(api._get(f"{api.base_url}/v4.0.0/libpod/images/{quote(image, safe='')}/json"), json=True)
    return list((libpod.get("Healthcheck") or {}).get("Test") or [])


def ready(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return dict(r.json()) if r.status_code == 200 else None


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_runs_alone_from_env_vars(
    name: str, kafka_bootstrap: str, service_database: str, namespace: str
) -> None:
    from testcontainers.core.container import DockerContainer

    engine = require_engine(f"the {name} image")
    image = require_image(engine, service_image(name))
    config = engine.client.images.get(image).attrs["Config"]
    assert config["User"] not in ("", "0", "root"), f"{image} runs as root"
    healthcheck = image_healthcheck(engine, image)
    assert healthcheck[:1] == ["CMD-SHELL"] and "/health" in healthcheck[-1], f"{image} HEALTHCHECK: {healthcheck}"

    prefix = name.upper()
    port = free_port()
    # Host networking: the service reaches the test broker and database on 127.0.0.1, as they
    # advertise themselves there.
    container = (
        DockerContainer(image)
        .with_kwargs(network_mode="host")
        .with_env("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        .with_env("KAFKA_TOPIC_PREFIX", namespace)
        .with_env("KAFKA_GROUP_PREFIX", namespace)
        .with_env(f"{prefix}_HTTP_PORT", str(port))
        .with_env(f"{prefix}_DATABASE_URL", service_database)
    )
    container.start()
    try:
        try:
            checks = wait_for(lambda: ready(f"http://127.0.0.1:{port}/ready"), 90, f"{name} to answer /ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{name} logs:\n{_container_logs(container)}") from None
        assert checks == {"ready": True, "checks": {"store": "ok", "broker": "ok"}}

        wrapped = container.get_wrapped_container()
        code, out = wrapped.exec_run(["sh", "-c", healthcheck[-1]])
        assert code == 0, f"HEALTHCHECK failed in {image}: {out.decode(errors='replace')}"
        code, out = wrapped.exec_run(["id", "-u"])
        assert out.decode().strip() == "10001"
        code, out = wrapped.exec_run(["ls", "/app/services"])
        assert sorted(out.decode().split()) == sorted(["__init__.py", name]), "only this service's code"
        code, out = wrapped.exec_run(["ls", "/app"])
        assert sorted(out.decode().split()) == ["services", "shared"]
    finally:
        container.stop()
