"""Checks a PII candidate must pass after its pattern matched.

Patterns find things shaped like identifiers; checksums and range checks
reject most look-alikes (order numbers, random digit runs), which is what keeps
precision up. Each validator gets the matched value and returns a score
adjustment, or ``None`` to reject. National identifiers (NHS, BSN, PESEL,
NIR, Belgian national number, DNI/NIE, codice fiscale) are checked by
``python-stdnum``: their check digits come with birth dates and century codes
that a hand-written checksum skipped (it let through 2-6 % of random 11-digit
runs, stdnum 0.1-1.8 %). Card, IBAN and crypto checksums are a few lines each
and stay here; phone numbers use ``phonenumbers`` (Google's libphonenumber
metadata).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from stdnum.be import nn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel

from mantlet.detectors._re2 import compile_pattern

# A validator gets the matched value and the phone regions the text names
# (see ``regions_named``); only the phone check uses the latter.
Validator = Callable[[str, tuple[str, ...]], float | None]

_DIGITS = str.maketrans("", "", " -.()/")


def _checked(module: Any, value: str) -> float | None:
    """0.0 when python-stdnum's ``module`` accepts ``value``, else None."""
    return 0.0 if module.is_valid(value) else None


def digits_of(value: str) -> str:
    return value.translate(_DIGITS)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Issuer prefixes (IIN ranges) of the card networks in use; a Luhn-valid run
