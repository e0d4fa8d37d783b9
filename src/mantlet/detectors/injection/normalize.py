"""De-obfuscation ahead of prompt-injection detection.

Attackers rarely send "ignore previous instructions" in plain text: they hide
it behind invisible characters (zero-width splitting, Unicode tag "ASCII
smuggling"), lookalike letters from other scripts, compatibility forms
(fullwidth, mathematical alphanumerics) or an encoding the model will happily
undo for them (base64, base32, hex, percent-encoding, quoted-printable, HTML
character references, ``\\u`` escapes, ROT13, leetspeak, reversed text,
letters spelled out one at a time, stacked combining marks, Morse code,
braille).
``normalize`` gives detectors a canonical ``text`` to scan plus decoded
``variants``, and keeps enough bookkeeping to map a finding in ``text`` back
to the span of the original input.

Everything here runs on attacker-supplied input, so every step is linear in
the input: Python's ``re`` is used only for character-class runs (plus
lookarounds anchored at token starts, which each look at one token once),
decoded segments are capped, and per-character Python work happens only where
the text really changes. The offset map behind ``Normalized.original_span``
is built on first use, since most texts never need a span mapped back.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import functools
import html
import itertools
import quopri
import re
import string
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote

from mantlet.core.invisible import BIDI, INVISIBLE_RUN, TAGS, ZERO_WIDTH
from mantlet.detectors._re2 import compile_pattern

__all__ = ["Normalized", "Variant", "normalize"]

# Decoded segments longer than this are cut: the payload that matters sits at
# the start of a segment, and the cap bounds the work per segment.
_MAX_DECODED = 20_000
_MIN_DECODED = 4
# Normalize in blocks of about this many characters, so that a text with a
# handful of fullwidth letters does not pay per-character work throughout.
_BLOCK = 4096
# Lines checked one by one for ROT13 or reversal when the text as a whole
# does not read that way (one encoded line inside an ordinary message).
_MAX_READABLE_LINES = 1000

# --- invisible characters ---------------------------------------------------

_ZERO_WIDTH, _BIDI, _TAGS, _INVISIBLE_RUN = ZERO_WIDTH, BIDI, TAGS, INVISIBLE_RUN
_ZERO_WIDTH_CHAR = re.compile(f"[{_ZERO_WIDTH}]")
_BIDI_CHAR = re.compile(f"[{_BIDI}]")
_TAG_CHAR = re.compile(f"[{_TAGS}]")
# A smuggled payload: tag characters, possibly interleaved with other
# invisible characters meant to break up the run.
_TAG_RUN = re.compile(f"[{_TAGS}][{_ZERO_WIDTH}{_BIDI}{_TAGS}]*")
_MAX_TAG_RUNS = 64
# Subdivision flags (England, Scotland, Wales) are an emoji spelled with tag
# characters: BLACK FLAG, tag letters/digits, CANCEL TAG. Not smuggling.
_EMOJI_TAG_SEQUENCE = re.compile(
    "\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,7}\U000e007f"
)
# Tag characters 0x20..0x7E decode to ASCII, other tags to nothing.
_TAG_DECODE = MappingProxyType(
    {
        cp: (chr(cp - 0xE0000) if 0xE0020 <= cp <= 0xE007E else None)
        for cp in range(0xE0000, 0xE0080)
    }
)

# --- homoglyphs -------------------------------------------------------------

# Letters of other scripts that render like a Latin letter. Each maps to one
# character, so folding never moves offsets.
_HOMOGLYPHS = MappingProxyType(
    {
        # Cyrillic
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s",
        "і": "i", "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l",
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ү": "Y", "Һ": "H",
        "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
        # Greek
        "α": "a", "ο": "o", "ν": "v", "ρ": "p", "ι": "i", "κ": "k", "υ": "u", "χ": "x",
        "ϲ": "c", "ϳ": "j", "ε": "e",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
        # Armenian
        "օ": "o", "ս": "u", "հ": "h", "ո": "n", "զ": "q",
        # Cherokee
        "Ꭺ": "A", "Ᏼ": "B", "Ꮯ": "C", "Ꭼ": "E", "Ꮋ": "H", "Ꭻ": "J", "Ꮶ": "K", "Ꮮ": "L",
        "Ꮇ": "M", "Ꮲ": "P", "Ꮪ": "S", "Ꭲ": "T", "Ꮃ": "W", "Ꮓ": "Z",
    }
)  # fmt: skip
_HOMOGLYPH_TABLE = MappingProxyType({ord(k): v for k, v in _HOMOGLYPHS.items()})
_HOMOGLYPH_CLASS = "".join(_HOMOGLYPHS)
_HOMOGLYPH_CHAR = re.compile(f"[{_HOMOGLYPH_CLASS}]")
# A word holding both a Latin letter and a lookalike. The lookaheads run only
# at word starts (`\b`), each over its own word, so the scan stays linear.
_MIXED_WORD = re.compile(rf"\b(?=\w*?[A-Za-z])(?=\w*?[{_HOMOGLYPH_CLASS}])\w+")

# --- encodings --------------------------------------------------------------

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
# RFC 4648 base32: upper-case letters and the digits 2-7, "=" padding.
_BASE32_RUN = re.compile(r"[A-Z2-7]{16,}={0,6}")
# HTML character references (`&#73;&#103;`, `&#x49;`) and JSON or source
# escapes (`\u0049\u0067`): web pages, e-mails and tool output carry both.
# A text holding this many is read with all of them decoded (a few
# `&#8217;` apostrophes are ordinary markup; a payload needs many).
_CHAR_REFERENCE = re.compile(r"&#(?:[0-9]{1,7}|[xX][0-9A-Fa-f]{1,6});?")
_UNICODE_ESCAPE = re.compile(r"\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8}")
_MIN_ESCAPES = 4
# Quoted-printable (`Ignore=20all=20previous`): escapes, one of them a space,
# an equals sign or a line break (the marks of QP; `?id=12` alone is not).
# A digit right after is a number ("71-70-66=207"), not an escape.
_QP_ESCAPE = re.compile(r"=[0-9A-F]{2}(?![0-9])")
_QP_TELLTALE = re.compile(r"=(?:20|3D|0A|0D|09)(?![0-9])")
# "Zalgo" text: combining marks stacked on ASCII letters. NFKC composes an
# accent that has a precomposed letter (e + U+0301 is é), so what is left on
# an ASCII letter afterwards is decoration.
_STACKED_MARKS = re.compile(
    r"[A-Za-z][\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
)
_MIN_STACKED = 4
# Morse code: dots and dashes, letters split by a space, words by a slash or
# a wider gap.
_MORSE_RUN = re.compile(r"[.\-·•−–—_]{1,7}(?:(?: ?/ ?| {1,3}| ?\| ?)[.\-·•−–—_]{1,7}){7,}")
_MORSE_DOT_DASH = str.maketrans("·•−–—_", "..----")
_MORSE_CODES = (
    ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- "
    "...- .-- -..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----."
).split()
_MORSE = MappingProxyType(
    dict(zip(_MORSE_CODES, string.ascii_lowercase + string.digits, strict=True))
)
# Grade-1 braille: one Unicode braille pattern per letter.
_BRAILLE = str.maketrans("⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏⠟⠗⠎⠞⠥⠧⠺⠭⠽⠵⠀", string.ascii_lowercase + " ")
_BRAILLE_CHAR = re.compile("[\u2800-\u28ff]")
_MIN_BRAILLE = 8
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_HAS_LETTER = re.compile(r"[A-Za-z]")
# Single characters with one separator between each ("A K I A Q 3 ...",
# "4-1-1-1-..."): a model reads the value through them. Candidate runs are
# found greedily (linear: no lookaround to backtrack into) and trimmed of a
# first or last character that belongs to a longer token. The minimum length
# is in the pattern: prose has a "word w" pair at every space, and matching
# each one would cost a Python step per word.
_SPACED_CANDIDATE = re.compile(r"[A-Za-z0-9](?:[ .\-_·][A-Za-z0-9]){11,}")
_MIN_SPACED_CHARS = 12
# Anything any of the segment patterns could start on, in one RE2 (DFA) pass:
# Python's re scans prose five times slower, once per pattern, and every
# request rescans the conversation it carries.
_ENCODED_PREFILTER = compile_pattern(
    r"[A-Za-z0-9+/_\-]{16}|[0-9A-Fa-f]{2}[ :][0-9A-Fa-f :]{9}|\\[xX][0-9A-Fa-f]{2}"
    r"|%[0-9A-Fa-f]{2}|[A-Za-z0-9](?:[ .\-_·][A-Za-z0-9]){11}"
)
# A token with percent-escapes in it. Linear: it starts only where a token
# starts (the lookbehind) and never gives back what a run took (possessive),
# so a long run that turns out to hold no escape is read once, not once per
# starting position.
_ESCAPED_TOKEN = re.compile(
    r"(?<![A-Za-z0-9._~+\-%])[A-Za-z0-9._~+\-]*+(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~+\-]*+)+"
)
_SEPARATOR = re.compile(r"[ .\-_·]")
# An instruction spelled out letter by letter, with wider gaps between its
# words ("I g n o r e   a l l ...", "I-g-n-o-r-e a-l-l"). A gap of two or
# three spaces is tried before a single separator; each step looks at a
# bounded number of characters, so the scan stays linear.
_SPACED_WORDS = re.compile(r"[A-Za-z0-9](?:(?: {2,3}|[ .\-_·*])[A-Za-z0-9]){11,}")
_WORD_GAP = re.compile(r" {2,}")
# `\x49\x67...` and `49 67 6e ...`: a class run, split and checked in Python.
_ESCAPED_HEX_RUN = re.compile(r"\\[xX][0-9A-Fa-f]{2}[\\xX0-9A-Fa-f]{10,}")
_SPACED_HEX_RUN = re.compile(r"[0-9A-Fa-f]{2}[ :][0-9A-Fa-f :]{9,}")
_URL_CHARS = r"A-Za-z0-9%._~!$&'()*+,;=:@/?#\[\]-"
# Starts at an escape; the part of the segment before it is found by matching
# the reversed text, so neither direction backtracks.
_URL_SEGMENT = re.compile(rf"%[0-9A-Fa-f]{{2}}[{_URL_CHARS}]*")
_URL_PREFIX_REVERSED = re.compile(rf"[{_URL_CHARS}]*")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_HEXDIGITS = frozenset(string.hexdigits)
_ENCODED_TEXT = re.compile(r"[A-Za-z0-9+/=_%\\-]+")

_ASCII_WORD = re.compile(r"[a-z]+")
_ROT13 = str.maketrans(
    string.ascii_lowercase + string.ascii_uppercase,
    string.ascii_lowercase[13:]
    + string.ascii_lowercase[:13]
    + string.ascii_uppercase[13:]
    + string.ascii_uppercase[:13],
)
# Words that carry injections and everyday English. No word's ROT13 is in the
# list (checked by a test), so plain English never reads as ROT13.
_COMMON_WORDS = frozenset(
    """
    the you your ignore previous instructions instruction system prompt and all to of is
    are now reveal password secret forget disregard above prior rules tell me what this
    that with for not do please must print show output admin developer mode act new task
    in it from have will can my we on at by if was repeat hidden verbatim any initial text
    words everything
    """.split()
)

_LEET_CHARS = "013457@$"
_LEET_TABLE = str.maketrans(_LEET_CHARS, "oieastas")
_LEET_SET = frozenset(_LEET_CHARS)
_NON_LEET_DIGITS = frozenset("2689")
# Characters that glue a token to data: base64, identifiers, and escapes (\u00e3)
_DATA_JOINERS = frozenset("+/=_\\")  # "" (start or end of text) is not in it
_NOT_LETTERS = str.maketrans("", "", "0123456789@$")  # leaves a token's letters
# Tokens mixing ASCII letters with leet substitutes; lookaheads only at token
# starts (the lookbehind), each bounded by its own token.
_LEET_TOKEN = re.compile(
    r"(?<![A-Za-z0-9@$])(?=[A-Za-z0-9@$]*?[A-Za-z])(?=[A-Za-z0-9@$]*?[013457@$])[A-Za-z0-9@$]+"
)
# `1st`, `4th`, `10am`, `5px`: a number with a unit, not leetspeak.
_NUMBER_SUFFIXES = frozenset(
    "st nd rd th am pm k m g b x s px em pt ms kb mb gb tb hz khz mhz ghz km cm mm kg lb "
    "lbs ml fps dpi min h d".split()
)

# Characters NFKC never joins to what precedes them, whose normalized form
# starts with such a character too (a test checks every one): ASCII and
# Latin-1, Latin Extended-A/B, Greek, Cyrillic, Hebrew, Arabic, Devanagari and
# Thai letters, Hangul leading consonants, spaces and punctuation, letterlike
# and enclosed forms, CJK punctuation, kana, ideographs, Hangul syllables,
# ligatures, fullwidth and halfwidth forms, mathematical alphanumerics.
# Text normalizes independently on either side of one.
_SAFE_CLASS = (
    "\x00-\u024f\u0386-\u03ce\u0400-\u0481\u048a-\u04ff\u05d0-\u05ea\u0620-\u064a"
    "\u0900-\u0939\u0e01-\u0e30\u1100-\u1112\u2000-\u200a\u2010-\u2027\u2030-\u205e"
    "\u2070-\u209f\u2100-\u218f\u2460-\u24ff\u3000-\u3029\u3030-\u303f\u3041-\u3096"
    "\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3\ufb00-\ufb06\uff01-\uff5e\uff66-\uff9d"
    "\U0001d400-\U0001d7ff"
)
_SAFE_START = re.compile(f"[{_SAFE_CLASS}]")
_SAFE_PIECE = re.compile(f"[^{_SAFE_CLASS}]+|[{_SAFE_CLASS}][^{_SAFE_CLASS}]*")
_nfkc = functools.partial(unicodedata.normalize, "NFKC")

_FLAG_OF_KIND = MappingProxyType(
    {
        "tag_smuggled": "tag_characters",
        "base64": "base64",
        "hex": "hex",
        "url": "url_encoding",
        "rot13": "rot13",
        "leet": "leetspeak",
        "base32": "base32",
        "html_references": "html_references",
        "unicode_escapes": "unicode_escapes",
        "reversed": "reversed_text",
        "spaced": "spaced_letters",
        "quoted_printable": "quoted_printable",
        "stacked_marks": "stacked_marks",
        "morse": "morse",
        "braille": "braille",
    }
)


@dataclass(frozen=True, slots=True)
class Variant:
    """A decoded reading of part of the input that detectors should also scan."""

    kind: str  # a key of _FLAG_OF_KIND: "base64", "hex", "url", "rot13", "leet", ...
    text: str
    start: int  # span in the original text this variant was decoded from
    end: int


class _OffsetMap:
    """Maps characters of ``Normalized.text`` back to the original text.

    Two stages, undone in reverse. NFKC ran on the original with invisible
    characters removed ("stripped"). That text is cut into blocks just before
    characters no normalization joins to what precedes them (ASCII, most
    Latin, Greek, Cyrillic, kana, CJK), so each block normalizes on its own;
    a block's character-level map is worked out only when a span inside it is
    asked for. Removal is a list of shifts: stripped positions at or after
    ``removed_at[i]`` sit ``shifts[i]`` characters further on in the original.
    """

    __slots__ = (
        "_block_out",
        "_block_src",
        "_changed",
        "_fine",
        "_removed_at",
        "_shifts",
        "_stripped",
        "_text_len",
        "consistent",
    )

    def __init__(self, original: str, text_len: int) -> None:
        runs = [m.span() for m in _INVISIBLE_RUN.finditer(original)]
        lengths = [end - start for start, end in runs]
        self._shifts = list(itertools.accumulate(lengths))
        self._removed_at = [
            s - t + n for (s, _), t, n in zip(runs, self._shifts, lengths, strict=True)
        ]
        self._stripped = _INVISIBLE_RUN.sub("", original) if runs else original
        self._text_len = text_len
        self._block_src: list[int] = []
        self._block_out: list[int] = []
        self._changed: list[bool] = []
        # Character maps of changed blocks, filled in when first needed (two
        # threads may both fill one in; they compute the same list).
        self._fine: dict[int, list[int]] = {}
        produced = 0
        for lo, hi in _blocks(self._stripped):
            block = self._stripped[lo:hi]
            changed = not unicodedata.is_normalized("NFKC", block)
            self._block_src.append(lo)
            self._block_out.append(produced)
            self._changed.append(changed)
            produced += len(_nfkc(block)) if changed else hi - lo
        # False for a ``Normalized`` built by hand whose text did not come from
        # its original: spans are then only clamped.
        self.consistent = produced == text_len

    def span(self, start: int, end: int, original_len: int) -> tuple[int, int]:
        if not self.consistent:
            start = min(start, original_len)
            return start, max(start, min(end, original_len))
        if start == end:
            pos = self._char(start)[0] if start < self._text_len else original_len
            return pos, pos
        return self._char(start)[0], self._char(end - 1)[1]

    def _char(self, index: int) -> tuple[int, int]:
        lo, hi = self._stripped_char(index)
        return self._unstrip(lo), self._unstrip(hi - 1) + 1

    def _stripped_char(self, index: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._block_out, index) - 1
        src, out = self._block_src[k], self._block_out[k]
        if not self._changed[k]:
            return src + index - out, src + index - out + 1
        end = self._block_src[k + 1] if k + 1 < len(self._block_src) else len(self._stripped)
        fine = self._fine.get(k)
        if fine is None:
            fine = self._fine[k] = _char_map(self._stripped[src:end])
        # The character's source unit runs to where the next unit starts.
        lo = fine[index - out]
        after = bisect.bisect_right(fine, lo)
        return src + lo, src + fine[after] if after < len(fine) else end

    def _unstrip(self, pos: int) -> int:
        k = bisect.bisect_right(self._removed_at, pos) - 1
        return pos + self._shifts[k] if k >= 0 else pos


class _LazyOffsets:
    """Builds the offset map on first use: most texts never have a span mapped."""

    __slots__ = ("_map", "_original", "_text_len")

    def __init__(self, original: str, text_len: int) -> None:
        self._original = original
        self._text_len = text_len
        self._map: _OffsetMap | None = None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        start = min(max(start, 0), self._text_len)
        end = min(max(end, start), self._text_len)
        if self._map is None:
            # Two threads may both build it; they build the same map.
            self._map = _OffsetMap(self._original, self._text_len)
        return self._map.span(start, end, len(self._original))


@dataclass(frozen=True, slots=True)
class Normalized:
    """The canonical text detectors scan, its decoded variants and what was found.

    ``original_span`` builds its offset map on first use and keeps it; that is
    safe to share between threads.
    """

    original: str
    text: str  # NFKC, invisible chars removed, homoglyphs in mixed-script words folded to Latin
    flags: frozenset[str]
    variants: tuple[Variant, ...]
    _offsets: _LazyOffsets | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._offsets is None:
            object.__setattr__(self, "_offsets", _LazyOffsets(self.original, len(self.text)))

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``original`` that ``text[start:end]`` came from (clamped)."""
        assert self._offsets is not None  # set in __post_init__
        return self._offsets.original_span(start, end)


