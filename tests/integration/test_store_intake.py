"""Intake's own store on both backends (SQLite and PostgreSQL): accepted reports keep their types
(UUID keys, JSON events with non-Latin text, UTC times), and a partner's idempotency key is
unique per partner, enforced by the database itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import store
from shared.db import create_tables, make_engine, session_factory


@pytest.fixture
async def sessions(store_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(store_url)
    await create_tables(engine, store.TABLES)
    yield session_factory(engine)
    await engine.dispose()


def accepted(partner: str, key: str, **event: object) -> store.AcceptedReport:
    return store.AcceptedReport(
        incident_id=uuid.uuid4(),
        partner=partner,
        idempotency_key=key,
        content_hash="0" * 64,
        channel="http",
        accepted_at=datetime.now(UTC),
        event={"description": "Tenant was punched on the landing", **event},
    )


async def test_an_accepted_report_reads_back_with_its_types(sessions: async_sessionmaker[AsyncSession]) -> None:
    row = accepted("police", "k-1", victim={"name": "Zoë Ñúñez 李"}, scores=[22, 3])
    async with sessions.begin() as s:
        s.add(row)
    async with sessions() as s:
        found = await store.find_by_key(s, "police", "k-1")
        by_id = await store.get(s, row.incident_id)
    assert found is not None and by_id is not None
    assert found.incident_id == row.incident_id and isinstance(found.incident_id, uuid.UUID)
    assert found.event == {
        "description": "Tenant was punched on the landing",
        "victim": {"name": "Zoë Ñúñez 李"},
        "scores": [22, 3],
    }
    assert found.accepted_at == row.accepted_at and found.accepted_at.tzinfo is not None


async def test_the_same_key_from_the_same_partner_is_refused_by_the_database(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as s:
        s.add(accepted("police", "dup"))
        s.add(accepted("housing", "dup"))  # another partner's key space
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(accepted("police", "dup", description="a different report under a reused key"))
    async with sessions() as s:
        kept = await store.find_by_key(s, "police", "dup")
        assert await store.find_by_key(s, "housing", "dup") is not None
    assert kept is not None and kept.event["description"] == "Tenant was punched on the landing"
