"""A store locked by another process answers 503 with Retry-After, in the error shape, and the
retry with the same idempotency key then succeeds once."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from services.intake.app import build
from services.intake.settings import IntakeSettings
from shared.db import Base


def test_a_locked_store_answers_503_and_the_retry_is_accepted_once(tmp_path: Path) -> None:
    db = tmp_path / "intake.db"
    runtime = build(IntakeSettings(database_url=f"sqlite:///{db}"))
    Base.metadata.create_all(create_engine(f"sqlite:///{db}"), tables=runtime.tables)
    report = {
        "partner": "housing",
        "idempotency_key": f"busy-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"uprn": "100023336956"},
        "description": "Loud music every night",
    }
    client = TestClient(runtime.api)  # no lifespan: no broker needed to accept into the store

    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        busy = client.post("/v1/reports", json=report)
    finally:
        holder.rollback()
        holder.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["errors"][0]["field"] == "(store)"

    accepted = client.post("/v1/reports", json=report)
    again = client.post("/v1/reports", json=report)
    assert (accepted.status_code, again.status_code) == (201, 200)
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from accepted_reports").fetchone() == (1,)