def normalize(text: str, *, max_variants: int = 16) -> Normalized:
    """Canonicalize ``text`` and decode what it hides; see the module docstring."""
    if max_variants < 0:
        raise ValueError("max_variants must be >= 0")
    flags: set[str] = set()
    stripped = _strip_invisible(text, flags)
    canonical = _fold_homoglyphs(_nfkc(stripped), flags)
    offsets = _LazyOffsets(text, len(canonical))

    first = _tag_variants(text, flags)
    for kind, decoded, start, end in _decode_all(canonical):
        lo, hi = offsets.original_span(start, end)
        first.append(Variant(kind, decoded, lo, hi))
    first.sort(key=lambda v: (v.start, v.end))
    variants = _select(_unique(first, canonical), max_variants)
    second: list[Variant] = []
    for parent in variants:
        if parent.kind != "leet":
            second.extend(
                Variant(kind, decoded, parent.start, parent.end)
                for kind, decoded, _, _ in _decode_nested(parent.text)
            )
    seen = {v.text for v in variants}
    variants += _select(_unique(second, canonical, seen), max_variants - len(variants))
    flags.update(_FLAG_OF_KIND[v.kind] for v in (*first, *second))
    return Normalized(text, canonical, frozenset(flags), tuple(variants), offsets)


def encoded_variants(text: str, *, limit: int = 64) -> list[Variant]:
    """Base64, hex and percent-encoded segments of ``text`` that decode to
    text, values spelled out one character at a time ("A K I A ..."), and what
    those hide in turn, every occurrence (at most ``limit``, decoding stops
    there); spans are in ``text``.

    For detectors of values rather than instructions (secrets, PII): a key
    pasted from a Kubernetes Secret manifest is base64, and a model decodes it
    as readily as it reads it.
    """
    variants = [
        Variant(kind, decoded, start, end)
        for kind, decoded, start, end in itertools.islice(_encoded_segments(text), limit)
    ]
    variants.sort(key=lambda v: (v.start, v.end))
    for parent in list(variants):
        room = limit - len(variants)
        inner = _encoded_segments(_clean(parent.text))
        variants += (
            Variant(kind, decoded, parent.start, parent.end)
            for kind, decoded, _, _ in itertools.islice(inner, max(room, 0))
        )
    return variants


