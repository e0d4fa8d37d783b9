"""Names, places and organizations through the per-language NER backend, and
the model's sha256 pin."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from mantlet.core.types import ScanContext
from mantlet.detectors.pii import PiiDetector, PiiOptions
from mantlet.detectors.pii.ner import en_spacy, languages, load_backend
from mantlet.errors import ConfigError, DetectorError

pytest.importorskip("spacy", reason="NER needs the pii extra")


def test_english_names_places_and_orgs_are_found_next_to_structured_entities() -> None:
    detector = PiiDetector(PiiOptions(ner="en_spacy"))
    text = "Angela Merkel met Tim Cook in Berlin to discuss Apple; mail tim@example.com."
    found = {(f.kind, text[f.start : f.end]) for f in detector.detect(text, ScanContext())}
    assert ("PERSON", "Angela Merkel") in found
    assert ("LOCATION", "Berlin") in found
    assert ("ORGANIZATION", "Apple") in found
    assert ("EMAIL_ADDRESS", "tim@example.com") in found
    batched = detector.detect_many([text, "no names here"])
    assert {(f.kind, text[f.start : f.end]) for f in batched[0]} == found
    assert batched[1] == []


def test_entities_option_filters_ner_labels_too() -> None:
    detector = PiiDetector(PiiOptions(ner="en_spacy", entities=["PERSON"]))
    text = "Angela Merkel visited Berlin."
    assert [f.kind for f in detector.detect(text, ScanContext())] == ["PERSON"]


def test_one_backend_per_language_and_unknown_languages_are_config_errors() -> None:
    assert languages() == ["en", "en_spacy"]
    assert load_backend("en_spacy") is load_backend("en_spacy")  # loaded once per process
    with pytest.raises(ConfigError):
        load_backend("xx")


def test_a_tampered_model_file_fails_the_sha256_check(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    for name in en_spacy.SHA256:  # the files the check reads
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(en_spacy.model_dir() / name, copy / name)
    en_spacy.verify(copy)  # the pristine copy passes
    with (copy / "ner" / "moves").open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(DetectorError, match="sha256"):
        en_spacy.verify(copy)
    (copy / "ner" / "model").unlink()
    with pytest.raises(DetectorError, match="ner/model"):
        en_spacy.verify(copy)


def test_a_file_added_to_the_model_folder_fails_the_check(tmp_path: Path) -> None:
    """spaCy reads what the folder holds; an extra file (a swapped config
    include, a pickled component) must not ride along unverified."""
    copy = tmp_path / "model"
    shutil.copytree(en_spacy.model_dir(), copy)
    en_spacy.verify(copy)
    (copy / "ner" / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(DetectorError, match=r"ner/extra\.bin"):
        en_spacy.verify(copy)


def test_the_shipped_model_finds_foreign_names_in_chat_text() -> None:
    """What the fine-tuning was for: the stock model labels both of these
    people ORG; names it already knew must stay people."""
    backend = load_backend("en_spacy")
    for text, name in [
        ("Jouni said he would sign the lease today.", "Jouni"),
        ("Could you transfer me to Mrs Ilse Brandauer?", "Mrs Ilse Brandauer"),
        ("My name is Oluwaseun Adeyemi.", "Oluwaseun Adeyemi"),
        ("Sipho called twice about the delivery.", "Sipho"),
    ]:
        found = {(text[s.start : s.end], s.label) for s in backend.entities(text)}
        assert (name, "PERSON") in found, found


def test_the_shipped_model_finds_whole_postal_addresses_in_context() -> None:
    """A town inside an address is part of the address, not a place of its
    own; without a word that announces an address, the model's guess stays
    under the policy threshold (it also calls "3 Barbecue Chicken" one)."""
    detector = PiiDetector(PiiOptions(ner="en_spacy"))
    text = "Please ship the replacement to Kastanienallee 12, 10435 Berlin."
    found = [(f.kind, text[f.start : f.end], f.score) for f in detector.detect(text, ScanContext())]
    assert [(kind, value) for kind, value, _ in found] == [
        ("STREET_ADDRESS", "Kastanienallee 12, 10435 Berlin")
    ]
    assert found[0][2] >= 0.5
    bare = "I ordered 3 Barbecue Chicken wings."
    assert all(f.score < 0.5 for f in detector.detect(bare, ScanContext()))


def test_overlapping_rule_and_model_addresses_are_joined() -> None:
    """The rule finds the street, the model the whole address: redacting only
    the stronger would leave the town and country in the clear."""
    detector = PiiDetector(PiiOptions(ner="en_spacy"))
    text = "My new address is 41 Harbour Road, Cobh, Ireland."
    found = [(f.kind, text[f.start : f.end]) for f in detector.detect(text, ScanContext())]
    assert found == [("STREET_ADDRESS", "41 Harbour Road, Cobh, Ireland")]
    rules_only = PiiDetector(PiiOptions(ner=None)).detect(text, ScanContext())
    assert [text[f.start : f.end] for f in rules_only] == ["41 Harbour Road"]


def test_all_lower_case_chat_still_gets_the_model() -> None:
    """Chat users skip the shift key; per text and batched alike."""
    detector = PiiDetector(PiiOptions(ner="en_spacy"))
    text = "my name is john smith and i live in berlin"
    found = {(f.kind, text[f.start : f.end]) for f in detector.detect(text, ScanContext())}
    assert ("PERSON", "john smith") in found
    assert {(f.kind, text[f.start : f.end]) for f in detector.detect_many([text])[0]} == found
    assert detector.detect("12 34 56 -- 78", ScanContext()) == []


def test_per_text_results_are_cached_under_keyed_hashes_only() -> None:
    """A chat client re-sends the conversation every turn; earlier messages
    must not run the model again, and the cache must not hold their text."""
    backend = en_spacy.SpacyNer(load_backend("en_spacy")._nlp)  # type: ignore[attr-defined]
    text = "Please forward the contract to Ilse Brandauer in Graz."
    first = backend.entities(text)
    assert backend.cache_hits == 0
    assert backend.entities(text) == first
    assert backend.cache_hits == 1
    stored = repr(backend._cache._entries)
    assert "Brandauer" not in stored and text not in stored
    assert backend._cache.keys() != [hashlib.blake2b(text.encode(), digest_size=16).digest()]
    backend.clear_cache()
    assert backend.entities(text) == first and backend.cache_hits == 1
    uncached = en_spacy.SpacyNer(load_backend("en_spacy")._nlp, cache_texts=0)  # type: ignore[attr-defined]
    uncached.entities(text)
    uncached.entities(text)
    assert uncached.cache_hits == 0 and not uncached._cache


def test_the_cache_keeps_only_the_most_recent_texts() -> None:
    backend = en_spacy.SpacyNer(load_backend("en_spacy")._nlp, cache_texts=2)  # type: ignore[attr-defined]
    for name in ("Anna", "Berit", "Carla"):
        backend.entities(f"{name} called.")
    assert len(backend._cache) == 2
    backend.entities("Anna called.")  # evicted: runs the model again
    assert backend.cache_hits == 0
    backend.entities("Carla called.")
    assert backend.cache_hits == 1


def test_the_cache_is_not_shared_across_tenants() -> None:
    """A hit is faster than a miss: a shared cache would let one tenant time a
    guess at another tenant's message. The detector passes the tenant along."""
    detector = PiiDetector(PiiOptions(ner="en_spacy"))
    detector.warm_up()
    backend = en_spacy.SpacyNer(load_backend("en_spacy")._nlp)  # type: ignore[attr-defined]
    detector._ner = backend
    text = "Please forward the contract to Ilse Brandauer in Graz."
    first = detector.detect(text, ScanContext(tenant="a"))
    assert detector.detect(text, ScanContext(tenant="b")) == first
    assert backend.cache_hits == 0
    assert detector.detect(text, ScanContext(tenant="a")) == first
    assert backend.cache_hits == 1
    # The scope is length-prefixed: ("ab", "c...") and ("a", "bc...") differ.
    backend.entities("c called.", "ab")
    backend.entities("bc called.", "a")
    assert backend.cache_hits == 1


