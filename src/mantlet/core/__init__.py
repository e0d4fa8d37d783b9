"""Core types and the detector registry: the bottom layer, imported by all."""

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

__all__ = [
    "Action",
    "Detector",
    "DetectorReport",
    "Finding",
    "PartKind",
    "RunStatus",
    "ScanContext",
    "Side",
    "Verdict",
]
