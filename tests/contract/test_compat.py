"""The breaking-change comparison itself, on synthetic before/after schemas and on a real event
model with a field removed."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import create_model

from shared.contracts import IncidentTriaged
from shared.schemas import event_schema
from shared.schemas.compat import breaking_changes

BEFORE: dict[str, Any] = {
    "type": "object",
    "title": "Thing",
    "properties": {
        "incident_id": {"type": "string", "format": "uuid"},
        "score": {"type": "integer", "minimum": 0},
        "note": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}], "default": None},
        "tier": {"$ref": "#/$defs/Tier"},
        "reasons": {"type": "array", "items": {"$ref": "#/$defs/Reason"}},
    },
    "required": ["incident_id", "score", "tier", "reasons"],
    "$defs": {
        "Tier": {"enum": ["high", "medium", "standard"], "type": "string"},
        "Reason": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "text": {"type": "string"}},
            "required": ["code"],
        },
    },
}


def changed(edit: Any) -> list[str]:
    after = copy.deepcopy(BEFORE)
    edit(after)
    return [str(b) for b in breaking_changes("Thing", BEFORE, after)]


def test_identical_schemas_are_compatible() -> None:
    assert changed(lambda s: None) == []


def test_removed_field_is_breaking_and_named() -> None:
    assert changed(lambda s: s["properties"].pop("score")) == ["Thing: field 'score' removed or renamed"]


def test_renamed_field_is_breaking() -> None:
    def rename(s: dict[str, Any]) -> None:
        s["properties"]["risk_score"] = s["properties"].pop("score")
        s["required"] = ["incident_id", "risk_score", "tier", "reasons"]

    problems = changed(rename)
    assert "Thing: field 'score' removed or renamed" in problems
    assert "Thing: field 'risk_score' added as a new required field" in problems


def test_removed_nested_field_is_named_with_its_path() -> None:
    assert changed(lambda s: s["$defs"]["Reason"]["properties"].pop("text")) == [
        "Thing: field 'reasons[].text' removed or renamed"
    ]


def test_new_required_field_is_breaking() -> None:
    def add(s: dict[str, Any]) -> None:
        s["properties"]["agency"] = {"type": "string"}
        s["required"].append("agency")

    assert changed(add) == ["Thing: field 'agency' added as a new required field"]


def test_optional_field_made_required_is_breaking() -> None:
    assert changed(lambda s: s["required"].append("note")) == ["Thing: field 'note' made required (was optional)"]


def test_narrowed_types_are_breaking() -> None:
    assert changed(lambda s: s["properties"].update(note={"type": "string"})) == [
        "Thing: field 'note' type narrowed: no longer accepts null"
    ]
    assert changed(lambda s: s["properties"].update(score={"type": "boolean"})) == [
        "Thing: field 'score' type narrowed: no longer accepts integer"
    ]
    assert changed(lambda s: s["$defs"]["Tier"]["enum"].remove("standard")) == [
        "Thing: field 'tier' type narrowed: values 'standard' no longer allowed"
    ]
    assert changed(lambda s: s["properties"]["note"]["anyOf"][0].update(maxLength=50)) == [
        "Thing: field 'note' type narrowed: maxLength 50"
    ]
    assert changed(lambda s: s["properties"]["score"].update(minimum=1)) == [
        "Thing: field 'score' type narrowed: minimum 1"
    ]
    assert changed(lambda s: s["$defs"]["Reason"]["properties"]["code"].update(pattern="^[A-Z]+$")) == [
        "Thing: field 'reasons[].code' type narrowed: pattern '^[A-Z]+$'"
    ]


def test_additive_changes_pass() -> None:
    def additive(s: dict[str, Any]) -> None:
        s["properties"]["agency"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
        s["$defs"]["Tier"]["enum"].append("very-high")
        s["properties"]["score"] = {"type": "number"}  # integer widened to number
        s["properties"]["note"]["anyOf"][0]["maxLength"] = 500
        s["required"].remove("reasons")  # required made optional: consumers still get it when sent

    assert changed(additive) == []


def test_removing_a_field_from_a_real_event_model_names_the_event_and_field() -> None:
    fields = {
        name: (info.annotation, info) for name, info in IncidentTriaged.model_fields.items() if name != "classification"
    }
    without = create_model("IncidentTriaged", __base__=None, **fields)  # type: ignore[call-overload]
    problems = breaking_changes("IncidentTriaged", event_schema(IncidentTriaged), without.model_json_schema())
    assert [str(p) for p in problems] == ["IncidentTriaged: field 'classification' removed or renamed"]
