"""Triage rules: classify one partner report. Pure: no I/O, no clock, no broker, no database.

``triage`` turns an accepted report, the facts triage kept about earlier reports (same victim,
same property or place) and ``TriageSettings`` into a ``Classification``: NSIR ASB type
(qualifier and heading), the police.uk crime category, hate incident and strands, vulnerability
score, repeat victim and ASB Case Review grounds, risk tier and review date, owning and
supporting teams, response tier and first-contact target, cross-border flag, and a ``Reason``
(rule id, sentence, evidence) for every rule that fired, in a stable order. ``classify`` is the
same with the history already counted.

Police notification is a hard rule, so crime detection leans towards alerting: cues are
plain keyword patterns, and only a cue directly preceded by a negation ("no knife",
"without a weapon", "wasn't assaulted") is set aside, and then with a reason saying so.

Vulnerability question set (weights in ``settings.vulnerability_weights``, defaults below;
vulnerable at ``settings.vulnerability_threshold``, default 22). Only scored when a victim is
recorded; re-scored on every new report about the victim, since the history feeds it.

    ==========================  ======  ===================================================
    factor                      points  asked as
    ==========================  ======  ===================================================
    age-under-18                8       victim under ``child_under_age`` (18) on the report date
    age-75-plus                 8       victim ``older_from_age`` (75) or over on the report date
    disability                  8       ``Vulnerability.DISABILITY`` (personal)
    mental-health               8       ``Vulnerability.MENTAL_HEALTH`` (personal)
    lives-alone                 6       ``Vulnerability.LIVES_ALONE`` (situational)
    isolated                    6       ``Vulnerability.ISOLATED`` (situational)
    children-in-household       4       ``Vulnerability.CHILDREN_IN_HOUSEHOLD`` (situational)
    fear-of-reprisal            6       ``Vulnerability.FEAR_OF_REPRISAL`` (situational)
    impact-on-daily-life        6       ``Vulnerability.IMPACT_ON_DAILY_LIFE`` (incidental)
    repeat-target               8       at least one earlier complaint about the victim in the window
    hate-incident               8       this report is a hate incident (incidental)
    violence                    8       violence against the person, a weapon or a threat to kill
    ==========================  ======  ===================================================

No single factor, nor any two, reaches 22; three strong factors do (a disabled victim who
lives alone and is a repeat target scores 8 + 6 + 8 = 22).

Rule ids (``Reason.rule_id``) are stable across versions; a rule whose meaning changes gets a
new id, and every change to an outcome bumps ``RULES_VERSION``.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Final

from services.triage.settings import DEFAULT_VULNERABILITY_WEIGHTS, TriageSettings
from shared.contracts import (
    AsbQualifier,
    Classification,
    CrimeCategory,
    Location,
    Person,
    Reason,
    ReportDetails,
    RiskTier,
    Tenure,
    Vulnerability,
)

RULES_VERSION = "2026.11-2"


def reason(rule_id: str, text: str, *evidence: object) -> Reason:
    """A reason for a rule that fired, with the evidence it used as plain strings."""
    return Reason(rule_id=rule_id, text=text, evidence=[str(e) for e in evidence])


def _unique(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    # The same rule quoting the same cue twice says nothing new; first occurrence first keeps order stable.
    seen: dict[tuple[str, str], Reason] = {}
    for r in reasons:
        seen.setdefault((r.rule_id, r.text), r)
    return tuple(seen.values())


@dataclass(frozen=True)
class VictimHistory:
    """What triage knows before this report, within the repeat window: the victim's earlier
    complaints (each incident counted once however many agencies reported it) and the property's."""

    prior_reports: int  # distinct earlier complaints about the same victim, NOT counting this one
    prior_hate_incidents: int = 0
    prior_incident_ids: tuple[uuid.UUID, ...] = ()
    prior_partners: tuple[str, ...] = ()
    duplicate_of: uuid.UUID | None = None  # the first report of this same incident by another partner
    duplicate_partner: str | None = None
    property_complainants: int = 0  # other people who reported the same problem at the same property
    property_incident_ids: tuple[uuid.UUID, ...] = ()

    def __post_init__(self) -> None:
        if self.prior_reports < 0:
            raise ValueError("prior_reports cannot be negative")
        if self.prior_hate_incidents < 0 or self.property_complainants < 0:
            raise ValueError("counts cannot be negative")


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


class AsbHeading(enum.StrEnum):
    """NSIR headings in police usage, plus the council's additions."""

    ABANDONED_VEHICLE = "abandoned vehicle"
    VEHICLE_NUISANCE = "vehicle nuisance"
    ROWDY_INCONSIDERATE = "rowdy/inconsiderate behaviour"
    ROWDY_NEIGHBOURS = "rowdy/nuisance neighbours"
    LITTERING_DRUG_PARAPHERNALIA = "littering/drug paraphernalia"
    ANIMAL_PROBLEMS = "animal problems"
    TRESPASS = "trespass"
    MALICIOUS_COMMUNICATIONS = "malicious communications"
    STREET_DRINKING = "street drinking"
    PROSTITUTION_RELATED = "prostitution-related"
    NOISE = "noise"
    BEGGING = "begging"
    FIREWORKS = "fireworks"
    FLY_TIPPING = "fly-tipping"
    GRAFFITI = "graffiti"
    DRUG_DEALING_CUCKOOING = "drug dealing/cuckooing"


class HateStrand(enum.StrEnum):
    """The five monitored hate strands."""

    RACE = "race"
    RELIGION = "religion"
    SEXUAL_ORIENTATION = "sexual orientation"
    DISABILITY = "disability"
    TRANSGENDER_IDENTITY = "transgender identity"


_A = AsbQualifier
HEADING_QUALIFIER: Final[Mapping[AsbHeading, AsbQualifier]] = MappingProxyType(
    {
        # Environmental: the harm is to surroundings or public space.
        AsbHeading.FLY_TIPPING: _A.ENVIRONMENTAL,
        AsbHeading.GRAFFITI: _A.ENVIRONMENTAL,
        AsbHeading.LITTERING_DRUG_PARAPHERNALIA: _A.ENVIRONMENTAL,
        AsbHeading.ABANDONED_VEHICLE: _A.ENVIRONMENTAL,
        # Personal: these by their nature bear on particular people.
        AsbHeading.ROWDY_NEIGHBOURS: _A.PERSONAL,
        AsbHeading.MALICIOUS_COMMUNICATIONS: _A.PERSONAL,
        # Nuisance: the community at large, unless a victim is targeted (see classify_asb).
        AsbHeading.VEHICLE_NUISANCE: _A.NUISANCE,
        AsbHeading.ROWDY_INCONSIDERATE: _A.NUISANCE,
        AsbHeading.ANIMAL_PROBLEMS: _A.NUISANCE,
        AsbHeading.TRESPASS: _A.NUISANCE,
        AsbHeading.STREET_DRINKING: _A.NUISANCE,
        AsbHeading.PROSTITUTION_RELATED: _A.NUISANCE,
        AsbHeading.NOISE: _A.NUISANCE,
        AsbHeading.BEGGING: _A.NUISANCE,
        AsbHeading.FIREWORKS: _A.NUISANCE,
        AsbHeading.DRUG_DEALING_CUCKOOING: _A.NUISANCE,
    }
)


# The defaults of the question set; the weights in force come from settings.
VULNERABILITY_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(DEFAULT_VULNERABILITY_WEIGHTS)


class Team(enum.StrEnum):
    """Who owns or supports a case."""

    POLICE = "police"
    COMMUNITY_SAFETY_UNIT = "community-safety-unit"
    HOUSING_ASB = "housing-asb-team"
    ENVIRONMENTAL_HEALTH = "environmental-health"
    ENVIRONMENTAL_ENFORCEMENT = "environmental-enforcement"
    NEIGHBOURING_PARTNERSHIP = "neighbouring-partnership"


class ResponseTier(enum.StrEnum):
    """Proportionate response: how fast the owning team makes first contact."""

    URGENT = "urgent"
    PRIORITY = "priority"
    ROUTINE = "routine"


# ---------------------------------------------------------------------------
# Text matching
# ---------------------------------------------------------------------------

_NEGATIONS: Final = frozenset(
    {"no", "not", "never", "without", "didn't", "didnt", "wasn't", "wasnt", "weren't", "werent", "nobody"}
)
# One of these may sit between the negation and the cue: "without a weapon", "not been assaulted".
_NEGATION_GAP: Final = frozenset({"a", "an", "any", "the", "been", "being"})


