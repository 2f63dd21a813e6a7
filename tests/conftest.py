"""Fixtures shared by every test layer.

Where Kafka and PostgreSQL come from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``TEST_POSTGRES_URL`` when set (a broker or server you run);
2. testcontainers, when a Docker-compatible engine answers (``DOCKER_HOST``, or Podman's socket
   at /run/podman/podman.sock, see deploy/podman/setup.sh), from the images named by
   ``DCSP_KAFKA_IMAGE`` / ``DCSP_POSTGRES_IMAGE`` (default: the ones deploy/images/build.sh makes);
3. Kafka only: a local broker started with deploy/kafka/kafka.sh (developers without an engine).
With ``DCSP_REQUIRE_CONTAINERS=1`` (set by .ci/run) or ``CI=true``, a missing engine fails the
tests that need it instead of falling back: in CI the containerised path runs or nothing passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from demo.kafka import LocalKafka

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
PODMAN_SOCKET = "/run/podman/podman.sock"
KAFKA_VERSION = "4.1.1"
DEFAULT_KAFKA_IMAGE = f"localhost/dcsp-kafka:{KAFKA_VERSION}"
DEFAULT_POSTGRES_IMAGE = "localhost/dcsp-postgres:15"


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def containers_required() -> bool:
    """CI must run the containerised path: no engine there is a failure, never a fallback."""
    return os.environ.get("DCSP_REQUIRE_CONTAINERS") == "1" or os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class Engine:
    """A Docker-compatible engine that answered, and how to reach it."""

    docker_host: str
    client: Any  # docker.DockerClient

    def image_exists(self, name: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(name)
        except docker.errors.ImageNotFound:
            return False
        return True


_engine: Engine | None = None
_engine_error: str | None = None


def container_engine() -> Engine | None:
    """The engine named by DOCKER_HOST, else Podman's or Docker's default socket; None if none answers."""
    global _engine, _engine_error
    if _engine is not None or _engine_error is not None:
        return _engine
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates += [f"unix://{p}" for p in (PODMAN_SOCKET, "/var/run/docker.sock") if os.path.exists(p)]
    if not candidates:
        _engine_error = "no DOCKER_HOST and no engine socket (run deploy/podman/setup.sh all)"
        return None
    import docker

    errors = []
    for host in candidates:
        try:
            client = docker.DockerClient(base_url=host, timeout=120)
            client.ping()
        except Exception as exc:
            errors.append(f"{host}: {type(exc).__name__}: {exc}")
            continue
        # testcontainers reads these when imported; Ryuk and the in-container path do not work
        # on Podman (this VM has /.dockerenv), and mapped ports are on the engine's host.
        os.environ["DOCKER_HOST"] = host
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        _engine = Engine(host, client)
        _remove_orphans(client)
        return _engine
    _engine_error = "; ".join(errors)
    return None


def _test_container_name(role: str) -> str:
    """Names carry the test run's pid, so a later run can remove what a killed run left behind."""
    return f"dcsp-test-{os.getpid()}-{role}-{uuid.uuid4().hex[:6]}"


def _remove_orphans(client: Any) -> None:
    # Without Ryuk (it does not run on Podman) a killed test run leaves its containers running.
    for container in client.containers.list(all=True, filters={"name": "dcsp-test-"}):
        parts = container.name.split("-")
        if len(parts) > 3 and parts[2].isdigit() and not os.path.exists(f"/proc/{parts[2]}"):
            try:
                container.remove(force=True, v=True)
            except Exception:
                pass  # another run may be removing it too


def require_engine(what: str) -> Engine:
    """The engine, or a test failure (never a skip) explaining how to get one."""
    engine = container_engine()
    if engine is None:
        pytest.fail(
            f"{what} needs a Docker-compatible engine and none answered ({_engine_error}); "
            "install and start Podman with deploy/podman/setup.sh all",
            pytrace=False,
        )
    return engine


def require_image(engine: Engine, name: str) -> str:
    if not engine.image_exists(name):
        pytest.fail(f"image {name} is not in the engine: build it with deploy/images/build.sh", pytrace=False)
    return name


def _container_logs(container: Any) -> str:
    try:
        out, err = container.get_logs()
        return (out + err).decode(errors="replace")[-3000:]
    except Exception as exc:
        return f"(no logs: {exc})"


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def start_container(container: Any, attempts: int = 3) -> None:
    """Start a test container, retrying a start the engine fails (Podman here sometimes answers
    "write child: broken pipe" under load): the half-made container is removed first."""
    from docker.errors import APIError

    for attempt in range(1, attempts + 1):
        try:
            container.start()
            return
        except APIError:
            if attempt == attempts:
                raise
            name = getattr(container, "_name", None)
            if name:
                with contextlib.suppress(Exception):
                    container.get_docker_client().client.containers.get(name).remove(force=True)
            time.sleep(2 * attempt)


