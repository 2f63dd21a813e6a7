"""Audit of reads: every read of a case or referral through an API is recorded (who, what, when) in
the service's own store, and the CSU can query it (``GET /v1/audit``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from sqlalchemy import Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.security import Principal, Role, require_roles


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_resource", "resource_type", "resource_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    roles: Mapped[str] = mapped_column(String(200))
    view: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))


TABLES = [AuditEntry.__table__]


def add_entry(
    session: AsyncSession,
    principal: Principal,
    resource_type: str,
    resource_id: str,
    *,
    action: str = "read",
    view: str | None = None,
    outcome: str = "ok",
    now: datetime | None = None,
) -> None:
    """Stage one audit row in the caller's transaction."""
    session.add(
        AuditEntry(
            at=now or datetime.now(UTC),
            actor=principal.subject,
            roles=",".join(sorted(principal.roles)),
            view=view,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
        )
    )


async def record(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    resource_type: str,
    resource_id: str,
    *,
    action: str = "read",
    view: str | None = None,
    outcome: str = "ok",
) -> None:
    """Record one access in a transaction of its own (for read-only endpoints)."""
    async with sessions.begin() as session:
        add_entry(session, principal, resource_type, resource_id, action=action, view=view, outcome=outcome)


def entry_view(e: AuditEntry) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(),
        "actor": e.actor,
        "roles": e.roles.split(",") if e.roles else [],
        "view": e.view,
        "action": e.action,
        "resource_type": e.resource_type,
        "resource_id": e.resource_id,
        "outcome": e.outcome,
    }


def install(app: FastAPI, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Mount ``GET /v1/audit`` (CSU and admin only)."""
    router = APIRouter(prefix="/v1", tags=["audit"])

    @router.get("/audit")
    async def list_audit(
        _caller: Annotated[Principal, Depends(require_roles(Role.CSU, Role.ADMIN))],
        resource_type: Annotated[str | None, Query(max_length=64)] = None,
        resource_id: Annotated[str | None, Query(max_length=200)] = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[dict[str, Any]]:
        """Who read which case or referral, and when: newest first."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if resource_type:
            stmt = stmt.where(AuditEntry.resource_type == resource_type)
        if resource_id:
            stmt = stmt.where(AuditEntry.resource_id == resource_id)
        if actor:
            stmt = stmt.where(AuditEntry.actor == actor)
        if since:
            stmt = stmt.where(AuditEntry.at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        async with sessions() as session:
            rows = list((await session.execute(stmt)).scalars())
        return [entry_view(e) for e in rows]

    app.include_router(router)
