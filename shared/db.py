"""SQLAlchemy 2 helpers: one async engine per service store, SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import orjson
from sqlalchemy import JSON, DateTime, Table, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.types import TypeDecorator

from shared import sqlite_inline


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite would otherwise drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; each service declares its own tables on it and creates only those it imports."""

    type_annotation_map = {datetime: UTCDateTime}


T = TypeVar("T")


class Staged(Generic[T]):
    """Rows a transaction keeps on its session and writes in one go, inside the transaction, just
    before it commits (``write``); a rollback or a close without commit drops them. Consumers
    stage a whole batch this way, so each table gets one executemany instead of a statement (or
    an ORM flush) per message."""

    def __init__(self, name: str, factory: Callable[[], T], write: Callable[[Session, T], None]) -> None:
        self._key = f"dcsp.staged.{name}"
        self._factory = factory
        self._write = write
        _STAGINGS.append(self)

    def get(self, session: AsyncSession | Session) -> T:
        """This transaction's staged rows, made empty on first use."""
        sync_session = _sync(session)
        info = sync_session.info
        if self._key not in info:
            if sync_session.get_transaction() is None:
                # Staged rows live as long as a transaction (see _drop_staged): there must be one.
                sync_session.begin()
            info[self._key] = self._factory()
        return cast(T, info[self._key])

    def peek(self, session: AsyncSession | Session) -> T | None:
        return cast("T | None", _sync(session).info.get(self._key))

    def write_now(self, session: Session) -> None:
        """Write what is staged now (e.g. before a read of the same tables in the transaction)."""
        staged = session.info.pop(self._key, None)
        if staged is not None:
            self._write(session, staged)

    def drop(self, session: Session) -> None:
        session.info.pop(self._key, None)


_STAGINGS: list[Staged[Any]] = []


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


@event.listens_for(Session, "before_commit")
def _write_staged(session: Session) -> None:
    for staging in _STAGINGS:
        staging.write_now(session)


@event.listens_for(Session, "after_transaction_end")
def _drop_staged(session: Session, transaction: SessionTransaction) -> None:
    # Committed, the rows were written just before; rolled back or closed, they must not be.
    if transaction.parent is None:
        for staging in _STAGINGS:
            staging.drop(session)


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class EncodedJSON(TypeDecorator[Any]):
    """A JSON column's value given already encoded as JSON text (pydantic's ``model_dump_json`` or
    orjson): bound as it is, where the column's own type would encode it a second time. Each
    driver gets the text it would have got anyway."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


def table_of(model: type[Base]) -> Table:
    """A mapped class's table, for Core statements on hot paths (no ORM unit of work)."""
    return cast(Table, model.__table__)


def async_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async driver."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


INLINE_BUSY_TIMEOUT_MS = 1_000


def make_engine(url: str, *, inline_sqlite: bool = True) -> AsyncEngine:
    """The engine of a service's store. SQLite files run inline on the event loop (see
    ``shared.sqlite_inline``) unless ``inline_sqlite`` is False; PostgreSQL uses asyncpg."""
    url = async_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    busy_ms = 30_000
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            if inline_sqlite:
                # Inline, a wait for another process's write lock blocks the whole event loop:
                # keep it short, and let the consumer's retry (an async back-off) wait instead.
                busy_ms = INLINE_BUSY_TIMEOUT_MS
                kwargs["async_creator"] = sqlite_inline.creator(parsed.database, timeout=busy_ms / 1000)
                kwargs["pool_size"] = 1
                kwargs["max_overflow"] = 0
                kwargs["pool_timeout"] = 120
        kwargs.setdefault("connect_args", {"timeout": 30})
    else:
        kwargs["pool_pre_ping"] = True
    # orjson for JSON columns: bulk inserts of event payloads spend most of their time encoding.
    engine = create_async_engine(url, json_serializer=_json_text, json_deserializer=orjson.loads, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the relay read while a consumer writes; NORMAL sync is durable in WAL mode
            # against process crashes (what our fault tests inject).
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            # Erased personal data must not linger in free pages of the file.
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, tables: list[Any]) -> None:
    """Create this service's tables (and the shared outbox/idempotency tables) if missing."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=tables)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
