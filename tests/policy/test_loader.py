from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mantlet.core.types import Action, Side
from mantlet.errors import ConfigError, MantletError, PolicyError
from mantlet.policy import (
    DetectorPolicy,
    OnError,
    Policy,
    Redaction,
    json_schema,
    load_policy,
    load_policy_text,
    profiles,
)

SHIPPED = ["balanced", "permissive", "strict"]


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


# -- shipped profiles ---------------------------------------------------------


def test_profiles_lists_the_shipped_yaml_files() -> None:
    assert profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_fail_closed(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert policy.description
    assert {"secrets", "invisible_text"} <= set(policy.detectors)
    for settings in policy.detectors.values():
        assert settings.enabled
        assert settings.on_error is OnError.BLOCK


def test_default_profile_is_balanced() -> None:
    assert load_policy().name == "balanced"
    assert load_policy() == load_policy("balanced")


def test_balanced_profile_redacts_secrets_and_blocks_private_keys() -> None:
    secrets = load_policy("balanced").detectors["secrets"]
    assert secrets.action_for("AWS_ACCESS_KEY") is Action.REDACT
    assert secrets.action_for("PRIVATE_KEY") is Action.BLOCK


@pytest.mark.parametrize(
    ("name", "action"), [("strict", Action.BLOCK), ("permissive", Action.FLAG)]
)
def test_profiles_differ_in_severity(name: str, action: Action) -> None:
    assert load_policy(name).detectors["invisible_text"].action is action


# -- valid policies -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "version: 1\n", "{}\n"])
def test_empty_policy_gets_defaults(text: str) -> None:
    policy = load_policy_text(text)
    assert policy.name == "custom"
    assert policy.timeout_ms == 2000
    assert policy.detectors == {}
    assert policy.extends is None


def test_full_policy_round_trip() -> None:
    policy = load_policy_text(
        """
version: 1
name: team
description: ours
timeout_ms: 750
detectors:
  regex:
    threshold: 0.25
    action: flag
    actions: {TICKET: redact, "*": block}
    on_error: allow
    timeout_ms: 40
    sides: output
    redaction: mask
    options:
      patterns:
        - {kind: TICKET, pattern: "JIRA-[0-9]+"}
  invisible_text:
    enabled: false
"""
    )
    regex = policy.detectors["regex"]
    assert (policy.name, policy.description, policy.timeout_ms) == ("team", "ours", 750)
    assert regex.threshold == 0.25
    assert regex.action is Action.FLAG
    assert regex.on_error is OnError.ALLOW
    assert regex.sides is Side.OUTPUT
    assert regex.redaction is Redaction.MASK
    assert regex.options == {"patterns": [{"kind": "TICKET", "pattern": "JIRA-[0-9]+"}]}
    assert policy.detectors["invisible_text"].enabled is False
    assert policy.timeout_for("regex") == pytest.approx(0.040)
    assert policy.timeout_for("invisible_text") == pytest.approx(0.750)


@pytest.mark.parametrize(
    ("actions", "kind", "expected"),
    [
        ({}, "ANY", Action.BLOCK),  # falls back to `action`
        ({"TICKET": Action.FLAG}, "TICKET", Action.FLAG),
        ({"TICKET": Action.FLAG}, "TICKETS", Action.BLOCK),  # near miss: exact kinds only
        ({"*": Action.REDACT}, "OTHER", Action.REDACT),
        ({"*": Action.REDACT, "TICKET": Action.ALLOW}, "TICKET", Action.ALLOW),  # exact beats *
    ],
)
def test_action_for(actions: dict[str, Action], kind: str, expected: Action) -> None:
    assert DetectorPolicy(actions=actions).action_for(kind) is expected


def test_threshold_boundaries_are_inclusive() -> None:
    low = load_policy_text("detectors: {regex: {threshold: 0}}")
    high = load_policy_text("detectors: {regex: {threshold: 1}}")
    assert low.detectors["regex"].threshold == 0.0
    assert high.detectors["regex"].threshold == 1.0


def test_on_error_allow_logs_a_fail_open_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mantlet.policy.loader"):
        load_policy_text("detectors: {regex: {on_error: allow}}", source="p.yaml")
    assert any("fail open" in r.getMessage() and "regex" in r.getMessage() for r in caplog.records)


def test_disabled_fail_open_detector_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mantlet.policy.loader"):
        load_policy_text("detectors: {regex: {on_error: allow, enabled: false}}")
    assert not caplog.records


def test_json_schema_describes_the_policy() -> None:
    schema = json_schema()
    assert {"version", "timeout_ms", "detectors", "extends"} <= set(schema["properties"])
    detector = schema["$defs"]["DetectorPolicy"]
    assert detector["additionalProperties"] is False
    assert detector["properties"]["threshold"]["maximum"] == 1.0


def test_policy_error_is_a_config_error() -> None:
    err = PolicyError("f.yaml", [("a.b", "bad"), ("", "worse")])
    assert isinstance(err, ConfigError)
    assert isinstance(err, MantletError)
    assert err.diagnostics() == "invalid policy f.yaml:\n  a.b: bad\n  <root>: worse"
    assert str(err) == err.diagnostics()


# -- malformed policy files ---------------------------------------------------------


MALFORMED = [
    # bad YAML syntax: the location is line/column
    pytest.param(
        "detectors:\n  regex: [unclosed\n", "line 3, column 1", "not valid YAML", id="unclosed-flow"
    ),
    pytest.param(
        "detectors:\n  regex:\n    threshold: 0.5\n   enabled: true\n",
        "line 4, column 4",
        "not valid YAML",
        id="bad-indent",
    ),
    pytest.param("name: a\n\tbad: 1\n", "line 2, column 1", "'\\t'", id="tab"),
    # wrong types
    pytest.param("timeout_ms: fast\n", "timeout_ms", "valid integer", id="timeout-str"),
    pytest.param("timeout_ms: true\n", "timeout_ms", "valid integer", id="timeout-bool"),
    pytest.param("timeout_ms: 1.5\n", "timeout_ms", "valid integer", id="timeout-float"),
    pytest.param(
        "detectors: {regex: {enabled: maybe}}\n",
        "detectors.regex.enabled",
        "valid boolean",
        id="enabled-str",
    ),
    pytest.param(
        "detectors: {regex: {threshold: high}}\n",
        "detectors.regex.threshold",
        "valid number",
        id="threshold-str",
    ),
    pytest.param(
        "detectors: {regex: {threshold: yes}}\n",
        "detectors.regex.threshold",
        "valid number",
        id="threshold-bool",
    ),
    pytest.param("detectors: []\n", "detectors", "valid dictionary", id="detectors-list"),
    pytest.param(
        "detectors: {regex: null}\n", "detectors.regex", "valid dictionary", id="detector-null"
    ),
    pytest.param(
        "detectors: {regex: {actions: {SECRET: explode}}}\n",
        "detectors.regex.actions.SECRET",
        "'allow', 'flag', 'redact' or 'block'",
        id="bad-action",
    ),
    pytest.param(
        "detectors: {regex: {on_error: ignore}}\n",
        "detectors.regex.on_error",
        "'block' or 'allow'",
        id="bad-on-error",
    ),
    pytest.param(
        "detectors: {regex: {sides: sideways}}\n",
        "detectors.regex.sides",
        "'input', 'output' or 'both'",
        id="bad-sides",
    ),
    pytest.param(
        "detectors: {regex: {redaction: blur}}\n",
        "detectors.regex.redaction",
        "'placeholder', 'mask' or 'remove'",
        id="bad-redaction",
    ),
    pytest.param(
        "detectors: {regex: {options: [1]}}\n",
        "detectors.regex.options",
        "valid dictionary",
        id="options-list",
    ),
    pytest.param("version: 2\n", "version", "Input should be 1", id="version"),
    # out of range
    pytest.param(
        "detectors: {regex: {threshold: 1.5}}\n",
        "detectors.regex.threshold",
        "less than or equal to 1",
        id="threshold-high",
    ),
    pytest.param(
        "detectors: {regex: {threshold: -0.1}}\n",
        "detectors.regex.threshold",
        "greater than or equal to 0",
        id="threshold-low",
    ),
    pytest.param("timeout_ms: 0\n", "timeout_ms", "greater than 0", id="timeout-zero"),
    pytest.param(
        "detectors: {regex: {timeout_ms: 600001}}\n",
        "detectors.regex.timeout_ms",
        "less than or equal to 600000",
        id="detector-timeout-high",
    ),
    # unknown keys
    pytest.param("detector: {}\n", "detector", "Extra inputs are not permitted", id="top-key"),
    pytest.param(
        "detectors: {regex: {treshold: 0.5}}\n",
        "detectors.regex.treshold",
        "Extra inputs are not permitted",
        id="detector-key",
    ),
    # unknown detector names
    pytest.param(
        "detectors: {regexx: {}}\n", "detectors", "unknown detector(s) regexx", id="detector-name"
    ),
    # non-mapping top level
    pytest.param("- a\n- b\n", "<root>", "expected a mapping, got list", id="top-list"),
    pytest.param("just text\n", "<root>", "expected a mapping, got str", id="top-scalar"),
    # bad extends value
    pytest.param(
        "extends: [a]\n", "extends", "must be a profile name or a file path", id="ext-list"
    ),
    pytest.param(
        "extends: ''\n", "extends", "must be a profile name or a file path", id="ext-empty"
    ),
]


@pytest.mark.parametrize(("text", "yaml_path", "problem"), MALFORMED)
def test_malformed_file_diagnostics_name_file_path_and_problem(
    tmp_path: Path, text: str, yaml_path: str, problem: str
) -> None:
    path = _write(tmp_path, "policy.yaml", text)
    err = _load_error(path)
    diagnostics = err.diagnostics()
    assert err.source == str(path)
    assert diagnostics.startswith(f"invalid policy {path}:")
    assert f"  {yaml_path}: " in diagnostics
    assert problem in diagnostics
    assert any(p == ("" if yaml_path == "<root>" else yaml_path) for p, _ in err.problems)


@pytest.mark.parametrize(
    ("text", "yaml_path", "problem"),
    # load_policy_text has its own extends rule (profiles only), tested below.
    [case for case in MALFORMED if not case.id.startswith("ext-")],
)
def test_malformed_text_diagnostics_name_source(text: str, yaml_path: str, problem: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="inline.yaml")
    diagnostics = info.value.diagnostics()
    assert diagnostics.startswith("invalid policy inline.yaml:")
    assert f"  {yaml_path}: " in diagnostics
    assert problem in diagnostics


def test_unknown_detector_lists_available_detectors(tmp_path: Path) -> None:
    err = _load_error(_write(tmp_path, "p.yaml", "detectors: {regexx: {}}\n"))
    available = err.diagnostics().split("available:")[1]
    assert "regex" in available
    assert "invisible_text" in available


def test_registered_test_detector_is_a_known_name(register_detector, tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "detectors: {test_policy_known: {threshold: 0.2}}\n")
    with pytest.raises(PolicyError):
        load_policy(path)
    register_detector("test_policy_known", lambda text, ctx: [])
    assert load_policy(path).detectors["test_policy_known"].threshold == 0.2


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "p.yaml",
        "detectors:\n  regex:\n    threshold: 1.5\n    bogus: 1\n  invisible_text:\n"
        "    action: nuke\n",
    )
    err = _load_error(path)
    assert [p for p, _ in err.problems] == [
        "detectors.regex.threshold",
        "detectors.regex.bogus",
        "detectors.invisible_text.action",
    ]
    assert len(err.diagnostics().splitlines()) == 4


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    err = _load_error(path)
    assert err.source == str(path)
    assert err.problems == [("", "file is not valid UTF-8")]
    assert str(path) in err.diagnostics()


