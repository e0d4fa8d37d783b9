"""Reversible pseudonymization: stable surrogates, no collisions, restoring
whole answers and streamed ones."""

from __future__ import annotations

import json
import random

import pytest

from mantlet.detectors.pii import PiiDetector
from mantlet.detectors.pii.validators import luhn_ok
from mantlet.privacy import (
    Pseudonymizer,
    Restorer,
    StreamRestorer,
    SurrogateStyle,
    Vault,
    generate_key,
)

TEXT = (
    "Mail jane.roe@example.org or call +1 415-555-2671; card 4111 1111 1111 1111. "
    "Again: jane.roe@example.org."
)
DETECTOR = PiiDetector()


def pseudonymizer(style: SurrogateStyle = SurrogateStyle.PLACEHOLDER) -> Pseudonymizer:
    return Pseudonymizer(DETECTOR, Vault(generate_key()), style=style, fake_key=generate_key())


def test_placeholders_are_stable_per_value_and_restore_exactly() -> None:
    p = pseudonymizer()
    out = p.pseudonymize(TEXT, "c")
    assert "jane.roe@example.org" not in out and "4111" not in out and "555-2671" not in out
    assert out.count("<EMAIL_ADDRESS_1>") == 2
    assert "<PHONE_NUMBER_1>" in out and "<CREDIT_CARD_1>" in out
    assert p.restore(out, "c") == TEXT
    # The same value in a later turn of the conversation gets the same surrogate.
    assert p.pseudonymize("from jane.roe@example.org", "c") == "from <EMAIL_ADDRESS_1>"
    # Another conversation numbers independently and cannot restore this one.
    assert p.restore(out, "other") == out


def test_surrogates_never_collide_with_text_already_there() -> None:
    p = pseudonymizer()
    text = "literal <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>, real a@example.com"
    out = p.pseudonymize(text, "c")
    assert out == "literal <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>, real <EMAIL_ADDRESS_3>"
    assert p.restore(out, "c") == text


def test_fake_surrogates_keep_the_shape_and_restore() -> None:
    p = pseudonymizer(SurrogateStyle.FAKE)
    out = p.pseudonymize(TEXT, "c")
    assert "jane.roe@example.org" not in out and "4111 1111 1111 1111" not in out
    card = next(f for f in DETECTOR.detect(out, _ctx()) if f.kind == "CREDIT_CARD")
    fake = out[card.start : card.end]
    assert len(fake) == len("4111 1111 1111 1111") and fake.count(" ") == 3
    assert luhn_ok(fake.replace(" ", ""))
    assert p.restore(out, "c") == TEXT


def _ctx():  # type: ignore[no-untyped-def]
    from mantlet.core.types import ScanContext

    return ScanContext()


@pytest.mark.parametrize("style", list(SurrogateStyle))
def test_surrogate_split_across_two_stream_chunks_is_restored(style: SurrogateStyle) -> None:
    p = pseudonymizer(style)
    answer = p.pseudonymize(TEXT, "c")
    surrogate = next(iter(p.vault.mapping("c")))
    at = answer.index(surrogate) + len(surrogate) // 2  # split inside the surrogate
    restorer = p.stream_restorer("c")
    first = restorer.feed(answer[:at])
    assert surrogate[: len(surrogate) // 2] not in first[-len(surrogate) :]  # held back
    assert first + restorer.feed(answer[at:]) + restorer.flush() == TEXT


def test_any_chunking_of_the_answer_restores_the_original() -> None:
    p = pseudonymizer()
    answer = p.pseudonymize(TEXT, "c")
    rng = random.Random(3)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(answer)), rng.randint(1, 12)))
        chunks = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
        assert "".join(p.stream_restorer("c").restore_stream(chunks)) == TEXT


def test_stream_restorer_passes_text_through_and_releases_a_false_start() -> None:
    restorer = StreamRestorer({"<PERSON_1>": "Jane"})
    assert restorer.feed("hello <PER") == "hello "
    assert restorer.feed("MISSION> ok") == "<PERMISSION> ok"
    assert restorer.feed("bye <") == "bye "
    assert restorer.flush() == "<"


