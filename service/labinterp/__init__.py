"""labinterp: interprets linezolid troughs, magnesium, renal function and pharmacogenetic
genotypes from FHIR R4 resources and composes DiagnosticReport, RiskAssessment and Provenance."""

__version__ = "0.1.0"
