"""structlog, JSON to stdout, with the event id and incident id bound while a message is handled.

No personal data reaches a log line (issue #8): ``redact_personal_data`` drops the values of
personal fields by name (names, contact details, addresses, dates of birth, free-text
descriptions, whole message bodies) and masks personal-data shapes in every other string (email
addresses, UK phone numbers, postcodes, dates, the input values quoted in validation errors).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

REDACTED = "[redacted]"

# Field names whose values are personal data or free text that may hold it, wherever they appear.
PERSONAL_KEYS = frozenset(
    {
        "name",
        "full_name",
        "first_name",
        "last_name",
        "surname",
        "contact",
        "email",
        "phone",
        "telephone",
        "mobile",
        "address",
        "address_string",
        "postcode",
        "date_of_birth",
        "dob",
        "description",
        "note",
        "notes",
        "person",
        "victim",
        "tenant",
        "requested_people",
        "acknowledged_by",
        "body",
        "body_base64",
        "payload",
        "report",
        "content",
        "input",
        "input_value",
    }
)

# Keys whose values are timestamps or dates the service itself made: not scanned for dates.
_DATED_KEYS = frozenset({"timestamp", "date", "due", "cut_off", "briefing_date", "meeting_date"})

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # pydantic quotes the offending input; the value may be anything a partner sent.
    (
        re.compile(r"""input_value=(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\{.*?\}|\[.*?\]|\S+)""", re.S),
        "input_value=[redacted]",
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?<![\w+])(?:\+44\s?\(?0?\)?\s?\d{2,4}|\(?0\d{2,4}\)?)[\s-]?\d{3,4}[\s-]?\d{3,4}(?!\w)"), "[phone]"),
    (re.compile(r"\b(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\b"), "[postcode]"),
]
_DATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:19|20)\d{2}-\d{2}-\d{2}\b(?!T\d)"), "[date]"),
    (re.compile(r"\b\d{1,2}[/.]\d{1,2}[/.](?:19|20)?\d{2}\b"), "[date]"),
]


# Every pattern above needs a digit, an "@" or a quoted input: text with none is left as it is.
_MAYBE_PERSONAL = re.compile(r"[0-9@]|input_value")

# Fields the services fill themselves with values that cannot hold personal data (a validated
# trace context, the service's own names, the Kafka topic consumed): not scanned.
_OWN_KEYS = frozenset({"timestamp", "level", "logger", "service", "trace_id", "span_id", "topic"})


# A UUID, or an event id (CloudEvents source | UUID): the ids on every line, never personal data
# (and the phone pattern would otherwise take a UUID that starts with 0 for a number).
_IDENTIFIER = re.compile(r"(?:/[\w./-]*\|)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def mask_text(text: str, *, dates: bool = True) -> str:
    """``text`` with email addresses, UK phone numbers, postcodes, dates and quoted inputs masked."""
    if _MAYBE_PERSONAL.search(text) is None or _IDENTIFIER.fullmatch(text) is not None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if dates:
        for pattern, replacement in _DATE_PATTERNS:
            text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, key: str = "") -> Any:
    lowered = key.lower()
    if lowered in PERSONAL_KEYS:
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, str):
        dated = lowered in _DATED_KEYS or lowered.endswith(("_at", "_date", "_by_date"))
        return mask_text(value, dates=not dated)
    if isinstance(value, Mapping):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, key) for v in value]
    return value


def redact_personal_data(_logger: Any, _method: str, event_dict: Any) -> Any:
    """structlog processor: no personal data in any field of a log line (see the module doc)."""
    return {k: v if k in _OWN_KEYS else _scrub(v, str(k)) for k, v in event_dict.items()}


def _dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """One JSON object per line; stdlib loggers (uvicorn, aiokafka, faststream) go the same way."""
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_personal_data,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "faststream.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
