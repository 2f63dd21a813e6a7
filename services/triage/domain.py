"""Triage rules: classify one partner report. Pure: no I/O, no clock, no broker, no database.

``classify`` turns a ``ReportDetails``, the victim's recent history and the thresholds in
``TriageSettings`` into a ``Classification``: NSIR ASB type (qualifier and heading), the
police.uk crime category, hate incident, vulnerability score, repeat victim, risk tier, and
the reasons for each decision in a stable order.

Police notification is a hard rule, so crime detection leans towards alerting: cues are
plain keyword patterns, and only a cue directly preceded by a negation ("no knife",
"without a weapon", "wasn't assaulted") is set aside, and then with a reason saying so.

Vulnerability question set (``VULNERABILITY_WEIGHTS``; vulnerable at
``settings.vulnerability_threshold``, default 22). Only scored when a victim is recorded.

    ==========================  ======  ===================================================
    factor                      points  asked as
    ==========================  ======  ===================================================
    age-under-18                8       victim under 18 on the report date (personal)
    age-75-plus                 8       victim 75 or over on the report date (personal)
    disability                  8       ``Vulnerability.DISABILITY`` (personal)
    mental-health               8       ``Vulnerability.MENTAL_HEALTH`` (personal)
    lives-alone                 6       ``Vulnerability.LIVES_ALONE`` (situational)
    isolated                    6       ``Vulnerability.ISOLATED`` (situational)
    children-in-household       4       ``Vulnerability.CHILDREN_IN_HOUSEHOLD`` (situational)
    fear-of-reprisal            6       ``Vulnerability.FEAR_OF_REPRISAL`` (situational)
    impact-on-daily-life        6       ``Vulnerability.IMPACT_ON_DAILY_LIFE`` (incidental)
    repeat-target               8       at least one earlier report about the victim in the window
    hate-incident               8       this report is a hate incident (incidental)
    violence                    8       violence against the person, a weapon or a threat to kill
    ==========================  ======  ===================================================

No single factor, nor any two, reaches 22; three strong factors do (a disabled victim who
lives alone and is a repeat target scores 8 + 6 + 8 = 22).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from services.triage.settings import TriageSettings
from shared.contracts import (
    AsbQualifier,
    Classification,
    CrimeCategory,
    Person,
    ReportDetails,
    RiskTier,
    Vulnerability,
)

RULES_VERSION = "2026.11-1"


@dataclass(frozen=True)
class VictimHistory:
    """What triage knows about the victim before this report."""

    prior_reports: int  # reports about the same victim in the repeat window, NOT counting this one

    def __post_init__(self) -> None:
        if self.prior_reports < 0:
            raise ValueError("prior_reports cannot be negative")


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

VULNERABILITY_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "age-under-18": 8,
        "age-75-plus": 8,
        Vulnerability.DISABILITY.value: 8,
        Vulnerability.MENTAL_HEALTH.value: 8,
        Vulnerability.LIVES_ALONE.value: 6,
        Vulnerability.ISOLATED.value: 6,
        Vulnerability.CHILDREN_IN_HOUSEHOLD.value: 4,
        Vulnerability.FEAR_OF_REPRISAL.value: 6,
        Vulnerability.IMPACT_ON_DAILY_LIFE.value: 6,
        "repeat-target": 8,
        "hate-incident": 8,
        "violence": 8,
    }
)

# Age bands of the question set: part of the scoring definition, like the weights above.
CHILD_UNDER_AGE: Final = 18
OLDER_FROM_AGE: Final = 75


# ---------------------------------------------------------------------------
# Text matching
# ---------------------------------------------------------------------------

_NEGATIONS: Final = frozenset(
    {"no", "not", "never", "without", "didn't", "didnt", "wasn't", "wasnt", "weren't", "werent", "nobody"}
)
# One of these may sit between the negation and the cue: "without a weapon", "not been assaulted".
_NEGATION_GAP: Final = frozenset({"a", "an", "any", "the", "been", "being"})


def normalise(text: str) -> str:
    """Lower-case text with curly quotes straightened and hyphens, slashes, underscores as spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[-_/]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _compact(text: str) -> str:
    """A category key that ignores spacing, punctuation and a plural 's': 'Fly-tipping' == 'flytipping'."""
    key = re.sub(r"[^a-z0-9]+", "", text.lower())
    return key[:-1] if key.endswith("s") and len(key) > 3 else key


