"""A day in the partnership: about twenty realistic reports from different partners, with what
the policy says must happen to each (police alert or not, which panels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import Panel


@dataclass(frozen=True)
class ScenarioReport:
    title: str
    channel: str  # "http" or "kafka"
    report: dict[str, Any]
    expect_alert: bool
    expect_panels: frozenset[Panel] = field(default_factory=frozenset)


def _when(base: datetime, days_ago: float) -> str:
    return (base - timedelta(days=days_ago)).isoformat()


def build(run_id: str, now: datetime | None = None) -> list[ScenarioReport]:
    """The scenario, with idempotency keys unique to ``run_id`` so reruns start afresh."""
    now = now or datetime.now(UTC)
    mrs_okafor = {
        "name": "Grace Okafor",
        "date_of_birth": "1948-03-02",
        "contact": "07700 900123",
        "vulnerabilities": ["lives-alone", "disability"],
    }
    estate = {"address": "14 Marsh House, Riverside Estate", "postcode": "RV1 4MH", "uprn": "100023336001"}

    def rep(n: int, partner: str, days_ago: float, description: str, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "partner": partner,
            "idempotency_key": f"{run_id}-{n:02d}",
            "reported_at": _when(now, days_ago),
            "location": extra.pop("location", {"address": f"{n} High Street", "postcode": "RV1 1AA"}),
            "description": description,
        }
        body.update(extra)
        return body

    return [
        ScenarioReport(
            "Noise from a flat party every weekend",
            "http",
            rep(
                1,
                "housing",
                0.1,
                "Loud music and shouting from the flat above until 3am every weekend",
                category="noise",
            ),
            expect_alert=False,
        ),
        ScenarioReport(
            "Fly-tipping behind the shops",
            "kafka",
            rep(
                2,
                "environmental-enforcement",
                0.2,
                "Mattresses and builders rubble dumped in the service road behind the parade",
                category="fly-tipping",
            ),
            expect_alert=False,
        ),
        ScenarioReport(
            "Graffiti on the underpass",
            "http",
            rep(3, "csu", 0.3, "Tags sprayed across the underpass walls", category="graffiti"),
            expect_alert=True,
        ),  # graffiti is criminal damage
        ScenarioReport(
            "Racist abuse shouted at a shopkeeper",
            "http",
            rep(
                4,
                "police",
                0.4,
                "Group shouted racist abuse at the shopkeeper and threatened to smash his windows",
                perceived_as_hate=True,
                victim={"name": "Arjun Mehta", "date_of_birth": "1979-06-11"},
            ),
            expect_alert=True,
            expect_panels=frozenset({Panel.VCSP}),
        ),  # high risk: hate + threat
        ScenarioReport(
            "Assault on the Riverside Estate",
            "http",
            rep(
                5,
                "police",
                0.5,
                "Resident was punched in the stairwell by a neighbour",
                location=estate,
                victim={"name": "Sam Reilly", "date_of_birth": "1990-01-20"},
            ),
            expect_alert=True,
            expect_panels=frozenset({Panel.VCSP}),
        ),  # high risk: violence
        ScenarioReport(
            "Abandoned car on the verge",
            "kafka",
            rep(
                6, "county-council", 0.6, "Untaxed car left on the verge for three weeks", category="abandoned vehicle"
            ),
            expect_alert=False,
        ),
        ScenarioReport(
            "Mrs Okafor: youths banging on her door (1st report)",
            "http",
            rep(
                7,
                "housing",
                40,
                "Youths banging on her door and windows at night, she is frightened",
                location=estate,
                victim=mrs_okafor,
            ),
            expect_alert=False,
            expect_panels=frozenset({Panel.VCSP}),
        ),
        ScenarioReport(
            "Mrs Okafor: youths again (2nd report)",
            "kafka",
            rep(
                8,
                "csu",
                12,
                "Same group of youths kicking her door and shouting abuse again",
                location=estate,
                victim=mrs_okafor,
            ),
            expect_alert=True,  # kicking doors
            expect_panels=frozenset({Panel.VCSP}),
        ),
        ScenarioReport(
            "Mrs Okafor: threatened with a knife (3rd report)",
            "http",
            rep(
                9,
                "police",
                0.7,
                "One of the youths threatened her with a knife on her doorstep",
                location=estate,
                victim=mrs_okafor,
            ),
            expect_alert=True,
            expect_panels=frozenset({Panel.VCSP}),
        ),
        ScenarioReport(
            "Tenant facing possession: injunction breached",
            "http",
            rep(
                10,
                "housing",
                0.8,
                "Tenant breached the civil injunction by playing loud music and harassing neighbours",
                category="rowdy/nuisance neighbours",
                tenancy={
                    "tenure": "council",
                    "tenancy_ref": "T-55012",
                    "tenant_role": "perpetrator",
                    "possession": {"notice_of_seeking_possession": True, "mandatory_grounds": ["injunction-breach"]},
                },
            ),
            expect_alert=True,  # harassment is violent-crime in police.uk terms
            expect_panels=frozenset({Panel.CCP}),
        ),
        ScenarioReport(
            "Street drinking in the park",
            "kafka",
            rep(
                11,
                "csu",
                0.9,
                "Group drinking on the benches by the play area every afternoon",
                category="street drinking",
            ),
            expect_alert=False,
        ),
        ScenarioReport(
            "Drug dealing from a flat (cuckooing)",
            "http",
            rep(12, "police", 1.0, "Suspected drug dealing from a vulnerable man's flat, cuckooing", location=estate),
            expect_alert=True,
        ),
        ScenarioReport(
            "Dog fouling and a dangerous dog",
            "kafka",
            rep(13, "ehs", 1.1, "Dog off the lead repeatedly fouling the communal garden", category="animal problems"),
            expect_alert=False,
        ),
        ScenarioReport(
            "Burglary at a pensioner's home",
            "http",
            rep(
                14,
                "police",
                1.2,
                "House burgled overnight, back door forced",
                victim={"name": "Ron Bell", "age": 81, "vulnerabilities": ["lives-alone"]},
            ),
            expect_alert=True,
        ),
        ScenarioReport(
            "Fireworks let off late at night",
            "kafka",
            rep(
                15, "fire", 1.3, "Fireworks let off in the street after midnight, dogs terrified", category="fireworks"
            ),
            expect_alert=False,
        ),
        ScenarioReport(
            "Begging outside the station",
            "http",
            rep(16, "csu", 1.4, "Persistent begging at the station entrance", category="begging"),
            expect_alert=False,
        ),
        ScenarioReport(
            "NHS: patient reports homophobic harassment",
            "kafka",
            rep(
                17,
                "nhs",
                1.5,
                "Patient says neighbours call him homophobic names every day",
                perceived_as_hate=True,
                victim={
                    "name": "Tom Harper",
                    "date_of_birth": "1985-09-09",
                    "vulnerabilities": ["mental-health", "fear-of-reprisal", "impact-on-daily-life"],
                },
            ),
            expect_alert=False,
            expect_panels=frozenset({Panel.VCSP}),
        ),
        ScenarioReport(
            "Car set on fire",
            "http",
            rep(18, "fire", 1.6, "Car deliberately set alight in the estate car park", location=estate),
            expect_alert=True,
        ),
        ScenarioReport(
            "Tenant harassed by neighbours, notice of possession served",
            "kafka",
            rep(
                19,
                "housing",
                1.7,
                "Tenant harassed by neighbours; notice of seeking possession already served",
                category="rowdy/nuisance neighbours",
                victim={"name": "Lena Novak", "date_of_birth": "1995-12-01"},
                tenancy={
                    "tenure": "council",
                    "tenancy_ref": "T-60231",
                    "tenant_role": "victim",
                    "possession": {"notice_of_seeking_possession": True},
                },
            ),
            expect_alert=True,  # harassment is violent-crime in police.uk terms
            expect_panels=frozenset({Panel.CCP}),
        ),
        ScenarioReport(
            "Vehicle nuisance: cars racing at night",
            "http",
            rep(20, "resident", 1.8, "Cars racing round the estate late at night", category="vehicle nuisance"),
            expect_alert=False,
        ),
    ]
