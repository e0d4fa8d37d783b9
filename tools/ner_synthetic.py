"""Generated training sentences for the NER model (used by ``tools/train_ner.py``).

The shippable span sets are small (about 750 presidio sentences from 100
templates, 840 wikigold sentences), and news-trained models miss foreign
names, upper-case town names in address blocks and start-up style company
names. This module writes sentences of its own: templates written for
Mantlet (chat requests, support tickets, CRM notes, forms, e-mail signatures,
address blocks, short bios) filled with values from ``Faker`` (MIT) in many
locales, with exact character spans.

Labels are the model's own: PERSON, GPE (cities, regions, countries), ORG,
and ADDRESS for a whole postal address, so that a town inside an address is
part of the address and not a place of its own. Deterministic for a seed and
a fixed PYTHONHASHSEED (some Faker providers draw from sets, whose order
follows the hash seed).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

Span = tuple[int, int, str]

LOCALES = (
    "en_US", "en_GB", "en_IE", "en_AU", "en_IN", "en_CA", "de_DE", "de_AT", "de_CH",
    "fr_FR", "fr_CH", "es_ES", "es_MX", "it_IT", "nl_NL", "nl_BE", "sv_SE", "da_DK",
    "no_NO", "fi_FI", "pl_PL", "cs_CZ", "sk_SK", "hu_HU", "pt_PT", "pt_BR", "ro_RO",
    "hr_HR", "sl_SI", "et_EE", "lt_LT", "lv_LV", "tr_TR", "el_GR", "is_IS", "ga_IE",
)  # fmt: skip

# Company shapes beyond Faker's surname-based ones: single-word and
# two-word start-up names, the kind a news-trained model calls a person.
_STARTUP_HEADS = (
    "Bright", "Clear", "Data", "Fin", "Geo", "Green", "Health", "Info", "Insight", "Kinetic",
    "Lumen", "Metri", "Nimbus", "Open", "Pay", "Quant", "Rapid", "Signal", "Smart", "Solar",
    "Terra", "Trans", "True", "Verda", "Vita", "Wave", "Zen", "Civic", "Blue", "Cloud",
)  # fmt: skip
_STARTUP_TAILS = (
    "path", "ly", "wise", "stack", "grid", "sense", "flow", "loop", "nest", "forge", "hub",
    "link", "scope", "mint", "works", "base", "point", "lab", "io", "ify", "era", "ware",
)  # fmt: skip
_STARTUP_SECOND = (
    "Analytics", "Labs", "Technologies", "Systems", "Research", "Capital", "Health",
    "Energy", "Logistics", "Software", "Networks", "Partners", "Media", "Robotics", "Bio",
)  # fmt: skip

# (template, slots) -- {P} person, {F} first name, {L} last name, {C} city,
# {K} country, {O} organization, {A} address. Plain {D}/{N} are unlabelled
# fillers (a date, a number).
TEMPLATES = (
    "Hi, my name is {P} and I work for {O} in {C}.",
    "Please send the contract to {P} at {O}.",
    "Can you draft a reply to {P}? She asked about the invoice from {O}.",
    "Can you summarize the call I had with {P} from {O} yesterday?",
    "{P} will join the meeting from our {C} office.",
    "Customer: {P}\nCompany: {O}\nCity: {C}\nCountry: {K}",
    "Name: {P}\nEmployer: {O}\nShipping address: {A}",
    "Ship the parcel to {P}, {A}.",
    "Our new office is at {A}.",
    "The package was returned from {A} because {P} had moved.",
    "Please update my address to {A}.",
    "{P}\n{O}\n{A}",
    "Best regards,\n{P}\nHead of Sales, {O}\n{C}, {K}",
    "Thanks, {F}! I'll forward this to {P} in {C}.",
    "Ticket #{N}: {P} reports that the {O} portal rejects her login since {D}.",
    "Note: spoke with {F} {L} ({O}) about renewing the licence for the {C} team.",
    "I met {P} at a conference in {C} last year; she now runs {O}.",
    "{O} has opened a branch in {C} and hired {P} to lead it.",
    "Is {O} still headquartered in {C}, {K}?",
    "What's the weather like in {C} this weekend? {F} and I are driving up.",
    "Translate this for {P}: the shipment to {K} is delayed.",
    "Dear {P}, thank you for your order with {O}.",
    "Dear Mr. {L}, your appointment in {C} is confirmed for {D}.",
    "Dear Ms. {L}, we received your application to {O}.",
    "{P} was born in {C}, {K} and studied there before joining {O}.",
    "Flight from {C} to {C2} booked for {P}.",
    "Reminder: {F} needs the slides before the {O} review on {D}.",
    "Why did {P} leave {O}?",
    "write an email to {F} telling them the {C} trip is cancelled",
    "My manager {P} asked me to compare {O} and {O2} for the {C} project.",
    "{O} and {O2} announced a merger on {D}.",
    "Invoice {N} from {O}, {A}, is overdue.",
    "Send the signed form to {O}, attention {P}, {A}",
    "Contact person: {P} (phone on file). Site: {C}, {K}.",
    "{P} has been with {O} since {D} and is based in {C}.",
    "The delivery driver could not find {A}; please call {F}.",
    "Please book a table for {F} {L} near {A}.",
    "Who is the CEO of {O}?",
    "Tell {F} that {P2} from {O} called twice.",
    "Forward this to {P} and {P2} in the {C} office.",
    "Employee {P} transferred from {C} to {C2} on {D}.",
    "Registered office: {O}, {A}, {K}",
    "Hello {F}, could you check whether {O} paid the invoice?",
    "Interview notes - candidate {P}, currently at {O}, relocating from {K}.",
    "{L} said the {O} account in {C} needs attention.",
    "Patient {P}, resident of {C}, was referred by Dr. {L}.",
    "{P} ({C}) wrote: the product from {O} stopped working.",
    "Do you know a good lawyer in {C}? {P} recommended {O}.",
    "Billing address\n{P}\n{A}",
    "From: {P} <redacted>\nTo: support@{D2}\nSubject: refund for my {O} order",
)


def _startup(rnd: random.Random) -> str:
    head = rnd.choice(_STARTUP_HEADS)
    if rnd.random() < 0.5:
        return head + rnd.choice(_STARTUP_TAILS)
    return f"{head}{rnd.choice(_STARTUP_TAILS)} {rnd.choice(_STARTUP_SECOND)}"


def _person(fake: Any, rnd: random.Random) -> str:
    roll = rnd.random()
    if roll < 0.15:
        return f"{fake.first_name()} {rnd.choice('ABCDEFGHJKLMNPRSTW')}. {fake.last_name()}"
    if roll < 0.25:
        return fake.last_name()
    if roll < 0.3:
        return fake.first_name()
    return f"{fake.first_name()} {fake.last_name()}"


def _address(fake: Any, rnd: random.Random, city: str) -> str:
    street = fake.street_address().replace("\n", " ")
    postcode = fake.postcode()
    roll = rnd.random()
    if roll < 0.35:
        return f"{street}, {postcode} {city}"
    if roll < 0.6:
        return f"{street}\n{city} {postcode}"
    if roll < 0.8:
        return f"{street}, {city.upper()}, {fake.country()}"
    return f"{street}, {city}"


def _values(fake: Any, english: Any, rnd: random.Random) -> dict[str, tuple[str, str | None]]:
    city = fake.city()
    if rnd.random() < 0.08:
        city = city.upper()
    country = fake.country() if rnd.random() < 0.3 else english.country()
    org = fake.company() if rnd.random() < 0.55 else _startup(rnd)
    return {
        "P": (_person(fake, rnd), "PERSON"),
        "P2": (_person(fake, rnd), "PERSON"),
        "F": (fake.first_name(), "PERSON"),
        "L": (fake.last_name(), "PERSON"),
        "C": (city, "GPE"),
        "C2": (fake.city(), "GPE"),
        "K": (country, "GPE"),
        "O": (org, "ORG"),
        "O2": (fake.company() if rnd.random() < 0.5 else _startup(rnd), "ORG"),
        "A": (_address(fake, rnd, fake.city()), "ADDRESS"),
        "D": (fake.date(), None),
        "D2": (fake.domain_name(), None),
        "N": (str(rnd.randint(1000, 999999)), None),
    }


_SLOT = re.compile(r"\{([A-Z]+\d?)\}")


def fill(template: str, values: dict[str, tuple[str, str | None]]) -> tuple[str, list[Span]]:
    """The template with its slots filled, and the labelled spans."""
    parts: list[str] = []
    spans: list[Span] = []
    at = 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[at : match.start()]
        parts.append(literal)
        length += len(literal)
        value, label = values[match.group(1)]
        if label is not None:
            spans.append((length, length + len(value), label))
        parts.append(value)
        length += len(value)
        at = match.end()
    parts.append(template[at:])
    return "".join(parts), spans


def _filled(count: int, seed: int) -> Iterator[tuple[int, random.Random, dict[str, Any]]]:
    """Slot values for ``count`` sentences, each from a random locale's Faker,
    with the random source the caller goes on drawing from."""
    from faker import Faker

    rnd = random.Random(seed)
    english = Faker("en_US")  # country names as most users write them
    english.seed_instance(seed)
    fakers: dict[str, Any] = {}
    for index in range(count):
        locale = rnd.choice(LOCALES)
        fake = fakers.get(locale)
        if fake is None:
            fake = fakers[locale] = Faker(locale)
            fake.seed_instance(seed + len(fakers))
        yield index, rnd, _values(fake, english, rnd)


def generate(count: int, seed: int) -> Iterator[tuple[str, list[Span]]]:
    """``count`` sentences with spans, the same ones for the same seed."""
    for index, rnd, values in _filled(count, seed):
        template = TEMPLATES[index % len(TEMPLATES)]
        text, spans = fill(template, values)
        lowered = text.lower()
        # Chat users who never press shift; not where lower() changes the
        # length ("İ" becomes two characters) and would move the spans.
        if rnd.random() < 0.04 and len(lowered) == len(text):
            text = lowered
        yield text, spans


# Technical chat: languages, frameworks, tools, formats and algorithms named
# after people are not names, places or organizations to redact, yet a
# news-trained model calls "JavaScript" an organization and "Python" a place.
# Written for Mantlet from general knowledge; every value here is unlabelled,
# and some templates also carry real entity slots so that names next to
# technical words are still learnt as names.
_TECH = {
    "LANG": (
        "Python", "JavaScript", "TypeScript", "Java", "C", "C++", "C#", "Go", "Rust", "Ruby",
        "PHP", "Kotlin", "Swift", "Scala", "Haskell", "Perl", "R", "MATLAB", "Julia", "Bash",
        "PowerShell", "Lua", "Dart", "Elixir", "Clojure", "F#", "Fortran", "COBOL", "SQL",
        "Objective-C", "Groovy", "OCaml", "Erlang", "Zig", "Prolog", "Lisp", "Scheme",
    ),
    "FW": (
        "Django", "Flask", "FastAPI", "React", "Vue", "Angular", "Svelte", "Node.js", "Express",
        "Spring Boot", "Rails", "Laravel", ".NET", "ASP.NET", "Next.js", "Pandas", "NumPy",
        "TensorFlow", "PyTorch", "Keras", "scikit-learn", "jQuery", "Bootstrap", "Tailwind",
        "Redux", "GraphQL", "gRPC", "Qt", "Unity", "Electron",
    ),
    "TOOL": (
        "Docker", "Kubernetes", "Git", "Jenkins", "Terraform", "Ansible", "Nginx", "Kafka",
        "RabbitMQ", "Redis", "Elasticsearch", "Webpack", "Vite", "npm", "pip", "Maven",
        "Gradle", "CMake", "Vim", "Emacs", "Jupyter", "Postman", "Selenium", "Airflow", "Spark",
        "Hadoop", "Prometheus", "Grafana", "Helm", "Celery",
    ),
    "DB": (
        "PostgreSQL", "MySQL", "SQLite", "MongoDB", "Cassandra", "DynamoDB", "MariaDB", "Neo4j",
        "ClickHouse", "CouchDB",
    ),
    "FMT": (
        "CSV", "JSON", "XML", "YAML", "TOML", "HTML", "PDF", "Excel", "Parquet", "Markdown",
        "INI", "Protobuf", "SVG", "PNG",
    ),
    "ALGO": (
        "Fibonacci", "factorial", "GCD", "LCM", "Collatz", "Pascal's triangle", "Dijkstra",
        "Levenshtein distance", "Euclidean distance", "quicksort", "merge sort", "bubble sort",
        "Newton's method", "Monte Carlo", "Kruskal", "Prim's algorithm", "Huffman coding",
        "Bellman-Ford", "Floyd-Warshall", "Fourier transform", "Gaussian elimination",
    ),
    "UNIT": ("Celsius", "Fahrenheit", "Kelvin"),
    "VERB": (
        "Write", "Create", "Develop", "Design", "Implement", "Build", "Explain", "Describe",
        "Identify", "Debug", "Refactor", "Optimize", "Generate", "Construct", "List",
        "Summarize", "Classify", "Rewrite", "Evaluate", "Compare", "Analyze", "Suggest", "Find",
        "Calculate", "Determine", "Outline", "Edit", "Convert", "Test", "Document",
    ),
}  # fmt: skip
TECH_TEMPLATES = (
    "{VERB} a {LANG} function that returns the {ALGO} of a number.",
    "How do I parse {FMT} in {LANG}?",
    "{VERB} a {LANG} script that reads a {FMT} file and prints every row.",
    "Convert this {FMT} file to {FMT2} with {LANG}.",
    "Why does my {FW} app crash when it calls the API?",
    "Explain the difference between {LANG} and {LANG2}.",
    "My {DB} query is slow; how do I add an index?",
    "{VERB} how {TOOL} handles retries.",
    "In {LANG}, how do I sort a list of records by date?",
    "Compute the {ALGO} sequence up to n in {LANG}.",
    "Convert {N} degrees {UNIT} to {UNIT2}.",
    "{VERB} the bug in this {LANG} code, it never terminates.",
    "Create a REST API in {FW} that stores users in {DB}.",
    "Set up {TOOL} to build the {FW} project on every push.",
    "{VERB} {ALGO} in {LANG} without recursion.",
    "Is {DB} or {DB2} better for time series?",
    "{VERB} a unit test for the {FW} view that returns {FMT}.",
    "Translate this {LANG} snippet to {LANG2}.",
    "What does this {TOOL} error mean: connection refused?",
    "{VERB} a {FW} component that renders a table from {FMT}.",
    "Write a {LANG} class for a bank account owned by {P}.",
    "{P} asked me to port our {FW} service from {LANG} to {LANG2}.",
    "Send the {FMT} export from {DB} to {P} at {O}.",
    "{F} wrote the {TOOL} config; can you review it?",
    "Our team at {O} in {C} is migrating from {DB} to {DB2}.",
)


def generate_tech(count: int, seed: int) -> Iterator[tuple[str, list[Span]]]:
    """``count`` technical chat sentences with spans (most have none)."""
    for index, rnd, values in _filled(count, seed):
        for slot, choices in _TECH.items():
            first, second = rnd.sample(choices, 2)
            values[slot] = (first, None)
            values[f"{slot}2"] = (second, None)
        text, spans = fill(TECH_TEMPLATES[index % len(TECH_TEMPLATES)], values)
        yield text, spans
