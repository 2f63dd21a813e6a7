"""W3C Trace Context (``traceparent``) carried in Kafka headers and HTTP, so one report can be
followed across the four services in the logs: every log line inside a message's or request's
handling carries its ``trace_id``."""

from __future__ import annotations

import contextlib
import random
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import structlog

HEADER = "traceparent"
_FORMAT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: ContextVar[TraceContext | None] = ContextVar("dcsp_trace", default=None)


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        """The W3C "sampled" flag: this trace's work is logged message by message."""
        return bool(int(self.flags, 16) & 1)

    def child(self) -> TraceContext:
        """A new span in the same trace."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)


def parse(value: str | None) -> TraceContext | None:
    """A valid ``traceparent`` value, or None (an invalid one is ignored, as the spec says)."""
    if not value:
        return None
    match = _FORMAT.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return TraceContext(match.group(1), match.group(2), match.group(3))


_sample_ratio = 1.0


def sample(ratio: float) -> None:
    """The share of new traces (those no caller started) that are sampled; a caller's own
    ``traceparent`` keeps the caller's choice."""
    global _sample_ratio
    _sample_ratio = ratio


def new_trace() -> TraceContext:
    sampled = _sample_ratio >= 1.0 or random.random() < _sample_ratio
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8), "01" if sampled else "00")


def current() -> TraceContext | None:
    return _current.get()


def outgoing() -> str | None:
    """The ``traceparent`` for a message or request sent now: a child span of the current one."""
    ctx = _current.get()
    return ctx.child().header() if ctx else None


@contextlib.contextmanager
def continue_trace(traceparent: str | None, **log_fields: object) -> Iterator[TraceContext]:
    """Work on behalf of an incoming message or request: continue its trace, or start one. Every
    log line inside carries the trace and ``log_fields``."""
    parent = parse(traceparent)
    ctx = parent.child() if parent else new_trace()
    token = _current.set(ctx)
    # One bind for the trace and the caller's fields: this runs for every consumed message.
    bound = structlog.contextvars.bind_contextvars(trace_id=ctx.trace_id, span_id=ctx.span_id, **log_fields)
    try:
        yield ctx
    finally:
        structlog.contextvars.reset_contextvars(**bound)
        _current.reset(token)
