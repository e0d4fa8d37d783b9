"""Adversarial testing (``mantlet redteam``): probes from a tagged library,
mutated by converters and refined by an attacker model, sent to any
OpenAI-compatible endpoint, judged, and reported as attack success rates per
OWASP LLM Top 10 (2025) id and MITRE ATLAS technique.

Sits beside the gateway: it uses detectors and the pipeline (as judges and
for de-obfuscation); nothing below it imports it.
"""

from mantlet.redteam.attacker import Attacker
from mantlet.redteam.converters import CONVERTERS, Converter
from mantlet.redteam.probes import ATLAS, OWASP, Attempt, Probe, expand, load_probes
from mantlet.redteam.report import wilson
from mantlet.redteam.runner import RunOptions, Seeds
from mantlet.redteam.session import TargetRun, run_session
from mantlet.redteam.target import ChatModel, HttpChatModel, Reply, RequestBudget

__all__ = [
    "ATLAS",
    "CONVERTERS",
    "OWASP",
    "Attacker",
    "Attempt",
    "ChatModel",
    "Converter",
    "HttpChatModel",
    "Probe",
    "Reply",
    "RequestBudget",
    "RunOptions",
    "Seeds",
    "TargetRun",
    "expand",
    "load_probes",
    "run_session",
    "wilson",
]