_SEPARATORS: Final = re.compile(r"[-_/]+")
_WHITESPACE: Final = re.compile(r"\s+")
_NOT_ALPHANUMERIC: Final = re.compile(r"[^a-z0-9]+")
_NOT_UPPER_ALPHANUMERIC: Final = re.compile(r"[^A-Z0-9]")
_CLAUSE_END: Final = re.compile(r"[.,;:!?]")


# Every rule normalises the same description again; a few recent results make that a lookup.
@functools.lru_cache(maxsize=32)
def normalise(text: str) -> str:
    """Lower-case text with curly quotes straightened and hyphens, slashes, underscores as spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _SEPARATORS.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


def _compact(text: str) -> str:
    """A category key that ignores spacing, punctuation and a plural 's': 'Fly-tipping' == 'flytipping'."""
    key = _NOT_ALPHANUMERIC.sub("", text.lower())
    return key[:-1] if key.endswith("s") and len(key) > 3 else key


def _negated(text: str, start: int) -> bool:
    """True when the words just before ``start``, in the same clause, negate what follows."""
    clause = _CLAUSE_END.split(text[:start])[-1]
    words = clause.split()
    if words and words[-1] in _NEGATIONS:
        return True
    return len(words) >= 2 and words[-1] in _NEGATION_GAP and words[-2] in _NEGATIONS


@dataclass(frozen=True)
class CueMatch:
    """A cue found in a description: the first text that matched, whether every occurrence was
    negated, and the spans of the un-negated occurrences."""

    text: str
    negated: bool
    spans: tuple[tuple[int, int], ...] = ()


def find_cue(pattern: re.Pattern[str], text: str, within: Sequence[tuple[int, int]] = ()) -> CueMatch | None:
    """The first un-negated match of ``pattern`` in normalised ``text``, else the first negated one.

    Matches lying inside a span of ``within`` (text an earlier, more specific cue already
    explained) are skipped, so "threatened to kill" is not also reported as "threatened".
    """
    first: str | None = None
    first_negated: str | None = None
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(text):
        if any(start <= match.start() and match.end() <= end for start, end in within):
            continue
        if _negated(text, match.start()):
            first_negated = first_negated or match.group(0)
            continue
        first = first or match.group(0)
        spans.append(match.span())
    if first is not None:
        return CueMatch(first, negated=False, spans=tuple(spans))
    return CueMatch(first_negated, negated=True) if first_negated is not None else None


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b")


# ---------------------------------------------------------------------------
# ASB type
# ---------------------------------------------------------------------------

# Shared with crime detection so a drug-dealing heading always also means the drugs category.
_DRUG_DEALING: Final = _rx(
    r"drug deal\w*",
    r"deal(?:ing|s)? drugs",
    r"sell(?:ing|s)? drugs",
    r"(?:drug )?dealers?",
    r"cuckoo\w*",
    r"county lines?",
    r"trap house",
)

_HEADING_CUES: Final[Sequence[tuple[AsbHeading, re.Pattern[str]]]] = (
    # Order matters: the first heading whose cue appears wins, so specific behaviours come
    # before the catch-alls (noise, rowdy behaviour).
    (AsbHeading.DRUG_DEALING_CUCKOOING, _DRUG_DEALING),
    (
        AsbHeading.LITTERING_DRUG_PARAPHERNALIA,
        _rx(r"needles?", r"syringes?", r"(?:drugs? )?paraphernalia", r"litter\w*", r"canisters?"),
    ),
    (
        AsbHeading.FLY_TIPPING,
        _rx(
            r"fly ?tip\w*",
            r"dump(?:ed|ing|s)? (?:\w+ )?"
            r"(?:rubbish|waste|mattress\w*|sofas?|fridges?|bags?|furniture|tyres?)",
            r"(?:rubbish|waste|mattress|sofa|fridge) (?:has been |was |been )?dumped",
        ),
    ),
    (AsbHeading.GRAFFITI, _rx(r"graffiti", r"tagging", r"spray ?paint\w*")),
    (
        AsbHeading.ABANDONED_VEHICLE,
        _rx(r"abandoned (?:car|vehicle|van|motorbike|caravan)s?", r"untaxed", r"burnt out (?:car|van)"),
    ),
    (
        AsbHeading.VEHICLE_NUISANCE,
        _rx(
            r"off road (?:bikes?|motorbikes?)",
            r"quad bikes?",
            r"boy racers?",
            r"(?:street|car) racing",
            r"car meets?",
            r"revving",
            r"wheelies",
            r"doughnuts",
            r"nuisance (?:parking|vehicles?)",
            r"dangerous(?:ly)? driv\w*",
        ),
    ),
    (AsbHeading.FIREWORKS, _rx(r"fireworks?", r"bangers", r"rockets?")),
    (
        AsbHeading.STREET_DRINKING,
        _rx(
            r"street drink\w*",
            r"drinking (?:in|on) the (?:street|park|road)",
            r"drunks",
            r"drinking (?:cans|alcohol)",
        ),
    ),
    (AsbHeading.PROSTITUTION_RELATED, _rx(r"prostitut\w*", r"sex work\w*", r"kerb crawl\w*", r"soliciting")),
    (AsbHeading.BEGGING, _rx(r"begg(?:ing|ars?|ed)", r"asking (?:people )?for money", r"aggressive begging")),
    (
        AsbHeading.MALICIOUS_COMMUNICATIONS,
        _rx(
            r"malicious (?:\w+ )?(?:messages?|calls?|communications?|letters?|posts?)",
            r"abusive (?:messages?|texts?|calls?|phone calls?|emails?|letters?|posts?|comments?)",
            r"(?:nuisance|silent) (?:phone )?calls?",
            r"social media",
            r"online abuse",
            r"posted (?:\w+ )?(?:about|of) me online",
            r"troll\w*",
        ),
    ),
    (
        AsbHeading.ANIMAL_PROBLEMS,
        _rx(
            r"barking",
            r"dog (?:fouling|mess|poo)",
            r"(?:dangerous|aggressive|out of control|loose|stray) dogs?",
            r"animals?",
            r"horses? (?:grazing|tethered|loose)",
        ),
    ),
    (
        AsbHeading.TRESPASS,
        _rx(r"trespass\w*", r"squat(?:ters?|ting)", r"(?:climb|climbing|climbed) (?:over|into)"),
    ),
    (
        AsbHeading.ROWDY_NEIGHBOURS,
        _rx(
            r"neighbours?",
            r"next door",
            r"(?:upstairs|downstairs) (?:flat|neighbours?)",
            r"the flat (?:above|below)",
        ),
    ),
    (
        AsbHeading.NOISE,
        _rx(
            r"noise",
            r"noisy",
            r"loud",
            r"music",
            r"part(?:y|ies)",
            r"banging",
            r"bass",
            r"shouting and screaming",
        ),
    ),
    (
        AsbHeading.ROWDY_INCONSIDERATE,
        _rx(
            r"rowdy",
            r"youths",
            r"gangs? of",
            r"groups? of (?:\w+ )?(?:youths|teenagers|kids|young people|men|lads)",
            r"loitering",
            r"hanging (?:around|about)",
            r"causing (?:trouble|a nuisance)",
            r"anti ?social behaviou?r",
            r"inconsiderate",
            r"intimidating",
        ),
    ),
)

# Structured category aliases, keyed by _compact form: "Fly tipping", "fly-tipping" and
# "FLYTIPPING" all land on the same key.
_HEADING_ALIASES: Final[Mapping[str, AsbHeading]] = MappingProxyType(
    {
        _compact(alias): heading
        for heading, aliases in (
            (AsbHeading.ABANDONED_VEHICLE, ("abandoned vehicle", "abandoned car")),
            (
                AsbHeading.VEHICLE_NUISANCE,
                ("vehicle nuisance", "nuisance vehicle", "inappropriate vehicle use"),
            ),
            (
                AsbHeading.ROWDY_INCONSIDERATE,
                ("rowdy/inconsiderate behaviour", "rowdy behaviour", "inconsiderate behaviour", "rowdy"),
            ),
            (
                AsbHeading.ROWDY_NEIGHBOURS,
                ("rowdy/nuisance neighbours", "nuisance neighbour", "neighbour nuisance", "neighbour"),
            ),
            (
                AsbHeading.LITTERING_DRUG_PARAPHERNALIA,
                (
                    "littering/drug paraphernalia",
                    "littering",
                    "litter",
                    "drug paraphernalia",
                    "drugs paraphernalia",
                ),
            ),
            (
                AsbHeading.ANIMAL_PROBLEMS,
                ("animal problems", "animal problem", "animal", "dog fouling", "dog"),
            ),
            (AsbHeading.TRESPASS, ("trespass", "trespassing")),
            (
                AsbHeading.MALICIOUS_COMMUNICATIONS,
                ("malicious communications", "nuisance communications", "nuisance calls"),
            ),
            (AsbHeading.STREET_DRINKING, ("street drinking",)),
            (
                AsbHeading.PROSTITUTION_RELATED,
                ("prostitution-related", "prostitution related activity", "prostitution"),
            ),
            (AsbHeading.NOISE, ("noise", "noise nuisance")),
            (AsbHeading.BEGGING, ("begging", "begging/vagrancy", "vagrancy")),
            (AsbHeading.FIREWORKS, ("fireworks",)),
            (AsbHeading.FLY_TIPPING, ("fly-tipping", "fly tip", "flytip")),
            (AsbHeading.GRAFFITI, ("graffiti",)),
            (
                AsbHeading.DRUG_DEALING_CUCKOOING,
                ("drug dealing/cuckooing", "drug dealing", "cuckooing", "county lines"),
            ),
        )
        for alias in aliases
    }
)

# Behaviour aimed at the victim: with a recorded victim this makes the qualifier personal.
_TARGETING: Final = _rx(
    r"target(?:ed|ing|s)",
    r"pick(?:ed|ing|s)? on",
    r"harass\w*",
    r"intimidat\w* (?:me|us|him|her|them|my)",
    r"bull(?:y|ying|ied)",
    r"victimis\w*",
    r"(?:shout|swear|scream|yell)\w* at",
    r"abus\w* (?:at|towards|to) (?:me|us|him|her|them)",
    r"(?:threw|throw\w*) \w+ at",
    r"at my (?:door|window|windows|house|home|flat)",
    r"follow(?:ed|s|ing) (?:me|us|him|her)",
    r"call(?:ed|ing) (?:me|us|him|her) (?:names|a)",
    r"threat\w*",
    r"spat (?:at|on)",
)


@dataclass(frozen=True)
class AsbType:
    """NSIR qualifier and heading, with the reasons that chose them."""

    qualifier: AsbQualifier
    heading: AsbHeading | None
    reasons: tuple[Reason, ...]


def heading_from_category(category: str | None) -> AsbHeading | None:
    """The ASB heading a partner's structured category names, if it names one."""
    if category is None:
        return None
    return _HEADING_ALIASES.get(_compact(category))