class KafkaContainer:
    """A single-node KRaft broker in a container (our image or apache/kafka: same env), reachable
    from this machine at 127.0.0.1:<port>: it listens and advertises on the same port it is
    published on, so the address clients are told is the one they can reach."""

    def __init__(self, engine: Engine, image: str | None = None) -> None:
        from testcontainers.core.container import DockerContainer

        self.image = require_image(engine, image or os.environ.get("DCSP_KAFKA_IMAGE", DEFAULT_KAFKA_IMAGE))
        self.port = free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.container = (
            DockerContainer(self.image)
            .with_name(_test_container_name("kafka"))
            .with_env("KAFKA_NODE_ID", "1")
            .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{self.port},CONTROLLER://:9093")
            .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{self.port}")
            .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
            .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
            .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env("KAFKA_NUM_PARTITIONS", "3")
            .with_env("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m")
        )
        # Published on loopback only (docker-py's (address, port) form, which with_bind_ports lacks).
        self.container.ports[str(self.port)] = ("127.0.0.1", self.port)  # type: ignore[assignment]

    def start(self, timeout: float = 120.0) -> str:
        start_container(self.container)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if asyncio.run(_kafka_answers(self.bootstrap_servers)):
                return self.bootstrap_servers
            if self.container.get_wrapped_container().status == "exited":
                break
            self.container.get_wrapped_container().reload()
            time.sleep(0.5)
        logs = _container_logs(self.container)
        self.stop()
        raise RuntimeError(f"Kafka in {self.image} did not answer on {self.bootstrap_servers}:\n{logs}")

    def stop(self) -> None:
        self.container.stop()


class PostgresContainer:
    """PostgreSQL in a container (our image or the official one: same env), superuser ``dcsp``."""

    def __init__(self, engine: Engine, image: str | None = None) -> None:
        from testcontainers.core.container import DockerContainer

        self.image = require_image(engine, image or os.environ.get("DCSP_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE))
        self.port = free_port()
        self.password = uuid.uuid4().hex
        self.url = f"postgresql://dcsp:{self.password}@127.0.0.1:{self.port}/dcsp"
        self.container = (
            DockerContainer(self.image)
            .with_name(_test_container_name("postgres"))
            .with_env("POSTGRES_USER", "dcsp")
            .with_env("POSTGRES_PASSWORD", self.password)
            .with_env("POSTGRES_DB", "dcsp")
        )
        self.container.ports["5432"] = ("127.0.0.1", self.port)  # type: ignore[assignment]

    def start(self, timeout: float = 90.0) -> str:
        start_container(self.container)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if asyncio.run(_postgres_answers(self.url)):
                return self.url
            time.sleep(0.3)
        logs = _container_logs(self.container)
        self.stop()
        raise RuntimeError(f"PostgreSQL in {self.image} did not answer at 127.0.0.1:{self.port}:\n{logs}")

    def stop(self) -> None:
        self.container.stop()


async def _postgres_answers(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real broker: KAFKA_BOOTSTRAP_SERVERS, a container, or one started here. Never skipped."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if container_engine() is not None or containers_required():
        kafka = KafkaContainer(require_engine("Kafka for the tests"))
        bootstrap = kafka.start()
        try:
            yield bootstrap
        finally:
            kafka.stop()
        return
    local = LocalKafka(port=int(os.environ.get("TEST_KAFKA_PORT", "19092")))
    bootstrap = local.start()
    yield bootstrap
    local.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL whose user may create databases: TEST_POSTGRES_URL, or a container."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield os.environ["TEST_POSTGRES_URL"]
        return
    pg = PostgresContainer(require_engine("PostgreSQL for the store tests"))
    url = pg.start()
    try:
        yield url
    finally:
        pg.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh topic and consumer-group namespace for one test."""
    return f"t{uuid.uuid4().hex[:10]}."


async def _create_database(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store for one test: a SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from sqlalchemy.engine import make_url

    server = make_url(request.getfixturevalue("postgres_server"))
    name = f"t_{uuid.uuid4().hex[:12]}"
    server_url = server.render_as_string(hide_password=False)
    asyncio.run(_create_database(server_url, name))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(server_url, name))
