"""Topic names, defined once. A deployment may put a prefix before every name
(``KAFKA_TOPIC_PREFIX``), e.g. to run several pipelines on one cluster; tests do this to get
fresh topics."""

PARTNER_REPORTS = "dcsp.partner-reports.v1"
INCIDENTS_ACCEPTED = "dcsp.incidents.accepted.v1"
INCIDENTS_TRIAGED = "dcsp.incidents.triaged.v1"
POLICE_ALERTS_REQUESTED = "dcsp.police-alerts.requested.v1"
POLICE_ALERTS_DELIVERED = "dcsp.police-alerts.delivered.v1"
PANEL_REFERRALS = "dcsp.panel-referrals.created.v1"
DEAD_LETTERS = "dcsp.dead-letters.v1"

# Triage topics (issue #4):
CASE_REVIEW_PROMPTS = "dcsp.case-review.prompts.v1"
CASE_REVIEW_ELIGIBILITY = "dcsp.case-review.eligibility.v1"
INCIDENTS_RETRIAGED = "dcsp.incidents.retriaged.v1"

# Notifications topics (issue #5):
POLICE_ALERTS_ACKNOWLEDGED = "dcsp.police-alerts.acknowledged.v1"
POLICE_ALERTS_ESCALATED = "dcsp.police-alerts.escalated.v1"
DAILY_BRIEFINGS = "dcsp.daily-briefings.v1"

# Panels topics (issue #6):
PANEL_REFERRAL_REQUESTS = "dcsp.panel-referral-requests.v1"
TENANCY_POSSESSION = "dcsp.tenancy-possession.v1"
PANEL_OUTCOMES = "dcsp.panel-outcomes.v1"
PANEL_ACTIONS_OVERDUE = "dcsp.panel-actions.overdue.v1"
PANEL_ACTIONS_COMPLETED = "dcsp.panel-actions.completed.v1"
PANEL_REFERRALS_CLOSED = "dcsp.panel-referrals.closed.v1"


def resolve(base: str, prefix: str = "") -> str:
    """The topic name on the wire for a base name under a deployment's prefix."""
    return f"{prefix}{base}"


# Security events (issue #8):
ERASURE_REQUESTS = "dcsp.erasure-requests.v1"
ERASURE_CONFIRMATIONS = "dcsp.erasure-confirmations.v1"