def heading_from_description(description: str) -> tuple[AsbHeading, str] | None:
    """The first ASB heading whose keyword appears in the description, with the keyword found."""
    text = normalise(description)
    for heading, pattern in _HEADING_CUES:
        cue = find_cue(pattern, text)
        if cue is not None and not cue.negated:
            return heading, cue.text
    return None


def classify_asb(report: ReportDetails, hate_incident: bool, harm_to_person: bool = False) -> AsbType:
    """NSIR heading from the structured category, else the description; qualifier from heading and target."""
    reasons: list[Reason] = []
    heading = heading_from_category(report.category)
    if heading is not None:
        reasons.append(
            reason(
                "asb.heading.category",
                f"ASB heading '{heading}' from the partner's category '{report.category}'",
                f"category: {report.category}",
            )
        )
    else:
        if report.category is not None:
            reasons.append(
                reason(
                    "asb.category.no-heading",
                    f"ASB: category '{report.category}' names no ASB heading; using the description",
                    f"category: {report.category}",
                )
            )
        found = heading_from_description(report.description)
        if found is not None:
            heading, cue = found
            reasons.append(
                reason("asb.heading.description", f"ASB heading '{heading}': description mentions '{cue}'", cue)
            )

    # Personal wins over the heading's default when the behaviour is aimed at someone.
    target: tuple[str, str] | None = None
    if report.victim is not None:
        target_cue = find_cue(_TARGETING, normalise(report.description))
        if target_cue is not None and not target_cue.negated:
            target = (f"the behaviour targets the victim ('{target_cue.text}')", target_cue.text)
        elif harm_to_person:
            target = ("violence or threats against the victim", "violence or threats")
    if hate_incident:
        reasons.append(
            reason("asb.qualifier.hate", "ASB qualifier personal: a hate incident targets a person", "hate incident")
        )
        return AsbType(AsbQualifier.PERSONAL, heading, tuple(reasons))
    if target is not None:
        reasons.append(reason("asb.qualifier.targeted", f"ASB qualifier personal: {target[0]}", target[1]))
        return AsbType(AsbQualifier.PERSONAL, heading, tuple(reasons))
    if heading is None:
        reasons.append(
            reason(
                "asb.unclassified",
                "ASB type unclassified: no ASB heading in the category or the description",
                f"category: {report.category}",
            )
        )
        return AsbType(AsbQualifier.UNCLASSIFIED, None, tuple(reasons))
    qualifier = HEADING_QUALIFIER[heading]
    reasons.append(
        reason("asb.qualifier.default", f"ASB qualifier {qualifier}: the default for '{heading}'", str(heading))
    )
    return AsbType(qualifier, heading, tuple(reasons))


# ---------------------------------------------------------------------------
# Violence and criminality
# ---------------------------------------------------------------------------

_C = CrimeCategory
# Objects of damage ("smashed my car") and people ("kicked my son"): only the second is violence.
_PRONOUN: Final = r"(?:me|him|her|us|them|you|my \w+|his \w+|her \w+|their \w+|our \w+)"
_PERSON: Final = (
    r"(?:me|him|her|us|them|you|(?:my|his|her|their|our) (?:son|daughter|child|children|kids?|wife|husband"
    r"|partner|mum|mother|dad|father|brother|sister|friend|neighbour|carer|boy|girl|baby|grandson"
    r"|granddaughter|nan|gran|grandad|grandmother|grandfather))"
)


@dataclass(frozen=True)
class CrimeCue:
    """One keyword family: the police.uk category it suggests, and whether it is harm to a person."""

    category: CrimeCategory
    harm_to_person: bool
    pattern: re.Pattern[str]


