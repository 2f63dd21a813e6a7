"""A Kafka broker for local runs and tests: the one named by KAFKA_BOOTSTRAP_SERVERS, or a
single-node broker started with deploy/kafka/kafka.sh."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"


@dataclass
class LocalKafka:
    port: int = 9092
    bootstrap_servers: str = field(init=False)
    started_here: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.bootstrap_servers = f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KAFKA_PORT": str(self.port)}

    def start(self) -> str:
        """Start the broker unless KAFKA_BOOTSTRAP_SERVERS names one; returns the bootstrap servers."""
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            self.bootstrap_servers = external
            return external
        running = subprocess.run([str(SCRIPT), "status"], env=self._env(), capture_output=True, text=True)
        if running.returncode != 0:
            subprocess.run([str(SCRIPT), "start"], env=self._env(), check=True)
            self.started_here = True
        return self.bootstrap_servers

    def stop(self) -> None:
        if self.started_here:
            subprocess.run([str(SCRIPT), "stop"], env=self._env(), check=False)
            self.started_here = False
