"""Panels use cases: refer triaged incidents, partners' requests and tenancies facing possession to the
VCSP and the CCP (one open referral per person and panel), record outcomes and action plans, complete
and close, and flag overdue actions once each. Every change to a referral is written to its history."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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


def tenancy_record(row: store.TenancyRow | None) -> domain.TenancyRecord | None:
    """A stored tenancy as the domain sees it."""
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


def _save_tenancy(
    session: AsyncSession, row: store.TenancyRow | None, record: domain.TenancyRecord, now: datetime
) -> store.TenancyRow:
    if row is None:
        row = store.TenancyRow(tenancy_ref=record.tenancy_ref, stage_history=[], updated_at=now)
        session.add(row)
    row.tenure = str(record.tenure)
    row.tenure_from_housing = record.tenure_from_housing
    row.stage = str(record.stage) if record.stage else None
    row.mandatory_grounds = [str(g) for g in record.mandatory_grounds]
    row.tenant = record.tenant.model_dump(mode="json") if record.tenant else None
    row.uprn = record.uprn
    row.updated_at = now
    return row


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


class Panels:
    """The panels service's use cases, on an injectable clock."""

    def __init__(self, runtime: ServiceRuntime, settings: PanelsSettings, clock: Clock) -> None:
        self._runtime = runtime
        self._settings = settings
        self.clock = clock
        self._wake = asyncio.Event()

    def today(self) -> date:
        return domain.local_date(self.clock(), self._settings.timezone)

    # -- history and attachment -------------------------------------------------------------

    def _history(
        self, session: AsyncSession, referral: store.PanelReferral, event_type: str, now: datetime, **detail: Any
    ) -> None:
        referral.updated_at = now
        session.add(
            store.ReferralHistory(referral_id=referral.referral_id, at=now, event_type=event_type, detail=detail)
        )

    async def _refer(
        self,
        session: AsyncSession,
        decision: domain.ReferralDecision,
        now: datetime,
        *,
        first_incident: uuid.UUID | None,
        tenancy_ref: str | None = None,
        referring_partner: PartnerAgency | None = None,
    ) -> tuple[store.PanelReferral, list[Event]]:
        """The open referral for this person and panel, made now if there is none."""
        referral = await store.open_referral(session, decision.panel, decision.person_key)
        if referral is not None:
            new = [r for r in decision.reasons if r not in referral.reasons]
            if new:
                referral.reasons = [*referral.reasons, *new]
                self._history(session, referral, "reasons-added", now, reasons=new)
            return referral, []
        referral = store.PanelReferral(
            referral_id=uuid.uuid4(),
            panel=str(decision.panel),
            person_key=decision.person_key,
            open_key=decision.person_key,
            status=store.ReferralStatus.AWAITING_PANEL,
            created_at=now,
            reasons=list(decision.reasons),
            referring_partner=str(referring_partner) if referring_partner else None,
            requested_people=[],
            tenancy_ref=tenancy_ref,
            vulnerability_score=0,
        )
        session.add(referral)
        await session.flush()
        meeting = domain.meeting_for_referral(
            self._schedule(decision.panel), domain.local_date(now, self._settings.timezone)
        )
        self._history(
            session,
            referral,
            "referral-created",
            now,
            reasons=list(decision.reasons),
            referring_partner=referral.referring_partner,
            agenda_meeting=meeting.isoformat(),
        )
        log.info("panel referral created", referral_id=str(referral.referral_id), panel=str(decision.panel))
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

    async def _attach(
        self,
        session: AsyncSession,
        referral: store.PanelReferral,
        incident_id: uuid.UUID,
        reasons: list[str],
        now: datetime,
        triaged: IncidentTriaged | None,
    ) -> bool:
        """Attach an incident to a referral (once); keep the referral's risk tier and score at their highest."""
        if triaged is not None:
            c = triaged.classification
            current = RiskTier(referral.risk_tier) if referral.risk_tier else None
            highest = domain.higher_tier(current, c.risk_tier)
            referral.risk_tier = str(highest) if highest else None
            referral.vulnerability_score = max(referral.vulnerability_score or 0, c.vulnerability_score)
        if await session.get(store.ReferralIncident, (referral.referral_id, incident_id)) is not None:
            return False
        session.add(
            store.ReferralIncident(
                referral_id=referral.referral_id, incident_id=incident_id, attached_at=now, reasons=reasons
            )
        )
        self._history(session, referral, "incident-attached", now, incident_id=str(incident_id), reasons=reasons)
        return True

    def _schedule(self, panel: Panel) -> MeetingSchedule:
        return self._settings.ccp if panel == Panel.CCP else self._settings.vcsp

    # -- consumers ----------------------------------------------------------------------------

    async def on_incident_triaged(self, session: AsyncSession, received: Received) -> list[Event]:
        """A triaged incident: record it (and its tenancy), then refer or attach as the rules say."""
        _envelope, triaged = decode_event(IncidentTriaged, received.headers, received.body)
        now = self.clock()
        block = triaged.report.tenancy
        if await session.get(store.IncidentOnRecord, triaged.incident_id) is None:
            session.add(
                store.IncidentOnRecord(
                    incident_id=triaged.incident_id,
                    victim_key=triaged.victim_key,
                    tenancy_ref=block.tenancy_ref if block else None,
                    tenant_role=str(block.tenant_role) if block else None,
                    reported_at=triaged.report.reported_at,
                    recorded_at=now,
                    event=triaged.model_dump(mode="json"),
                )
            )
            await session.flush()
        on_record: domain.TenancyRecord | None = None
        if block is not None and block.tenancy_ref:
            row = await session.get(store.TenancyRow, block.tenancy_ref)
            before = tenancy_record(row)
            on_record = domain.tenancy_from_report(block, triaged.report.location.uprn, before)
            if on_record is not None and on_record != before:
                row = _save_tenancy(session, row, on_record, now)
                if on_record.stage != (before.stage if before else None):
                    row.stage_history = [
                        *row.stage_history,
                        {
                            "stage": str(on_record.stage),
                            "occurred_at": triaged.report.reported_at.isoformat(),
                            "source": f"report {triaged.incident_id}",
                        },
                    ]
        events: list[Event] = []
        for decision in domain.decide_referrals(triaged, on_record):
            tenancy_ref = block.tenancy_ref if decision.panel == Panel.CCP and block else None
            referral, created = await self._refer(
                session, decision, now, first_incident=triaged.incident_id, tenancy_ref=tenancy_ref
            )
            events += created
            await self._attach(session, referral, triaged.incident_id, list(decision.reasons), now, triaged)
            if tenancy_ref and decision.person_key == f"tenancy:{tenancy_ref}":
                await self._attach_tenancy_incidents(session, referral, tenancy_ref, now)
        return events

    async def _attach_tenancy_incidents(
        self, session: AsyncSession, referral: store.PanelReferral, tenancy_ref: str, now: datetime
    ) -> None:
        for row in await store.tenancy_incidents(session, tenancy_ref):
            event = IncidentTriaged.model_validate(row.event)
            await self._attach(
                session, referral, row.incident_id, [f"ASB incident for tenancy {tenancy_ref}"], now, event
            )

    async def on_possession_updated(self, session: AsyncSession, received: Received) -> list[Event]:
        """A housing system's possession news: update the tenancy; refer to the CCP if ASB is on record."""
        _envelope, update = decode_event(TenancyPossessionUpdated, received.headers, received.body)
        now = self.clock()
        row = await session.get(store.TenancyRow, update.tenancy_ref)
        before = tenancy_record(row)
        entry = {
            "stage": str(update.stage),
            "occurred_at": update.occurred_at.isoformat(),
            "source": f"{update.partner}:{update.idempotency_key}",
        }
        if row is not None and entry in row.stage_history:
            return []  # the same update republished under a new event id
        # Only the housing system's own dates order its news; a report's snapshot does not.
        housing_dates = [
            datetime.fromisoformat(e["occurred_at"])
            for e in (row.stage_history if row else [])
            if not e["source"].startswith("report ")
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
        row = _save_tenancy(session, row, record, now)
        row.stage_history = [*row.stage_history, entry]
        incidents = await store.tenancy_incidents(session, update.tenancy_ref)
        roles = [TenantRole(i.tenant_role) for i in incidents if i.tenant_role]
        events: list[Event] = []
        referral = await store.open_referral(session, Panel.CCP, f"tenancy:{update.tenancy_ref}")
        decision = domain.decide_on_possession(record, roles)
        if decision is not None:
            referral, created = await self._refer(
                session, decision, now, first_incident=incidents[-1].incident_id, tenancy_ref=update.tenancy_ref
            )
            events += created
        if referral is not None:
            self._history(
                session,
                referral,
                "possession-updated",
                now,
                stage=str(record.stage) if record.stage else None,
                mandatory_grounds=[str(g) for g in record.mandatory_grounds],
                reported_by=str(update.partner),
                occurred_at=update.occurred_at.isoformat(),
            )
            await self._attach_tenancy_incidents(session, referral, update.tenancy_ref, now)
        return events

    async def on_referral_requested(self, session: AsyncSession, received: Received) -> list[Event]:
        """A partner's request for a panel: refer (or attach to the open referral), with consent and incidents."""
        _envelope, request = decode_event(PanelReferralRequested, received.headers, received.body)
        now = self.clock()
        known = await store.incidents_on_record(session, list(request.incident_ids))
        tenancy_ref = next((i.tenancy_ref for i in known if i.tenancy_ref), None)
        decision = domain.decide_on_request(request, tenancy_ref)
        first = request.incident_ids[0] if request.incident_ids else None
        referral, events = await self._refer(
            session,
            decision,
            now,
            first_incident=first,
            tenancy_ref=tenancy_ref if request.panel == Panel.CCP else None,
            referring_partner=request.partner,
        )
        source = f"{request.partner}:{request.idempotency_key}"
        if any(
            h.event_type == "partner-request" and h.detail.get("request") == source
            for h in await store.history(session, referral.referral_id)
        ):
            return []  # the same request republished under a new event id
        if referral.referring_partner is None:
            referral.referring_partner = str(request.partner)
        if request.consent_given is not None:
            referral.consent_given = request.consent_given
        referral.requested_people = [*(referral.requested_people or []), request.person.model_dump(mode="json")]
        self._history(
            session,
            referral,
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
            triaged = IncidentTriaged.model_validate(row.event) if row else None
            await self._attach(session, referral, incident_id, list(decision.reasons), now, triaged)
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