# Order is priority: the first cue found sets the category, so the gravest come first and a
# specific cue (car broken into) comes before a general one (broken into).
CRIME_CUES: Final[Sequence[CrimeCue]] = (
    CrimeCue(
        _C.VIOLENT_CRIME,
        True,
        _rx(
            r"threat\w* to (?:kill|hurt|stab|shoot|burn|beat|batter|attack|harm|murder|smash|petrol bomb)",
            r"(?:kill|murder|stab|shoot) (?:me|him|her|us|them|you)",
            r"death threats?",
            r"stab(?:bed|bing|s)?",
            r"shot (?:at|me|him|her|us|them)",
            r"shots? fired",
            r"shooting (?:at|me|him|her|us|them)",
            r"glassed",
            r"assault\w*",
            r"(?<!heart )(?<!panic )(?<!asthma )attack(?:ed|ing|s)?",
            r"punch\w*",
            r"kick(?:ed|ing|s)? " + _PERSON,
            r"(?:hit|hitting|slapped|slapping|headbutt\w*) " + _PERSON,
            r"beat(?:en)? (?:\w+ )?up",
            r"strangl\w*",
            r"chok(?:ed|ing) " + _PERSON,
            r"sp[ai]t (?:at|on) " + _PERSON,
            r"grievous bodily harm",
            r"actual bodily harm",
            r"gbh",
            r"abh",
            r"wound(?:ed|ing|s)?(?! up)",
            r"injur\w*",
            r"bleeding",
            r"rap(?:e|ed|es|ing|ist)",
            r"sexual(?:ly)? assault\w*",
            r"indecent exposure",
            r"domestic (?:abuse|violence)",
            r"stalk(?:ed|ing|er|s)?",
            r"kidnap\w*",
            r"abduct\w*",
        ),
    ),
    CrimeCue(
        _C.ROBBERY,
        True,
        _rx(r"rob(?:bed|bery|beries|bing)", r"mugg(?:ed|ing)", r"at knife ?point", r"at gun ?point"),
    ),
    CrimeCue(
        _C.POSSESSION_OF_WEAPONS,
        True,
        _rx(
            r"knife",
            r"knives",
            r"blades?",
            r"machetes?",
            r"weapons?",
            r"guns?",
            r"(?:hand|shot|air|stun|machine) ?guns?",
            r"tasers?",
            r"(?:pepper|cs) spray",
            r"daggers?",
            r"cleavers?",
            r"knifed",
            r"bladed",
            # An everyday object used to threaten or hurt is a weapon too.
            r"(?:with|wielding|waving|brandishing) (?:a|an) (?:hammer|bat|bottle|brick|screwdriver|iron bar"
            r"|metal bar|crowbar|pole|stick|chain|broken bottle)",
            r"firearms?",
            r"pistols?",
            r"(?:air )?rifles?",
            r"crossbows?",
            r"baseball bats?",
            r"swords?",
            r"gunshots?",
            r"knuckle ?dusters?",
            r"armed",
            r"axe",
        ),
    ),
    CrimeCue(
        _C.VEHICLE_CRIME,
        False,
        _rx(
            r"(?:car|van|vehicle|lorry) (?:was |has been |got |had been )?broken into",
            r"br(?:oke|oken|eaking) into (?:my|the|a|our|his|her|their) (?:car|van|vehicle|lorry)",
        ),
    ),
    CrimeCue(
        _C.BURGLARY,
        False,
        _rx(
            r"burglar\w*",
            r"burgled",
            r"break ?ins?",
            r"br(?:oke|oken|eaking) in(?:to)?",
            r"forced (?:entry|the door|open)",
        ),
    ),
    CrimeCue(
        _C.CRIMINAL_DAMAGE_ARSON,
        False,
        _rx(
            r"arson\w*",
            r"set (?:fire|alight)",
            r"on fire",
            r"torched",
            r"petrol bomb\w*",
            r"(?:burnt|burned) (?:out|down)",
            r"criminal damage",
            # Graffiti is criminal damage in law; the policy leans towards telling the police.
            r"graffiti",
            r"spray ?paint\w*",
            r"sprayed",
            r"smash(?:ed|ing|es)?",
            r"broke(?:n)? (?:\w+ )?windows?",
            r"damag(?:ed|ing) " + _PRONOUN,
            r"vandal\w*",
            r"keyed",
            r"slash(?:ed|ing) (?:\w+ )?tyres?",
            r"tyres? (?:were |was )?slashed",
            r"kick(?:ed|ing) (?:in|down) (?:the|my|our|his|her|their) (?:door|gate|fence)",
        ),
    ),
    CrimeCue(
        _C.DRUGS,
        False,
        _DRUG_DEALING,
    ),
    CrimeCue(
        _C.DRUGS,
        False,
        _rx(
            r"cannabis",
            r"cocaine",
            r"crack (?:cocaine|den|house|pipes?)",
            r"(?:smoking|selling|dealing) crack",
            r"heroin",
            r"(?:smoking|smell\w* of|selling) weed",
            r"class [abc] drugs?",
        ),
    ),
    CrimeCue(
        _C.THEFT_FROM_THE_PERSON,
        False,
        _rx(
            r"pickpocket\w*",
            r"snatch\w*",
            r"(?:from|out of) (?:my|his|her) (?:pocket|hand|bag)",
        ),
    ),
    CrimeCue(
        _C.BICYCLE_THEFT,
        False,
        _rx(
            r"(?:bike|bicycle|e bike|ebike|cycle)s? "
            r"(?:was |were |has been |have been |got |had been )?(?:stolen|nicked|taken)",
            r"stole (?:\w+ )?(?:bike|bicycle|ebike)s?",
            r"(?:bike|bicycle) theft",
        ),
    ),
    CrimeCue(
        _C.SHOPLIFTING,
        False,
        _rx(r"shoplift\w*", r"st(?:ole|ealing|eal) from (?:the|a) (?:shop|store|supermarket)"),
    ),
    CrimeCue(
        _C.VEHICLE_CRIME,
        False,
        _rx(
            r"(?:car|van|vehicle|motorbike|moped)s? "
            r"(?:was |were |has been |got |had been )?(?:stolen|nicked|taken)",
            r"stolen (?:car|van|vehicle|motorbike|moped)s?",
            r"catalytic converters?",
            r"number plates?",
            r"st(?:ole|ealing|eal) from (?:my|the|a|our|his|her|their) (?:car|van|vehicle)",
            r"trying (?:car )?door handles",
            r"joy ?rid\w*",
        ),
    ),
    CrimeCue(
        _C.OTHER_THEFT,
        False,
        _rx(
            r"theft",
            r"thie(?:f|ves)",
            r"stole",
            r"stolen",
            r"steal\w*",
            r"nicked",
            r"(?:took|taken) (?:\w+ )?(?:parcels?|packages?|deliver\w*)",
        ),
    ),
    CrimeCue(
        _C.VIOLENT_CRIME,
        False,
        # Harassment sits in police.uk's violence category; it is not itself violence to a person.
        _rx(r"harass\w*"),
    ),
    CrimeCue(
        _C.PUBLIC_ORDER,
        False,
        _rx(
            r"threat\w*",
            r"menac\w*",
            r"fight\w*",
            r"brawl\w*",
            r"affray",
            r"riot\w*",
            r"racially aggravated",
            r"religiously aggravated",
        ),
    ),
    CrimeCue(
        _C.OTHER_CRIME,
        False,
        _rx(
            r"breach\w* (?:of )?(?:an |the |his |her |their )?"
            r"(?:injunction|order|cbo|criminal behaviour order|bail)",
            r"fraud\w*",
            r"scam\w*",
            r"blackmail\w*",
            r"extort\w*",
            r"exploit(?:ed|ation|ing)",
        ),
    ),
)

# Structured categories that name a crime: police.uk slugs and common partner spellings.
_CRIME_ALIASES: Final[Mapping[str, CrimeCategory]] = MappingProxyType(
    {
        **{_compact(c.value): c for c in CrimeCategory},
        **{
            _compact(alias): category
            for category, aliases in (
                (_C.VIOLENT_CRIME, ("violence and sexual offences", "violence", "assault", "violent crime")),
                (_C.PUBLIC_ORDER, ("public order offence",)),
                (_C.POSSESSION_OF_WEAPONS, ("weapons", "possession of weapons", "weapon")),
                (_C.CRIMINAL_DAMAGE_ARSON, ("criminal damage", "arson", "criminal damage and arson")),
                (_C.DRUGS, ("drug dealing/cuckooing", "drug dealing", "cuckooing", "county lines", "drug")),
                (_C.OTHER_THEFT, ("theft",)),
            )
            for alias in aliases
        },
    }
)
_HARM_CATEGORIES: Final = frozenset({_C.VIOLENT_CRIME, _C.ROBBERY, _C.POSSESSION_OF_WEAPONS})


@dataclass(frozen=True)
class CrimeFinding:
    """Whether a report describes a crime, which police.uk category, and whether a person is in danger."""

    category: CrimeCategory | None
    violence_or_criminality: bool
    harm_to_person: bool  # violence against a person, a weapon, or a threat to kill or hurt
    reasons: tuple[Reason, ...]


def crime_from_category(category: str | None) -> CrimeCategory | None:
    """The police.uk category a partner's structured category names, if it names one."""
    if category is None:
        return None
    return _CRIME_ALIASES.get(_compact(category))


def detect_crime(report: ReportDetails) -> CrimeFinding:
    """Violence and criminality from the structured category and every cue in the description."""
    reasons: list[Reason] = []
    category = crime_from_category(report.category)
    harm = category in _HARM_CATEGORIES
    if category is not None:
        reasons.append(
            reason(
                "crime.category",
                f"violence or criminality: the partner's category '{report.category}' is {category}",
                f"category: {report.category}",
            )
        )

    text = normalise(report.description)
    explained: list[tuple[int, int]] = []
    for cue in CRIME_CUES:
        found = find_cue(cue.pattern, text, explained)
        if found is None:
            continue
        if found.negated:
            reasons.append(
                reason("crime.negated", f"violence or criminality: negated cue '{found.text}' set aside", found.text)
            )
            continue
        reasons.append(
            reason(
                f"crime.cue.{cue.category}",
                f"violence or criminality: '{found.text}' suggests {cue.category}",
                found.text,
            )
        )
        explained.extend(found.spans)
        harm = harm or cue.harm_to_person
        if category is None:  # the structured category, when it names a crime, beats the description
            category = cue.category

    return CrimeFinding(category, category is not None, harm, _unique(reasons))


# ---------------------------------------------------------------------------
# Hate
# ---------------------------------------------------------------------------