def _negated(text: str, start: int) -> bool:
    """True when the words just before ``start``, in the same clause, negate what follows."""
    clause = re.split(r"[.,;:!?]", text[:start])[-1]
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
    reasons: tuple[str, ...]


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
    reasons: list[str] = []
    heading = heading_from_category(report.category)
    if heading is not None:
        reasons.append(f"ASB heading '{heading}' from the partner's category '{report.category}'")
    else:
        if report.category is not None:
            reasons.append(f"ASB: category '{report.category}' names no ASB heading; using the description")
        found = heading_from_description(report.description)
        if found is not None:
            heading, cue = found
            reasons.append(f"ASB heading '{heading}': description mentions '{cue}'")

    # Personal wins over the heading's default when the behaviour is aimed at someone.
    target = None
    if report.victim is not None:
        target_cue = find_cue(_TARGETING, normalise(report.description))
        if target_cue is not None and not target_cue.negated:
            target = f"the behaviour targets the victim ('{target_cue.text}')"
        elif harm_to_person:
            target = "violence or threats against the victim"
    if hate_incident:
        reasons.append("ASB qualifier personal: a hate incident targets a person")
        return AsbType(AsbQualifier.PERSONAL, heading, tuple(reasons))
    if target is not None:
        reasons.append(f"ASB qualifier personal: {target}")
        return AsbType(AsbQualifier.PERSONAL, heading, tuple(reasons))
    if heading is None:
        reasons.append("ASB type unclassified: no ASB heading in the category or the description")
        return AsbType(AsbQualifier.UNCLASSIFIED, None, tuple(reasons))
    qualifier = HEADING_QUALIFIER[heading]
    reasons.append(f"ASB qualifier {qualifier}: the default for '{heading}'")
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
    reasons: tuple[str, ...]


def crime_from_category(category: str | None) -> CrimeCategory | None:
    """The police.uk category a partner's structured category names, if it names one."""
    if category is None:
        return None
    return _CRIME_ALIASES.get(_compact(category))


def detect_crime(report: ReportDetails) -> CrimeFinding:
    """Violence and criminality from the structured category and every cue in the description."""
    reasons: list[str] = []
    category = crime_from_category(report.category)
    harm = category in _HARM_CATEGORIES
    if category is not None:
        reasons.append(f"violence or criminality: the partner's category '{report.category}' is {category}")

    text = normalise(report.description)
    explained: list[tuple[int, int]] = []
    for cue in CRIME_CUES:
        found = find_cue(cue.pattern, text, explained)
        if found is None:
            continue
        if found.negated:
            reasons.append(f"violence or criminality: negated cue '{found.text}' set aside")
            continue
        reasons.append(f"violence or criminality: '{found.text}' suggests {cue.category}")
        explained.extend(found.spans)
        harm = harm or cue.harm_to_person
        if category is None:  # the structured category, when it names a crime, beats the description
            category = cue.category

    # Keep each reason once, first occurrence first, so output is stable and readable.
    unique = tuple(dict.fromkeys(reasons))
    return CrimeFinding(category, category is not None, harm, unique)


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
    reasons: tuple[str, ...]


def detect_hate(report: ReportDetails) -> HateFinding:
    """A hate incident when anyone perceives it so, or the description names a monitored strand."""
    reasons: list[str] = []
    if report.perceived_as_hate:
        reasons.append("hate incident: perceived as hate by the victim or another person")
    text = normalise(report.description)
    strands: list[HateStrand] = []
    for strand, pattern in HATE_CUES:
        found = find_cue(pattern, text)
        if found is None:
            continue
        if found.negated:
            reasons.append(f"hate: negated cue '{found.text}' set aside")
            continue
        strands.append(strand)
        reasons.append(f"hate incident ({strand}): '{found.text}'")
    hate = report.perceived_as_hate or bool(strands)
    if report.perceived_as_hate and not strands:
        reasons.append("hate incident: strand not identified in the description")
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
    reasons: tuple[str, ...]


