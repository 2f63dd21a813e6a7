"""Operator tools: the ``dcsp`` command line (service status, dead letters, re-triage, briefings,
panel agendas)."""
