"""Per-detector evaluation defaults: public NER and PII datasets name the same
entities differently (CoNLL's ``LOC``, OntoNotes' ``GPE``, Presidio's
``LOCATION``), so gold labels are mapped to Mantlet's names before matching."""

from __future__ import annotations

from typing import Any

_PII_ALIASES = {
    "PER": "PERSON",
    "PERS": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "IBAN": "IBAN_CODE",
    "SSN": "US_SSN",
    "IP": "IP_ADDRESS",
}


def defaults_for(detector: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(detector options, gold-label aliases) used unless the caller overrides them."""
    if detector == "pii":
        return {"ner": "en"}, dict(_PII_ALIASES)
    return {}, {}