# of digits that starts with none of them is not a payment card.
_CARD_PREFIXES = (
    ("4", (13, 16, 19)),  # Visa
    ("34", (15,)),  # Amex
    ("37", (15,)),
    ("30", (14, 16)),  # Diners
    ("36", (14, 16)),
    ("38", (14, 16)),
    ("35", (16, 17, 18, 19)),  # JCB
    ("1800", (15,)),
    ("2131", (15,)),
    ("6011", (16, 19)),  # Discover
    ("65", (16, 19)),
    ("64", (16, 19)),
    ("62", (16, 17, 18, 19)),  # UnionPay
    ("5", (16,)),  # Mastercard 51-55, Maestro 50, 56-59
    ("2", (16,)),  # Mastercard 2221-2720
    ("50", (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("56", (12, 13, 14, 15, 16, 17, 18, 19)),
    ("57", (12, 13, 14, 15, 16, 17, 18, 19)),
    ("58", (12, 13, 14, 15, 16, 17, 18, 19)),
    ("6", (12, 13, 14, 15, 16, 17, 18, 19)),
)


def credit_card(value: str) -> float | None:
    number = digits_of(value)
    if not number.isdigit() or not 12 <= len(number) <= 19 or len(set(number)) < 2:
        return None
    if not luhn_ok(number):
        return None
    for prefix, lengths in _CARD_PREFIXES:
        if number.startswith(prefix) and len(number) in lengths:
            return 0.0
    return None


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban(value: str) -> float | None:
    """ISO 13616: country length, then mod-97 of the rearranged number is 1."""
    code = value.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(code[:2]) != len(code) or not code.isalnum():
        return None
    rearranged = code[4:] + code[:4]
    as_number = "".join(str(int(ch, 36)) for ch in rearranged)
    return 0.0 if int(as_number) % 97 == 1 else None


def us_ssn(value: str) -> float | None:
    number = digits_of(value)
    if len(number) != 9 or not number.isdigit():
        return None
    area, group, serial = number[:3], number[3:5], number[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    if len(set(number)) == 1 or number in ("123456789", "078051120", "219099999"):
        return None
    return 0.0


def ip_v4(value: str) -> float | None:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return None
    # Loopback and unspecified addresses identify nobody.
    return None if address.is_loopback or address.is_unspecified else 0.0


def ip_v6(value: str) -> float | None:
    if value.count(":") < 2 or sum(c.isalnum() for c in value) < 4:
        return None
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return None if address.is_loopback or address.is_unspecified else 0.0


def mac(value: str) -> float | None:
    if "." in value:
        return 0.0
    separators = {value[i] for i in range(2, len(value), 3)}
    if len(separators) != 1:
        return None
    if value.replace(value[2], "").lower() in ("000000000000", "ffffffffffff"):
        return None
    return 0.0


_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def uk_nino(value: str) -> float | None:
    return None if value[:2].upper() in _NINO_BAD_PREFIXES else 0.0


def uk_nhs(value: str) -> float | None:
    number = digits_of(value)
    return _checked(nhs, number) if len(set(number)) > 1 else None


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def btc_base58(value: str) -> float | None:
    """Base58Check: the last four bytes are the double-SHA-256 of the rest."""
    number = 0
    for ch in value:
        index = _B58.find(ch)
        if index < 0:
            return None
        number = number * 58 + index
    raw = number.to_bytes(25, "big") if number < 1 << 200 else b""
    if len(raw) != 25:
        return None
    digest = hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()
    return 0.0 if digest[:4] == raw[-4:] else None


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def btc_bech32(value: str) -> float | None:
    """BIP-173 / BIP-350 checksum (bech32 or bech32m)."""
    value = value.lower()
    hrp, _, data = value.rpartition("1")
    if hrp != "bc" or len(data) < 6 or any(c not in _BECH32 for c in data):
        return None
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32.index(c) for c in data]
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for v in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            checksum ^= generator[i] if (top >> i) & 1 else 0
    return 0.0 if checksum in (1, 0x2BC830A3) else None


def eth_address(value: str) -> float | None:
    body = value[2:]
    return None if len(set(body.lower())) < 4 else 0.0


def es_dni(value: str) -> float | None:
    """Spanish DNI (8 digits) or NIE (X/Y/Z and 7 digits), then the letter."""
    code = value.replace("-", "").upper()
    return _checked(nie if code[:1] in ("X", "Y", "Z") else dni, code)


def it_fiscal_code(value: str) -> float | None:
    """Italian codice fiscale: check character and a real birth date."""
    return _checked(codicefiscale, value.upper())


def nl_bsn(value: str) -> float | None:
    """Dutch BSN: the eleven test."""
    number = digits_of(value)
    return _checked(bsn, number) if len(set(number)) > 1 else None


def pl_pesel(value: str) -> float | None:
    """PESEL: check digit and a real birth date (century in the month)."""
    return _checked(pesel, value) if len(set(value)) > 1 else None


def fr_nir(value: str) -> float | None:
    """French social security number (NIR): key = 97 - number mod 97."""
    return _checked(nir, value.replace(" ", "").upper())


def be_national_number(value: str) -> float | None:
    """Belgian national register number: mod-97 key (a leading 2 for people
    born from 2000) and a possible birth date."""
    return _checked(nn, digits_of(value))


def icao_check_digit(value: str) -> float | None:
    """ICAO 9303 check digit (weights 7, 3, 1), used by German identity cards
    and passports: nine characters then the check digit."""
    code = value.upper()
    if len(code) != 10 or not code[-1].isdigit():
        return None
    total = 0
    for ch, w in zip(code[:9], (7, 3, 1) * 3, strict=True):
        n = int(ch) if ch.isdigit() else ord(ch) - 55
        total += n * w
    return 0.0 if total % 10 == int(code[-1]) else None


_CALENDAR_WORDS = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec spring summer fall autumn winter "
    "monday tuesday wednesday thursday friday saturday sunday christmas easter week weeks "
    "day days year years chapter page section verse level round episode season".split()
)
_STREET_ENDINGS = (
    "straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "ring", "laan", "straat",
    "gracht", "plein", "katu", "tie", "vej", "gade", "gatan", "vägen", "gate", "veien", "utca",
    "ulica", "ul.", "põik", "tänav", "iela", "gatvė", "cesta", "ulice", "náměstí",
)  # fmt: skip
_STREET_FIRST = frozenset(
    "rue avenue av. avenida avda. calle via viale corso piazza rua praça plaza chemin "
    "boulevard bd al. aleja ul. plac".split()
)


def street_name(value: str) -> float | None:
    """The European shape "Name 12" ("Tjalling Harkeswei 125", "Rue de
    Piétrain 371") also fits dates and counts in prose ("September 2011",
    "India made 218", "Over the years 29"). A street-type word anywhere
    accepts; otherwise a calendar word first or last ("Show in January
    2011"), a lower-case word before the number, or one word and a year-like
    number rejects."""
    *words, number = value.split()
    if not words:
        return None
    lowered = [w.lower() for w in words]
    if {lowered[0].rstrip(".,"), lowered[-1].rstrip(".,")} & _CALENDAR_WORDS:
        return None
    if lowered[0] in _STREET_FIRST or any(w.endswith(_STREET_ENDINGS) for w in lowered):
        return 0.0
    if not words[-1][:1].isupper():
        return None
    if len(words) == 1 and number.isdigit() and 1800 <= int(number) <= 2099:
        return None
    return 0.0


def date_value(value: str) -> float | None:
    """Rejects numeric dates that are on no calendar (month 13, 31 February),
    read day first or month first, a two-digit year in either century."""
    parts = [p for p in value.replace(".", "/").replace("-", "/").split("/") if p]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return 0.0  # written-out month: the pattern already constrains it
    numbers = [int(p) for p in parts]
    if len(parts[0]) == 4:
        readings = [tuple(numbers)]
    else:
        a, b, year = numbers
        readings = [(year, a, b), (year, b, a)]
    for year, month, day in readings:
        if year >= 100 and not 1900 <= year <= 2100:
            continue
        for full in (year,) if year >= 100 else (1900 + year, 2000 + year):
            with contextlib.suppress(ValueError):
                datetime.date(full, month, day)
                return 0.0
    return None


# Python's `re` on one bounded candidate (a phone number is at most ~30 characters).
_ISO_DATE = re.compile(r"(?:19|20)\d{2}-[01]\d-[0-3]\d")

# Regions tried for numbers written without a country code; order matters
# only for speed (the first region where the number is valid wins).
_REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "AU", "CA", "IN", "IE", "PL", "SE")


