"""Every event's current pydantic model against its pinned JSON Schema (shared/schemas/events):
a change that breaks a consumer fails here, naming the event and the field; additive changes
pass. Regenerate the pins with `make schemas` (python -m shared.schemas) once a change is agreed."""

from __future__ import annotations

import pytest

from shared.contracts import Event, event_types
from shared.schemas import event_schema, pinned_event_schemas
from shared.schemas.compat import breaking_changes

PINNED = pinned_event_schemas()
CURRENT = {cls.CE_TYPE: cls for cls in event_types()}


def test_pins_exist_for_the_events_consumers_were_built_against() -> None:
    assert len(PINNED) >= 10, "shared/schemas/events is missing: run `make schemas`"


@pytest.mark.parametrize("ce_type", sorted(PINNED))
def test_pinned_event_is_still_readable_by_its_consumers(ce_type: str) -> None:
    pinned = PINNED[ce_type]
    cls: type[Event] | None = CURRENT.get(ce_type)
    assert cls is not None, f"{pinned.get('title', ce_type)} ({ce_type}): event removed from shared/contracts.py"
    assert cls.TOPIC == pinned["x-dcsp-topic"], f"{cls.__name__}: moved from topic {pinned['x-dcsp-topic']}"
    problems = breaking_changes(cls.__name__, pinned, event_schema(cls))
    assert not problems, "breaking change(s) to a pinned event:\n" + "\n".join(str(p) for p in problems)
