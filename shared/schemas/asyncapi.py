"""AsyncAPI entry points, one per service, built from the service's own composition root (the
same KafkaBroker and subscribers it runs with), with no store or broker connection made:

    faststream docs gen --factory shared.schemas.asyncapi:intake -o intake.json
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from faststream.specification import AsyncAPI

from shared.settings import KafkaSettings, ServiceSettings


@dataclass(frozen=True)
class Docs:
    """What `faststream docs gen` reads: an object with a ``schema`` (a SpecificationFactory)."""

    schema: AsyncAPI


def _settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    for _name, value in inspect.getmembers(module, inspect.isclass):
        if issubclass(value, ServiceSettings) and value is not ServiceSettings and value.__module__ == module.__name__:
            return value
    raise LookupError(f"services.{service}.settings declares no ServiceSettings subclass")


def specification(service: str) -> AsyncAPI:
    """The AsyncAPI specification of ``service`` from its ``build()``."""
    # Placeholders only: documents name the topics without a deployment's prefix, whatever the env says.
    kafka = KafkaSettings(bootstrap_servers="kafka:9092", topic_prefix="", group_prefix="")
    settings = _settings_class(service)(database_url="sqlite:///:memory:", kafka=kafka)
    runtime = importlib.import_module(f"services.{service}.app").build(settings)
    return AsyncAPI(
        runtime.broker,
        title=f"dcsp {service}",
        version="1",
        description=f"The Kafka topics the {service} service consumes (events: shared/schemas/events).",
    )


def intake() -> Docs:
    return Docs(specification("intake"))


def triage() -> Docs:
    return Docs(specification("triage"))


def notifications() -> Docs:
    return Docs(specification("notifications"))


def panels() -> Docs:
    return Docs(specification("panels"))