# Portuguese and Brazilian postal codes ("2316-901", "44126-258") have a
# phone's digit count; no numbering plan writes a number in this shape.
_POSTCODE = re.compile(r"\d{4,5}-\d{3}$|\d{5}-\d{4}$")
# "1/14/1961", "14.01.1961": a date, not a number to dial.
_DATE_SHAPE = re.compile(r"\d{1,2}([./-])\d{1,2}\1(?:19|20)?\d{2}$")
# "2024.11.25.1432", "2023-05-17 ...": a date first, then a build or time.
_DATE_PREFIX = re.compile(
    r"(?:19|20)\d{2}([./-])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?:\D|$)"
)
# "1914-1922", "1992 1996 1997": a range or run of years.
_YEARS = re.compile(r"(?:(?:1[5-9]|20)\d{2}[ –/-]{1,3})+(?:1[5-9]|20)\d{2}$")
# "11111111", "6000000": one digit repeated, or a round number.
_ROUND = re.compile(r"(\d)\1+$|[1-9]0{5,}$")
_NOT_PHONES = (_ISO_DATE, _POSTCODE, _DATE_SHAPE, _DATE_PREFIX, _YEARS, _ROUND)


def _number_shape(number: str) -> bool:
    """A version ("10.0.19041.1234", "2.14.1-2023.05.17"): dotted, with a
    group after the first of a single digit. Dotted phone numbers keep two
    or more digits a group ("415.555.0132", "03.93.92.16.85"), except right
    after a country code ("+61.3.0432.0171"), which a version never has."""
    if "." not in number or number.lstrip().startswith(("+", "00")):
        return False
    groups = re.split(r"[.-]", number.strip())
    return any(len(g) == 1 for g in groups[1:] if g.isdigit())


