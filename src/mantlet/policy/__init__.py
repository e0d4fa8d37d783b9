"""Policy files: which detectors run, their thresholds and actions."""

from mantlet.policy.loader import json_schema, load_policy, load_policy_text, profiles
from mantlet.policy.model import DetectorPolicy, OnError, Policy, Redaction

__all__ = [
    "DetectorPolicy",
    "OnError",
    "Policy",
    "Redaction",
    "json_schema",
    "load_policy",
    "load_policy_text",
    "profiles",
]
