"""Prometheus metrics every service exposes at ``/metrics`` (prometheus-client, default registry;
one process per service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "dcsp_messages_consumed",
    "Messages consumed, by outcome (processed, duplicate, dead_lettered)",
    ["service", "topic", "outcome"],
)
PRODUCED = Counter("dcsp_messages_produced", "Events published from the outbox", ["service", "topic"])
PROCESSING_SECONDS = Histogram(
    "dcsp_message_processing_seconds",
    "Time to handle one message, store transaction included",
    ["service", "topic"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge("dcsp_consumer_lag", "Records not yet consumed, per partition", ["service", "topic", "partition"])
OUTBOX_BACKLOG = Gauge("dcsp_outbox_backlog", "Outbox events not yet published", ["service"])
DEAD_LETTERS = Counter("dcsp_dead_letters", "Messages sent to the dead-letter topic", ["service", "topic"])
ALERT_DELIVERY_SECONDS = Histogram(
    "dcsp_police_alert_delivery_seconds",
    "From the alert being stored to the police channel confirming it",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
ALERT_DELIVERY_FAILURES = Counter(
    "dcsp_police_alert_delivery_failures", "Failed attempts to deliver a police alert", ["channel"]
)
REFERRALS = Counter("dcsp_panel_referrals", "Panel referrals created", ["panel"])