_SUBJECT_IS: Final = (
    r"(?:because|cos|coz|cause|as) (?:i'?m|i am|we'?re|we are|he'?s|he is|she'?s|she is|they'?re|they are"
    r"|(?:my|our) \w+ (?:is|are))"
)


def _because(*identities: str) -> str:
    """A pattern for 'because I'm <identity>', 'for being <identity>', 'because of my <identity>'."""
    who = "(?:" + "|".join(identities) + ")"
    return rf"(?:{_SUBJECT_IS} (?:an? )?{who}|for being (?:an? )?{who})"


def _because_of(*attributes: str) -> str:
    return r"because of (?:my|his|her|their|our) (?:" + "|".join(attributes) + ")"


HATE_CUES: Final[Sequence[tuple[HateStrand, re.Pattern[str]]]] = (
    (
        HateStrand.RACE,
        _rx(
            r"racis\w*",
            r"racial\w*",
            r"race hate",
            r"n word",
            r"go back to (?:your|my|our|his|her|their|where you|where they)",
            _because_of(r"race", r"colou?r", r"skin", r"ethnicity", r"nationality"),
            _because(
                r"black",
                r"asian",
                r"white",
                r"mixed race",
                r"foreign(?:er)?",
                r"immigrants?",
                r"polish",
                r"romanian",
                r"gypsy",
                r"traveller",
                r"roma",
                r"chinese",
                r"african",
            ),
        ),
    ),
    (
        HateStrand.RELIGION,
        _rx(
            r"religio(?:us|usly) (?:abuse|hate|hatred|aggravated|slurs?|insults?)",
            r"islamophob\w*",
            r"anti ?muslim",
            r"anti ?semit\w*",
            r"anti ?jewish",
            r"sectarian",
            _because_of(r"religion", r"faith"),
            _because(r"muslim", r"jewish", r"jew", r"sikh", r"hindu", r"christian", r"catholic"),
            r"(?:pulled|ripped|grabbed|tore) (?:off )?(?:my|her|his) (?:hijab|headscarf|turban|niqab|kippah)",
        ),
    ),
    (
        HateStrand.SEXUAL_ORIENTATION,
        _rx(
            r"homophob\w*",
            r"biphob\w*",
            r"lesbophob\w*",
            r"anti ?gay",
            _because_of(r"sexuality", r"sexual orientation"),
            _because(r"gay", r"lesbian", r"bisexual", r"bi", r"queer"),
        ),
    ),
    (
        HateStrand.DISABILITY,
        _rx(
            r"disablis\w*",
            r"ableis\w*",
            r"disability hate",
            _because_of(r"disability", r"wheelchair", r"learning disability", r"autism"),
            _because(r"disabled", r"in a wheelchair", r"wheelchair user", r"blind", r"deaf", r"autistic"),
            r"mock\w* (?:my|his|her|their) (?:disability|wheelchair|autism)",
        ),
    ),
    (
        HateStrand.TRANSGENDER_IDENTITY,
        _rx(
            r"transphob\w*",
            r"anti ?trans",
            r"dead ?nam\w*",
            _because_of(r"gender identity"),
            _because(r"trans", r"transgender", r"non binary", r"trans woman", r"trans man"),
        ),
    ),
)


@dataclass(frozen=True)
class HateFinding:
    """Whether a report is a hate incident, and the monitored strands its description names."""

    hate_incident: bool
    strands: tuple[HateStrand, ...]
    reasons: tuple[Reason, ...]


def detect_hate(report: ReportDetails) -> HateFinding:
    """A hate incident when anyone perceives it so, or the description names a monitored strand."""
    reasons: list[Reason] = []
    if report.perceived_as_hate:
        reasons.append(
            reason(
                "hate.perceived",
                "hate incident: perceived as hate by the victim or another person",
                "perceived_as_hate: true",
            )
        )
    text = normalise(report.description)
    strands: list[HateStrand] = []
    for strand, pattern in HATE_CUES:
        found = find_cue(pattern, text)
        if found is None:
            continue
        if found.negated:
            reasons.append(reason("hate.negated", f"hate: negated cue '{found.text}' set aside", found.text))
            continue
        strands.append(strand)
        reasons.append(
            reason(
                f"hate.strand.{strand.value.replace(' ', '-')}", f"hate incident ({strand}): '{found.text}'", found.text
            )
        )
    hate = report.perceived_as_hate or bool(strands)
    if report.perceived_as_hate and not strands:
        reasons.append(
            reason("hate.strand-unknown", "hate incident: strand not identified in the description", "no strand cue")
        )
    return HateFinding(hate, tuple(strands), tuple(reasons))


# ---------------------------------------------------------------------------
# Vulnerability
# ---------------------------------------------------------------------------


def victim_age(victim: Person, on: date) -> int | None:
    """The victim's age on a date: from the date of birth when known, else the age recorded."""
    if victim.date_of_birth is not None:
        dob = victim.date_of_birth
        return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))
    return victim.age


@dataclass(frozen=True)
class VulnerabilityScore:
    """The question-set score, whether it reaches the threshold, and the points per factor."""

    score: int
    vulnerable: bool
    reasons: tuple[Reason, ...]


def score_vulnerability(
    report: ReportDetails,
    history: VictimHistory,
    hate_incident: bool,
    harm_to_person: bool,
    settings: TriageSettings,
) -> VulnerabilityScore:
    """Score the victim against the configured weights; vulnerable at or above the configured threshold."""
    victim = report.victim
    if victim is None:
        return VulnerabilityScore(
            0, False, (reason("vulnerability.not-scored", "vulnerability: not scored, no victim recorded"),)
        )

    factors: list[tuple[str, str]] = []
    age = victim_age(victim, report.reported_at.date())
    if age is not None and age < settings.child_under_age:
        factors.append(("age-under-18", f"age {age} on {report.reported_at.date()}"))
    if age is not None and age >= settings.older_from_age:
        factors.append(("age-75-plus", f"age {age} on {report.reported_at.date()}"))
    # Enum order, not the partner's list order, so the same flags always give the same reasons.
    factors.extend(
        (flag.value, f"recorded by {report.partner}") for flag in Vulnerability if flag in victim.vulnerabilities
    )
    if history.prior_reports >= 1:
        factors.append(("repeat-target", f"{history.prior_reports} earlier complaint(s) in the window"))
    if hate_incident:
        factors.append(("hate-incident", "this report is a hate incident"))
    if harm_to_person:
        factors.append(("violence", "violence, a weapon or a threat to kill or hurt"))

    weights = settings.vulnerability_weights
    score = sum(weights[f] for f, _ in factors)
    threshold = settings.vulnerability_threshold
    vulnerable = score >= threshold
    reasons = [
        reason(f"vulnerability.factor.{f}", f"vulnerability: {f} +{weights[f]}", evidence) for f, evidence in factors
    ]
    verdict = "vulnerable" if vulnerable else "not vulnerable"
    relation = ">=" if vulnerable else "<"
    reasons.append(
        reason(
            "vulnerability.score",
            f"vulnerability score {score} {relation} threshold {threshold}: {verdict}",
            f"score {score}",
            f"threshold {threshold}",
        )
    )
    return VulnerabilityScore(score, vulnerable, tuple(reasons))


# ---------------------------------------------------------------------------
# Linking reports: same victim, same property or place, the same incident from several agencies
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFacts:
    """What triage keeps about a triaged report to link later reports to it."""

    incident_id: uuid.UUID
    partner: str
    victim_key: str | None
    place_key: str | None
    complainant_key: str
    reported_at: datetime
    occurred_at: datetime
    kind: str  # the problem: ASB heading, else crime category, else "unclassified"
    hate_incident: bool
    root_id: uuid.UUID  # the first report of the same incident: itself unless a duplicate


def place_key(location: Location) -> str | None:
    """One key for 'the same property or place': the UPRN, else the address, else the postcode, else ~10 m."""
    if location.uprn:
        return f"uprn:{location.uprn.lstrip('0') or '0'}"
    if location.address:
        return "addr:" + _NOT_ALPHANUMERIC.sub(" ", location.address.lower()).strip()
    if location.postcode:
        return "pc:" + _NOT_UPPER_ALPHANUMERIC.sub("", location.postcode.upper())
    if location.latitude is not None and location.longitude is not None:
        return f"ll:{location.latitude:.4f},{location.longitude:.4f}"
    return None


def complainant_key(victim_key: str | None, report: ReportDetails) -> str:
    """Who complained: the victim when identified, else the reporting partner."""
    return f"victim:{victim_key}" if victim_key else f"partner:{report.partner}"


