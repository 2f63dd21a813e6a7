"""The demo pipeline with the controllable police gateway (``faults.gateway``) in place of the demo
receiver, and restarts that keep trying while the broker is away."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from demo.pipeline import Pipeline, Process, free_port


@dataclass
class FaultPipeline(Pipeline):
    def __post_init__(self) -> None:
        super().__post_init__()
        demo = self.processes["receiver"]
        control_port = free_port()
        # Same alerts port (notifications already points there), but /alerts counts and /mode
        # live on a control port that stays up while the alerts listener is down.
        self.processes["receiver"] = Process(
            "receiver",
            "faults.gateway",
            control_port,
            {**demo.env, "GATEWAY_CONTROL_PORT": str(control_port)},
            self.workdir / "gateway.log",
            "/health",
        )
        self.alerts_port = demo.port

    def gateway(self, mode: str, **delay: float) -> None:
        """Put the police gateway up, down (connection refused) or slow (answers late)."""
        r = httpx.post(self.url("receiver") + "/mode", json={"mode": mode, **delay}, timeout=30)
        r.raise_for_status()

    def gateway_report(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url("receiver") + "/alerts", timeout=30).json()
        return result

    def restart_until_ready(self, name: str, within: float = 180.0) -> tuple[float, int]:
        """Restart ``name``, trying again while it cannot start (e.g. the broker is away);
        (seconds to ready, start attempts)."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                self.restart(name, timeout=60)
                return time.monotonic() - started, attempts
            except (RuntimeError, TimeoutError):
                if time.monotonic() - started > within:
                    raise
                time.sleep(2)