def phone(value: str, named: tuple[str, ...] = ()) -> float | None:
    """Valid somewhere (libphonenumber metadata): +0.2 with a country code,
    +0.15 when valid in a country the text names, +0.1 in a common region;
    only possible (right length) scores the row's base; neither rejects."""
    import phonenumbers  # deferred: its metadata is a large import

    number, _, _ = value.partition("x")
    number = number.partition("ext")[0]
    digits = sum(c.isdigit() for c in number)
    if not 7 <= digits <= 15 or any(p.match(number) for p in _NOT_PHONES):
        return None
    if _number_shape(number):
        return None
    if value.startswith("(+"):  # "(+358) 40 1234567"
        value = value[1:].replace(")", "", 1)
    if value.lstrip().startswith(("+", "00")):
        # "+44 (0)20 7946 0958": the national trunk prefix in parentheses is
        # dialled only from inside the country; libphonenumber wants it gone.
        international = value.replace("(0)", "", 1)
        try:
            parsed = phonenumbers.parse(
                international.replace("00", "+", 1)
                if international.startswith("00")
                else international
            )
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(parsed):
            return 0.2
        return 0.0 if phonenumbers.is_possible_number(parsed) else None
    possible = False
    for region in (*named, *_REGIONS):
        try:
            parsed = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return 0.15 if region in named else 0.1
        possible = possible or phonenumbers.is_possible_number(parsed)
    return 0.0 if possible else None


def _value_only(check: Callable[[str], float | None]) -> Validator:
    return lambda value, _named: check(value)


@functools.cache
def _country_regions() -> tuple[dict[str, str], Any]:
    """English country names (libphonenumber's geocoding data, so no table of
    our own to keep current) plus common short forms, and one RE2 pattern
    that finds them all in a single pass."""
    import phonenumbers
    from phonenumbers import geocoder

    names = {
        "usa": "US",
        "u.s.": "US",
        "u.s.a.": "US",
        "uk": "GB",
        "england": "GB",
        "scotland": "GB",
        "wales": "GB",
        "great britain": "GB",
    }
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        if name:
            names[name.lower()] = region
    alternation = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return names, compile_pattern(rf"\b(?:{alternation})\b", ignore_case=True)


def regions_named(text: str) -> tuple[str, ...]:
    """Phone regions of the countries a text mentions ("... Pietersburg,
    South Africa, 082 490 1693"), so national-format numbers can be checked
    against the right numbering plan; first mention first."""
    names, pattern = _country_regions()
    found: dict[str, None] = {}
    for match in pattern.finditer(text):
        found[names[match.group().lower()]] = None
    return tuple(found)


VALIDATORS: dict[str, Validator] = {
    "credit_card": _value_only(credit_card),
    "iban": _value_only(iban),
    "us_ssn": _value_only(us_ssn),
    "ip_v4": _value_only(ip_v4),
    "ip_v6": _value_only(ip_v6),
    "mac": _value_only(mac),
    "uk_nino": _value_only(uk_nino),
    "uk_nhs": _value_only(uk_nhs),
    "btc_base58": _value_only(btc_base58),
    "btc_bech32": _value_only(btc_bech32),
    "eth_address": _value_only(eth_address),
    "es_dni": _value_only(es_dni),
    "it_fiscal_code": _value_only(it_fiscal_code),
    "nl_bsn": _value_only(nl_bsn),
    "pl_pesel": _value_only(pl_pesel),
    "fr_nir": _value_only(fr_nir),
    "be_national_number": _value_only(be_national_number),
    "icao_check_digit": _value_only(icao_check_digit),
    "date_value": _value_only(date_value),
    "street_name": _value_only(street_name),
    "phone": phone,
}
