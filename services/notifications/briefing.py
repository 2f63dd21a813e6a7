"""The CSU Daily Briefing: built only from stored facts, for a date and its cut-off, and rendered
as canonical JSON, plain text and HTML. Pure: the same facts and date give byte-identical output.

Sections, in order: new ASB issues of concern since the last briefing; open high-risk cases;
repeat victims; Case Review prompts; overdue police alerts; cross-border cases; panel referrals
made. Each section also says what changed since the previous day's briefing (items added and
removed, by key), computed from the same facts, so it never depends on what was sent before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class IncidentFact:
    """A triaged incident of concern, as stored (no victim identity beyond the pseudonymous key)."""

    incident_id: str
    triaged_at: datetime
    partner: str
    asb_qualifier: str
    asb_heading: str | None
    crime_category: str | None
    risk_tier: str
    hate_strands: tuple[str, ...]
    hate_incident: bool
    vulnerable: bool
    repeat_victim: bool
    cross_border: bool
    owning_team: str | None
    victim_key: str | None
    location: str
    summary: str
    review_due: date | None


@dataclass(frozen=True, slots=True)
class CaseReviewFact:
    kind: str  # "prompt-due" (tell the victim) or "eligible" (may ask for a review)
    incident_id: str
    victim_key: str
    complaints_in_window: int
    window_days: int
    grounds: tuple[str, ...]
    raised_at: datetime


@dataclass(frozen=True, slots=True)
class ReferralFact:
    referral_id: str
    panel: str
    incident_id: str
    person_key: str
    reasons: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AlertFact:
    alert_id: str
    incident_id: str
    risk_tier: str
    crime_category: str | None
    raised_at: datetime
    acknowledge_by: datetime
    acknowledged_at: datetime | None
    delivered_at: datetime | None
    escalated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Facts:
    incidents: Sequence[IncidentFact]
    case_reviews: Sequence[CaseReviewFact]
    referrals: Sequence[ReferralFact]
    alerts: Sequence[AlertFact]


@dataclass(frozen=True, slots=True)
class Window:
    day: date
    previous_cut_off: datetime
    cut_off: datetime


def cut_off_for(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The briefing's cut-off for a local date: that day at the local briefing time, in UTC."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def window_for(day: date, at: time, zone: ZoneInfo) -> Window:
    """What the briefing for ``day`` covers: from the previous day's cut-off to its own."""
    return Window(day, cut_off_for(day - timedelta(days=1), at, zone), cut_off_for(day, at, zone))


def briefing_due(now: datetime, at: time, zone: ZoneInfo) -> date | None:
    """The local date whose briefing is due at ``now`` (its cut-off has passed), else None."""
    today = now.astimezone(zone).date()
    return today if now >= cut_off_for(today, at, zone) else None


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _heading(i: IncidentFact) -> str:
    return f"{i.asb_qualifier} / {i.asb_heading}" if i.asb_heading else i.asb_qualifier


def _flags(i: IncidentFact) -> list[str]:
    flags = []
    if i.hate_incident:
        flags.append("hate" + (f" ({', '.join(sorted(i.hate_strands))})" if i.hate_strands else ""))
    if i.vulnerable:
        flags.append("vulnerable victim")
    if i.repeat_victim:
        flags.append("repeat victim")
    if i.cross_border:
        flags.append("cross-border")
    return flags


def _incident_item(i: IncidentFact) -> dict[str, Any]:
    return {
        "incident_id": i.incident_id,
        "triaged_at": _iso(i.triaged_at),
        "partner": i.partner,
        "heading": _heading(i),
        "crime_category": i.crime_category,
        "risk_tier": i.risk_tier,
        "flags": _flags(i),
        "location": i.location,
        "owning_team": i.owning_team,
        "summary": i.summary,
    }


@dataclass(frozen=True, slots=True)
class _Section:
    name: str
    title: str
    columns: tuple[tuple[str, str], ...]
    key: str
    items: Callable[[Facts, Window, int], list[dict[str, Any]]]