def test_spacy_reads_a_private_copy_of_the_checked_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """No window between the check and the read: spaCy is pointed at a copy
    of the verified bytes, never at the shipped folder itself."""
    import spacy

    seen: list[Path] = []
    real_load = spacy.load

    def load(path: str, *args: object, **kwargs: object) -> object:
        seen.append(Path(path))
        copied = sorted(
            p.relative_to(path).as_posix() for p in Path(path).rglob("*") if p.is_file()
        )
        assert copied == sorted(en_spacy.SHA256)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(spacy, "load", load)
    backend = en_spacy.load()
    assert seen and seen[0] != en_spacy.model_dir() and not seen[0].exists()  # removed after
    text = "Angela Merkel visited Berlin."
    assert ("PERSON", "Angela Merkel") in {
        (s.label, text[s.start : s.end]) for s in backend.entities(text)
    }


@pytest.mark.parametrize(
    "text",
    [
        "Write a JavaScript function that sorts an array.",
        "How do I read a JSON file in Python?",
        "Write a script that converts a CSV file to JSON.",
    ],
)
def test_spacy_drops_languages_and_formats_in_technical_text(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mantlet.detectors.pii.ner import technical

    backend = load_backend("en_spacy")
    backend.clear_cache()
    assert backend.entities(text) == []
    assert backend.entities_many([text]) == [[]]
    # Without the technical-text check the model's own verdict comes back.
    monkeypatch.setattr(technical, "reads_technical", lambda _text: False)
    backend.clear_cache()
    assert backend.entities(text) != []


def test_spacy_keeps_people_named_like_languages() -> None:
    backend = load_backend("en_spacy")
    backend.clear_cache()
    text = "My colleague Ruby fixed the bug in the Go server."
    assert ("Ruby", "PERSON") in [(text[s.start : s.end], s.label) for s in backend.entities(text)]
