"""Panels use cases: refer triaged incidents, partners' requests and tenancies facing possession to the
VCSP and the CCP (one open referral per person and panel), record outcomes and action plans, complete
and close, and flag overdue actions once each. Every change to a referral is written to its history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.panels import domain, store
from services.panels.settings import MeetingSchedule, PanelsSettings
from shared import metrics
from shared.clock import Clock
from shared.consumer import PermanentError, Received
from shared.contracts import (
    AsbTool,
    Event,
    IncidentTriaged,
    MandatoryGround,
    Panel,
    PanelAction,
    PanelActionCompleted,
    PanelActionOverdue,
    PanelOutcomeRecorded,
    PanelReferralClosed,
    PanelReferralCreated,
    PanelReferralRequested,
    PartnerAgency,
    Person,
    PossessionStage,
    RiskTier,
    TenancyPossessionUpdated,
    TenantRole,
    Tenure,
)
from shared.envelope import decode_event
from shared.logging import get_logger
from shared.outbox import add_events
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)


class ReferralNotFound(LookupError):
    """No referral (or action of it) with that id."""


class ReferralClosed(PermanentError):
    """The referral is closed: it takes no outcome, action or second closure."""


@dataclass(frozen=True)
class ActionPlanItem:
    description: str
    owner_agency: PartnerAgency
    due: date
    tool: AsbTool | None = None


def tenancy_record(row: store.TenancyRow | store.AnyRow | None) -> domain.TenancyRecord | None:
    """A stored tenancy (an ORM row or a Core row) as the domain sees it."""
    if row is None:
        return None
    return domain.TenancyRecord(
        tenancy_ref=row.tenancy_ref,
        tenure=Tenure(row.tenure),
        stage=PossessionStage(row.stage) if row.stage else None,
        mandatory_grounds=tuple(MandatoryGround(g) for g in row.mandatory_grounds),
        tenant=Person.model_validate(row.tenant) if row.tenant else None,
        uprn=row.uprn,
        tenure_from_housing=row.tenure_from_housing,
    )


def _tenancy_values(record: domain.TenancyRecord, now: datetime) -> dict[str, Any]:
    return {
        "tenure": str(record.tenure),
        "tenure_from_housing": record.tenure_from_housing,
        "stage": str(record.stage) if record.stage else None,
        "mandatory_grounds": [str(g) for g in record.mandatory_grounds],
        "tenant": record.tenant.model_dump(mode="json") if record.tenant else None,
        "uprn": record.uprn,
        "updated_at": now,
    }


def action_contract(row: store.PanelActionRow) -> PanelAction:
    return PanelAction(
        action_id=row.action_id,
        description=row.description,
        owner_agency=PartnerAgency(row.owner_agency),
        due=row.due,
        tool=AsbTool(row.tool) if row.tool else None,
    )


def _partner(referral: store.PanelReferral) -> PartnerAgency | None:
    return PartnerAgency(referral.referring_partner) if referral.referring_partner else None


# A risk tier (as stored) and vulnerability score an attached incident brings to its referral.
Risk = tuple[str | None, int]


@dataclass
class _OpenReferral:
    """An open referral as a consumer changes it: read with one Core select (or made in this
    message), changed in memory, then written back by ``Panels._save`` in a few statements."""

    referral_id: uuid.UUID
    reasons: list[str]
    referring_partner: str | None
    consent_given: bool | None
    requested_people: list[dict[str, Any]]
    risk_tier: str | None
    vulnerability_score: int
    new_row: dict[str, Any] | None = None  # the columns that never change, when made in this message
    changed: dict[str, Any] = field(default_factory=dict)
    attached: set[uuid.UUID] | None = None  # every incident attached, once known in full
    attachments: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: store.AnyRow) -> _OpenReferral:
        return cls(
            referral_id=row.referral_id,
            reasons=list(row.reasons),
            referring_partner=row.referring_partner,
            consent_given=row.consent_given,
            requested_people=list(row.requested_people or []),
            risk_tier=row.risk_tier,
            vulnerability_score=row.vulnerability_score or 0,
        )

    def change(self, column: str, value: Any) -> None:
        setattr(self, column, value)
        self.changed[column] = value

    def note(self, event_type: str, now: datetime, **detail: Any) -> None:
        """One change for the referral's history."""
        self.history.append({"referral_id": self.referral_id, "at": now, "event_type": event_type, "detail": detail})


