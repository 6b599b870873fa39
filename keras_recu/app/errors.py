"""The application's errors: what `keras-recu` prints as one line (exit status 2, or 1 for a divergence)."""

from __future__ import annotations

__all__ = ["ConfigError", "RunError", "TrainingDiverged"]


class RunError(Exception):
    """The job cannot go on as asked; the message says why and what to do."""


class ConfigError(ValueError):
    """A setting of the job is invalid; the message names it and the allowed values."""


class TrainingDiverged(RunError):
    """The training loss or the weights became NaN or infinite."""
