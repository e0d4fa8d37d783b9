"""Tokens, features and BIO tags of the linear-chain CRF NER model
(``en_crf``): one definition shared by the training script and the backend,
so the model is always read with the features it was trained on.

Hand-written rather than spaCy's pipeline: a CRF over these features tags a
chat message in about 0.2 ms, where the small spaCy model takes 1.5-2
(docs/pii.md). CRFsuite (python-crfsuite) does the learning and
the Viterbi decoding; this module only turns text into its attribute lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

# Words, single punctuation marks. Linear time; a possessive "'s" stays apart
# from the name it follows.
_TOKEN = re.compile(r"\w+|[^\w\s]")
# A chunk is tagged on its own (bounded memory on huge inputs); it ends at a
# sentence end or line break once this long, and never grows past the limit.
CHUNK_SOFT = 200
CHUNK_HARD = 400
_SENTENCE_END = frozenset(".!?;")
_OUTSIDE = "O"
# The lexicon (tools/train_ner_crf.py builds it) tags words fn, ln (first and
# last names), ci, co (cities, countries), cs, st (company suffixes, street
# types) and k0..k255 (clusters of the words' MiniLM embeddings).

Token = tuple[int, int]


def tokens(text: str) -> list[Token]:
    return [m.span() for m in _TOKEN.finditer(text)]


def chunks(text: str, toks: Sequence[Token]) -> Iterator[tuple[int, int]]:
    """[start, end) token ranges tagged separately: at most CHUNK_HARD tokens."""
    begin = 0
    for i, (start, end) in enumerate(toks):
        size = i + 1 - begin
        at_break = text[start:end] in _SENTENCE_END or (
            i + 1 < len(toks) and "\n" in text[end : toks[i + 1][0]]
        )
        if size >= CHUNK_HARD or (size >= CHUNK_SOFT and at_break):
            yield begin, i + 1
            begin = i + 1
    if begin < len(toks):
        yield begin, len(toks)


def shape(word: str) -> str:
    """Character classes with repeats collapsed: "McDonald" -> "XxXx"."""
    out: list[str] = []
    previous = ""
    for ch in word[:8]:
        kind = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if kind != previous:
            out.append(kind)
            previous = kind
    return "".join(out)


def features(
    text: str, toks: Sequence[Token], gazetteer: Mapping[str, tuple[str, ...]]
) -> list[list[str]]:
    """CRFsuite attribute lists, one per token: the word, its shape and
    affixes, gazetteer hits, and the same for two tokens either side.

    ``toks`` is one chunk: "the text has no capitals" is read from the
    chunk's own stretch of text, so a huge input costs linear time."""
    stretch = text[toks[0][0] : toks[-1][1]] if toks else ""
    lowered_text = not any(c.isupper() for c in stretch)
    lows: list[str] = []
    shapes: list[str] = []
    own: list[list[str]] = []
    hits: list[tuple[str, ...]] = []
    for start, end in toks:
        word = text[start:end]
        low = word.lower()
        kind = shape(word)
        found = gazetteer.get(low, ())
        lows.append(low)
        shapes.append(kind)
        hits.append(found)
        attrs = ["b", "w:" + low, "s:" + kind, "p3:" + low[:3], "x3:" + low[-3:], "x2:" + low[-2:]]
        if word[0].isupper():
            attrs.append("T")
        attrs.extend(found)
        own.append(attrs)
    count = len(toks)
    out = []
    for i, (start, _) in enumerate(toks):
        attrs = own[i]
        if i == 0 or "\n" in text[toks[i - 1][1] : start]:
            attrs.append("bol")
        if lowered_text:
            attrs.append("lc")
        for offset in (-2, -1, 1, 2):
            k = i + offset
            if 0 <= k < count:
                attrs.append(f"{offset}w:{lows[k]}")
                attrs.append(f"{offset}s:{shapes[k]}")
                attrs.extend(f"{offset}{hit}" for hit in hits[k])
            else:
                attrs.append(f"{offset}:pad")
        if i:
            attrs.append(f"bg:{lows[i - 1]}|{lows[i]}")
        if i > 1:  # "works at", "address of": the two words before
            attrs.append(f"lb:{lows[i - 2]}|{lows[i - 1]}")
        if i + 2 < count:
            attrs.append(f"rb:{lows[i + 1]}|{lows[i + 2]}")
        out.append(attrs)
    return out


def bio(toks: Sequence[Token], spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """Training tags: a token any part of which lies in a span is inside it."""
    tags = [_OUTSIDE] * len(toks)
    for start, end, label in sorted(spans):
        inside = [i for i, (a, b) in enumerate(toks) if a < end and b > start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + label
    return tags


def entity_runs(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """[first, last] token indexes and label of each tagged entity (an I- tag
    that does not continue its label starts a new entity)."""
    runs: list[tuple[int, int, str]] = []
    current: list[int | str] | None = None
    for i, tag in enumerate(tags):
        continues = current is not None and tag.startswith("I-") and tag[2:] == current[2]
        if current is not None and not continues:
            runs.append((int(current[0]), int(current[1]), str(current[2])))
            current = None
        if tag == _OUTSIDE:
            continue
        if current is None:
            current = [i, i, tag[2:]]
        else:
            current[1] = i
    if current is not None:
        runs.append((int(current[0]), int(current[1]), str(current[2])))
    return runs


def split_at_lines(
    text: str, toks: Sequence[Token], runs: Iterable[tuple[int, int, str]], keep: str = "ADDR"
) -> list[tuple[int, int, str]]:
    """Runs cut at line breaks: a name, place or organization does not go on
    past the end of its line (a signature block's name and company are two
    entities), though a postal address (``keep``) does."""
    out: list[tuple[int, int, str]] = []
    for first, last, label in runs:
        begin = first
        if label != keep:
            for i in range(first + 1, last + 1):
                if "\n" in text[toks[i - 1][1] : toks[i][0]]:
                    out.append((begin, i - 1, label))
                    begin = i
        out.append((begin, last, label))
    return out


def read_gazetteer(lines: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``word<TAB>tag,tag`` lines -> {word: ("g:tag", ...)}."""
    out: dict[str, tuple[str, ...]] = {}
    for line in lines:
        word, _, tags = line.rstrip("\n").partition("\t")
        if word and tags:
            out[word] = tuple("g:" + tag for tag in tags.split(","))
    return out
