"""The brokers a fault run owns: a single local broker (deploy/kafka/kafka.sh) or a 3-broker KRaft
cluster (deploy/kafka/cluster.sh), each on ports and state of its own, never the shared one."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from shared.runtime import bootstrap_list

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
CLUSTER_SH = REPO / "deploy" / "kafka" / "cluster.sh"


def _run(args: list[str], env: dict[str, str], timeout: float = 180.0) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


@dataclass
class SingleBroker:
    """One broker on ``port`` with its state under ``state_dir``; restartable mid-stream."""

    port: int
    controller_port: int
    state_dir: Path

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_STATE_DIR": str(self.state_dir),
        }

    def start(self) -> None:
        _run([str(KAFKA_SH), "start"], self._env())

    def stop(self) -> None:
        _run([str(KAFKA_SH), "stop"], self._env())

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Cluster:
    """Three brokers (RF 3, min.insync.replicas=2) from ``base_port`` up, state under ``state_dir``."""

    base_port: int
    state_dir: Path

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.base_port + 2 * i}" for i in range(3))

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KAFKA_CLUSTER_PORT": str(self.base_port), "KAFKA_CLUSTER_STATE_DIR": str(self.state_dir)}

    def start(self) -> None:
        _run([str(CLUSTER_SH), "start"], self._env(), timeout=300)

    def stop(self) -> None:
        _run([str(CLUSTER_SH), "stop"], self._env())

    def kill_node(self, node: int) -> None:
        _run([str(CLUSTER_SH), "kill-node", str(node)], self._env())

    def start_node(self, node: int) -> None:
        _run([str(CLUSTER_SH), "start-node", str(node)], self._env(), timeout=300)


async def partition_leader(bootstrap_servers: str, topic: str, partition: int = 0) -> int:
    """The node id leading ``topic``'s ``partition`` now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap_servers), client_id="dcsp-faults-admin")
    await admin.start()
    try:
        for described in await admin.describe_topics([topic]):
            for p in described["partitions"]:
                if p["partition"] == partition:
                    return int(p["leader"])
    finally:
        await admin.close()
    raise LookupError(f"no leader found for {topic}[{partition}]")