def kind_of(heading: AsbHeading | None, category: CrimeCategory | None) -> str:
    """The problem a report is about, for 'same kind' and 'same problem': heading, else crime, else unclassified."""
    if heading is not None:
        return f"asb:{heading.value}"
    if category is not None:
        return f"crime:{category.value}"
    return "unclassified"


def link_history(subject: ReportFacts, earlier: Iterable[ReportFacts], settings: TriageSettings) -> VictimHistory:
    """Link this report to earlier ones: duplicate of another agency's report, the victim's complaints and
    the property's complaints in the repeat window, each incident counted once."""
    window = timedelta(days=settings.repeat_window_days)
    same_incident = timedelta(hours=settings.duplicate_window_hours)
    candidates = sorted(
        (e for e in earlier if e.incident_id != subject.incident_id),
        key=lambda e: (e.reported_at, str(e.incident_id)),
    )

    duplicate: ReportFacts | None = None
    if subject.place_key is not None:
        for e in candidates:
            if (
                e.partner != subject.partner
                and e.place_key == subject.place_key
                and e.kind == subject.kind
                and abs(e.occurred_at - subject.occurred_at) <= same_incident
            ):
                duplicate = e
                break
    root = duplicate.root_id if duplicate is not None else subject.incident_id

    in_window = [e for e in candidates if subject.reported_at - window <= e.reported_at <= subject.reported_at]

    prior_ids: dict[uuid.UUID, None] = {}
    hate_roots: set[uuid.UUID] = set()
    partners: dict[str, None] = {}
    if subject.victim_key is not None:
        for e in in_window:
            if e.victim_key != subject.victim_key or e.root_id == root:
                continue
            prior_ids.setdefault(e.root_id)
            partners.setdefault(e.partner)
            if e.hate_incident:
                hate_roots.add(e.root_id)

    property_ids: dict[uuid.UUID, None] = {}
    complainants: dict[str, None] = {}
    if subject.place_key is not None and subject.place_key.startswith("uprn:"):
        for e in in_window:
            if e.place_key != subject.place_key or e.kind != subject.kind or e.root_id == root:
                continue
            property_ids.setdefault(e.root_id)
            if e.complainant_key != subject.complainant_key:
                complainants.setdefault(e.complainant_key)

    return VictimHistory(
        prior_reports=len(prior_ids),
        prior_hate_incidents=len(hate_roots),
        prior_incident_ids=tuple(prior_ids),
        prior_partners=tuple(partners),
        duplicate_of=duplicate.root_id if duplicate is not None else None,
        duplicate_partner=duplicate.partner if duplicate is not None else None,
        property_complainants=len(complainants),
        property_incident_ids=tuple(property_ids),
    )


# ---------------------------------------------------------------------------
# Repeat victim and ASB Case Review
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatFinding:
    """Repeat-victim status and ASB Case Review grounds, counting this report."""

    repeat_victim: bool
    case_review: bool
    prior_reports: int
    reasons: tuple[Reason, ...]


def assess_repeat(
    report: ReportDetails, history: VictimHistory, settings: TriageSettings, hate_incident: bool = False
) -> RepeatFinding:
    """Repeat victim, and ASB Case Review grounds, from the complaints in the window (this one included)."""
    reasons: list[Reason] = []
    days = settings.repeat_window_days
    if history.duplicate_of is not None:
        reasons.append(
            reason(
                "repeat.duplicate",
                f"same incident as {history.duplicate_of} reported by {history.duplicate_partner}: counted once",
                str(history.duplicate_of),
                f"partner: {history.duplicate_partner}",
            )
        )
    case_review = False
    people = history.property_complainants + 1
    threshold = settings.case_review_different_complainants
    if history.property_incident_ids:
        reasons.append(
            reason(
                "repeat.property",
                f"linked to {len(history.property_incident_ids)} earlier report(s) of the same problem at this "
                "property",
                *history.property_incident_ids,
            )
        )
    if threshold > 0 and people >= threshold:
        case_review = True
        reasons.append(
            reason(
                "case-review.eligible.property",
                f"ASB Case Review: {people} different people reported the same problem at this property in "
                f"{days} days (threshold {threshold}): an ASB Case Review may be asked for (Community Trigger)",
                f"{people} complainants",
                *history.property_incident_ids,
            )
        )
    if report.victim is None:
        # No victim, no one to count complaints about: a stray count from the caller is not used.
        return RepeatFinding(False, case_review, 0, tuple(reasons))

    reports = history.prior_reports + 1
    repeat = reports >= settings.repeat_victim_reports
    if repeat:
        reasons.append(
            reason(
                "repeat.victim",
                f"repeat victim: {reports} reports about this victim in {days} days "
                f"(threshold {settings.repeat_victim_reports}): tell the victim about the ASB Case Review",
                f"{reports} complaints",
                *history.prior_incident_ids,
            )
        )
    if reports >= settings.case_review_reports:
        case_review = True
        reasons.append(
            reason(
                "case-review.eligible.complaints",
                f"ASB Case Review: {reports} reports about this victim in {days} days "
                f"(threshold {settings.case_review_reports}): the victim qualifies for an ASB Case Review "
                "(Community Trigger)",
                f"{reports} complaints",
                *history.prior_incident_ids,
            )
        )
    hate_count = history.prior_hate_incidents + (1 if hate_incident else 0)
    hate_threshold = settings.case_review_hate_incidents
    if hate_threshold > 0 and hate_incident and hate_count >= hate_threshold:
        case_review = True
        reasons.append(
            reason(
                "case-review.eligible.hate",
                f"ASB Case Review: {hate_count} hate incident(s) against this victim in {days} days "
                f"(threshold {hate_threshold}): the victim qualifies for an ASB Case Review (Community Trigger)",
                f"{hate_count} hate incident(s)",
            )
        )
    return RepeatFinding(repeat, case_review, history.prior_reports, tuple(reasons))


# ---------------------------------------------------------------------------
# Risk tier and review
# ---------------------------------------------------------------------------


def risk_tier(
    crime: CrimeFinding, hate_incident: bool, vulnerable: bool, repeat_victim: bool
) -> tuple[RiskTier, Reason]:
    """The risk tier and the reason for it: high, medium or standard."""
    if crime.harm_to_person:
        return RiskTier.HIGH, reason(
            "risk.high.harm",
            "risk high: violence against a person, a weapon or a threat to kill or hurt",
            str(crime.category),
        )
    if vulnerable and (repeat_victim or hate_incident):
        why = "a repeat victim" if repeat_victim else "a hate incident"
        return RiskTier.HIGH, reason("risk.high.vulnerable", f"risk high: vulnerable victim and {why}", why)
    medium = [
        why
        for why, applies in (
            ("vulnerable victim", vulnerable),
            ("hate incident", hate_incident),
            ("repeat victim", repeat_victim),
            (f"crime ({crime.category})", crime.violence_or_criminality),
        )
        if applies
    ]
    if medium:
        return RiskTier.MEDIUM, reason("risk.medium", "risk medium: " + ", ".join(medium), *medium)
    return RiskTier.STANDARD, reason("risk.standard", "risk standard: no crime, hate, vulnerability or repeat factor")


def review_due(tier: RiskTier, reported_on: date, settings: TriageSettings) -> tuple[date | None, Reason | None]:
    """The date a case of this tier must be reviewed by, from the report date (standard: none)."""
    days = {RiskTier.HIGH: settings.high_risk_review_days, RiskTier.MEDIUM: settings.medium_risk_review_days}.get(tier)
    if days is None:
        return None, None
    due = reported_on + timedelta(days=days)
    return due, reason(
        "risk.review", f"review by {due.isoformat()}: {tier} risk is reviewed every {days} days", f"{days} days"
    )


# ---------------------------------------------------------------------------
# Non-crime hate incidents: personal data only on a real risk of significant harm
# ---------------------------------------------------------------------------

# Signs that the targeting will go on or get worse: a real risk of a future offence.
_FUTURE_HARM: Final = _rx(
    r"intimidat\w*",
    r"follow(?:ed|s|ing) (?:me|us|him|her|them|my \w+)",
    r"knows? where (?:i|we|she|he|they) lives?",
    r"watch(?:ing|es|ed) (?:my|our|her|his|their|the) (?:house|home|flat|door)",
    r"(?:coming|come|came) back",
    r"escalat\w*",
    r"getting worse",
    r"won'?t (?:stop|leave)",
    r"every (?:day|night|week)",
    r"keeps? (?:coming|targeting|shouting|calling)",
)


