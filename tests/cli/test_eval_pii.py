"""``mantlet eval pii``: per-entity precision/recall/F1, exact and overlap."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mantlet.cli.app import app

runner = CliRunner()


def rows(tmp_path: Path) -> Path:
    data = tmp_path / "spans.jsonl"
    texts = [
        (
            "Angela Merkel visited Paris with Siemens executives.",
            [(0, 13, "PER"), (22, 27, "GPE"), (33, 40, "ORG")],
        ),
        (
            "Write to jane.roe@example.org or call +1 415-555-2671.",
            [(9, 29, "EMAIL_ADDRESS"), (38, 53, "PHONE_NUMBER")],
        ),
        ("Nothing to see here.", []),
    ]
    with data.open("w") as handle:
        for text, spans in texts:
            handle.write(
                json.dumps(
                    {
                        "text": text,
                        "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans],
                    }
                )
                + "\n"
            )
    return data


def test_eval_pii_json_is_keyed_by_entity_with_exact_and_overlap(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "pii", "--data", str(rows(tmp_path)), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    entities = report["entities"]
    assert {"PERSON", "LOCATION", "ORGANIZATION", "EMAIL_ADDRESS", "PHONE_NUMBER"} <= set(entities)
    for scores in entities.values():
        for mode in ("exact", "overlap"):
            assert {"precision", "recall", "f1"} <= set(scores[mode])
    assert entities["EMAIL_ADDRESS"]["exact"]["f1"] == 1.0
    assert entities["PHONE_NUMBER"]["exact"]["f1"] == 1.0
    assert entities["PERSON"]["overlap"]["recall"] == 1.0  # PER was aliased to PERSON
    assert report["label_aliases"]["GPE"] == "LOCATION"


def test_eval_pii_without_ner_and_with_a_label_map(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            "pii",
            "--data",
            str(rows(tmp_path)),
            "--json",
            "-o",
            "ner=null",
            "--label-map",
            "PHONE_NUMBER=PHONE",
        ],
    )
    assert result.exit_code == 0, result.stderr
    entities = json.loads(result.stdout)["entities"]
    assert entities["PERSON"]["exact"]["recall"] == 0.0  # no NER: names are missed
    assert entities["PHONE"]["exact"]["recall"] == 0.0  # gold renamed, so it no longer matches
    bad = runner.invoke(app, ["eval", "pii", "--data", str(rows(tmp_path)), "-o", "ner"])
    assert bad.exit_code != 0
