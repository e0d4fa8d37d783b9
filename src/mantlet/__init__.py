"""Mantlet: a security-by-design shield for generative-AI applications.

The public API is re-exported here; everything else is internal and may change.
"""

from mantlet.core.types import (
    Action,
    Detector,
    DetectorReport,
    Finding,
    PartKind,
    RunStatus,
    ScanContext,
    Side,
    Verdict,
)
from mantlet.errors import (
    ConfigError,
    DataError,
    DetectorError,
    InvalidInputError,
    MantletError,
    PolicyError,
)
from mantlet.pipeline.shield import Shield
from mantlet.policy import Policy, load_policy

__version__ = "0.1.0"

__all__ = [
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