def _in(moment: datetime, w: Window) -> bool:
    return w.previous_cut_off <= moment < w.cut_off


def _new_issues(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    return [_incident_item(i) for i in f.incidents if _in(i.triaged_at, w)]


def _open_high_risk(f: Facts, w: Window, open_days: int) -> list[dict[str, Any]]:
    items = []
    for i in f.incidents:
        if i.risk_tier != "high" or i.triaged_at >= w.cut_off:
            continue
        still_open = i.review_due >= w.day if i.review_due else i.triaged_at + timedelta(days=open_days) > w.cut_off
        if still_open:
            items.append({**_incident_item(i), "review_due": _iso(i.review_due)})
    return items


def _repeat_victims(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    by_victim: dict[str, list[IncidentFact]] = {}
    for i in f.incidents:
        if i.repeat_victim and _in(i.triaged_at, w):
            by_victim.setdefault(i.victim_key or f"incident:{i.incident_id}", []).append(i)
    return [
        {
            "victim_key": key,
            "incident_ids": sorted(i.incident_id for i in found),
            "locations": sorted({i.location for i in found}),
            "risk_tier": max((i.risk_tier for i in found), key=["standard", "medium", "high"].index),
        }
        for key, found in by_victim.items()
    ]


def _case_reviews(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{r.kind}|{r.victim_key}|{r.incident_id}",
            "kind": r.kind,
            "victim_key": r.victim_key,
            "incident_id": r.incident_id,
            "complaints_in_window": r.complaints_in_window,
            "window_days": r.window_days,
            "grounds": sorted(r.grounds),
            "raised_at": _iso(r.raised_at),
        }
        for r in f.case_reviews
        if _in(r.raised_at, w)
    ]


def _overdue_alerts(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    at = w.cut_off
    return [
        {
            "alert_id": a.alert_id,
            "incident_id": a.incident_id,
            "risk_tier": a.risk_tier,
            "crime_category": a.crime_category,
            "raised_at": _iso(a.raised_at),
            "acknowledge_by": _iso(a.acknowledge_by),
            "delivered": a.delivered_at is not None and a.delivered_at < at,
            "escalated": a.escalated_at is not None and a.escalated_at < at,
        }
        for a in f.alerts
        if a.raised_at < at and a.acknowledge_by <= at and (a.acknowledged_at is None or a.acknowledged_at >= at)
    ]


def _cross_border(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    return [_incident_item(i) for i in f.incidents if i.cross_border and _in(i.triaged_at, w)]


def _referrals(f: Facts, w: Window, _open_days: int) -> list[dict[str, Any]]:
    return [
        {
            "referral_id": r.referral_id,
            "panel": r.panel,
            "incident_id": r.incident_id,
            "person_key": r.person_key,
            "reasons": sorted(r.reasons),
            "created_at": _iso(r.created_at),
        }
        for r in f.referrals
        if _in(r.created_at, w)
    ]


_CASE_COLUMNS = (
    ("incident_id", "Incident"),
    ("triaged_at", "Triaged (UTC)"),
    ("heading", "ASB type"),
    ("crime_category", "Crime"),
    ("risk_tier", "Risk"),
    ("flags", "Flags"),
    ("location", "Location"),
    ("owning_team", "Owner"),
    ("summary", "Summary"),
)

SECTIONS: tuple[_Section, ...] = (
    _Section("new_issues_of_concern", "New ASB issues of concern since the last briefing", _CASE_COLUMNS,
             "incident_id", _new_issues),
    _Section("open_high_risk_cases", "Open high-risk cases", (*_CASE_COLUMNS, ("review_due", "Review due")),
             "incident_id", _open_high_risk),
    _Section("repeat_victims", "Repeat victims",
             (("victim_key", "Victim key"), ("incident_ids", "Incidents"), ("locations", "Locations"),
              ("risk_tier", "Highest risk")), "victim_key", _repeat_victims),
    _Section("case_review_prompts", "ASB Case Review prompts",
             (("kind", "Kind"), ("victim_key", "Victim key"), ("incident_id", "Incident"),
              ("complaints_in_window", "Complaints"), ("window_days", "Window (days)"), ("grounds", "Grounds"),
              ("raised_at", "Raised (UTC)")), "key", _case_reviews),
    _Section("overdue_alerts", "Overdue police alerts (not acknowledged)",
             (("alert_id", "Alert"), ("incident_id", "Incident"), ("risk_tier", "Risk"),
              ("crime_category", "Crime"), ("raised_at", "Raised (UTC)"), ("acknowledge_by", "Acknowledge by (UTC)"),
              ("delivered", "Delivered"), ("escalated", "Escalated to CSU")), "alert_id", _overdue_alerts),
    _Section("cross_border_cases", "Cross-border cases", _CASE_COLUMNS, "incident_id", _cross_border),
    _Section("panel_referrals", "Panel referrals made",
             (("referral_id", "Referral"), ("panel", "Panel"), ("incident_id", "Incident"),
              ("person_key", "Person key"), ("reasons", "Reasons"), ("created_at", "Created (UTC)")),
             "referral_id", _referrals),
)  # fmt: skip


def _sorted_items(section: _Section, facts: Facts, window: Window, open_days: int) -> list[dict[str, Any]]:
    items = section.items(facts, window, open_days)
    return sorted(items, key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))


def build_briefing(day: date, at: time, zone_name: str, facts: Facts, *, open_case_days: int) -> dict[str, Any]:
    """The Daily Briefing for ``day`` as plain data, with what changed since the day before."""
    zone = ZoneInfo(zone_name)
    window = window_for(day, at, zone)
    previous = window_for(day - timedelta(days=1), at, zone)
    sections = []
    for section in SECTIONS:
        items = _sorted_items(section, facts, window, open_case_days)
        before = {item[section.key] for item in section.items(facts, previous, open_case_days)}
        now = {item[section.key] for item in items}
        sections.append(
            {
                "name": section.name,
                "title": section.title,
                "key": section.key,
                "columns": [{"field": f, "header": h} for f, h in section.columns],
                "items": items,
                "count": len(items),
                "changes": {
                    "previous_count": len(before),
                    "added": sorted(now - before),
                    "removed": sorted(before - now),
                },
            }
        )
    return {
        "title": "Community Safety Partnership - Daily Briefing",
        "briefing_date": day.isoformat(),
        "timezone": zone_name,
        "cut_off": _iso(window.cut_off),
        "cut_off_local": window.cut_off.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
        "previous_cut_off": _iso(window.previous_cut_off),
        "sections": sections,
    }


def counts(briefing: dict[str, Any]) -> dict[str, int]:
    """Items per section, for the published event and the email subject."""
    return {s["name"]: s["count"] for s in briefing["sections"]}


def render_json(briefing: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, so equal briefings are equal bytes."""
    return orjson.dumps(briefing, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def digest(briefing: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON."""
    return hashlib.sha256(render_json(briefing)).hexdigest()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = _cell
    return env


_ENV = _environment()


def render_text(briefing: dict[str, Any]) -> str:
    """The plain-text briefing (the email's text part)."""
    return _ENV.get_template("briefing.txt").render(b=briefing)


def render_html(briefing: dict[str, Any]) -> str:
    """The HTML briefing: one table of cases per section (autoescaped)."""
    return _ENV.get_template("briefing.html").render(b=briefing)


def email_subject(briefing: dict[str, Any]) -> str:
    """The briefing email's subject: the date and the headline counts."""
    c = counts(briefing)
    return (
        f"Daily Briefing {briefing['briefing_date']}: {c['new_issues_of_concern']} new issues of concern, "
        f"{c['open_high_risk_cases']} open high-risk, {c['overdue_alerts']} overdue police alerts"
    )
