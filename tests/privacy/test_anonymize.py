"""Irreversible anonymization and structured data (JSON, CSV, Parquet)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from mantlet.detectors.pii import PiiDetector
from mantlet.errors import ConfigError
from mantlet.privacy import Method, StructuredAnonymizer, hmac_token, mask, transform_for
from mantlet.privacy.surrogates import format_preserving

KEY_A, KEY_B = b"a" * 32, b"b" * 32
DETECTOR = PiiDetector()


def test_keyed_hash_is_stable_per_tenant_key_and_differs_across_keys() -> None:
    token = hmac_token(KEY_A)
    assert token("EMAIL_ADDRESS", "a@example.com") == token("EMAIL_ADDRESS", "a@example.com")
    assert token("EMAIL_ADDRESS", "a@example.com") != token("EMAIL_ADDRESS", "b@example.com")
    assert token("EMAIL_ADDRESS", "a@example.com") != hmac_token(KEY_B)(
        "EMAIL_ADDRESS", "a@example.com"
    )
    assert "a@example.com" not in token("EMAIL_ADDRESS", "a@example.com")
    with pytest.raises(ConfigError):
        hmac_token(b"short")
    with pytest.raises(ConfigError):
        transform_for(Method.HASH)


def test_mask_and_format_preserving_replacement() -> None:
    assert mask("US_SSN", "536-22-1234") == "***********"
    fake = format_preserving("536-22-1234", KEY_A)
    assert fake != "536-22-1234" and fake[3] == "-" and fake[6] == "-"
    assert all(c.isdigit() for c in fake.replace("-", ""))
    assert format_preserving("536-22-1234", KEY_A) == fake
    assert format_preserving("AB-12", KEY_A)[2] == "-"


def test_json_values_are_anonymized_with_hints() -> None:
    anonymizer = StructuredAnonymizer(DETECTOR, hmac_token(KEY_A))
    data = {
        "user": {"email": "a@example.com", "note": "call +44 20 7946 0958 today", "name": "Jo"},
        "id": "a@example.com",
        "tags": ["x@example.org", 3],
    }
    out = anonymizer.json(data, {"id": "keep", "user.name": "PERSON"})
    assert out["id"] == "a@example.com"  # kept by hint
    assert out["user"]["email"].startswith("<EMAIL_ADDRESS:")
    assert out["user"]["note"].startswith("call <PHONE_NUMBER:") and out["user"]["note"].endswith(
        " today"
    )
    assert out["user"]["name"].startswith("<PERSON:")  # hinted column, no detection needed
    assert out["tags"][0].startswith("<EMAIL_ADDRESS:") and out["tags"][1] == 3
    # Joins still work: the same value gives the same token everywhere.
    same = anonymizer.json({"email": "a@example.com"})
    assert same["email"] == out["user"]["email"]


def test_csv_columns_with_hints() -> None:
    anonymizer = StructuredAnonymizer(DETECTOR, transform_for(Method.MASK))
    source = io.StringIO(
        "name,email,note,order\nBob,bob@example.com,IBAN GB82 WEST 1234 5698 7654 32,17\n"
    )
    target = io.StringIO()
    assert anonymizer.csv(source, target, {"name": "PERSON", "order": "keep"}) == 1
    rows = list(csv.reader(io.StringIO(target.getvalue())))
    assert rows[0] == ["name", "email", "note", "order"]
    assert rows[1] == ["***", "*" * 15, "IBAN " + "*" * 27, "17"]
    with pytest.raises(ConfigError):
        anonymizer.csv(io.StringIO("a\n1\n"), io.StringIO(), {"nope": "keep"})


def test_parquet_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="Parquet support needs pyarrow")
    import pyarrow.parquet as pq

    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    table = pa.table({"email": ["a@example.com", None], "n": [1, 2], "note": ["hi", "x@y.org"]})
    pq.write_table(table, source)
    anonymizer = StructuredAnonymizer(DETECTOR, transform_for(Method.MASK))
    assert anonymizer.parquet(str(source), str(target), {"email": "EMAIL_ADDRESS"}) == 2
    out = pq.read_table(target).to_pydict()
    assert out == {"email": ["*" * 13, None], "n": [1, 2], "note": ["hi", "*" * 7]}


def test_fullwidth_values_are_anonymized_in_the_original_text() -> None:
    anonymizer = StructuredAnonymizer(DETECTOR, transform_for(Method.MASK))
    card = "".join(chr(ord(c) + 0xFEE0) for c in "4111111111111111")
    [out] = anonymizer.texts([f"paid with {card} today"])
    assert out == "paid with " + "*" * 16 + " today"
