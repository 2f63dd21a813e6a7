"""Run the four services and the police stand-in as separate processes, as ops would, for
`make run`, `make demo` and the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "triage", "notifications", "panels")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    ready_path: str | None  # None: ready once the port accepts TCP connections
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds until the process answers its readiness check."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail()}")
            try:
                if self.ready_path is None:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                        return time.monotonic() - start
                elif httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return time.monotonic() - start
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}:\n{self.tail()}")

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.alive():
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class Pipeline:
    """The services on their own SQLite stores under ``workdir``, on a topic/group namespace."""

    workdir: Path
    bootstrap_servers: str
    namespace: str = ""
    receiver_secret: str = "local-demo-secret"
    receiver_fail_first: int = 0
    ports: dict[str, int] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self.ports or {}
        receiver_port = ports.get("receiver") or free_port()
        mail_port = ports.get("mail") or free_port()
        base = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": self.namespace,
            "KAFKA_GROUP_PREFIX": self.namespace,
            **self.extra_env,
        }
        self.processes["receiver"] = Process(
            "receiver",
            "demo.police_receiver",
            receiver_port,
            {
                **base,
                "RECEIVER_PORT": str(receiver_port),
                "RECEIVER_SECRET": self.receiver_secret,
                "RECEIVER_FAIL_FIRST": str(self.receiver_fail_first),
            },
            self.workdir / "receiver.log",
            "/health",
        )
        self.processes["mail"] = Process(
            "mail", "demo.smtp_receiver", mail_port,
            {**base, "SMTP_RECEIVER_PORT": str(mail_port)},
            self.workdir / "mail.log", None,
        )  # fmt: skip
        for name in SERVICES:
            port = ports.get(name) or free_port()
            prefix = name.upper()
            env = {
                **base,
                f"{prefix}_HTTP_PORT": str(port),
                f"{prefix}_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / (name + '.db')}",
            }
            if name == "notifications":
                env["NOTIFICATIONS_POLICE_WEBHOOK_URL"] = f"http://127.0.0.1:{receiver_port}/alerts"
                env["NOTIFICATIONS_POLICE_WEBHOOK_SECRET"] = self.receiver_secret
                env["NOTIFICATIONS_SMTP__HOST"] = "127.0.0.1"
                env["NOTIFICATIONS_SMTP__PORT"] = str(mail_port)
            env.update(self.extra_env)  # the caller's settings win over the defaults above
            self.processes[name] = Process(name, f"services.{name}", port, env, self.workdir / f"{name}.log", "/ready")

    def url(self, name: str) -> str:
        return self.processes[name].url

    def database(self, name: str) -> Path:
        return self.workdir / f"{name}.db"

    def start(self, timeout: float = 60.0) -> dict[str, float]:
        """Start every process and wait until each is ready; seconds to ready, per process."""
        for proc in self.processes.values():
            proc.start()
        return {name: proc.wait_ready(timeout) for name, proc in self.processes.items()}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.processes[name].signal(sig)

    def restart(self, name: str, timeout: float = 60.0) -> float:
        proc = self.processes[name]
        if proc.alive():
            proc.signal(signal.SIGTERM)
        proc.start()
        return proc.wait_ready(timeout)

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.alive():
                assert proc.popen is not None
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            if proc.popen is not None:
                try:
                    proc.popen.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait()
