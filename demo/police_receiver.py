"""A stand-in for the police gateway: a real HTTP server on 127.0.0.1 that checks each alert's
HMAC signature, counts every delivery, and keeps each alert once by its idempotency key.

    python -m demo.police_receiver
    (env: RECEIVER_HOST=127.0.0.1, RECEIVER_PORT=8099, RECEIVER_SECRET, RECEIVER_FAIL_FIRST=0)

``RECEIVER_FAIL_FIRST=N`` answers 503 to the first N deliveries, to show retries.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def build_app(secret: str, fail_first: int = 0) -> FastAPI:
    app = FastAPI(title="police gateway (stand-in)")
    state: dict[str, Any] = {"deliveries": 0, "duplicates": 0, "rejected": 0, "failed_on_purpose": 0}
    alerts: dict[str, dict[str, Any]] = {}

    @app.post("/alerts")
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        state["deliveries"] += 1
        if state["failed_on_purpose"] < fail_first:
            state["failed_on_purpose"] += 1
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-dcsp-signature", "")):
            state["rejected"] += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        key = request.headers.get("idempotency-key")
        if not key:
            state["rejected"] += 1
            return JSONResponse({"error": "Idempotency-Key header required"}, status_code=400)
        if key in alerts:
            state["duplicates"] += 1
            return JSONResponse({"status": "duplicate", "alert_id": key}, status_code=200)
        alerts[key] = {"received_at": datetime.now(UTC).isoformat(), "alert": orjson.loads(body)}
        return JSONResponse({"status": "received", "alert_id": key}, status_code=201)

    @app.get("/alerts")
    async def list_alerts() -> dict[str, Any]:
        return {**state, "unique": len(alerts), "alerts": alerts}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    app = build_app(os.environ.get("RECEIVER_SECRET", "change-me"), int(os.environ.get("RECEIVER_FAIL_FIRST", "0")))
    uvicorn.run(
        app,
        host=os.environ.get("RECEIVER_HOST", "127.0.0.1"),
        port=int(os.environ.get("RECEIVER_PORT", "8099")),
        log_level="warning",
    )


if __name__ == "__main__":
    main()