def score_vulnerability(
    report: ReportDetails,
    history: VictimHistory,
    hate_incident: bool,
    harm_to_person: bool,
    settings: TriageSettings,
) -> VulnerabilityScore:
    """Score the victim against VULNERABILITY_WEIGHTS; vulnerable at or above the configured threshold."""
    victim = report.victim
    if victim is None:
        return VulnerabilityScore(0, False, ("vulnerability: not scored, no victim recorded",))

    factors: list[str] = []
    age = victim_age(victim, report.reported_at.date())
    if age is not None and age < CHILD_UNDER_AGE:
        factors.append("age-under-18")
    if age is not None and age >= OLDER_FROM_AGE:
        factors.append("age-75-plus")
    # Enum order, not the partner's list order, so the same flags always give the same reasons.
    factors.extend(flag.value for flag in Vulnerability if flag in victim.vulnerabilities)
    if history.prior_reports >= 1:
        factors.append("repeat-target")
    if hate_incident:
        factors.append("hate-incident")
    if harm_to_person:
        factors.append("violence")

    score = sum(VULNERABILITY_WEIGHTS[f] for f in factors)
    threshold = settings.vulnerability_threshold
    vulnerable = score >= threshold
    reasons = [f"vulnerability: {f} +{VULNERABILITY_WEIGHTS[f]}" for f in factors]
    verdict = "vulnerable" if vulnerable else "not vulnerable"
    relation = ">=" if vulnerable else "<"
    reasons.append(f"vulnerability score {score} {relation} threshold {threshold}: {verdict}")
    return VulnerabilityScore(score, vulnerable, tuple(reasons))


# ---------------------------------------------------------------------------
# Repeat victim and ASB Case Review
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatFinding:
    """Repeat-victim status and ASB Case Review eligibility, counting this report."""

    repeat_victim: bool
    case_review: bool
    prior_reports: int
    reasons: tuple[str, ...]


def assess_repeat(report: ReportDetails, history: VictimHistory, settings: TriageSettings) -> RepeatFinding:
    """Repeat victim, and ASB Case Review eligibility, from the reports in the window (this one included)."""
    if report.victim is None:
        # No victim, no one to count reports about: a stray count from the caller is not used.
        return RepeatFinding(False, False, 0, ())
    reports = history.prior_reports + 1
    reasons: list[str] = []
    repeat = reports >= settings.repeat_victim_reports
    if repeat:
        reasons.append(
            f"repeat victim: {reports} reports about this victim in {settings.repeat_window_days} days "
            f"(threshold {settings.repeat_victim_reports}): tell the victim about the ASB Case Review"
        )
    case_review = reports >= settings.case_review_reports
    if case_review:
        reasons.append(
            f"ASB Case Review: {reports} reports about this victim in {settings.repeat_window_days} days "
            f"(threshold {settings.case_review_reports}): the victim qualifies for an ASB Case Review "
            "(Community Trigger)"
        )
    return RepeatFinding(repeat, case_review, history.prior_reports, tuple(reasons))


# ---------------------------------------------------------------------------
# Risk tier
# ---------------------------------------------------------------------------


def risk_tier(crime: CrimeFinding, hate_incident: bool, vulnerable: bool, repeat_victim: bool) -> tuple[RiskTier, str]:
    """The risk tier and the reason for it: high, medium or standard."""
    if crime.harm_to_person:
        return RiskTier.HIGH, "risk high: violence against a person, a weapon or a threat to kill or hurt"
    if vulnerable and (repeat_victim or hate_incident):
        why = "a repeat victim" if repeat_victim else "a hate incident"
        return RiskTier.HIGH, f"risk high: vulnerable victim and {why}"
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
        return RiskTier.MEDIUM, "risk medium: " + ", ".join(medium)
    return RiskTier.STANDARD, "risk standard: no crime, hate, vulnerability or repeat factor"


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


def classify(report: ReportDetails, history: VictimHistory, settings: TriageSettings) -> Classification:
    """Classify one report: ASB type, crime, hate, vulnerability, repeat and risk, with reasons."""
    crime = detect_crime(report)
    hate = detect_hate(report)
    asb = classify_asb(report, hate.hate_incident, crime.harm_to_person)
    vulnerability = score_vulnerability(report, history, hate.hate_incident, crime.harm_to_person, settings)
    repeat = assess_repeat(report, history, settings)
    tier, tier_reason = risk_tier(crime, hate.hate_incident, vulnerability.vulnerable, repeat.repeat_victim)
    return Classification(
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
        reasons=[
            *asb.reasons,
            *crime.reasons,
            *hate.reasons,
            *vulnerability.reasons,
            *repeat.reasons,
            tier_reason,
        ],
        rules_version=RULES_VERSION,
    )
