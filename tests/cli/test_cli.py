"""The ``mantlet`` command line, end to end through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mantlet import __version__
from mantlet.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CREDSWEEPER = ROOT.parent / "shared/datasets/secrets_credsweeper/data.jsonl"
AWS_KEY_ID = "AKIA" + "Q3EGRIMNDTZ4PVBX"  # shaped like a key id; not a real one

runner = CliRunner()


def run(*args: str, input: str | bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_scan_json_from_stdin_reports_the_key_and_its_span() -> None:
    text = f"my key is {AWS_KEY_ID}\n"
    code, out, _ = run("scan", "--json", input=text)
    assert code == 0
    verdict = json.loads(out)
    assert verdict["action"] == "redact"
    (finding,) = [f for f in verdict["findings"] if f["detector"] == "secrets"]
    assert finding["kind"] == "AWS_ACCESS_KEY_ID"
    assert text[finding["start"] : finding["end"]] == AWS_KEY_ID
    assert 0.5 <= finding["score"] <= 1
    assert AWS_KEY_ID not in verdict["sanitized_text"]
    assert verdict["ran"] == ["secrets", "invisible_text", "injection", "pii"]
    assert verdict["skipped"] == ["canary", "autoload_urls"]


def test_scan_readme_prompt_example_redacts_password_and_key() -> None:
    code, out, _ = run("scan", "--file", str(EXAMPLES / "prompt.txt"), "--json")
    assert code == 0
    verdict = json.loads(out)
    assert {f["kind"] for f in verdict["findings"]} == {"PASSWORD", "AWS_ACCESS_KEY_ID"}
    assert '"<PASSWORD_1>"' in verdict["sanitized_text"]


def test_scan_readme_answer_example_is_allowed() -> None:
    code, out, _ = run(
        "scan", "--side", "output", "--file", str(EXAMPLES / "answer.txt"), "--fail-on", "flag"
    )
    assert code == 0
    assert "verdict: allow" in out


def test_scan_messages_example_covers_tool_messages() -> None:
    code, out, _ = run("scan", "--messages", "--file", str(EXAMPLES / "messages.json"), "--json")
    assert code == 0
    verdict = json.loads(out)
    locations = {f["location"] for f in verdict["findings"]}
    assert locations == {"messages[1].content", "messages[2].content"}
    assert "Hunter2-Staging" not in json.dumps(verdict["sanitized_messages"])
    assert verdict["sanitized_documents"] == ["Runbook: rotate credentials every 90 days."]


def test_scan_with_user_policy_example() -> None:
    code, out, _ = run(
        "scan", "-p", str(EXAMPLES / "policy.yaml"), "--json", "status of Project Nightingale?"
    )
    assert code == 0
    assert json.loads(out)["action"] == "flag"
    code, out, _ = run("scan", "-p", str(EXAMPLES / "policy.yaml"), "--json", "pwd: 'Tr0ub4dor&3'")
    assert json.loads(out)["action"] == "block"


def test_fail_on_sets_exit_code() -> None:
    code, _, _ = run("scan", "--fail-on", "redact", f"key {AWS_KEY_ID}")
    assert code == 1
    code, _, _ = run("scan", "--fail-on", "block", f"key {AWS_KEY_ID}")
    assert code == 0


def test_invalid_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff\xfe not utf-8")
    code, _, err = run("scan", "--file", str(path))
    assert code == 2
    assert "not valid UTF-8" in err


def test_malformed_messages_json_is_a_clear_error() -> None:
    code, _, err = run("scan", "--messages", "-", input="{not json")
    assert code == 2
    assert "not JSON" in err
    code, _, err = run("scan", "--messages", "-", input="[" * 100_000 + "]" * 100_000)
    assert code == 2
    assert "nests too deeply" in err
    code, _, err = run("scan", "--messages", "-", input='[{"role": "wizard", "content": "x"}]')
    assert code == 2
    assert "messages[0].role" in err


def test_scan_a_whole_request_object_covers_its_tools() -> None:
    request = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": AWS_KEY_ID}}],
    }
    code, out, _ = run("scan", "--messages", "--json", "-", input=json.dumps(request))
    assert code == 0
    verdict = json.loads(out)
    assert [f["location"] for f in verdict["findings"]] == ["tools[0].function.description"]
    assert verdict["sanitized_fields"]["tools"][0]["function"]["description"] == (
        "<AWS_ACCESS_KEY_ID_1>"
    )
    code, _, err = run("scan", "--messages", "--side", "output", "-", input=json.dumps(request))
    assert code == 2
    assert "scans a message list only" in err
    code, out, _ = run("scan", "--messages", "-", input=json.dumps(request))  # for humans
    assert code == 0
    assert '"description": "<AWS_ACCESS_KEY_ID_1>"' in out and AWS_KEY_ID not in out


def test_eval_json_on_classification_rows(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    rows = [
        {"text": f"key {AWS_KEY_ID}", "label": 1},
        {"text": 'password = "Tr0ub4dor&3"', "label": 1},
        {"text": "nothing to see", "label": 0},
        {"text": "reset your password: click here", "label": 0},
        {"text": "the token limit is 4096", "label": 1},  # a miss, on purpose
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    code, out, _ = run("eval", "secrets", "--data", str(data), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["n"] == 5
    assert (report["tp"], report["fp"], report["tn"], report["fn"]) == (2, 0, 2, 1)
    assert report["precision"] == 1.0
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["fpr"] == 0.0
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert report["f1"] == pytest.approx(0.8)


def test_eval_human_output_on_span_rows(tmp_path: Path) -> None:
    text = f"id {AWS_KEY_ID} end"
    start = text.index(AWS_KEY_ID)
    row = {
        "text": text,
        "spans": [{"start": start, "end": start + 20, "label": "AWS_ACCESS_KEY_ID"}],
    }
    data = tmp_path / "spans.jsonl"
    data.write_text(json.dumps(row))
    code, out, _ = run("eval", "secrets", "--data", str(data))
    assert code == 0
    assert "exact match, any label: precision 1.000 recall 1.000" in out


def test_eval_bad_data_names_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a", "label": 0}\n{oops\n')
    code, _, err = run("eval", "secrets", "--data", str(data))
    assert code == 2
    assert f"{data}:2" in err


def test_eval_unknown_detector() -> None:
    code, _, err = run("eval", "nope", "--data", str(EXAMPLES / "prompt.txt"))
    assert code == 2
    assert "error" in err


@pytest.mark.skipif(not CREDSWEEPER.is_file(), reason="../shared/datasets is not present")
def test_eval_on_credsweeper_corpus() -> None:
    code, out, _ = run("eval", "secrets", "--data", str(CREDSWEEPER), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["n"] == 151
    for key in ("precision", "recall", "f1", "balanced_accuracy", "fpr"):
        assert 0.0 <= report[key] <= 1.0
    # A regression guard well below the measured figures (see the README).
    assert report["precision"] > 0.8
    assert report["spans"]["label_agnostic"]["overlap"]["micro"]["recall"] > 0.3


def test_policy_check_valid_and_json() -> None:
    code, out, _ = run("policy", "check", str(EXAMPLES / "policy.yaml"))
    assert code == 0
    assert "valid" in out
    code, out, _ = run("policy", "check", "strict", "--json")
    assert code == 0
    assert json.loads(out)["policy"]["detectors"]["secrets"]["action"] == "block"


def test_policy_check_reports_file_yaml_path_and_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\ndetectors:\n  secrets:\n    threshold: 3\n")
    code, _, err = run("policy", "check", str(path))
    assert code == 2
    assert str(path) in err
    assert "detectors.secrets.threshold" in err
    assert "less than or equal to 1" in err


def test_policy_check_validates_detector_options_without_loading_models(tmp_path: Path) -> None:
    """Options are each detector's own schema: an unknown NER backend or rule
    id is reported by `policy check`, not first by a request."""
    path = tmp_path / "bad.yaml"
    head = "version: 1\nextends: balanced\ndetectors:\n  pii:\n"
    for options, problem in [
        ("{ner: xx}", "unknown NER backend 'xx'"),
        ("{disabled_rules: [no_such_rule]}", "unknown rule(s)"),
    ]:
        path.write_text(f"{head}    options: {options}\n")
        code, _, err = run("policy", "check", str(path))
        assert code == 2, err
        assert str(path) in err and "detectors.pii.options" in err and problem in err
    path.write_text(f"{head}    options: {{ner: en}}\n")
    assert run("policy", "check", str(path))[0] == 0


def test_policy_schema_is_json_schema() -> None:
    code, out, _ = run("policy", "schema")
    assert code == 0
    schema = json.loads(out)
    assert "detectors" in schema["properties"]
    assert "DetectorPolicy" in schema["$defs"]


def test_policy_init_writes_a_valid_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    code, _, _ = run("policy", "init", str(path), "--profile", "strict")
    assert code == 0
    assert "extends: strict" in path.read_text()
    code, _, _ = run("policy", "check", str(path))
    assert code == 0
    code, _, err = run("policy", "init", str(path))
    assert code == 2
    assert "--force" in err
    code, _, err = run("policy", "init", str(tmp_path / "x.yaml"), "--profile", "nope")
    assert code == 2


def test_version_and_detectors() -> None:
    code, out, _ = run("version", "--json")
    assert code == 0
    assert json.loads(out)["mantlet"] == __version__
    code, out, _ = run("detectors", "--json")
    assert code == 0
    names = {d["name"]: d for d in json.loads(out)}
    assert {"secrets", "invisible_text", "regex"} <= set(names)
    assert names["secrets"]["sides"] == "both"


@pytest.mark.parametrize(
    "command",
    [[], ["scan"], ["eval"], ["policy"], ["policy", "check"], ["policy", "init"], ["version"]],
)
def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Usage" in out


def test_verbose_reraises_for_debugging(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("detectors: [")
    result = runner.invoke(app, ["--verbose", "policy", "check", str(path)])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "PolicyError"
