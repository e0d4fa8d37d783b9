"""Half of a UTF-16 surrogate pair in JSON text (mantlet.core.jsontext)."""

from __future__ import annotations

import json

import pytest

from mantlet.core.jsontext import has_lone_surrogate


@pytest.mark.parametrize(
    ("raw", "lone"),
    [
        ('{"a": "plain text"}', False),
        ('{"a": "\\ud83d\\ude00 a whole pair is one character"}', False),
        ('{"a": "\\ud83d alone"}', True),
        ('{"a": ["ok", {"b": "\\udc00 low half"}]}', True),
        ('{"\\ud800": "in a key"}', True),
        ('{"a": "written out: \\\\ud800 is six characters"}', False),
    ],
)
def test_lone_halves_are_found_in_values_and_keys_at_any_depth(raw: str, lone: bool) -> None:
    data = json.loads(raw)
    assert has_lone_surrogate(raw, data) is lone
    assert has_lone_surrogate(raw.encode(), data) is lone
