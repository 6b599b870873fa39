"""The application's errors: what `keras-recu` prints as one line (exit status 2, or 1 for a divergence)."""

from __future__ import annotations

from typing import Optional

__all__ = ["CheckpointMismatch", "ConfigError", "RunError", "RunInUse", "TrainingDiverged", "WriteError"]


class RunError(Exception):
    """The job cannot go on as asked; the message says why and what to do."""


class ConfigError(ValueError):
    """A setting of the job is invalid; the message names it and the allowed values."""


class TrainingDiverged(RunError):
    """The training loss or the weights became NaN or infinite."""


class RunInUse(RunError):
    """Another process holds the run directory's lock: a run has one writer. `pid` names the holder (None if unknown)."""

    def __init__(self, message: str, pid: Optional[int] = None):
        super().__init__(message)
        self.pid = pid


class CheckpointMismatch(RunError):
    """The run's checkpoint was saved from another model than the one its settings build."""


class WriteError(RunError, OSError):
    """A file of the run could not be written (a full disk, no permission); the message names the file.

    An OSError too, so that code which handles a failed write as one keeps doing so.
    """
