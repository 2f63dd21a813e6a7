"""Fault injection on a real broker: run the four services as processes, stream reports in through
HTTP and the ingress topic, break things on purpose (SIGKILL, broker restart, leader loss, gateway
outage, locked stores, poison input), then check invariants on everything intake accepted."""