def _encoded_segments(text: str) -> Iterator[_Decoded]:
    """Base64, hex, then percent-encoded segments that decode to text, and
    single characters spelled out with separators, decoded one at a time."""
    if _ENCODED_PREFILTER.search(text) is None:  # most text: one DFA pass, no segment
        return
    for match in _BASE64_RUN.finditer(text):
        run = match.group()
        if not _HAS_LETTER.search(run):  # ids and numbers; encoded text has letters
            continue
        decoded = _decode_base64(run)
        if decoded is not None:
            yield "base64", decoded, match.start(), match.end()
    for pattern, decode in _HEX_FORMS:
        for match in pattern.finditer(text):
            decoded = decode(match.group())
            if decoded is not None:
                yield "hex", decoded, match.start(), match.end()
    if "%" in text:  # any escape counts: `email=jane.roe%40example.org` holds an address
        for match in _ESCAPED_TOKEN.finditer(text):
            token = match.group()
            decoded = unquote(token[: 3 * _MAX_DECODED], errors="replace")
            if decoded != token:
                yield "url", decoded, match.start(), match.end()
    for match in _SPACED_CANDIDATE.finditer(text):
        start, end = _spelled_run(text, match)
        if end - start >= 2 * _MIN_SPACED_CHARS - 1:
            yield "spaced", _SEPARATOR.sub("", text[start:end]), start, end


