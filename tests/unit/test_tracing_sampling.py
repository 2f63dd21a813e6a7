"""Head sampling of traces: a caller's choice is kept; new traces are sampled at the set ratio, and
only sampled work is logged message by message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import tracing


@pytest.fixture(autouse=True)
def _restore_ratio() -> Iterator[None]:
    yield
    tracing.sample(1.0)


def test_a_callers_sampled_flag_is_kept_whatever_the_ratio() -> None:
    tracing.sample(0.0)
    with tracing.continue_trace(f"00-{'a' * 32}-{'b' * 16}-01") as ctx:
        assert ctx.sampled and ctx.trace_id == "a" * 32
    with tracing.continue_trace(f"00-{'a' * 32}-{'b' * 16}-00") as ctx:
        assert not ctx.sampled


def test_new_traces_follow_the_ratio() -> None:
    tracing.sample(0.0)
    assert not any(tracing.new_trace().sampled for _ in range(200))
    tracing.sample(1.0)
    assert all(tracing.new_trace().sampled for _ in range(200))
    tracing.sample(0.5)
    share = sum(tracing.new_trace().sampled for _ in range(2000)) / 2000
    assert 0.4 < share < 0.6


def test_log_fields_are_bound_inside_and_gone_after() -> None:
    import structlog

    with tracing.continue_trace(None, event_id="e-1") as ctx:
        bound = structlog.contextvars.get_contextvars()
        assert bound["event_id"] == "e-1" and bound["trace_id"] == ctx.trace_id
    assert "event_id" not in structlog.contextvars.get_contextvars()
    assert tracing.current() is None
