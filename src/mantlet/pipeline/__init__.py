"""The guard pipeline: scans every part of a request or response with the
policy's detectors, concurrently, and returns one ``Verdict``."""

from mantlet.pipeline.shield import Shield

__all__ = ["Shield"]
