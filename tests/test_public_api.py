"""The public surface is a promise: changing it must be a deliberate edit here."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import mantlet

EXPECTED_ALL = [
    "Action",
    "ConfigError",
    "DataError",
    "Detector",
    "DetectorError",
    "DetectorReport",
    "Finding",
    "InvalidInputError",
    "MantletError",
    "PartKind",
    "Policy",
    "PolicyError",
    "RunStatus",
    "ScanContext",
    "Shield",
    "Side",
    "Verdict",
    "__version__",
    "load_policy",
]


def test_all_matches_the_expected_list() -> None:
    assert sorted(mantlet.__all__) == EXPECTED_ALL
    assert len(set(mantlet.__all__)) == len(mantlet.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    assert getattr(mantlet, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from mantlet import {name}", namespace)
    assert namespace[name] is getattr(mantlet, name)


def test_star_import_exports_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from mantlet import *", namespace)
    exported = {k for k in namespace if k != "__builtins__"}
    assert exported == set(EXPECTED_ALL)


def test_public_names_are_the_canonical_objects() -> None:
    from mantlet.core.types import Finding, Verdict
    from mantlet.errors import PolicyError
    from mantlet.pipeline.shield import Shield
    from mantlet.policy.loader import load_policy
    from mantlet.policy.model import Policy

    assert mantlet.Finding is Finding
    assert mantlet.Verdict is Verdict
    assert mantlet.PolicyError is PolicyError
    assert mantlet.Shield is Shield
    assert mantlet.Policy is Policy
    assert mantlet.load_policy is load_policy


def test_version_matches_package_metadata() -> None:
    assert mantlet.__version__ == importlib.metadata.version("mantlet")


def test_error_hierarchy() -> None:
    for name in ("ConfigError", "DataError", "DetectorError", "InvalidInputError"):
        assert issubclass(getattr(mantlet, name), mantlet.MantletError)
    assert issubclass(mantlet.PolicyError, mantlet.ConfigError)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "mantlet.core",
            [
                "Action",
                "Detector",
                "DetectorReport",
                "Finding",
                "PartKind",
                "RunStatus",
                "ScanContext",
                "Side",
                "Verdict",
            ],
        ),
        (
            "mantlet.policy",
            [
                "DetectorPolicy",
                "OnError",
                "Policy",
                "Redaction",
                "json_schema",
                "load_policy",
                "load_policy_text",
                "profiles",
            ],
        ),
        ("mantlet.pipeline", ["Shield"]),
    ],
)
def test_subpackage_all(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == names
    for name in names:
        assert hasattr(imported, name)


def test_importing_mantlet_loads_no_detector_module() -> None:
    # Detectors are imported lazily, on first use, so `import mantlet` stays
    # cheap; checked in a fresh interpreter since this one imported them.
    code = (
        "import sys, mantlet; "
        "print(sorted(m for m in sys.modules if m.startswith('mantlet.detectors.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