class Panels:
    """The panels service's use cases, on an injectable clock."""

    def __init__(self, runtime: ServiceRuntime, settings: PanelsSettings, clock: Clock) -> None:
        self._runtime = runtime
        self._settings = settings
        self.clock = clock
        self._wake = asyncio.Event()

    def today(self) -> date:
        return domain.local_date(self.clock(), self._settings.timezone)

    # -- history (the API's changes, on ORM rows) ------------------------------------------------

    def _history(
        self, session: AsyncSession, referral: store.PanelReferral, event_type: str, now: datetime, **detail: Any
    ) -> None:
        referral.updated_at = now
        session.add(
            store.ReferralHistory(referral_id=referral.referral_id, at=now, event_type=event_type, detail=detail)
        )

    # -- referral and attachment (the consumers' changes, in Core) ------------------------------
    # A consumer's rules and statements for one message run synchronously in one greenlet
    # (``AsyncSession.run_sync``): a switch per message, not one per statement.

    def _open(self, session: Session, panel: Panel, person_key: str) -> _OpenReferral | None:
        row = store.open_referral_row(session, panel, person_key)
        return _OpenReferral.from_row(row) if row is not None else None

    def _refer(
        self,
        session: Session,
        decision: domain.ReferralDecision,
        now: datetime,
        *,
        first_incident: uuid.UUID | None,
        tenancy_ref: str | None = None,
        referring_partner: PartnerAgency | None = None,
    ) -> tuple[_OpenReferral, list[Event]]:
        """The open referral for this person and panel, made now if there is none."""
        referral = self._open(session, decision.panel, decision.person_key)
        if referral is not None:
            new = [r for r in decision.reasons if r not in referral.reasons]
            if new:
                referral.change("reasons", [*referral.reasons, *new])
                referral.note("reasons-added", now, reasons=new)
            return referral, []
        partner = str(referring_partner) if referring_partner else None
        referral = _OpenReferral(
            referral_id=uuid.uuid4(),
            reasons=list(decision.reasons),
            referring_partner=partner,
            consent_given=None,
            requested_people=[],
            risk_tier=None,
            vulnerability_score=0,
            new_row={
                "panel": str(decision.panel),
                "person_key": decision.person_key,
                "open_key": decision.person_key,
                "status": store.ReferralStatus.AWAITING_PANEL,
                "created_at": now,
                "tenancy_ref": tenancy_ref,
            },
            attached=set(),
        )
        meeting = domain.meeting_for_referral(
            self._schedule(decision.panel), domain.local_date(now, self._settings.timezone)
        )
        referral.note(
            "referral-created",
            now,
            reasons=list(decision.reasons),
            referring_partner=partner,
            agenda_meeting=meeting.isoformat(),
        )
        if _stdlib_log.isEnabledFor(logging.DEBUG):
            # Filtered out by level only after structlog's processors ran: check first.
            log.debug("panel referral created", referral_id=str(referral.referral_id), panel=str(decision.panel))
        metrics.REFERRALS.labels(str(decision.panel)).inc()
        if first_incident is None:
            return referral, []  # PanelReferralCreated names an incident; a request without one has none yet
        return referral, [
            PanelReferralCreated(
                referral_id=referral.referral_id,
                panel=decision.panel,
                person_key=decision.person_key,
                incident_id=first_incident,
                reasons=list(decision.reasons),
                created_at=now,
            )
        ]

    def _attach(
        self,
        session: Session,
        referral: _OpenReferral,
        incident_id: uuid.UUID,
        reasons: list[str],
        now: datetime,
        risk: Risk | None,
    ) -> bool:
        """Attach an incident to a referral (once); keep the referral's risk tier and score at their highest."""
        if risk is not None:
            tier, score = risk
            current = RiskTier(referral.risk_tier) if referral.risk_tier else None
            highest = domain.higher_tier(current, RiskTier(tier) if tier else None)
            if (str(highest) if highest else None) != referral.risk_tier:
                referral.change("risk_tier", str(highest) if highest else None)
            if max(referral.vulnerability_score, score) != referral.vulnerability_score:
                referral.change("vulnerability_score", max(referral.vulnerability_score, score))
        if referral.attached is not None:
            if incident_id in referral.attached:
                return False
        elif any(a["incident_id"] == incident_id for a in referral.attachments) or store.is_attached(
            session, referral.referral_id, incident_id
        ):
            return False
        referral.attachments.append(
            {"referral_id": referral.referral_id, "incident_id": incident_id, "attached_at": now, "reasons": reasons}
        )
        if referral.attached is not None:
            referral.attached.add(incident_id)
        referral.note("incident-attached", now, incident_id=str(incident_id), reasons=reasons)
        return True

    def _attach_tenancy_incidents(
        self,
        session: Session,
        referral: _OpenReferral,
        tenancy_ref: str,
        now: datetime,
        incidents: list[store.AnyRow] | None = None,
    ) -> None:
        if referral.attached is None:
            known = store.attached_incidents(session, referral.referral_id)
            referral.attached = known | {a["incident_id"] for a in referral.attachments}
        if incidents is None:
            incidents = store.tenancy_incident_risks(session, tenancy_ref)
        reasons = [f"ASB incident for tenancy {tenancy_ref}"]
        for row in incidents:
            self._attach(session, referral, row.incident_id, reasons, now, (row.risk_tier, row.vulnerability_score))

    def _save(self, session: Session, referral: _OpenReferral, now: datetime) -> None:
        """Write a referral's changes, its new attachments and its history (parents before children)."""
        if referral.new_row is not None:
            store.insert_referral(
                session,
                {
                    **referral.new_row,
                    "referral_id": referral.referral_id,
                    "reasons": referral.reasons,
                    "referring_partner": referral.referring_partner,
                    "consent_given": referral.consent_given,
                    "requested_people": referral.requested_people,
                    "risk_tier": referral.risk_tier,
                    "vulnerability_score": referral.vulnerability_score,
                    "updated_at": now,
                },
            )
            referral.new_row = None
        else:
            values = referral.changed
            if referral.history:
                values["updated_at"] = now
            if values:
                store.update_referral(session, referral.referral_id, values)
        referral.changed = {}
        if referral.attachments:
            store.attach_incidents(session, referral.attachments)
            referral.attachments = []
        if referral.history:
            store.add_history(session, referral.history)
            referral.history = []

    def _schedule(self, panel: Panel) -> MeetingSchedule:
        return self._settings.ccp if panel == Panel.CCP else self._settings.vcsp

    # -- consumers ----------------------------------------------------------------------------

    async def on_incident_triaged(self, session: AsyncSession, received: Received) -> list[Event]:
        """A triaged incident: record it (and its tenancy), then refer or attach as the rules say."""
        _envelope, triaged = decode_event(IncidentTriaged, received.headers, received.body)
        now = self.clock()
        report = triaged.report
        block = report.tenancy
        store.record_incident(
            session.sync_session,
            {
                "incident_id": triaged.incident_id,
                "victim_key": triaged.victim_key,
                "tenancy_ref": block.tenancy_ref if block else None,
                "tenant_role": str(block.tenant_role) if block else None,
                "reported_at": report.reported_at,
                "recorded_at": now,
                "event": triaged.model_dump_json(),
            },
        )
        if (block is None or not block.tenancy_ref) and not domain.decide_referrals(triaged):
            return []  # most incidents: on record for later, no tenancy to keep, no panel now
        return await session.run_sync(self._refer_triaged, triaged, now)

    def _refer_triaged(self, session: Session, triaged: IncidentTriaged, now: datetime) -> list[Event]:
        block = triaged.report.tenancy
        on_record: domain.TenancyRecord | None = None
        if block is not None and block.tenancy_ref:
            on_record = self._record_tenancy(session, triaged, block.tenancy_ref, now)
        c = triaged.classification
        events: list[Event] = []
        for decision in domain.decide_referrals(triaged, on_record):
            tenancy_ref = block.tenancy_ref if decision.panel == Panel.CCP and block else None
            referral, created = self._refer(
                session, decision, now, first_incident=triaged.incident_id, tenancy_ref=tenancy_ref
            )
            events += created
            risk = (c.risk_tier, c.vulnerability_score)
            self._attach(session, referral, triaged.incident_id, list(decision.reasons), now, risk)
            if tenancy_ref and decision.person_key == f"tenancy:{tenancy_ref}":
                self._attach_tenancy_incidents(session, referral, tenancy_ref, now)
            self._save(session, referral, now)
        return events

    def _record_tenancy(
        self, session: Session, triaged: IncidentTriaged, tenancy_ref: str, now: datetime
    ) -> domain.TenancyRecord | None:
        """The tenancy on record after a report's tenancy block (saved when the block changes it)."""
        block = triaged.report.tenancy
        assert block is not None
        row = store.tenancy_row(session, tenancy_ref)
        before = tenancy_record(row)
        on_record = domain.tenancy_from_report(block, triaged.report.location.uprn, before)
        if on_record is not None and on_record != before:
            values = _tenancy_values(on_record, now)
            stage_history = list(row.stage_history) if row is not None else []
            if on_record.stage != (before.stage if before else None):
                stage_history.append(
                    {
                        "stage": str(on_record.stage),
                        "occurred_at": triaged.report.reported_at.isoformat(),
                        "source": f"report {triaged.incident_id}",
                    }
                )
                values["stage_history"] = stage_history
            elif row is None:
                values["stage_history"] = stage_history
            store.save_tenancy(session, tenancy_ref, values, new=row is None)
        return on_record

    async def on_possession_updated(self, session: AsyncSession, received: Received) -> list[Event]:
        """A housing system's possession news: update the tenancy; refer to the CCP if ASB is on record."""
        _envelope, update = decode_event(TenancyPossessionUpdated, received.headers, received.body)
        return await session.run_sync(self._possession_updated, update, self.clock())

    def _possession_updated(self, session: Session, update: TenancyPossessionUpdated, now: datetime) -> list[Event]:
        row = store.tenancy_row(session, update.tenancy_ref)
        before = tenancy_record(row)
        stage_history: list[dict[str, Any]] = list(row.stage_history) if row is not None else []
        entry = {
            "stage": str(update.stage),
            "occurred_at": update.occurred_at.isoformat(),
            "source": f"{update.partner}:{update.idempotency_key}",
        }
        if row is not None and entry in stage_history:
            return []  # the same update republished under a new event id
        # Only the housing system's own dates order its news; a report's snapshot does not.
        housing_dates = [
            datetime.fromisoformat(e["occurred_at"]) for e in stage_history if not e["source"].startswith("report ")
        ]
        latest = max(housing_dates, default=None)
        if latest is not None and update.occurred_at < latest and before is not None:
            # Older news arriving late: keep it in the history, but the current stage stays.
            record = domain.tenancy_from_housing(
                update.tenancy_ref,
                before.tenure,
                before.stage or update.stage,
                update.mandatory_grounds,
                update.tenant,
                update.uprn,
                before,
            )
        else:
            record = domain.tenancy_from_housing(
                update.tenancy_ref,
                update.tenure,
                update.stage,
                update.mandatory_grounds,
                update.tenant,
                update.uprn,
                before,
            )
        values = _tenancy_values(record, now)
        values["stage_history"] = [*stage_history, entry]
        store.save_tenancy(session, update.tenancy_ref, values, new=row is None)
        incidents = store.tenancy_incident_risks(session, update.tenancy_ref)
        roles = [TenantRole(i.tenant_role) for i in incidents if i.tenant_role]
        events: list[Event] = []
        decision = domain.decide_on_possession(record, roles)
        referral: _OpenReferral | None
        if decision is not None:
            referral, created = self._refer(
                session, decision, now, first_incident=incidents[-1].incident_id, tenancy_ref=update.tenancy_ref
            )
            events += created
        else:
            referral = self._open(session, Panel.CCP, f"tenancy:{update.tenancy_ref}")
        if referral is not None:
            referral.note(
                "possession-updated",
                now,
                stage=str(record.stage) if record.stage else None,
                mandatory_grounds=[str(g) for g in record.mandatory_grounds],
                reported_by=str(update.partner),
                occurred_at=update.occurred_at.isoformat(),
            )
            self._attach_tenancy_incidents(session, referral, update.tenancy_ref, now, incidents)
            self._save(session, referral, now)
        return events

    async def on_referral_requested(self, session: AsyncSession, received: Received) -> list[Event]:
        """A partner's request for a panel: refer (or attach to the open referral), with consent and incidents."""
        _envelope, request = decode_event(PanelReferralRequested, received.headers, received.body)
        return await session.run_sync(self._referral_requested, request, self.clock())

    def _referral_requested(self, session: Session, request: PanelReferralRequested, now: datetime) -> list[Event]:
        known = store.incident_risks(session, request.incident_ids)
        tenancy_ref = next((i.tenancy_ref for i in known if i.tenancy_ref), None)
        decision = domain.decide_on_request(request, tenancy_ref)
        first = request.incident_ids[0] if request.incident_ids else None
        referral, events = self._refer(
            session,
            decision,
            now,
            first_incident=first,
            tenancy_ref=tenancy_ref if request.panel == Panel.CCP else None,
            referring_partner=request.partner,
        )
        source = f"{request.partner}:{request.idempotency_key}"
        if referral.new_row is None and any(
            d.get("request") == source for d in store.partner_requests(session, referral.referral_id)
        ):
            self._save(session, referral, now)
            return []  # the same request republished under a new event id
        if referral.referring_partner is None:
            referral.change("referring_partner", str(request.partner))
        if request.consent_given is not None:
            referral.change("consent_given", request.consent_given)
        referral.change("requested_people", [*referral.requested_people, request.person.model_dump(mode="json")])
        referral.note(
            "partner-request",
            now,
            request=source,
            partner=str(request.partner),
            reason=request.reason,
            consent_given=request.consent_given,
        )
        by_id = {i.incident_id: i for i in known}
        for incident_id in request.incident_ids:
            row = by_id.get(incident_id)
            risk = (row.risk_tier, row.vulnerability_score) if row is not None else None
            self._attach(session, referral, incident_id, list(decision.reasons), now, risk)
        self._save(session, referral, now)
        return events

    # -- panel decisions --------------------------------------------------------------------

    async def _referral(self, session: AsyncSession, referral_id: uuid.UUID) -> store.PanelReferral:
        referral = await session.get(store.PanelReferral, referral_id)
        if referral is None:
            raise ReferralNotFound(f"no referral with id {referral_id}")
        return referral

    async def record_outcome(
        self, session: AsyncSession, referral_id: uuid.UUID, decision: str, plan: list[ActionPlanItem]
    ) -> tuple[store.PanelReferral, list[store.PanelActionRow]]:
        """The panel's decision and action plan for a referral; the outcome event is staged in the outbox."""
        referral = await self._referral(session, referral_id)
        if referral.status == store.ReferralStatus.CLOSED:
            raise ReferralClosed(f"referral {referral_id} is closed; reopen it by referring again")
        now = self.clock()
        rows = [
            store.PanelActionRow(
                action_id=uuid.uuid4(),
                referral_id=referral_id,
                description=item.description,
                owner_agency=str(item.owner_agency),
                due=item.due,
                tool=str(item.tool) if item.tool else None,
                status="open",
                recorded_at=now,
            )
            for item in plan
        ]
        session.add_all(rows)
        referral.status = store.ReferralStatus.ACTION_PLAN
        referral.decision = decision
        referral.decided_at = now
        actions = [action_contract(r) for r in rows]
        self._history(
            session,
            referral,
            "outcome-recorded",
            now,
            decision=decision,
            actions=[a.model_dump(mode="json") for a in actions],
        )
        add_events(
            session,
            self._runtime.source,
            [
                PanelOutcomeRecorded(
                    referral_id=referral_id,
                    panel=Panel(referral.panel),
                    referring_partner=_partner(referral),
                    decision=decision,
                    actions=actions,
                    recorded_at=now,
                )
            ],
        )
        return referral, rows

    async def complete_action(
        self, session: AsyncSession, referral_id: uuid.UUID, action_id: uuid.UUID, note: str | None
    ) -> tuple[store.PanelActionRow, bool]:
        """Mark an action done (once); True when this call completed it."""
        referral = await self._referral(session, referral_id)
        action = await session.get(store.PanelActionRow, action_id)
        if action is None or action.referral_id != referral_id:
            raise ReferralNotFound(f"referral {referral_id} has no action {action_id}")
        if action.status == "completed":
            return action, False
        if referral.status == store.ReferralStatus.CLOSED:
            raise ReferralClosed(f"referral {referral_id} is closed")
        now = self.clock()
        action.status, action.completed_at, action.completion_note = "completed", now, note
        self._history(session, referral, "action-completed", now, action_id=str(action_id), note=note)
        add_events(
            session,
            self._runtime.source,
            [
                PanelActionCompleted(
                    referral_id=referral_id,
                    panel=Panel(referral.panel),
                    referring_partner=_partner(referral),
                    action=action_contract(action),
                    completed_at=now,
                    note=note,
                )
            ],
        )
        return action, True

    async def close_referral(self, session: AsyncSession, referral_id: uuid.UUID, reason: str) -> store.PanelReferral:
        """Close a referral with a reason; the person's next qualifying incident opens a new one."""
        referral = await self._referral(session, referral_id)
        if referral.status == store.ReferralStatus.CLOSED:
            raise ReferralClosed(f"referral {referral_id} was already closed: {referral.close_reason}")
        now = self.clock()
        referral.status, referral.open_key = store.ReferralStatus.CLOSED, None
        referral.closed_at, referral.close_reason = now, reason
        self._history(session, referral, "referral-closed", now, reason=reason)
        add_events(
            session,
            self._runtime.source,
            [
                PanelReferralClosed(
                    referral_id=referral_id,
                    panel=Panel(referral.panel),
                    referring_partner=_partner(referral),
                    reason=reason,
                    closed_at=now,
                )
            ],
        )
        return referral

    # -- overdue actions ------------------------------------------------------------------------

    async def flag_overdue(self) -> int:
        """Emit PanelActionOverdue once for each action past its due date; how many were flagged."""
        now = self.clock()
        today = domain.local_date(now, self._settings.timezone)
        async with self._runtime.sessions.begin() as session:
            events: list[Event] = []
            for action, referral in await store.overdue_actions(session, today):
                if action.overdue_notified_at is not None:
                    continue
                action.overdue_notified_at = now
                days = domain.days_overdue(action.due, today)
                self._history(
                    session, referral, "action-overdue", now, action_id=str(action.action_id), days_overdue=days
                )
                events.append(
                    PanelActionOverdue(
                        referral_id=referral.referral_id,
                        panel=Panel(referral.panel),
                        referring_partner=_partner(referral),
                        action=action_contract(action),
                        days_overdue=days,
                        detected_at=now,
                    )
                )
            add_events(session, self._runtime.source, events)
        if events:
            self._runtime.relay.wake()
            log.info("overdue panel actions flagged", count=len(events))
        return len(events)

    def wake(self) -> None:
        """Look for overdue actions now (e.g. after an outcome with a past due date)."""
        self._wake.set()

    async def run_overdue_checks(self) -> None:
        """Flag overdue actions every ``overdue_check_seconds`` until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.flag_overdue()
            except Exception:
                log.exception("could not flag overdue actions; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.overdue_check_seconds)
