"""Pinned contracts: every event's JSON Schema (from its pydantic model) and each service's
AsyncAPI document, generated into this folder and committed, so a change that breaks a consumer
shows up as a failing test (tests/contract) rather than in production.

    python -m shared.schemas           regenerate events/*.json and asyncapi/*.json
    python -m shared.schemas --check   exit 1 if the committed files differ from the code
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.contracts import Event, event_types

HERE = Path(__file__).resolve().parent
EVENTS_DIR = HERE / "events"
ASYNCAPI_DIR = HERE / "asyncapi"
SERVICES = ("intake", "triage", "notifications", "panels")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event as consumers validate it, with its CloudEvents type and topic."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "x-dcsp-ce-type": cls.CE_TYPE,
        "x-dcsp-topic": cls.TOPIC,
        **cls.model_json_schema(mode="validation"),
    }


def event_schema_path(ce_type: str) -> Path:
    """Where the pinned schema of the event with CloudEvents type ``ce_type`` is kept."""
    return EVENTS_DIR / f"{ce_type}.json"


def pinned_event_schemas() -> dict[str, dict[str, Any]]:
    """The committed event schemas, by CloudEvents type."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(EVENTS_DIR.glob("*.json"))}


def asyncapi_path(service: str) -> Path:
    return ASYNCAPI_DIR / f"{service}.json"


def asyncapi_document(service: str) -> dict[str, Any]:
    """The AsyncAPI 3 document FastStream generates for ``service`` (see shared.schemas.asyncapi)."""
    from shared.schemas.asyncapi import specification

    document: dict[str, Any] = specification(service).to_specification().to_jsonable()
    return document


def render(document: dict[str, Any]) -> str:
    """Stable text for a committed document (sorted keys, so diffs show only real changes)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """Every file this module owns, as the code describes it now."""
    files = {event_schema_path(cls.CE_TYPE): render(event_schema(cls)) for cls in event_types()}
    files.update({asyncapi_path(s): render(asyncapi_document(s)) for s in SERVICES})
    return files


def write() -> list[Path]:
    """Regenerate every pinned file; returns the ones that changed. Schemas of events that no
    longer exist are removed (the contract test reports that as breaking before you do this)."""
    files = generated()
    changed = []
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    for folder in (EVENTS_DIR, ASYNCAPI_DIR):
        for stale in folder.glob("*.json"):
            if stale not in files:
                stale.unlink()
                changed.append(stale)
    return changed


def drift() -> list[Path]:
    """Files whose committed text differs from what the code generates now (or that are missing)."""
    files = generated()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    extra = [p for d in (EVENTS_DIR, ASYNCAPI_DIR) for p in d.glob("*.json") if p not in files]
    return sorted(stale + extra)
