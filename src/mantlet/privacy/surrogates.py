"""Surrogates: what a real value is replaced with.

``placeholder`` gives ``<PERSON_1>``-style tokens (unambiguous to restore, and
the model sees the entity type); ``fake`` gives a realistic value of the same
type and shape (a name, an e-mail, digits with the same separators, a card
that passes Luhn), derived from a keyed hash so it is stable and reveals
nothing. Either way a surrogate never equals text already in the input.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from enum import StrEnum

from mantlet.detectors.pii.validators import luhn_ok


class SurrogateStyle(StrEnum):
    PLACEHOLDER = "placeholder"
    FAKE = "fake"


_FIRST = (
    "Alex Sam Robin Jordan Casey Morgan Taylor Jamie Riley Avery Quinn Drew Emery Rowan Sasha "
    "Noel Kim Lee Dana Jules"
).split()
_LAST = (
    "Harper Ellison Marsh Whitfield Calder Brennan Lowell Hart Sutter Vance Ainsley Corbin "
    "Dalton Prescott Rowe Sterling Thorne Waverly Easton Fairley"
).split()
_PLACES = "Northbrook Eastvale Westmere Southport Lakeford Hillcrest Riverton Oakridge".split()
_STREETS = "Maple Cedar Willow Birch Elm Chestnut Juniper Alder Linden Hazel".split()
_STREET_TYPES = "Street Road Avenue Lane Way Close".split()
_ORGS = "Acme Corp|Globex Ltd|Initech|Umbrella Group|Vandelay Industries|Hooli|Stark & Co".split(
    "|"
)


def _stream(key: bytes, *parts: str) -> Callable[[int], int]:
    """Deterministic integers from HMAC(key, parts || counter)."""
    counter = [0]

    def draw(modulo: int) -> int:
        counter[0] += 1
        message = "\x1f".join((*parts, str(counter[0]))).encode("utf-8")
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") % modulo

    return draw


def format_preserving(value: str, key: bytes, salt: str = "") -> str:
    """Each digit becomes a keyed-random digit, each letter a letter of the
    same case; separators stay. Same key and value give the same output."""
    draw = _stream(key, "fpe", salt, value)
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(str(draw(10)))
        elif ch.isalpha() and ch.isascii():
            letter = chr(97 + draw(26))
            out.append(letter.upper() if ch.isupper() else letter)
        else:
            out.append(ch)
    return "".join(out)


def _fix_luhn(value: str) -> str:
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    chars = list(value)
    for d in range(10):
        chars[digits[-1]] = str(d)
        if luhn_ok("".join(chars[i] for i in digits)):
            break
    return "".join(chars)


def fake_value(kind: str, value: str, key: bytes, attempt: int) -> str:
    draw = _stream(key, "fake", kind, value, str(attempt))
    if kind == "PERSON":
        names = [_FIRST[draw(len(_FIRST))], _LAST[draw(len(_LAST))]]
        return " ".join(names[: max(1, min(2, len(value.split())))]) if " " in value else names[0]
    if kind == "LOCATION":
        return _PLACES[draw(len(_PLACES))]
    if kind == "ORGANIZATION":
        return _ORGS[draw(len(_ORGS))]
    if kind == "STREET_ADDRESS":
        # Letters scrambled in place would read as gibberish to the model; a
        # plain address of the same layout (with a town when the real one has
        # one) keeps the prompt natural.
        street = f"{draw(9900) + 100} {_STREETS[draw(len(_STREETS))]} "
        street += _STREET_TYPES[draw(len(_STREET_TYPES))]
        return f"{street}, {_PLACES[draw(len(_PLACES))]}" if "," in value else street
    if kind == "EMAIL_ADDRESS":
        return f"{_FIRST[draw(len(_FIRST))].lower()}.{_LAST[draw(len(_LAST))].lower()}@example.com"
    salt = f"{attempt}"
    if kind == "CREDIT_CARD":
        # Keep the network digit (4: Visa, 5: Mastercard, ...) so the fake still
        # reads as a card of that network; the rest is keyed-random, Luhn-valid.
        return _fix_luhn(value[0] + format_preserving(value, key, salt)[1:])
    return format_preserving(value, key, salt)


def placeholder(kind: str, number: int) -> str:
    return f"<{kind}_{number}>"
