"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from demo.kafka import LocalKafka

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real broker: KAFKA_BOOTSTRAP_SERVERS, or one started here. Never skipped: no broker, no pass."""
    kafka = LocalKafka(port=int(os.environ.get("TEST_KAFKA_PORT", "19092")))
    bootstrap = kafka.start()
    yield bootstrap
    kafka.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh topic and consumer-group namespace for one test."""
    return f"t{uuid.uuid4().hex[:10]}."
