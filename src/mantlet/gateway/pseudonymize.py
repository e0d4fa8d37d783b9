"""Gateway side of reversible pseudonymization: PII in a chat request or a
completion prompt is swapped for per-conversation surrogates before the
upstream sees it, and the upstream's answer is restored for the caller
(streamed answers too, event by event).

The conversation is the caller's ``x-mantlet-conversation`` header, scoped to
the tenant, or the request itself; the vault lives in ``data_dir`` with its
key in a 0600 file next to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mantlet.detectors.pii import SURROGATES_KEY, PiiDetector, PiiOptions
from mantlet.detectors.pii.ner import known_backend
from mantlet.gateway.streaming import TEXT_DELTA_FIELDS
from mantlet.privacy import Pseudonymizer, Restorer, SurrogateStyle, Vault, load_or_create_key

CONVERSATION_HEADER = "x-mantlet-conversation"


class PrivacySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pseudonymize: bool = Field(True, description="Swap PII for surrogates; restore answers.")
    style: SurrogateStyle = Field(
        SurrogateStyle.PLACEHOLDER,
        description="placeholder (<PERSON_1>) or fake (realistic values of the same shape).",
    )
    ner: str | None = Field(
        None,
        description="NER backend for names/places/orgs: 'en' (a CRF, built in) or "
        "'en_spacy' (needs mantlet[pii]).",
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    ttl_s: float = Field(3600.0, gt=0, description="How long a conversation's mapping lives.")
    vault_path: Path | None = Field(None, description="Default: data_dir/vault.db.")

    @field_validator("ner")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        return known_backend(value)


class GatewayPrivacy:
    def __init__(self, settings: PrivacySettings, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create_key(data_dir / "vault.key")
        self.vault = Vault(key, settings.vault_path or data_dir / "vault.db", ttl_s=settings.ttl_s)
        detector = PiiDetector(PiiOptions(ner=settings.ner))
        detector.warm_up()
        self.pseudonymizer = Pseudonymizer(
            detector,
            self.vault,
            style=settings.style,
            threshold=settings.threshold,
            fake_key=key,
        )

    def conversation(self, request: Request, tenant: str, key_id: str) -> str:
        """The vault's name for this conversation: the caller's own id (the
        header) or the request's, scoped to the tenant and the key. Scoped to
        the key because whoever names a conversation gets its surrogates
        restored: another key of the tenant guessing "thread-7" must not get
        the e-mail addresses someone else's thread swapped out."""
        given = request.headers.get(CONVERSATION_HEADER, "").strip()
        return f"{tenant}\x1f{key_id}\x1f{given or request.state.request_id}"

    async def pseudonymize(
        self, messages: Sequence[Any], conversation: str, tenant: str
    ) -> list[dict[str, Any]]:
        return await asyncio.to_thread(
            self.pseudonymizer.pseudonymize_messages, messages, conversation, tenant
        )

    async def pseudonymize_texts(
        self, texts: Sequence[str], conversation: str, tenant: str
    ) -> list[str]:
        """Plain prompts (``/v1/completions``), as one conversation's user turns."""
        messages = [{"role": "user", "content": text} for text in texts]
        done = await self.pseudonymize(messages, conversation, tenant)
        return [str(m["content"]) for m in done]

    async def pseudonymize_fields(
        self, fields: Mapping[str, Any], conversation: str, tenant: str
    ) -> dict[str, Any]:
        """The request's other fields (tool declarations, ``user``, metadata,
        response schemas, ...) with the PII in their string values swapped
        for this conversation's surrogates, so a value the model repeats (in
        a tool call's arguments, say) is restored for the caller instead of
        coming back as a redaction placeholder. Object keys and identifier
        values (names, types, required-property lists) stay as they are: the
        caller's code matches on them."""
        copy, slots = _with_string_slots(fields)
        if slots:
            texts = [holder[key] for holder, key in slots]
            for (holder, key), text in zip(
                slots, await self.pseudonymize_texts(texts, conversation, tenant), strict=True
            ):
                holder[key] = text
        return copy

    def shield_metadata(self, conversation: str) -> dict[str, Any]:
        """Tells the policy's PII detector which spans are surrogates, so it
        does not redact them irreversibly."""
        return {SURROGATES_KEY: sorted(self.vault.mapping(conversation))}

    def restore(self, answer: dict[str, Any], conversation: str) -> None:
        """Restores surrogates in every choice of a chat or text answer, in
        place: the text, a message's content, refusal and reasoning trace (the
        fields a stream relays too), and its tool-call arguments, where the
        real values go in JSON-escaped."""
        restorer = None
        for choice in answer.get("choices", []):
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            holder = message if isinstance(message, dict) else choice
            fields = ("content", *TEXT_DELTA_FIELDS) if holder is message else ("text",)
            restorer = restorer or Restorer(self.vault.mapping(conversation))
            for field in fields:
                if isinstance(holder.get(field), str):
                    holder[field] = restorer.restore(holder[field])
            if holder is message:
                for function in _functions(message):
                    function["arguments"] = restorer.restore_json_strings(function["arguments"])

    def close(self) -> None:
        self.vault.close()


# Values that name things the caller's code matches on, not free text.
_IDENTIFIER_KEYS = frozenset({"name", "type", "format", "pattern", "$ref", "required", "enum"})


def _with_string_slots(
    fields: Mapping[str, Any],
) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """A copy of ``fields`` (containers copied, so the caller's body is left
    alone) and the (container, key) of each free-text string in it.
    Iterative: request bodies are already capped in depth and size."""
    root = dict(fields)
    slots: list[tuple[Any, Any]] = []
    pending: list[Any] = [root]
    while pending:
        node = pending.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in items:
            if isinstance(node, dict) and key in _IDENTIFIER_KEYS:
                continue
            if isinstance(value, str):
                if value:
                    slots.append((node, key))
            elif isinstance(value, dict | list):
                node[key] = dict(value) if isinstance(value, dict) else list(value)
                pending.append(node[key])
    return root, slots


def _functions(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The function objects of a message's tool calls (and legacy function
    call) whose arguments are a string."""
    calls = message.get("tool_calls")
    found = (
        [c.get("function") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    )
    found.append(message.get("function_call"))
    return [f for f in found if isinstance(f, dict) and isinstance(f.get("arguments"), str)]
