"""Mantlet's exception tree. Callers catch the base they can act on::

MantletError                 anything Mantlet raises on purpose
├── ConfigError              a policy or settings file is wrong; fix the file
│   └── PolicyError          ... specifically a policy file (names file and YAML path)
├── DetectorError            a detector failed to load or run
│   └── UnknownDetectorError no detector is registered under that name
├── InvalidInputError        the text or messages handed to a check are malformed
└── DataError                an evaluation data file is malformed
"""

from __future__ import annotations


class MantletError(Exception):
    """Root of every error Mantlet raises deliberately."""

    def diagnostics(self) -> str:
        """Human-readable explanation, suitable for a CLI or an API error body."""
        return str(self)


class ConfigError(MantletError):
    pass


class PolicyError(ConfigError):
    """A policy file failed to load or validate.

    ``problems`` holds one ``(yaml_path, message)`` pair per error so callers
    can point at each bad key.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.diagnostics())

    def diagnostics(self) -> str:
        lines = [f"invalid policy {self.source}:"]
        lines += [f"  {path or '<root>'}: {message}" for path, message in self.problems]
        return "\n".join(lines)


class DetectorError(MantletError):
    pass


class UnknownDetectorError(DetectorError):
    pass


class InvalidInputError(MantletError):
    """Raised for wrong types or shapes; the gateway maps it to HTTP 400."""


class DataError(MantletError):
    pass
