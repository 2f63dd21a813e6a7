"""Panels handlers: refer triaged incidents to the VCSP and the CCP, one open referral per person."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.panels import domain, store
from shared.consumer import Received
from shared.contracts import Event, IncidentTriaged, PanelReferralCreated
from shared.envelope import decode_event


async def on_incident_triaged(session: AsyncSession, received: Received) -> list[Event]:
    _envelope, triaged = decode_event(IncidentTriaged, received.headers, received.body)
    now = datetime.now(UTC)
    events: list[Event] = []
    for decision in domain.decide_referrals(triaged):
        referral = await store.open_referral(session, decision.panel, decision.person_key)
        if referral is None:
            referral = store.PanelReferral(
                referral_id=uuid.uuid4(),
                panel=str(decision.panel),
                person_key=decision.person_key,
                open_key=decision.person_key,
                status="open",
                created_at=now,
                reasons=list(decision.reasons),
            )
            session.add(referral)
            await session.flush()
            events.append(
                PanelReferralCreated(
                    referral_id=referral.referral_id,
                    panel=decision.panel,
                    person_key=decision.person_key,
                    incident_id=triaged.incident_id,
                    reasons=list(decision.reasons),
                    created_at=now,
                )
            )
        elif await session.get(store.ReferralIncident, (referral.referral_id, triaged.incident_id)):
            continue
        session.add(
            store.ReferralIncident(
                referral_id=referral.referral_id,
                incident_id=triaged.incident_id,
                attached_at=now,
                reasons=list(decision.reasons),
            )
        )
    return events
