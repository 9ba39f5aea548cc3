"""The CDS Services labinterp offers and their prefetch templates, derived from the loaded knowledge (the codes of
analytes.csv / genotype codes / genomics.toml, the output systems): the discovery document of `GET /cds-services`.

Prefetch keys (the same names in every service that needs them):
- `patient`: the Patient (age and sex: eGFR, age bands, the child rules);
- `labs`: Observations by the codes labinterp recognizes for the service's analytes;
- `genotypes`: genotype and variant Observations (Genomics Reporting IG codes and a site's genotype codes);
- `laboratory`: every laboratory Observation: labinterp also recognizes results by name (a linezolid level under a
  laboratory's local code, a genotype named by gene or rsID), which no code search can select;
- `medicationRequests`, `medicationStatements`, `medicationAdministrations`: the medications (linezolid doses and
  regimen, rifampicin, magnesium-lowering drugs, digoxin). Medications referenced by `medicationReference` are read
  from the reference's display when the Medication is not in the data (prefetch allows no `_include`).

Every template uses only what CDS Hooks 2.0 recommends: a read, `patient=`, token equality and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labinterp.knowledge import Knowledge

PATIENT = "{{context.patientId}}"
RENAL = ("creatinine", "egfr", "creatinine_clearance", "weight")
LINEZOLID_ANALYTES = ("linezolid", "linezolid_mic", *RENAL)
MAGNESIUM_ANALYTES = ("magnesium", *RENAL, "potassium", "calcium_total", "calcium_ionized", "urine_magnesium", "urine_creatinine")
USAGE = (
    "Every call carries a JWT signed (ES384 or RS384) by an issuer trusted in LABINTERP_CDS_ISSUERS, its aud the URL "
    "called. Prefetch every template, or send fhirServer (one of LABINTERP_CDS_FHIR_SERVERS) with fhirAuthorization so "
    "the service fetches what is missing; otherwise 412. Decision support for clinicians and pharmacists: every card "
    "states its basis and source; nothing is ordered or changed without the clinician."
)


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    domain: str  # "patient" | "linezolid" | "magnesium": which cards it gives
    prefetch: dict[str, str] = field(default_factory=dict)

    @property
    def order_hook(self) -> bool:
        return self.hook in ("order-select", "order-sign")

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": USAGE,
        }


def _codes(k: Knowledge, analytes: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(f"{c.system}|{c.code}" for c in k.analyte_codes if c.analyte in analytes))


def genotype_codes(k: Knowledge) -> list[str]:
    loinc = k.output.systems["loinc"]
    codes = [f"{loinc}|{k.genomics.codes['genotype']}", f"{loinc}|{k.genomics.codes['variant']}"]
    if "haplotype" in k.genomics.codes:
        codes.append(f"{loinc}|{k.genomics.codes['haplotype']}")
    codes += [f"{g.system}|{g.code}" for g in k.genotype_codes]
    return list(dict.fromkeys(codes))


def prefetch_templates(k: Knowledge, analytes: tuple[str, ...], genotypes: bool) -> dict[str, str]:
    templates = {"patient": f"Patient/{PATIENT}"}
    codes = _codes(k, analytes)
    if codes:
        templates["labs"] = f"Observation?patient={PATIENT}&code={','.join(codes)}"
    if genotypes:
        templates["genotypes"] = f"Observation?patient={PATIENT}&code={','.join(genotype_codes(k))}"
    templates["laboratory"] = f"Observation?patient={PATIENT}&category={k.output.systems['observation_category']}|laboratory"
    for key, rtype in (
        ("medicationRequests", "MedicationRequest"),
        ("medicationStatements", "MedicationStatement"),
        ("medicationAdministrations", "MedicationAdministration"),
    ):
        templates[key] = f"{rtype}?patient={PATIENT}"
    return templates


def catalog(k: Knowledge) -> dict[str, CdsService]:
    """The services by id."""
    everything = tuple(dict.fromkeys((*LINEZOLID_ANALYTES, *MAGNESIUM_ANALYTES)))
    lz = prefetch_templates(k, LINEZOLID_ANALYTES, genotypes=True)
    mg = prefetch_templates(k, MAGNESIUM_ANALYTES, genotypes=False)
    services = [
        CdsService(
            "labinterp-patient-view",
            "patient-view",
            "labinterp: latest laboratory interpretations",
            "The latest linezolid trough (TDM advice), serum magnesium, renal function (eGFR) and pharmacogenetic "
            "(CYP3A5, CYP3A4*22, POR*28, ABCB1) interpretations of the patient, with linezolid exposure risk, as cards.",
            "patient",
            prefetch_templates(k, everything, genotypes=True),
        ),
    ]
    for hook, when in (("order-select", "selected"), ("order-sign", "about to be signed")):
        services.append(
            CdsService(
                f"labinterp-linezolid-{hook}",
                hook,
                f"labinterp: linezolid order ({hook})",
                f"When a linezolid order is {when}: the genotype-, age- and renal-based risk of under- and overexposure "
                "before the first dose, when to draw the first trough (with a suggestion to order it), or the current TDM "
                "advice when a trough exists.",
                "linezolid",
                lz,
            )
        )
        services.append(
            CdsService(
                f"labinterp-magnesium-{hook}",
                hook,
                f"labinterp: magnesium-lowering drug order ({hook})",
                f"When an order for a drug that lowers serum magnesium is {when} and the latest serum magnesium is low: a "
                "warning naming the drug class, the magnesium result and its guidance.",
                "magnesium",
                mg,
            )
        )
    return {s.id: s for s in services}


def discovery(services: dict[str, CdsService]) -> dict[str, Any]:
    return {"services": [s.discovery() for s in services.values()]}