def _spelled_run(text: str, match: re.Match[str]) -> tuple[int, int]:
    """A run of single characters without a first or last one that belongs
    to a longer token (the "x" of "box a b c ...")."""
    start, end = match.span()
    if start and text[start - 1].isalnum():
        start += 2
    if end < len(text) and text[end].isalnum():
        end -= 2
    return start, end


# --- stage 1: invisible characters ------------------------------------------


def _strip_invisible(text: str, flags: set[str]) -> str:
    """Remove zero-width, bidi and tag characters, noting which kinds were there."""
    stripped = _INVISIBLE_RUN.sub("", text)
    if len(stripped) == len(text):
        return text
    # A byte-order mark opening the text is how some editors save files.
    if _ZERO_WIDTH_CHAR.search(text, 1 if text.startswith("\ufeff") else 0):
        flags.add("zero_width")
    if _BIDI_CHAR.search(text):
        flags.add("bidi_control")
    return stripped


def _tag_variants(text: str, flags: set[str]) -> list[Variant]:
    """Decode runs of Unicode tag characters: ASCII that models read and people cannot see.

    One variant per run; past ``_MAX_TAG_RUNS`` runs (a payload chopped up, or
    a flood of decoys) one variant holds them all, in order.
    """
    if not _TAG_CHAR.search(text):
        return []
    if _TAG_CHAR.search(_EMOJI_TAG_SEQUENCE.sub("", text)):
        flags.add("tag_characters")
    runs = _TAG_RUN.findall(text)
    if len(runs) > _MAX_TAG_RUNS:
        decoded = _decode_tags("".join(runs))
        first = _TAG_CHAR.search(text)
        last = _TAG_CHAR.search(text[::-1])
        assert first is not None and last is not None  # there are runs
        return [Variant("tag_smuggled", decoded, first.start(), len(text) - last.start())]
    variants = []
    for match in _TAG_RUN.finditer(text):
        start, end = match.span()
        if _EMOJI_TAG_SEQUENCE.fullmatch(text, start - 1, end) if start else False:
            continue
        decoded = _decode_tags(match.group())
        if len(decoded.strip()) >= _MIN_DECODED:
            variants.append(Variant("tag_smuggled", decoded, start, end))
    return variants


