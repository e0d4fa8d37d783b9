"""Checks a secret candidate must pass after its pattern matched.

Patterns find things shaped like credentials; these functions reject the ones
that are plainly not (variable references, English words, paths) and adjust
confidence. Each returns a score adjustment, or ``None`` to reject. Every rule
also goes through ``is_placeholder`` first, unless its row opts out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Python's `re` is safe here: these run on one already-bounded candidate
# (at most a few hundred characters), never on the whole input.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_SPLIT = re.compile(r"[_.\-\s]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED_REFERENCE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+")
_REPEATED_RUN = re.compile(r"(.)\1{5,}")

_PLACEHOLDER_MARKERS = (
    "xxxx",
    "****",
    "....",
    "<",
    ">",
    "${",
    "{{",
    "}}",
    "%s",
    "%(",
    "$(",
    "example",
    "sample",
    "dummy",
    "placeholder",
    "changeme",
    "change_me",
    "redacted",
    "your_",
    "your-",
    "yourkey",
    "yourpassword",
    "fakekey",
    "fake_",
    "insert_",
    "replace_me",
    "replaceme",
)
_PLACEHOLDER_PATTERN = re.compile("|".join(re.escape(m) for m in _PLACEHOLDER_MARKERS))
_CLASS_PATTERNS = tuple(re.compile(p) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
# Values that are words of the surrounding language, not secrets.
_STOP_VALUES = frozenset(
    """true false yes no on off null none nil undefined empty required optional
    string str text int integer bool boolean number object array list dict
    self this password passwd passphrase pass pwd secret token key apikey
    api_key value default hidden masked secure bearer basic string password_here
    env environ getenv config settings options params args""".split()
)
# Last key tokens naming something about a secret rather than the secret.
_NON_SECRET_KEY_SUFFIXES = frozenset(
    """length len size count max min type types url uri urls path paths file files dir
    field fields name names id ids expiry expires expiration expire ttl timeout header
    headers policy policies prompt hint label env var format pattern regex reset input
    endpoint endpoints limit limits usage budget tokens index idx position pos kind mode
    enabled required strategy manager store provider class location version algorithm
    algo rotation question questions placeholder min_length max_length prefix suffix
    validator validation error errors message text title description help""".split()
)
# Key tokens that turn "key" into something that is not a credential.
_NON_SECRET_KEY_TOKENS = frozenset(
    """public primary foreign sort partition cache idempotency unique lookup composite
    natural dedup""".split()
)
# Short keywords count only as a whole key token; long ones also inside one
# (so `dbpassword` counts, `compass` does not).
_SHORT_KEYWORDS = frozenset({"pass", "pwd", "pw", "auth", "key", "apikey", "bearer"})
_LONG_KEYWORDS = ("password", "passwd", "passphrase", "secret", "token", "credential")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One pattern match: the secret value, the variable it is assigned to
    (if the pattern captures one) and whether the value was quoted."""

    value: str
    key: str | None = None
    quoted: bool = False


Validator = Callable[[Candidate], float | None]


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def character_classes(value: str) -> int:
    """How many of lower case, upper case, digits and other characters occur."""
    return sum(pattern.search(value) is not None for pattern in _CLASS_PATTERNS)


def is_placeholder(value: str) -> bool:
    lowered = value.lower()
    if lowered in _STOP_VALUES or _PLACEHOLDER_PATTERN.search(lowered):
        return True
    return _REPEATED_RUN.search(value) is not None


def _key_tokens(key: str) -> list[str]:
    spaced = _CAMEL_BOUNDARY.sub("_", key.strip("\"'` "))
    return [t for t in _KEY_SPLIT.split(spaced.lower()) if t]


def _looks_like_code_reference(candidate: Candidate) -> bool:
    value = candidate.value
    if value[0] in "$%@&*#./~\\":
        return True
    if _DOTTED_REFERENCE.fullmatch(value):
        return True
    if "://" in value:
        return True
    if candidate.quoted or not _IDENTIFIER.fullmatch(value):
        return False
    # An unquoted bare identifier: a variable in code (`password = user_pw`),
    # unless the key is an environment-style UPPER_NAME (`DB_PASSWORD=hunter2`).
    key = (candidate.key or "").strip("\"'` ")
    env_style = key.isupper()
    return not env_style and not any(c.isdigit() for c in value)


def assignment_key(candidate: Candidate) -> float | None:
    """The assigned name must really name a credential."""
    return 0.0 if _names_a_credential(candidate.key or "") else None


@functools.lru_cache(maxsize=1024)
def _names_a_credential(key: str) -> bool:
    tokens = _key_tokens(key)
    if not tokens:
        return False
    if tokens[-1] in _NON_SECRET_KEY_SUFFIXES or _NON_SECRET_KEY_TOKENS.intersection(tokens):
        return False
    joined = "".join(tokens)
    return any(t in _SHORT_KEYWORDS for t in tokens) or any(k in joined for k in _LONG_KEYWORDS)


def password_value(candidate: Candidate) -> float | None:
    value = candidate.value
    if _looks_like_code_reference(candidate):
        return None
    classes = character_classes(value)
    if value.isdigit():
        return 0.0 if len(value) >= 4 else None
    if value.rstrip(".,;:!?)").isalpha():
        # A plain word: a password when quoted or long, prose otherwise.
        if not candidate.quoted and not (candidate.key or "").strip("\"'").isupper():
            return None
        if len(value) < 6:
            return None
    return 0.1 if classes >= 3 else 0.0


def secret_value(candidate: Candidate) -> float | None:
    value = candidate.value
    if _looks_like_code_reference(candidate) or value.isdigit() or value.isalpha():
        return None
    if "/" in value and value.count("/") >= 2 and "=" not in value and "+" not in value:
        return None  # a path, not a key
    entropy = shannon_entropy(value)
    if entropy < 3.0 or character_classes(value) < 2:
        return None
    return min(0.3, max(0.0, (entropy - 3.0) * 0.2))


def jwt(candidate: Candidate) -> float | None:
    header = candidate.value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return None
    if isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded):
        return 0.1
    return None


def url_password(candidate: Candidate) -> float | None:
    return None if candidate.value.startswith("$") else 0.0


VALIDATORS: dict[str, Validator] = {
    "assignment_key": assignment_key,
    "password_value": password_value,
    "secret_value": secret_value,
    "jwt": jwt,
    "url_password": url_password,
}
