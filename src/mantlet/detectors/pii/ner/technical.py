"""Technical chat, where a programming language or a file format is not a
name: "sort a list in Python", "export it as CSV". Both English backends
take such words for places and organizations; in text that reads as
technical they are dropped, unless the caller knows the word as a person's
or place's name ("Julia", "Ruby", "Java" the island)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from mantlet.detectors.pii.ner import NerSpan

# What makes a text read as technical: code markup, or a word about software.
_CODE_MARKS = ("`", "()", "{", "=>", "==", "</", "::", "#include", "def ", "import ")
_CODE_WORDS = re.compile(
    r"\b(?:code|coding|program(?:s|ming)?|function|script|snippet|library|framework|"
    r"compiler?|syntax|variable|array|class|method|module|api|regex|query|database|debug|"
    r"implement|algorithm|developer|runtime|parser?|json|csv|string|integer|loop|package|"
    r"install|bug|exception|server|app)\b",
    re.IGNORECASE,
)


def reads_technical(text: str) -> bool:
    return any(mark in text for mark in _CODE_MARKS) or _CODE_WORDS.search(text) is not None


@functools.cache
def technical_names() -> frozenset[str]:
    """Names of the languages Pygments highlights (about 500 without a space,
    lower-cased) and the file formats of Python's own MIME table ("CSV",
    "PDF", "PNG"; its built-in table only, not the machine's files, so every
    machine drops the same names): registries kept current by their
    maintainers rather than lists of ours."""
    import mimetypes

    from pygments.lexers import get_all_lexers  # type: ignore[import-untyped]

    languages = {name.lower() for name, *_ in get_all_lexers() if " " not in name}
    builtin = mimetypes.MimeTypes(filenames=())
    formats = {ext[1:].lower() for table in builtin.types_map for ext in table}
    return frozenset(languages | {f for f in formats if len(f) >= 3 and f.isalpha()})


def drop_technical_names(
    text: str, spans: Sequence[NerSpan], known_name: Callable[[str], bool]
) -> list[NerSpan]:
    """``spans`` without the languages and formats named in technical text;
    ``known_name`` (given the lower-cased word) keeps people and places."""
    if not spans or not reads_technical(text):
        return list(spans)
    names = technical_names()
    kept = []
    for span in spans:
        folded = text[span.start : span.end].lower()  # "Javascript", "JAVA": as people type
        if folded not in names or known_name(folded):
            kept.append(span)
    return kept
