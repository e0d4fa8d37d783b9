"""``mantlet anonymize``: files at rest, irreversibly."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mantlet.cli.app import app

runner = CliRunner()


def test_csv_with_hints_and_keyed_hash(tmp_path: Path) -> None:
    source, target, key = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "tenant.key"
    source.write_text("name,email,note\nBob,bob@example.com,call +1 415-555-2671\n")
    result = runner.invoke(
        app,
        [
            "anonymize",
            str(source),
            "-o",
            str(target),
            "--key-file",
            str(key),
            "--hint",
            "name=PERSON",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 1
    out = target.read_text()
    assert "bob@example.com" not in out and "Bob" not in out and "555-2671" not in out
    assert "<EMAIL_ADDRESS:" in out and "<PERSON:" in out
    again = tmp_path / "again.csv"
    runner.invoke(
        app,
        [
            "anonymize",
            str(source),
            "-o",
            str(again),
            "--key-file",
            str(key),
            "--hint",
            "name=PERSON",
        ],
    )
    assert again.read_text() == out  # same key, same tokens: joins still work


def test_jsonl_masking_and_errors(tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"msg": "ssn 536-22-1234"}\n{"msg": "fine"}\n')
    result = runner.invoke(app, ["anonymize", str(source), "-o", str(target), "--method", "mask"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["msg"] for x in target.read_text().splitlines()] == [
        "ssn ***********",
        "fine",
    ]
    needs_key = runner.invoke(app, ["anonymize", str(source), "-o", str(target)])
    assert needs_key.exit_code != 0 and "key-file" in needs_key.stderr


def test_names_with_the_crf_ner_and_an_unknown_backend_refused(tmp_path: Path) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("Forward this to Marguerite Okonkwo in Lisbon.\n")
    args = ["anonymize", str(source), "-o", str(target), "--method", "mask"]
    result = runner.invoke(app, [*args, "--ner", "en"])
    assert result.exit_code == 0, result.stderr
    assert "Okonkwo" not in target.read_text() and "Lisbon" not in target.read_text()
    refused = runner.invoke(app, [*args, "--ner", "xx"])
    assert refused.exit_code == 2
    assert "unknown NER backend 'xx'" in refused.stderr and "Traceback" not in refused.stderr
