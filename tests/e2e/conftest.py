"""End-to-end fixtures: the four services as real processes on a real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One pipeline per test module, on its own topics, groups and SQLite stores."""
    namespace = f"e2e{uuid.uuid4().hex[:8]}."
    workdir: Path = tmp_path_factory.mktemp("pipeline")
    pipe = Pipeline(workdir, kafka_bootstrap, namespace=namespace, receiver_fail_first=1)
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()
