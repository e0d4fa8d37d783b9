"""Gateway tests build apps on the default, relative data directory
(``.mantlet``): run each in its own temporary directory so audit logs and
keys never land in the working tree or leak between tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
