"""A police gateway stand-in the fault harness can take down, slow down and bring back.

Like ``demo.police_receiver`` it checks each alert's HMAC signature, counts every delivery and keeps
each alert once by its Idempotency-Key (a repeat is counted as a duplicate and answered 200). Unlike
it, the alerts listener can be closed (connection refused: the gateway is down) and reopened, and
can answer late (the gateway is slow), while a separate control listener keeps the counts:

    python -m faults.gateway
    (env: RECEIVER_HOST=127.0.0.1, RECEIVER_PORT (alerts), GATEWAY_CONTROL_PORT, RECEIVER_SECRET)

    POST /mode {"mode": "up" | "down" | "slow", "min_delay": 0.5, "max_delay": 8}   (control port)
    GET  /alerts    counts and every unique alert                                  (control port)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import random
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

Mode = Literal["up", "down", "slow"]


class ModeChange(BaseModel):
    mode: Mode
    min_delay: float = Field(default=0.5, ge=0)
    max_delay: float = Field(default=8.0, ge=0)


class Gateway:
    """The gateway's state: counts, alerts by key, and whether (and how fast) it answers."""

    def __init__(self, secret: str, host: str, port: int) -> None:
        self.secret = secret.encode()
        self.host, self.port = host, port
        self.mode: Mode = "up"
        self.delay = (0.0, 0.0)
        self.counts = {"deliveries": 0, "duplicates": 0, "rejected": 0, "answered_late": 0, "outages": 0}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.deliveries_per_key: dict[str, int] = {}
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def alerts_app(self) -> FastAPI:
        app = FastAPI(title="police gateway (fault stand-in)")

        @app.post("/alerts")
        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            self.counts["deliveries"] += 1
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get("x-dcsp-signature", "")):
                self.counts["rejected"] += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            key = request.headers.get("idempotency-key")
            if not key:
                self.counts["rejected"] += 1
                return JSONResponse({"error": "Idempotency-Key header required"}, status_code=400)
            self.deliveries_per_key[key] = self.deliveries_per_key.get(key, 0) + 1
            if key in self.alerts:
                self.counts["duplicates"] += 1
                reply = JSONResponse({"status": "duplicate", "alert_id": key}, status_code=200)
            else:
                alert = orjson.loads(body)
                self.alerts[key] = {
                    "received_at": datetime.now(UTC).isoformat(),
                    "incident_id": alert.get("incident_id"),
                    "alert": alert,
                }
                reply = JSONResponse({"status": "received", "alert_id": key}, status_code=201)
            if self.mode == "slow":
                # A slow gateway has the alert but answers late, often after the sender gave up:
                # the sender must retry with the same key and the gateway must keep it once.
                self.counts["answered_late"] += 1
                await asyncio.sleep(random.uniform(*self.delay))
            return reply

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        return app

    async def open(self) -> None:
        if self._task is not None:
            return
        config = uvicorn.Config(
            self.alerts_app(), host=self.host, port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        # _serve, not serve: the control listener owns the process's signal handling.
        self._task = asyncio.create_task(self._server._serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._server, self._task = None, None

    async def set_mode(self, change: ModeChange) -> None:
        if change.mode == "down":
            if self.mode != "down":
                self.counts["outages"] += 1
            await self.close()
        else:
            await self.open()
        self.mode = change.mode
        self.delay = (change.min_delay, max(change.min_delay, change.max_delay))

    def report(self) -> dict[str, Any]:
        return {
            **self.counts,
            "mode": self.mode,
            "unique": len(self.alerts),
            "alerts": self.alerts,
            "deliveries_per_key": self.deliveries_per_key,
        }


def control_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="police gateway control", lifespan=_lifespan(gateway))

    @app.post("/mode")
    async def mode(change: ModeChange) -> dict[str, Any]:
        await gateway.set_mode(change)
        return {"mode": gateway.mode}

    @app.get("/alerts")
    async def alerts() -> dict[str, Any]:
        return gateway.report()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "mode": gateway.mode}

    return app


def _lifespan(gateway: Gateway) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        await gateway.open()
        try:
            yield
        finally:
            await gateway.close()

    return lifespan


def main() -> None:
    host = os.environ.get("RECEIVER_HOST", "127.0.0.1")
    gateway = Gateway(os.environ.get("RECEIVER_SECRET", "change-me"), host, int(os.environ["RECEIVER_PORT"]))
    uvicorn.run(control_app(gateway), host=host, port=int(os.environ["GATEWAY_CONTROL_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()