def test_messages_are_pseudonymized_part_by_part() -> None:
    p = pseudonymizer()
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "mail a@example.com"}]},
        {"role": "user", "content": "again a@example.com"},
    ]
    out = p.pseudonymize_messages(messages, "c")
    assert out[1]["content"][0]["text"] == "mail <EMAIL_ADDRESS_1>"
    assert out[2]["content"] == "again <EMAIL_ADDRESS_1>"
    assert messages[2]["content"] == "again a@example.com"  # input not mutated


def test_concurrent_requests_of_one_conversation_never_share_a_surrogate() -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = pseudonymizer()
    texts = [f"mail user{i}@example.com" for i in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(pool.map(lambda t: p.pseudonymize(t, "c"), texts))
    assert len(set(outs)) == len(texts)
    assert len(p.vault.mapping("c")) == len(texts)
    assert [p.restore(o, "c") for o in outs] == texts


def test_fake_addresses_read_as_addresses_and_restore() -> None:
    from mantlet.privacy.surrogates import fake_value

    key = generate_key()
    with_town = fake_value("STREET_ADDRESS", "Kastanienallee 12, 10435 Berlin", key, 0)
    assert with_town == fake_value("STREET_ADDRESS", "Kastanienallee 12, 10435 Berlin", key, 0)
    number, rest = with_town.split(" ", 1)
    assert number.isdigit() and ", " in rest and "Berlin" not in rest
    street_only = fake_value("STREET_ADDRESS", "41 Harbour Road", key, 0)
    assert "," not in street_only and street_only.split(" ", 1)[0].isdigit()
    p = pseudonymizer(SurrogateStyle.FAKE)
    text = "My new address is 41 Harbour Road, please ship it there."
    out = p.pseudonymize(text, "c")
    assert "Harbour" not in out
    assert p.restore(out, "c") == text


def test_the_tenant_scopes_the_detectors_caches() -> None:
    """The gateway passes the tenant: one tenant's request must not warm a
    cache that another tenant could time."""
    from mantlet.detectors.pii import PiiOptions
    from mantlet.detectors.pii.ner import en_crf, load_backend

    detector = PiiDetector(PiiOptions(ner="en"))
    detector.warm_up()
    shipped = load_backend("en")
    backend = en_crf.CrfNer(shipped._tagger, shipped._gazetteer)  # type: ignore[attr-defined]
    detector._ner = backend
    p = Pseudonymizer(detector, Vault(generate_key()))
    text = "Forward this to Ilse Brandauer, please."
    first = p.pseudonymize(text, "a\x1fc1", tenant="a")
    assert "Brandauer" not in first
    p.pseudonymize(text, "b\x1fc1", tenant="b")
    assert backend.cache_hits == 0
    p.pseudonymize(text, "a\x1fc2", tenant="a")
    assert backend.cache_hits == 1


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_values_in_fullwidth_or_split_by_zero_width_spaces_are_pseudonymized() -> None:
    """A model reads ４１１１… as a card number: it gets a surrogate, and the
    caller gets back exactly the form they wrote."""
    p = pseudonymizer()
    card, mail = fullwidth("4111 1111 1111 1111"), "jane\u200b.roe@exam\u200bple.org"
    text = f"card {card}, mail {mail}"
    out = p.pseudonymize(text, "c")
    assert out == "card <CREDIT_CARD_1>, mail <EMAIL_ADDRESS_1>"
    assert p.restore(out, "c") == text


def test_surrogates_inside_json_strings_are_restored_escaped() -> None:
    restorer = Restorer({"<PERSON_1>": 'Jo "JJ" O\\Neil', "<EMAIL_ADDRESS_1>": "jo@example.org"})
    arguments = json.dumps({"to": "<EMAIL_ADDRESS_1>", "name": "<PERSON_1>"})
    restored = restorer.restore_json_strings(arguments)
    assert json.loads(restored) == {"to": "jo@example.org", "name": 'Jo "JJ" O\\Neil'}