@dataclass(frozen=True)
class PrivacyDecision:
    """For a non-crime hate incident: keep the victim's personal data or strip it, and why."""

    keep_personal_data: bool
    reason: Reason | None


def decide_nchi_privacy(
    report: ReportDetails,
    crime: CrimeFinding,
    hate_incident: bool,
    score: int,
    history: VictimHistory,
    settings: TriageSettings,
) -> PrivacyDecision:
    """A non-crime hate incident keeps personal data only on a real risk of significant harm or a future offence."""
    if not hate_incident or crime.violence_or_criminality or report.victim is None:
        return PrivacyDecision(True, None)
    risks: list[str] = []
    if score >= settings.nchi_retain_vulnerability_score:
        risks.append(f"vulnerability score {score} >= {settings.nchi_retain_vulnerability_score}")
    if history.prior_reports >= 1:
        risks.append(f"repeat targeting: {history.prior_reports} earlier complaint(s)")
    cue = find_cue(_FUTURE_HARM, normalise(report.description))
    if cue is not None and not cue.negated:
        risks.append(f"future harm: '{cue.text}'")
    if risks:
        return PrivacyDecision(
            True,
            reason(
                "privacy.nchi.retained",
                "non-crime hate incident: personal data kept, real risk of significant harm or of a future "
                "offence (" + "; ".join(risks) + ")",
                *risks,
            ),
        )
    return PrivacyDecision(
        False,
        reason(
            "privacy.nchi.minimised",
            "non-crime hate incident with no real risk of significant harm or of a future offence: the victim's "
            "name, date of birth, contact and reference are removed before the event leaves triage "
            "(the pseudonymous victim key is kept)",
            "no threat, repeat targeting or vulnerability over the threshold",
        ),
    )


def minimise_person(person: Person, on: date) -> Person:
    """The person without what identifies them; the age on the report date stays, so re-scoring agrees."""
    return Person(age=victim_age(person, on), vulnerabilities=list(person.vulnerabilities))


def minimise_report(report: ReportDetails) -> ReportDetails:
    """The report with the victim's (and a tenant's) personal data removed."""
    on = report.reported_at.date()
    update: dict[str, object] = {}
    if report.victim is not None:
        update["victim"] = minimise_person(report.victim, on)
    if report.tenancy is not None and report.tenancy.tenant is not None:
        update["tenancy"] = report.tenancy.model_copy(update={"tenant": minimise_person(report.tenancy.tenant, on)})
    return report.model_copy(update=update)


# ---------------------------------------------------------------------------
# Cross-border cases with the neighbouring borough
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _whole_words(name: str) -> re.Pattern[str] | None:
    # Names come from settings: a handful, asked about for every report.
    wanted = normalise(name)
    return re.compile(r"\b" + re.escape(wanted) + r"\b") if wanted else None


def _mentions(name: str, text: str) -> bool:
    pattern = _whole_words(name)
    return pattern is not None and pattern.search(text) is not None


_POSTCODE_AREA: Final = re.compile(r"[A-Z]+")


def _postcode_in(postcode: str, prefix: str) -> bool:
    compact = _NOT_UPPER_ALPHANUMERIC.sub("", postcode.upper())
    outward = compact[:-3] if len(compact) > 4 else compact
    want = _NOT_UPPER_ALPHANUMERIC.sub("", prefix.upper())
    if not want:
        return False
    if want.isalpha():  # a postcode area: "NB" matches NB1 and NB12, not N1
        area = _POSTCODE_AREA.match(outward)
        return area is not None and area.group(0) == want
    return outward == want


def detect_cross_border(report: ReportDetails, settings: TriageSettings) -> tuple[Reason, ...]:
    """Reasons the case touches the neighbouring borough: its places, postcodes, or an offender active in both."""
    reasons: list[Reason] = []
    where = normalise(" ".join(filter(None, (report.location.address, report.description))))
    for place in settings.cross_border_places:
        if _mentions(place, where):
            reasons.append(
                reason("cross-border.place", f"cross-border: mentions {place} in the neighbouring borough", place)
            )
    if report.location.postcode:
        for prefix in settings.cross_border_postcode_prefixes:
            if _postcode_in(report.location.postcode, prefix):
                reasons.append(
                    reason(
                        "cross-border.postcode",
                        f"cross-border: postcode {report.location.postcode} is in the neighbouring borough ({prefix})",
                        report.location.postcode,
                    )
                )
    description = normalise(report.description)
    for offender in settings.cross_border_offenders:
        if _mentions(offender, description):
            reasons.append(
                reason(
                    "cross-border.offender",
                    f"cross-border: names {offender}, an offender active in both town centres",
                    offender,
                )
            )
    return tuple(reasons)


# ---------------------------------------------------------------------------
# Ownership and response
# ---------------------------------------------------------------------------

_ENVIRONMENTAL_ENFORCEMENT_HEADINGS: Final = frozenset(
    {AsbHeading.FLY_TIPPING, AsbHeading.GRAFFITI, AsbHeading.LITTERING_DRUG_PARAPHERNALIA, AsbHeading.ABANDONED_VEHICLE}
)
_NUISANCE_PREMISES: Final = _rx(
    r"premises",
    r"takeaways?",
    r"pubs?",
    r"nightclubs?",
    r"restaurants?",
    r"factory",
    r"workshops?",
    r"car wash",
    r"bonfires?",
    r"smoke",
    r"odou?rs?",
    r"fumes",
    r"extractor fans?",
)


# Noise EHS can act on as a statutory nuisance, whatever heading the report landed under.
_NOISE_NUISANCE: Final = _rx(r"noise", r"noisy", r"loud", r"music", r"part(?:y|ies)", r"bass", r"sound systems?")


@dataclass(frozen=True)
class Ownership:
    """The owning team, the supporting teams, and why."""

    owner: Team
    supporting: tuple[Team, ...]
    reasons: tuple[Reason, ...]


def assign_ownership(
    report: ReportDetails,
    asb: AsbType,
    crime: CrimeFinding,
    hate_incident: bool,
    vulnerable: bool,
    history: VictimHistory,
    cross_border: bool,
    settings: TriageSettings,
) -> Ownership:
    """Owner by the partnership's rules, in priority order; every other team whose rule applies supports."""
    text = normalise(report.description)
    # Graffiti is criminal damage, but with nobody hurt the clean-up team leads and the police support.
    environmental = asb.heading in _ENVIRONMENTAL_ENFORCEMENT_HEADINGS
    environmental_crime_only = (
        environmental and not crime.harm_to_person and crime.category in (None, CrimeCategory.CRIMINAL_DAMAGE_ARSON)
    )
    candidates: list[tuple[Team, str]] = []
    police_why = f"the police lead on crime ({crime.category})"
    if crime.violence_or_criminality and not environmental_crime_only:
        candidates.append((Team.POLICE, police_why))
    csu = []
    if hate_incident:
        csu.append("hate incident")
    if vulnerable:
        csu.append("vulnerable victim")
    partners = dict.fromkeys((*history.prior_partners, str(report.partner)))
    if report.victim is not None and len(partners) >= 2:
        csu.append("multi-agency case (" + ", ".join(sorted(partners)) + ")")
    if csu:
        candidates.append((Team.COMMUNITY_SAFETY_UNIT, ", ".join(csu)))
    if environmental:
        candidates.append((Team.ENVIRONMENTAL_ENFORCEMENT, f"'{asb.heading}' is environmental enforcement"))
    tenancy = report.tenancy
    estate = next(
        (name for name in settings.council_estates if _mentions(name, normalise(report.location.address or ""))),
        None,
    )
    if tenancy is not None and tenancy.tenure == Tenure.COUNCIL:
        candidates.append((Team.HOUSING_ASB, f"council tenancy ({tenancy.tenant_role})"))
    elif estate is not None:
        candidates.append((Team.HOUSING_ASB, f"on a council estate ({estate})"))
    premises = find_cue(_NUISANCE_PREMISES, text)
    noise = find_cue(_NOISE_NUISANCE, text)
    if asb.heading == AsbHeading.NOISE:
        candidates.append((Team.ENVIRONMENTAL_HEALTH, "noise"))
    elif noise is not None and not noise.negated:
        candidates.append((Team.ENVIRONMENTAL_HEALTH, f"noise nuisance ('{noise.text}')"))
    elif premises is not None and not premises.negated:
        candidates.append((Team.ENVIRONMENTAL_HEALTH, f"nuisance premises ('{premises.text}')"))
    if crime.violence_or_criminality and environmental_crime_only:
        candidates.append((Team.POLICE, police_why))
    if not candidates:
        candidates.append((Team.COMMUNITY_SAFETY_UNIT, "no specialist team's rule applies: the CSU coordinates"))
    if cross_border:
        candidates.append((Team.NEIGHBOURING_PARTNERSHIP, "cross-border case: a copy goes to that partnership"))

    owner, owner_why = candidates[0]
    reasons = [reason(f"owner.{owner}", f"owned by {owner}: {owner_why}", owner_why)]
    supporting: dict[Team, None] = {}
    for team, why in candidates[1:]:
        if team == owner or team in supporting:
            continue
        supporting[team] = None
        reasons.append(reason(f"support.{team}", f"supported by {team}: {why}", why))
    return Ownership(owner, tuple(supporting), tuple(reasons))


