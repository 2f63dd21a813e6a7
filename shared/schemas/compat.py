"""Is a new JSON Schema of an event still readable by consumers built against the pinned one?

A change breaks a consumer when data valid under the new schema may be missing what the old
one promised, or when the new schema refuses what the old accepted: a field removed or renamed,
a type narrowed (fewer JSON types, fewer enum values, tighter bounds or a new pattern/format),
a new required field, or an optional field made required. Additive changes (a new optional field,
a widened type, a new enum value) pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "multipleOf")
_ANY_TYPE = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


@dataclass(frozen=True)
class Breaking:
    """One change that breaks a consumer: the event, the field path and what happened."""

    event: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.event}: field '{self.field}' {self.reason}"


def breaking_changes(event: str, old: Schema, new: Schema) -> list[Breaking]:
    """Every change from ``old`` to ``new`` that breaks a consumer of ``event``."""
    found: list[Breaking] = []
    _compare(event, "", old, old, new, new, found, set())
    return found


def _resolve(node: Schema, root: Schema) -> Schema:
    seen = 0
    while "$ref" in node and seen < 50:
        ref = str(node["$ref"])
        if not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node


def _branches(node: Schema, root: Schema) -> list[Schema]:
    """The alternatives a node allows (anyOf/oneOf), each resolved; the node itself otherwise."""
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [b for alt in node[key] for b in _branches(_resolve(alt, root), root)]
    return [node]


def _types(node: Schema, root: Schema) -> set[str]:
    types: set[str] = set()
    for branch in _branches(node, root):
        if "type" in branch:
            t = branch["type"]
            types.update(t if isinstance(t, list) else [t])
        elif "const" in branch or "enum" in branch:
            values = [branch["const"]] if "const" in branch else list(branch["enum"])
            types.update(_json_type(v) for v in values)
        elif "properties" in branch:
            types.add("object")
        else:
            types.update(_ANY_TYPE)
    return types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum(node: Schema, root: Schema) -> set[Any] | None:
    """The finite set of values a node allows, or None when it is not an enumeration."""
    values: set[Any] = set()
    for branch in _branches(node, root):
        if "const" in branch:
            values.add(_hashable(branch["const"]))
        elif "enum" in branch:
            values.update(_hashable(v) for v in branch["enum"])
        elif branch.get("type") == "null":
            values.add(None)
        else:
            return None
    return values


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, (list, dict)) else value


def _single(node: Schema, root: Schema, kind: str) -> Schema | None:
    """The one branch of ``kind`` (object or array) a node allows, if exactly one."""
    found = [b for b in _branches(node, root) if kind in _types(b, root) and b.get("type") != "null"]
    return found[0] if len(found) == 1 else None


def _compare(
    event: str,
    path: str,
    old: Schema,
    old_root: Schema,
    new: Schema,
    new_root: Schema,
    found: list[Breaking],
    seen: set[tuple[str, int, int]],
) -> None:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    key = (path, id(old), id(new))
    if key in seen:  # recursive models
        return
    seen.add(key)
    label = path or "(event)"

    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if "number" in new_types:
        new_types = new_types | {"integer"}
    lost = old_types - new_types
    if lost:
        found.append(Breaking(event, label, f"type narrowed: no longer accepts {', '.join(sorted(lost))}"))
        return

    old_enum, new_enum = _enum(old, old_root), _enum(new, new_root)
    if new_enum is not None:
        if old_enum is None:
            found.append(Breaking(event, label, "type narrowed to an enumeration"))
        elif old_enum - new_enum:
            lost_values = ", ".join(sorted(repr(v) for v in old_enum - new_enum))
            found.append(Breaking(event, label, f"type narrowed: values {lost_values} no longer allowed"))

    old_scalar, new_scalar = _single_scalar(old, old_root), _single_scalar(new, new_root)
    if old_scalar is not None and new_scalar is not None:
        for bound in _LOWER_BOUNDS:
            if bound in new_scalar and (bound not in old_scalar or new_scalar[bound] > old_scalar[bound]):
                found.append(Breaking(event, label, f"type narrowed: {bound} {new_scalar[bound]}"))
        for bound in _UPPER_BOUNDS:
            if bound in new_scalar and (bound not in old_scalar or new_scalar[bound] < old_scalar[bound]):
                found.append(Breaking(event, label, f"type narrowed: {bound} {new_scalar[bound]}"))
        for exact in _EXACT:
            if exact in new_scalar and new_scalar[exact] != old_scalar.get(exact):
                found.append(Breaking(event, label, f"type narrowed: {exact} {new_scalar[exact]!r}"))

    old_obj, new_obj = _single(old, old_root, "object"), _single(new, new_root, "object")
    if old_obj is not None and new_obj is not None:
        old_props: Schema = old_obj.get("properties", {})
        new_props: Schema = new_obj.get("properties", {})
        old_required, new_required = set(old_obj.get("required", [])), set(new_obj.get("required", []))
        for name, old_prop in old_props.items():
            child = f"{path}.{name}" if path else name
            if name not in new_props:
                found.append(Breaking(event, child, "removed or renamed"))
                continue
            _compare(event, child, old_prop, old_root, new_props[name], new_root, found, seen)
        for name in sorted(new_required - old_required):
            child = f"{path}.{name}" if path else name
            reason = "made required (was optional)" if name in old_props else "added as a new required field"
            found.append(Breaking(event, child, reason))

    old_arr, new_arr = _single(old, old_root, "array"), _single(new, new_root, "array")
    if old_arr is not None and new_arr is not None and "items" in old_arr and "items" in new_arr:
        _compare(event, f"{path}[]", old_arr["items"], old_root, new_arr["items"], new_root, found, seen)


def _single_scalar(node: Schema, root: Schema) -> Schema | None:
    branches = [b for b in _branches(node, root) if b.get("type") not in ("null", "object", "array")]
    return branches[0] if len(branches) == 1 else None
