"""JSON text that is valid syntax but not valid Unicode.

A ``\\ud800`` escape with no partner is accepted by Python's parser and gives
a string that no UTF-8 encoder will take: not the detectors, not the audit
log, not the client. Request bodies and upstream answers with one are
refused where they are parsed, rather than failing wherever they are first
encoded."""

from __future__ import annotations

import re
from typing import Any

# `\ud800`-`\udfff`: half of a UTF-16 pair (a whole pair becomes one character).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def has_lone_surrogate(raw: str | bytes, data: Any) -> bool:
    """Whether ``data``, parsed from ``raw``, holds a string (a key or a
    value) with half of a surrogate pair. The walk runs only when ``raw``
    has a surrogate escape at all."""
    pattern = _SURROGATE_ESCAPE_BYTES if isinstance(raw, bytes) else _SURROGATE_ESCAPE
    if pattern.search(raw) is None:  # type: ignore[arg-type]
        return False
    pending = [data]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False
