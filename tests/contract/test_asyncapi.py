"""Each service's AsyncAPI document (what `faststream docs gen` makes from its broker) is committed
under shared/schemas/asyncapi and must match the code: a subscription added, dropped or moved
without regenerating fails here."""

from __future__ import annotations

import json

import pytest

from shared.schemas import SERVICES, asyncapi_document, asyncapi_path, render


@pytest.mark.parametrize("service", SERVICES)
def test_committed_asyncapi_matches_the_service(service: str) -> None:
    path = asyncapi_path(service)
    assert path.exists(), f"{path} is missing: run `make schemas`"
    current = asyncapi_document(service)
    committed = json.loads(path.read_text())
    if committed != current:
        added = sorted(set(current.get("channels", {})) - set(committed.get("channels", {})))
        dropped = sorted(set(committed.get("channels", {})) - set(current.get("channels", {})))
        pytest.fail(
            f"{service} AsyncAPI drifted (channels added {added}, dropped {dropped}); "
            "run `make schemas` and commit shared/schemas/asyncapi",
            pytrace=False,
        )
    assert path.read_text() == render(current)


def test_documents_list_what_each_service_consumes() -> None:
    triage = asyncapi_document("triage")
    assert triage["asyncapi"].startswith("3.")
    assert any("incidents.accepted" in ch["address"] for ch in triage["channels"].values())