def test_utf8_file_with_non_ascii_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "name: café\ndescription: ünïcode ✓\n")
    assert load_policy(path).name == "café"


@pytest.mark.parametrize("ref", ["balnced", "no/such/policy.yaml"])
def test_missing_file_hints_at_shipped_profiles(ref: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(ref)
    diagnostics = info.value.diagnostics()
    assert ref in diagnostics
    assert "cannot read file" in diagnostics
    assert "shipped profiles: balanced, permissive, strict" in diagnostics


def test_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    err = _load_error(tmp_path)
    assert "cannot read file" in err.diagnostics()


# -- extends ------------------------------------------------------------------------


def test_extends_missing_file_names_both_files(tmp_path: Path) -> None:
    path = _write(tmp_path, "child.yaml", "extends: missing.yaml\n")
    err = _load_error(path)
    diagnostics = err.diagnostics()
    assert err.source == str(path)
    assert f"extends -> {tmp_path / 'missing.yaml'}: cannot read file" in diagnostics
    # A nested file has no shipped-profile hint: the path was relative to a file.
    assert "shipped profiles" not in diagnostics


def test_extends_parent_with_bad_yaml_points_into_the_parent(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", "detectors:\n  regex: [\n")
    err = _load_error(_write(tmp_path, "child.yaml", "extends: base.yaml\n"))
    assert f"extends -> {tmp_path / 'base.yaml'}: line 3, column 1: " in err.diagnostics()
    assert "not valid YAML" in err.diagnostics()


def test_extends_parent_that_is_not_a_mapping(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", "- 1\n")
    err = _load_error(_write(tmp_path, "child.yaml", "extends: base.yaml\n"))
    assert "expected a mapping, got list" in err.diagnostics()
    assert str(tmp_path / "base.yaml") in err.diagnostics()


def test_extends_parent_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_bytes(b"name: \xff\xfe\n")
    err = _load_error(_write(tmp_path, "child.yaml", "extends: base.yaml\n"))
    assert f"extends -> {tmp_path / 'base.yaml'}: file is not valid UTF-8" in err.diagnostics()


def test_extends_cycle_between_two_files(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.yaml", "extends: b.yaml\n")
    _write(tmp_path, "b.yaml", "extends: a.yaml\n")
    err = _load_error(a)
    diagnostics = err.diagnostics()
    assert err.source == str(a)
    assert "cycle" in diagnostics
    assert str(tmp_path / "b.yaml") in diagnostics


def test_extends_itself_is_a_cycle(tmp_path: Path) -> None:
    path = _write(tmp_path, "self.yaml", "extends: ./self.yaml\n")
    err = _load_error(path)
    assert "cycle" in err.diagnostics()
    assert len(err.problems) == 1


def test_extends_chain_depth_is_limited(tmp_path: Path) -> None:
    for i in range(12):
        _write(tmp_path, f"p{i}.yaml", f"extends: p{i + 1}.yaml\n")
    _write(tmp_path, "p12.yaml", "name: root\n")
    err = _load_error(tmp_path / "p0.yaml")
    assert "chain deeper than 8" in err.diagnostics()


def test_extends_from_file_to_profile(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "child.yaml",
        "extends: strict\nname: mine\ndetectors:\n  invisible_text:\n    threshold: 0.9\n",
    )
    policy = load_policy(path)
    strict = load_policy("strict")
    assert policy.name == "mine"
    assert policy.extends == "strict"
    assert policy.timeout_ms == strict.timeout_ms
    assert policy.detectors["secrets"] == strict.detectors["secrets"]
    invisible = policy.detectors["invisible_text"]
    assert invisible.threshold == 0.9  # overridden
    assert invisible.action is Action.BLOCK  # inherited from strict


def test_extends_profile_does_not_inherit_name_or_description(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "child.yaml", "extends: balanced\n"))
    assert policy.name == "custom"
    assert policy.description == ""
    assert set(policy.detectors) == set(load_policy("balanced").detectors)


def test_local_file_shadows_profile_of_the_same_name(tmp_path: Path) -> None:
    _write(tmp_path, "strict", "name: local\ntimeout_ms: 123\n")
    policy = load_policy(_write(tmp_path, "child.yaml", "extends: strict\n"))
    assert policy.timeout_ms == 123
    assert policy.detectors == {}


def test_extends_file_to_file_deep_merge(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "shared/grand.yaml",
        """
name: grand
timeout_ms: 900
detectors:
  invisible_text:
    action: flag
    redaction: remove
""",
    )
    _write(
        tmp_path,
        "shared/base.yaml",
        """
extends: grand.yaml
name: base
description: base policy
detectors:
  regex:
    threshold: 0.4
    action: redact
    actions: {TICKET: block}
    options:
      patterns:
        - {kind: TICKET, pattern: "T-[0-9]+"}
        - {kind: CODE, pattern: "C-[0-9]+"}
""",
    )
    child = _write(
        tmp_path,
        "team/child.yaml",
        """
extends: ../shared/base.yaml
detectors:
  regex:
    threshold: 0.8
    actions: {CODE: flag}
    options:
      patterns:
        - {kind: ONLY, pattern: "O-[0-9]+"}
  invisible_text:
    threshold: 0.1
""",
    )
    policy = load_policy(child)
    assert policy.name == "custom"  # name/description are never inherited
    assert policy.description == ""
    assert policy.extends == "../shared/base.yaml"
    assert policy.timeout_ms == 900  # from the grandparent
    regex = policy.detectors["regex"]
    assert regex.threshold == 0.8  # child wins
    assert regex.action is Action.REDACT  # kept from base
    assert regex.actions == {"TICKET": Action.BLOCK, "CODE": Action.FLAG}  # mappings merge
    assert regex.options["patterns"] == [{"kind": "ONLY", "pattern": "O-[0-9]+"}]  # lists replace
    invisible = policy.detectors["invisible_text"]
    assert invisible.threshold == 0.1
    assert invisible.action is Action.FLAG
    assert invisible.redaction is Redaction.REMOVE


def test_extends_merge_result_is_validated(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", "detectors:\n  regex:\n    threshold: 0.4\n")
    child = _write(tmp_path, "child.yaml", "extends: base.yaml\ndetectors:\n  regex: {tresh: 1}\n")
    err = _load_error(child)
    assert err.source == str(child)
    assert "  detectors.regex.tresh: Extra inputs are not permitted" in err.diagnostics()


def test_extends_absolute_path(tmp_path: Path) -> None:
    base = _write(tmp_path, "elsewhere/base.yaml", "timeout_ms: 321\n")
    child = _write(tmp_path, "dir/child.yaml", f"extends: {base}\n")
    assert load_policy(child).timeout_ms == 321


def test_policy_text_extends_profile() -> None:
    policy = load_policy_text("extends: permissive\ntimeout_ms: 100\n")
    assert policy.timeout_ms == 100
    assert policy.detectors == load_policy("permissive").detectors
    assert policy.name == "custom"


@pytest.mark.parametrize("parent", ["nope", "base.yaml", "./strict"])
def test_policy_text_extends_only_profiles(parent: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(f"extends: {parent}\n", source="inline")
    assert info.value.problems == [("extends", f"unknown profile {parent!r}")]
    assert "invalid policy inline:" in info.value.diagnostics()


def test_policy_model_validate_rejects_unknown_detector() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        Policy.model_validate({"detectors": {"test_never_registered": {}}})