def _decode_tags(run: str) -> str:
    return _INVISIBLE_RUN.sub("", run.translate(_TAG_DECODE))[:_MAX_DECODED]


# --- stage 2: NFKC ----------------------------------------------------------


def _blocks(text: str) -> list[tuple[int, int]]:
    """Cut ``text`` into blocks of about ``_BLOCK`` characters that normalize independently."""
    if unicodedata.is_normalized("NFKC", text):
        return [(0, len(text))] if text else []
    blocks = []
    lo, n = 0, len(text)
    while lo < n:
        boundary = _SAFE_START.search(text, lo + _BLOCK) if lo + _BLOCK < n else None
        hi = boundary.start() if boundary else n
        blocks.append((lo, hi))
        lo = hi
    return blocks


def _char_map(block: str) -> list[int]:
    """For each character NFKC makes of ``block``, where its source starts in the block.

    Source units are as small as stays exact: single characters when no
    composition crosses characters, else a base character with the combining
    marks after it, else pieces starting at a safe character, else the block.
    The list never decreases; a unit ends where the next value begins.
    """
    full = _nfkc(block)
    starts: Sequence[int] = range(len(block))
    outs = list(map(_nfkc, block))
    if "".join(outs) != full:
        starts = [i for i, ccc in enumerate(map(unicodedata.combining, block)) if not ccc or not i]
        outs = [_nfkc(block[a:b]) for a, b in zip(starts, [*starts[1:], len(block)], strict=True)]
    if "".join(outs) != full:
        starts = [m.start() for m in _SAFE_PIECE.finditer(block)]
        outs = [_nfkc(block[a:b]) for a, b in zip(starts, [*starts[1:], len(block)], strict=True)]
    if "".join(outs) != full:
        return [0] * len(full)
    if len(outs) == len(full):  # every unit became one character
        return list(starts)
    return list(itertools.chain.from_iterable(map(itertools.repeat, starts, map(len, outs))))


