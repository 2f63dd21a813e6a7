"""Property: a report that names a weapon, an assault, a threat to kill or criminal damage is never
triaged without violence_or_criminality, whatever text, category or victim surrounds it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage.domain import triage
from services.triage.settings import TriageSettings
from shared.contracts import Location, PartnerAgency, Person, ReportDetails

WEAPONS = [
    "a knife",
    "a kitchen knife",
    "knives",
    "a machete",
    "a gun",
    "a handgun",
    "a baseball bat",
    "a crossbow",
    "an axe",
    "a blade",
    "a firearm",
    "knuckle dusters",
    "a samurai sword",
    "an air rifle",
    "a weapon",
]
ASSAULTS = [
    "he assaulted her",
    "I was assaulted",
    "she punched him",
    "they kicked my son",
    "he was stabbed",
    "he headbutted me",
    "they beat him up",
    "she attacked me",
    "he hit my wife",
    "he strangled her",
    "he slapped my daughter",
    "I was glassed",
    "sexual assault",
    "he spat at me",
]
THREATS_TO_KILL = [
    "threatened to kill me",
    "threatening to kill us",
    "said he would kill me",
    "death threats",
    "threatened to stab him",
    "threats to murder her",
    "he will shoot you",
]
CRIMINAL_DAMAGE = [
    "smashed the window",
    "criminal damage",
    "set fire to the shed",
    "keyed my car",
    "slashed my tyres",
    "vandalised the lift",
    "graffiti",
    "kicked in the door",
    "broke the windows",
    "torched the van",
    "spray painted the wall",
    "smashing the bus shelter",
]
CUES = WEAPONS + ASSAULTS + THREATS_TO_KILL + CRIMINAL_DAMAGE

WORDS = st.sampled_from(
    "the a and then near my our flat stairs estate youths neighbour loud music every night again shop "
    "park car door window he she they were was outside behind corner afraid police council music dog".split()
)
filler = st.lists(WORDS, max_size=15).map(" ".join) | st.text(max_size=60)
casing = st.sampled_from([str, str.upper, str.title, str.capitalize])
categories = st.none() | st.sampled_from(
    ["noise", "graffiti", "fly-tipping", "begging", "General enquiry", "rowdy/nuisance neighbours", "vehicle nuisance"]
)
victims = st.none() | st.builds(
    Person,
    name=st.just("A Resident"),
    age=st.integers(min_value=0, max_value=110),
)
SETTINGS = TriageSettings()


@settings(max_examples=300, deadline=None)
@given(
    before=filler,
    cue=st.sampled_from(CUES),
    case=casing,
    after=filler,
    category=categories,
    perceived=st.booleans(),
    victim=victims,
)
def test_violence_weapons_threats_and_damage_are_always_alerted(
    before: str, cue: str, case: object, after: str, category: str | None, perceived: bool, victim: Person | None
) -> None:
    # A full stop before the cue: the property is about naming the thing, not "no knife" (a negation
    # in the same clause is the one documented exception, and has its own tests).
    description = f"{before}. {case(cue)} {after}".strip()  # type: ignore[operator]
    report = ReportDetails(
        partner=PartnerAgency.RESIDENT,
        idempotency_key="p",
        reported_at=datetime(2026, 11, 2, tzinfo=UTC),
        location=Location(postcode="RV1 1AA"),
        description=description,
        category=category,
        perceived_as_hate=perceived,
        victim=victim,
    )
    c = triage(uuid.uuid4(), "v-1" if victim else None, report, [], SETTINGS).classification
    assert c.violence_or_criminality, (description, c.reasons)
    assert c.crime_category is not None
    assert any(r.rule_id.startswith(("crime.cue.", "crime.category")) for r in c.explanations)
    assert c.owning_team is not None
