"""The fast canonical JSON must be byte-identical to the rfc8785 reference,
and fail exactly where it fails."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mantlet.core import canonical
from mantlet.core.canonical import canonical_json

# Keys and strings from the whole of Unicode (surrogates included), so the
# sort-order and escaping edge cases are drawn, not only ASCII.
_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e22, max_value=1e22)
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | type[BaseException]:
    try:
        return rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - the failure type is what is compared
        return type(exc)


def _ours(value: Any) -> bytes | type[BaseException]:
    try:
        return canonical_json(value)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


@settings(max_examples=3000, deadline=None)
@given(_values)
def test_same_bytes_or_same_error_as_rfc8785(value: Any) -> None:
    assert _ours(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        -0.0,
        1e16,
        1e21,
        1e-5,
        1e-7,
        0.1,
        123456789012345.67,
        2**53 - 1,
        2**53,
        -(2**53),
        math.inf,
        math.nan,
        {"\ue000": 1, "\U0001f600": 2},  # code point order differs from UTF-16 order
        '\u2028\x7f\x01"\\\b\f\n\r\t',
        "\ud800",
        {1: 2},
        (1, "a"),
        {"b": [True, None], "a": {"z": 0.5, "y": "é"}},
    ],
)
def test_edge_cases_match_the_reference(value: Any) -> None:
    assert _ours(value) == _reference(value)


def test_the_fast_path_is_taken_for_an_audit_like_record() -> None:
    record = {
        "kind": "request",
        "route": "/v1/chat/completions",
        "status": 200,
        "verdicts": [{"detector": "pii", "ms": 0.123, "ok": True, "reason": None}],
        "tenant": "acme é",
    }
    assert canonical._plain(record)
    assert canonical_json(record) == rfc8785.dumps(record)
    # ...and not where the standard encoder would differ.
    assert not canonical._plain({"n": 1.0})
    assert not canonical._plain({"\U0001f600": 1})
    assert not canonical._plain({"n": 2**53})