def response_for(tier: RiskTier, settings: TriageSettings) -> tuple[ResponseTier, int, Reason]:
    """A proportionate response: the response tier and first-contact target for a risk tier."""
    response, hours = {
        RiskTier.HIGH: (ResponseTier.URGENT, settings.urgent_first_contact_hours),
        RiskTier.MEDIUM: (ResponseTier.PRIORITY, settings.priority_first_contact_hours),
        RiskTier.STANDARD: (ResponseTier.ROUTINE, settings.routine_first_contact_hours),
    }[tier]
    return (
        response,
        hours,
        reason(
            f"response.{response}",
            f"response {response}: {tier} risk, first contact within {hours} hours",
            f"{hours} h",
        ),
    )


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Findings:
    """What a report says on its own, before any history: crime, hate and ASB type."""

    crime: CrimeFinding
    hate: HateFinding
    asb: AsbType

    @property
    def kind(self) -> str:
        """The problem the report is about, for linking."""
        return kind_of(self.asb.heading, self.crime.category)


def find(report: ReportDetails) -> Findings:
    """Crime, hate and ASB type from the report alone."""
    crime = detect_crime(report)
    hate = detect_hate(report)
    return Findings(crime, hate, classify_asb(report, hate.hate_incident, crime.harm_to_person))


@dataclass(frozen=True)
class Triaged:
    """A classification, and the report as it may leave triage."""

    classification: Classification
    report: ReportDetails
    facts: ReportFacts
    history: VictimHistory
    minimised: bool


def _decide(
    report: ReportDetails, history: VictimHistory, settings: TriageSettings, findings: Findings
) -> tuple[Classification, PrivacyDecision]:
    crime, hate, asb = findings.crime, findings.hate, findings.asb
    vulnerability = score_vulnerability(report, history, hate.hate_incident, crime.harm_to_person, settings)
    repeat = assess_repeat(report, history, settings, hate.hate_incident)
    tier, tier_reason = risk_tier(crime, hate.hate_incident, vulnerability.vulnerable, repeat.repeat_victim)
    due, due_reason = review_due(tier, report.reported_at.date(), settings)
    cross_border = detect_cross_border(report, settings)
    ownership = assign_ownership(
        report, asb, crime, hate.hate_incident, vulnerability.vulnerable, history, bool(cross_border), settings
    )
    response, hours, response_reason = response_for(tier, settings)
    privacy = decide_nchi_privacy(report, crime, hate.hate_incident, vulnerability.score, history, settings)
    explanations = [
        *asb.reasons,
        *crime.reasons,
        *hate.reasons,
        *vulnerability.reasons,
        *repeat.reasons,
        tier_reason,
        *([due_reason] if due_reason is not None else []),
        *cross_border,
        *ownership.reasons,
        response_reason,
        *([privacy.reason] if privacy.reason is not None else []),
    ]
    classification = Classification(
        asb_qualifier=asb.qualifier,
        asb_heading=asb.heading.value if asb.heading is not None else None,
        crime_category=crime.category,
        violence_or_criminality=crime.violence_or_criminality,
        hate_incident=hate.hate_incident,
        vulnerable=vulnerability.vulnerable,
        vulnerability_score=vulnerability.score,
        risk_tier=tier,
        repeat_victim=repeat.repeat_victim,
        prior_reports_6_months=repeat.prior_reports,
        reasons=[r.text for r in explanations],
        rules_version=RULES_VERSION,
        hate_strands=[s.value for s in hate.strands],
        explanations=explanations,
        owning_team=ownership.owner.value,
        supporting_teams=[t.value for t in ownership.supporting],
        response_tier=response.value,
        first_contact_hours=hours,
        review_due=due,
        cross_border=bool(cross_border),
    )
    return classification, privacy


def classify(report: ReportDetails, history: VictimHistory, settings: TriageSettings) -> Classification:
    """Classify one report with its history already counted: every rule, with its reasons."""
    return _decide(report, history, settings, find(report))[0]


def triage(
    incident_id: uuid.UUID,
    victim_key: str | None,
    report: ReportDetails,
    earlier: Iterable[ReportFacts],
    settings: TriageSettings,
) -> Triaged:
    """Triage an accepted report against the facts kept about earlier ones (same victim, property or place)."""
    findings = find(report)
    subject = ReportFacts(
        incident_id=incident_id,
        partner=str(report.partner),
        victim_key=victim_key,
        place_key=place_key(report.location),
        complainant_key=complainant_key(victim_key, report),
        reported_at=report.reported_at,
        occurred_at=report.occurred_at or report.reported_at,
        kind=findings.kind,
        hate_incident=findings.hate.hate_incident,
        root_id=incident_id,
    )
    history = link_history(subject, earlier, settings)
    classification, privacy = _decide(report, history, settings, findings)
    facts = ReportFacts(**{**subject.__dict__, "root_id": history.duplicate_of or incident_id})
    leaving = report if privacy.keep_personal_data else minimise_report(report)
    return Triaged(classification, leaving, facts, history, not privacy.keep_personal_data)


# ---------------------------------------------------------------------------
# ASB Case Review notices
# ---------------------------------------------------------------------------


class NoticeKind(enum.StrEnum):
    PROMPT = "prompt"  # tell the victim about the Case Review
    ELIGIBLE = "eligible"  # the victim may ask for a Case Review


@dataclass(frozen=True)
class CaseReviewNotice:
    """A Case Review notice: raised once per victim (or property) per crossing of its threshold."""

    kind: NoticeKind
    key: str  # the victim key, or "property:<place key>" when no victim is identified
    incident_id: uuid.UUID
    qualifying_incident_ids: tuple[uuid.UUID, ...]
    grounds: tuple[str, ...]


def case_review_notices(
    triaged: Triaged, raised: Sequence[CaseReviewNotice], settings: TriageSettings
) -> list[CaseReviewNotice]:
    """The notices this report newly calls for; a notice is not raised again while any complaint it counted
    is still among those counted now (so once per crossing of the threshold within the window)."""
    c, facts, history = triaged.classification, triaged.facts, triaged.history
    notices: list[CaseReviewNotice] = []
    victim_ids = tuple(dict.fromkeys((*history.prior_incident_ids, facts.root_id)))

    def already(kind: NoticeKind, key: str, ids: Sequence[uuid.UUID]) -> bool:
        return any(n.kind == kind and n.key == key and set(n.qualifying_incident_ids) & set(ids) for n in raised)

    prompt = next((r for r in c.explanations if r.rule_id == "repeat.victim"), None)
    if (
        facts.victim_key is not None
        and prompt is not None
        and not already(NoticeKind.PROMPT, facts.victim_key, victim_ids)
    ):
        notices.append(
            CaseReviewNotice(NoticeKind.PROMPT, facts.victim_key, facts.incident_id, victim_ids, (prompt.text,))
        )

    grounds = tuple(r.text for r in c.explanations if r.rule_id.startswith("case-review.eligible."))
    if grounds:
        property_ground = any(r.rule_id == "case-review.eligible.property" for r in c.explanations)
        property_ids = (*history.property_incident_ids, facts.root_id) if property_ground else ()
        ids = tuple(dict.fromkeys((*(victim_ids if facts.victim_key else ()), *property_ids)))
        key = facts.victim_key or f"property:{facts.place_key}"
        if not already(NoticeKind.ELIGIBLE, key, ids):
            notices.append(CaseReviewNotice(NoticeKind.ELIGIBLE, key, facts.incident_id, ids, grounds))
    return notices
