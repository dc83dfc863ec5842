"""The one exception type users see: a clear, single-line message about their input."""

from __future__ import annotations

from collections.abc import Iterable


class IpbenchError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


class UnknownNameError(IpbenchError, KeyError):
    """A name that is not registered; the message lists the valid choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        valid = ", ".join(self.choices) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {valid}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class DatasetNotFoundError(IpbenchError):
    """A dataset's files are not where we looked and could not be downloaded."""


class CorruptArtifactError(IpbenchError):
    """A stored file (checkpoint, cache entry) is truncated or does not match what we wrote."""


class TrainingDivergedError(IpbenchError):
    """The loss became NaN or infinite; the stage stops instead of recording garbage."""