# --- stage 3: homoglyphs ----------------------------------------------------


def _fold_homoglyphs(text: str, flags: set[str]) -> str:
    """Fold lookalikes to Latin, but only in words that also hold Latin letters.

    A word written wholly in Cyrillic or Greek is genuine text in that
    language; a Latin word with a Cyrillic "о" in it is a disguise.
    """
    if not _HOMOGLYPH_CHAR.search(text):
        return text
    folded = _MIXED_WORD.sub(lambda m: m.group().translate(_HOMOGLYPH_TABLE), text)
    if folded != text:
        flags.add("homoglyphs")
    return folded


def _clean(text: str) -> str:
    """Stages 1 to 3 without bookkeeping, for text that was itself decoded."""
    return _fold_homoglyphs(_nfkc(_INVISIBLE_RUN.sub("", text)), set())


# --- decoders ---------------------------------------------------------------

_Decoded = tuple[str, str, int, int]  # kind, decoded text, start, end in the scanned text


def _decode_all(text: str) -> list[_Decoded]:
    return [
        *_decoded_runs(text, "base64", _BASE64_RUN, _decode_base64),
        *_decoded_runs(text, "base32", _BASE32_RUN, _decode_base32),
        *(found for form in _HEX_FORMS for found in _decoded_runs(text, "hex", *form)),
        *_url_segments(text),
        *_reference_variants(text),
        *_quoted_printable_variant(text),
        *_unstacked_variant(text),
        *_morse_segments(text),
        *_braille_variant(text),
        *_readable_variants(text, "rot13", lambda t: t.translate(_ROT13)),
        # Backwards, "no" reads "on": only words of three letters or more count.
        *_readable_variants(text, "reversed", lambda t: t[::-1], shortest=3),
        *_spaced_variants(text),
        *_leet_variant(text),
    ]


def _decode_nested(decoded: str) -> list[_Decoded]:
    """The second (and last) level: what a decoded variant itself hides."""
    nested = [("tag_smuggled", v.text, v.start, v.end) for v in _tag_variants(decoded, set())]
    return nested + _decode_all(_clean(decoded))


def _decoded_runs(
    text: str, kind: str, pattern: re.Pattern[str], decode: Callable[[str], str | None]
) -> list[_Decoded]:
    """Every run of ``pattern`` that ``decode`` reads as text; a flood of one
    run is decoded once."""
    found = []
    decoded_runs: dict[str, str | None] = {}
    for match in pattern.finditer(text):
        run = match.group()
        if run not in decoded_runs:
            decoded_runs[run] = decode(run)
        decoded = decoded_runs[run]
        if decoded is not None:
            found.append((kind, decoded, match.start(), match.end()))
    return found


