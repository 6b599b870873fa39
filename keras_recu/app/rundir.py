"""The run directory: its file names, atomic writes, the checkpoint's own record, and restoring a run from it.

    config.json       the run's configuration (what --resume continues)
    history.csv       one row per finished epoch: loss, accuracy, val_*, tau, ...
    initial_kernels.npz  latent kernels of a few binary layers at the start
    checkpoints/      last.keras (model, optimizer state and the run's own record
                      of the epochs done and the history) and state.json (the same
                      record, readable), for --resume
    model.keras       the trained model (any backend; loads in a fresh process); with
                      a teacher, the student alone (the checkpoint holds both)
    stage1.json       stage 2 only: the stage-1 model it started from and what was carried
    model.tflite      the LCE flatbuffer (when TensorFlow and LCE are installed)
    metrics.json      configuration, per-epoch history, test metrics, verification
    summary.txt       the model's summary table and the verification report
    report.md         all of it on one page, with the plots
    training.png, tau.png, weights.png, and with --diagnostics diagnostics.png
                      and diagnostics.jsonl (keras_recu.diagnostics per layer)

Crash safety
    Every file is written to a temporary file in its own directory, flushed
    to disk and renamed over the old one, so a kill at any moment leaves
    either the previous or the new version, never a torn one. The checkpoint
    is the run's truth: it carries its own record of the epochs done and of
    the history, so a missing or stale state.json (a kill between the two
    renames) or history.csv is rebuilt from it. A run killed before its first
    checkpoint resumes from epoch 0 with its saved configuration.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from keras_recu.app.distribution import backend
from keras_recu.app.errors import RunError

__all__ = [
    "CHECKPOINT",
    "CHECKPOINTS",
    "CONFIG",
    "DIAGNOSTICS",
    "HISTORY",
    "INITIAL_KERNELS",
    "METRICS",
    "MODEL",
    "RECORD",
    "RECORD_FORMAT",
    "STAGE1",
    "STATE",
    "SUMMARY",
    "TFLITE",
    "RunFiles",
    "atomic_write",
    "check_writable",
    "history_columns",
    "history_csv",
    "read_history_csv",
    "remove_temporaries",
    "write_bytes",
    "write_json",
    "write_text",
]

CONFIG = "config.json"
HISTORY = "history.csv"
INITIAL_KERNELS = "initial_kernels.npz"
CHECKPOINTS = "checkpoints"
CHECKPOINT = "last.keras"
STATE = "state.json"
MODEL = "model.keras"
STAGE1 = "stage1.json"
TFLITE = "model.tflite"
METRICS = "metrics.json"
SUMMARY = "summary.txt"
DIAGNOSTICS = "diagnostics.jsonl"
# The run's record inside the checkpoint archive (Keras ignores extra members).
RECORD = "keras_recu_run.json"
RECORD_FORMAT = 1
# Temporary files of atomic writes: ".NAME.XXXXXX.tmp.SUFFIX".
_TEMPORARY_MARK = ".tmp"


# --------------------------------------------------------------------------- atomic writes


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` all or nothing: `write` fills a temporary file in the same
    directory, which is flushed to disk and renamed over `path`.

    A kill at any moment leaves the old file or the new one; a failing `write`
    leaves the old one and no temporary file.
    """
    path = Path(path)
    # Not mkstemp: its files are private (0600); these follow the umask like any other.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMPORARY_MARK}{path.suffix}")
    open(temporary, "xb").close()
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` all or nothing (`atomic_write`)."""
    atomic_write(path, lambda temporary: temporary.write_text(text))


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` all or nothing (`atomic_write`)."""
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def write_json(path: Path, value: Any) -> None:
    """Write `value` as indented JSON to `path` all or nothing (`atomic_write`)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def remove_temporaries(directory: Path) -> None:
    """Delete what a killed atomic write left behind in `directory`."""
    for leftover in directory.glob(f".*.????????{_TEMPORARY_MARK}*"):
        leftover.unlink(missing_ok=True)


