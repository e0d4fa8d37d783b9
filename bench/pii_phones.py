"""Phone numbers from many countries, Mantlet against Presidio, on data we make.

The public span sets hold few phone numbers (92 in ``pii_presidio_synth``),
almost all from a handful of templates, so this bench generates its own:
Faker address blocks (name, address lines joined by two spaces, sometimes
the country) followed or preceded by a phone number in the locale's own
formats and a label (``office``, ``-Fax``, ``Phone:``, none, ...).

Two suites with different seeds: ``dev`` (26 locales, seed 11) is the one
the phone rule was tuned on, ``test`` (5 of those locales plus 23 others,
seed 99) was generated once afterwards and only scored. Faker's numbers are
random digits in each locale's format, so some are not valid under the
real numbering plan; both systems face the same texts.

    python bench/pii_phones.py [--per-locale 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from typing import Any

from mantlet.core.types import ScanContext
from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.evaluation.metrics import Span, span_report

DEV_LOCALES = (
    "en_US en_GB de_DE fr_FR it_IT es_ES pt_PT nl_NL hu_HU en_AU sv_SE pl_PL cs_CZ "
    "da_DK fi_FI en_IN en_IE de_AT de_CH el_GR ro_RO no_NO ja_JP pt_BR en_NZ en_CA"
).split()
TEST_LOCALES = (
    "en_US en_GB de_DE it_IT fr_FR tr_TR uk_UA he_IL id_ID es_MX es_AR sk_SK lt_LT "
    "hr_HR sl_SI zh_TW ko_KR th_TH fr_CH nl_BE fr_CA es_CO bg_BG lv_LV et_EE ka_GE hy_AM vi_VN"
).split()
SUITES = {"dev": (DEV_LOCALES, 11), "test": (TEST_LOCALES, 99)}
LABELS = (
    "office",
    "fax",
    "mobile",
    "Phone:",
    "tel.",
    "Office",
    "-Fax",
    "-Office",
    "call me on",
    "",
)


def generate(locales: list[str], seed: int, per_locale: int) -> list[dict[str, Any]]:
    from faker import Faker

    rng = random.Random(seed)
    rows = []
    for locale in locales:
        fake = Faker(locale)
        fake.seed_instance(seed)
        for _ in range(per_locale):
            name, address = fake.name(), fake.address().replace("\n", "  ")
            number = fake.phone_number()
            country = fake.current_country() if rng.random() < 0.5 else ""
            label = rng.choice(LABELS)
            style = rng.randrange(4)
            if label.startswith("-"):
                before, after = f"{name}  {address}  {country} ", f"{label} more text"
            elif label and style == 0:
                before, after = f"{name}  {address}  {country} {label} ", " thanks"
            elif label:
                before, after = f"{name}  {address}  {country} ", f" {label} and more"
            else:
                before, after = f"Write to {name}, {address} {country} or ", "."
            start = len(before)
            rows.append(
                {
                    "text": before + number + after,
                    "locale": locale,
                    "span": Span(start, start + len(number), "PHONE_NUMBER"),
                }
            )
    return rows


def mantlet() -> Any:
    detector, context = PiiDetector(PiiOptions(entities=["PHONE_NUMBER"])), ScanContext()

    def run(text: str) -> list[Span]:
        return [
            Span(f.start, f.end, f.kind)
            for f in detector.detect(text, context)
            if f.kind == "PHONE_NUMBER" and f.score >= 0.5
        ]

    return run


def presidio() -> Any:
    """Presidio's own phone recognizer (libphonenumber matcher, its default
    regions), patterns only, as in ``bench/pii.py``."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class OfflineEngine(SpacyNlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = OfflineEngine()
    engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])

    def run(text: str) -> list[Span]:
        found = analyzer.analyze(text=text, language="en", entities=["PHONE_NUMBER"])
        return [Span(r.start, r.end, "PHONE_NUMBER") for r in found]

    return run


def evaluate(rows: list[dict[str, Any]], predict: Any) -> dict[str, Any]:
    found = [predict(r["text"]) for r in rows]
    report = span_report([[r["span"]] for r in rows], found)
    per_locale: Counter[str] = Counter()
    for row, spans in zip(rows, found, strict=True):
        per_locale[row["locale"]] += row["span"] in spans
    out: dict[str, Any] = {}
    for mode in ("exact", "overlap"):
        micro = report[mode]["micro"]
        out[mode] = {k: round(micro[k], 3) for k in ("precision", "recall", "f1")}
    out["exact_hits_per_locale"] = dict(per_locale)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-locale", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    systems = {"mantlet": mantlet(), "presidio_patterns": presidio()}
    results: dict[str, Any] = {}
    for suite, (locales, seed) in SUITES.items():
        rows = generate(locales, seed, args.per_locale)
        results[suite] = {"texts": len(rows), "locales": len(locales)}
        for name, predict in systems.items():
            print(f"{suite}: {name} ...", file=sys.stderr)
            results[suite][name] = evaluate(rows, predict)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| suite | system | exact P / R / F1 | overlap F1 |")
    print("| --- | --- | --- | --- |")
    for suite, data in results.items():
        for name in systems:
            exact, overlap = data[name]["exact"], data[name]["overlap"]
            print(
                f"| {suite} ({data['texts']} texts, {data['locales']} locales) | {name} | "
                f"{exact['precision']:.3f} / {exact['recall']:.3f} / {exact['f1']:.3f} | "
                f"{overlap['f1']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