def _decode_base64(run: str) -> str | None:
    """Standard or URL-safe alphabet, padded or not; ``None`` unless it decodes to text."""
    core = run.rstrip("=")
    urlsafe = "-" in core or "_" in core
    if urlsafe and ("+" in core or "/" in core):
        return None
    limit = _MAX_DECODED // 3 * 4
    truncated = len(core) > limit
    core = core[:limit]
    if len(core) % 4 == 1:
        core = core[:-1]
    core += "=" * (-len(core) % 4)
    try:
        data = base64.b64decode(core, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(data, truncated)


def _decode_base32(run: str) -> str | None:
    """``None`` unless ``run`` decodes to text (a base32 run is often base64
    or an identifier as well; only a reading as text counts)."""
    limit = _MAX_DECODED // 5 * 8
    core = run.rstrip("=")
    truncated = len(core) > limit
    core = core[:limit]
    core = core[: len(core) - len(core) % 8] if len(core) % 8 in (1, 3, 6) else core
    try:
        data = base64.b32decode(core + "=" * (-len(core) % 8))
    except (binascii.Error, ValueError):
        return None
    return _as_text(data, truncated)


def _reference_variants(text: str) -> list[_Decoded]:
    """The whole text with its HTML character references, or its ``\\u``
    escapes, decoded, when it holds at least ``_MIN_ESCAPES`` of them."""
    found: list[_Decoded] = []
    if text.count("&#") >= _MIN_ESCAPES and len(_CHAR_REFERENCE.findall(text)) >= _MIN_ESCAPES:
        found.append(("html_references", html.unescape(text), 0, len(text)))
    if text.count("\\u") + text.count("\\U") >= _MIN_ESCAPES:
        escapes = _UNICODE_ESCAPE.findall(text)
        if len(escapes) >= _MIN_ESCAPES:
            decoded = _UNICODE_ESCAPE.sub(_unescape, text)
            # UTF-16 surrogate pairs (emoji written as two escapes) made whole.
            decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            found.append(("unicode_escapes", decoded, 0, len(text)))
    return found


def _quoted_printable_variant(text: str) -> list[_Decoded]:
    """The whole text read as quoted-printable, when it holds its marks and
    escapes are dense (one in twenty characters or more)."""
    if "=" not in text or _QP_TELLTALE.search(text) is None:
        return []
    escapes = len(_QP_ESCAPE.findall(text))
    if escapes < _MIN_ESCAPES or escapes * 20 < len(text):  # "HIGH=70, LOW=10" in a long text
        return []
    try:
        data = quopri.decodestring(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        return []
    decoded = _as_text(data, truncated=False)
    return [("quoted_printable", decoded, 0, len(text))] if decoded else []


def _unstacked_variant(text: str) -> list[_Decoded]:
    """The whole text without the combining marks stacked on its letters."""
    if len(_STACKED_MARKS.findall(text, 0, 4 * _MAX_DECODED)) < _MIN_STACKED:
        return []
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return [("stacked_marks", plain, 0, len(text))]


def _morse_segments(text: str) -> list[_Decoded]:
    """Morse runs that decode to English words."""
    found: list[_Decoded] = []
    for match in _MORSE_RUN.finditer(text):
        run = match.group().translate(_MORSE_DOT_DASH)
        words = re.split(r" ?[/|] ?| {2,}", run)
        letters = [[_MORSE.get(code, "?") for code in word.split()] for word in words]
        decoded = " ".join("".join(word) for word in letters if word)
        if decoded.count("?") <= len(decoded) // 10 and _common_word_count(decoded) >= 2:
            found.append(("morse", decoded, match.start(), match.end()))
    return found


def _braille_variant(text: str) -> list[_Decoded]:
    """The whole text with braille letters read as Latin ones."""
    if len(_BRAILLE_CHAR.findall(text, 0, 4 * _MAX_DECODED)) < _MIN_BRAILLE:
        return []
    return [("braille", text.translate(_BRAILLE), 0, len(text))]


def _unescape(match: re.Match[str]) -> str:
    return chr(min(int(match.group()[2:], 16), 0x10FFFF))


def _spaced_variants(text: str) -> list[_Decoded]:
    """Letters spelled out one at a time, joined back into words."""
    found: list[_Decoded] = []
    for match in _SPACED_WORDS.finditer(text):
        start, end = _spelled_run(text, match)
        if end - start < 2 * _MIN_SPACED_CHARS - 1:
            continue
        run = text[start:end]
        words = _WORD_GAP.split(run)
        if len(words) == 1 and " " in run and any(c in run for c in ".-_·*"):
            words = run.split(" ")  # "I-g-n-o-r-e a-l-l": spaces between the words
        decoded = " ".join(_SEPARATOR.sub("", w).replace("*", "") for w in words)
        found.append(("spaced", decoded, start, end))
    return found


def _escaped_hex_digits(run: str) -> str:
    """The digits of the leading ``\\xHH`` escapes of ``run``."""
    digits = []
    for part in run.replace("\\X", "\\x").split("\\x")[1 : _MAX_DECODED + 1]:
        if len(part) < 2 or part[0] not in _HEXDIGITS or part[1] not in _HEXDIGITS:
            break
        digits.append(part[:2])
        if len(part) > 2:
            break
    return "".join(digits)


def _spaced_hex_digits(run: str) -> str:
    """The digits of the leading two-digit groups of ``run`` (``49 67 6e``)."""
    tokens = run.replace(":", " ").split(None, _MAX_DECODED)[:_MAX_DECODED]
    return "".join(itertools.takewhile(lambda token: len(token) == 2, tokens))


def _decode_hex(digits: str) -> str | None:
    limit = 2 * _MAX_DECODED
    truncated = len(digits) > limit
    digits = digits[:limit]
    if len(digits) % 2:
        digits = digits[:-1]
    if len(digits) < 2 * _MIN_DECODED:
        return None
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        return None
    return _as_text(data, truncated)


# Each way of writing hex, and how to decode it.
_HEX_FORMS: tuple[tuple[re.Pattern[str], Callable[[str], str | None]], ...] = (
    (_HEX_RUN, _decode_hex),
    (_ESCAPED_HEX_RUN, lambda run: _decode_hex(_escaped_hex_digits(run))),
    (_SPACED_HEX_RUN, lambda run: _decode_hex(_spaced_hex_digits(run))),
)


def _url_segments(text: str) -> list[_Decoded]:
    if text.count("%") < 3:
        return []
    found = []
    reversed_text = text[::-1]
    decoded_segments: dict[str, str | None] = {}
    for match in _URL_SEGMENT.finditer(text):
        start, end = match.span()
        # The segment may start before its first escape (`ignore%20all...`).
        pos = len(text) - start
        prefix = _URL_PREFIX_REVERSED.match(reversed_text, pos, pos + _MAX_DECODED)
        if prefix:
            start -= prefix.end() - pos
        segment = text[start:end]
        if segment not in decoded_segments:
            decoded_segments[segment] = _decode_url(segment)
        decoded = decoded_segments[segment]
        if decoded is not None:
            found.append(("url", decoded, start, end))
    return found


def _decode_url(segment: str) -> str | None:
    segment = segment[: 3 * _MAX_DECODED]
    if len(_URL_ESCAPE.findall(segment)) < 3:
        return None
    decoded = unquote(segment, errors="replace")[:_MAX_DECODED]
    return decoded if _looks_like_text(decoded) else None


def _common_word_count(text: str, shortest: int = 1) -> int:
    words = _ASCII_WORD.findall(text.lower())
    return len([w for w in words if w in _COMMON_WORDS and len(w) >= shortest])


def _reads_better(text: str, reading: str, shortest: int = 1) -> bool:
    """Whether ``reading`` holds clearly more common English words (of at
    least ``shortest`` letters) than ``text``."""
    after = _common_word_count(reading, shortest)
    return after >= 3 and after > 2 * _common_word_count(text, shortest)


def _readable_variants(
    text: str, kind: str, read: Callable[[str], str], shortest: int = 1
) -> list[_Decoded]:
    """The whole text read another way (ROT13, backwards) when that reads as
    English, else each line that does."""
    whole = read(text)
    if _reads_better(text, whole, shortest):
        return [(kind, whole, 0, len(text))]
    found: list[_Decoded] = []
    if "\n" not in text:
        return found
    start = 0
    for line in text.split("\n", _MAX_READABLE_LINES):
        end = start + len(line)
        if len(line) >= 12 and _reads_better(line, reading := read(line), shortest):
            found.append((kind, reading, start, end))
        start = end + 1
    return found


def _leet_variant(text: str) -> list[_Decoded]:
    """The whole text with leetspeak words spelled out, when there are any."""
    verdicts: dict[str, str] = {}  # a token's reading, apart from its context

    def unleet(match: re.Match[str]) -> str:
        token = match.group()
        start, end = match.span()
        if text[start - 1 : start] in _DATA_JOINERS or text[end : end + 1] in _DATA_JOINERS:
            return token  # a piece of base64 or an identifier: kQ3/z7+, max_r3try
        if "@" in token and text[end : end + 1] == ".":
            return token  # an e-mail address
        reading = verdicts.get(token)
        if reading is None:
            reading = verdicts[token] = _unleet(token)
        return reading

    decoded = _LEET_TOKEN.sub(unleet, text)
    return [("leet", decoded, 0, len(text))] if decoded != text else []


def _unleet(token: str) -> str:
    """Spell out a token, unless it reads as a number, version, handle or random data."""
    letters = token.translate(_NOT_LETTERS)
    if len(letters) < 2 or _NON_LEET_DIGITS.intersection(token):
        return token
    if not (letters.islower() or letters.isupper() or (token[0].isupper() and token[1:].islower())):
        return token  # aZ3kQ7, 0Ks: random data (base64), CamelCase identifiers
    if not _LEET_SET.intersection(token.rstrip(_LEET_CHARS)):
        return token  # md5, ipv4, abc123: identifiers and versions
    tail = token.lstrip("0123456789")
    if tail != token and not _LEET_SET.intersection(tail) and tail.lower() in _NUMBER_SUFFIXES:
        return token  # 1st, 10am, 5px
    if token[0] in "@$" and not _LEET_SET.intersection(token[1:]):
        return token  # @user, $HOME
    return token.translate(_LEET_TABLE)


def _as_text(data: bytes, truncated: bool) -> str | None:
    """``data`` as UTF-8 when it reads as text, else ``None``.

    A truncated segment may end inside a multi-byte character; that tail is
    dropped rather than failing the whole segment.
    """
    try:
        if truncated:
            decoded = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        else:
            decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if _looks_like_text(decoded) or _looks_encoded(decoded) else None


def _looks_encoded(decoded: str) -> bool:
    """Whether ``decoded`` is itself base64 or hex (or percent-escapes): worth a
    variant, so that the next level decodes it."""
    return len(decoded) >= 16 and _ENCODED_TEXT.fullmatch(decoded) is not None


def _looks_like_text(decoded: str) -> bool:
    """At least 85 % printable (all of it when short), and either words (a space,
    with letters and spaces making up 70 %) or mostly letters (80 %).

    Random bytes rarely pass: they are seldom valid UTF-8, and when they are
    they hold control characters and punctuation rather than words.
    """
    n = len(decoded)
    if len(decoded.strip()) < _MIN_DECODED:
        return False
    bad = decoded.count("\ufffd")
    if not decoded.isprintable():
        bad += n - sum(map(str.isprintable, decoded)) - sum(map(decoded.count, "\n\r\t"))
    # A short decoding has no room for noise: one control character in a dozen
    # is what random bytes look like.
    if bad > (0.15 * n if n >= 64 else 0):
        return False
    letters = sum(map(str.isalpha, decoded))
    spaces = sum(map(decoded.count, " \n\t"))
    return letters + spaces >= 0.7 * n if " " in decoded else letters >= 0.8 * n


# --- selection ----------------------------------------------------------------


def _unique(variants: list[Variant], text: str, seen: set[str] | None = None) -> list[Variant]:
    """Drop variants that repeat the text or an earlier variant."""
    seen = set() if seen is None else seen
    kept = []
    for variant in variants:
        if variant.text != text and variant.text not in seen:
            seen.add(variant.text)
            kept.append(variant)
    return kept


def _select(variants: list[Variant], limit: int) -> list[Variant]:
    """At most ``limit`` variants, in order; past the limit, the ones that read most like
    instructions win, so a flood of decoy segments cannot push the payload out."""
    if limit <= 0:
        return []
    if len(variants) <= limit:
        return variants
    ranked = sorted(
        range(len(variants)), key=lambda i: -_common_word_count(variants[i].text[:_MAX_DECODED])
    )
    return [variants[i] for i in sorted(ranked[:limit])]