def check_writable(out: Path) -> None:
    """Create `out` if needed; RunError, naming it, when this process cannot write there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise RunError(
            f"cannot write the run directory {out}: {error.strerror or error}. Choose a writable --out."
        ) from None


# --------------------------------------------------------------------------- history


def history_csv(rows: List[dict]) -> str:
    """history.csv: an epoch column, then the logged values in sorted order, exact floats."""
    keys = sorted({key for row in rows for key in row if key != "epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in rows:
        lines.append(",".join([str(row["epoch"]), *(repr(float(row[key])) if key in row else "" for key in keys)]))
    return "\n".join(lines) + "\n"


def history_columns(rows: List[dict]) -> Dict[str, list]:
    """The history's rows as columns (metrics.json's "history"); NaN where an epoch lacks a value."""
    keys = ["epoch", *sorted({key for row in rows for key in row if key != "epoch"})]
    return {key: [row.get(key, float("nan")) for row in rows] for key in keys} if rows else {}


def read_history_csv(out: Path) -> List[dict]:
    """The rows of `out`'s history.csv ([] when it has none)."""
    path = out / HISTORY
    if not path.exists():
        return []
    with open(path) as file:
        return [
            {key: int(value) if key == "epoch" else float(value) for key, value in row.items() if value != ""}
            for row in csv.DictReader(file)
        ]


# --------------------------------------------------------------------------- the checkpoint


class RunFiles:
    """The checkpoint and the run state: atomic, self-describing, the previous one kept until the next is whole.

    A multi-worker job's other workers read the chief's run directory
    (`source`, to resume) but write their own files into a temporary
    directory (`target`), which nobody reads.
    """

    def __init__(self, source: Path, target: Path):
        self.source = source
        self.target = target
        self.checkpoint = source / CHECKPOINTS / CHECKPOINT
        self.state = source / CHECKPOINTS / STATE

    @property
    def chief(self) -> bool:
        """Whether this process writes the run directory itself (not a worker's scratch copy)."""
        return self.target == self.source

    def holds_run(self) -> bool:
        """Whether `source` holds a run already (a checkpoint or a finished model)."""
        return self.checkpoint.exists() or (self.source / MODEL).exists()

    def restore(self) -> Tuple[int, List[dict], Optional[str]]:
        """(epochs done, history rows, backend) of the run in `source`; (0, [], None) before its first checkpoint."""
        state = self._read_state()
        if not self.checkpoint.exists():
            if state and state.get("epochs_done", 0) > 0:
                raise RunError(
                    f"{self.state} records {state['epochs_done']} finished epoch(s) but {self.checkpoint} is "
                    "missing, so the trained weights are gone. Restore the file, or start a new run "
                    "(another --out)."
                )
            return 0, [], None
        record = self._read_record()
        if record is None:
            # A checkpoint of an older keras-recu: state.json is the only record.
            if not state:
                raise RunError(
                    f"{self.checkpoint} carries no record of the epochs it holds and {self.state} is missing, "
                    "so the epoch this run reached is unknown; resuming would restart the schedules at epoch 0 "
                    "on trained weights. Restore state.json, or start a new run (another --out)."
                )
            record = {"epochs_done": int(state["epochs_done"]), "history": read_history_csv(self.source)}
        return int(record["epochs_done"]), list(record["history"]), record.get("backend")

    def _read_record(self) -> Optional[dict]:
        try:
            with zipfile.ZipFile(self.checkpoint) as archive:
                return json.loads(archive.read(RECORD))
        except KeyError:
            return None
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise RunError(
                f"{self.checkpoint} is damaged ({error}); it is not a complete .keras archive. keras-recu "
                "writes checkpoints atomically, so something else cut it short (a full disk, an interrupted "
                "copy, an older keras-recu). Restore it, or start a new run (another --out)."
            ) from None

    def _read_state(self) -> Optional[dict]:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None

    def save(self, model, epochs_done: int, history: List[dict]) -> None:
        """Checkpoint, then state.json, then history.csv; each replaces its predecessor whole."""
        directory = self.target / CHECKPOINTS
        directory.mkdir(parents=True, exist_ok=True)
        record = {"format": RECORD_FORMAT, "epochs_done": epochs_done, "history": history, "backend": backend()}

        def write_checkpoint(temporary: Path) -> None:
            model.save(temporary)
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(RECORD, json.dumps(record))

        atomic_write(directory / CHECKPOINT, write_checkpoint)
        write_json(directory / STATE, record)
        write_text(self.target / HISTORY, history_csv(history))

    def rewrite_state(self, epochs_done: int, history: List[dict], trained_on: Optional[str]) -> None:
        """Write state.json and history.csv again from the checkpoint's record.

        A kill may fall between the checkpoint and the files written after
        it: a resumed run rebuilds them from the checkpoint's own record.
        """
        write_json(self.state, {"format": RECORD_FORMAT, "epochs_done": epochs_done,
                                "history": history, "backend": trained_on})
        write_text(self.source / HISTORY, history_csv(history))
