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
    .lock             the run's one writer: locked by the train session that holds
                      the run, with its pid inside while it does (`RunLock`)

Crash safety
    Every file is written to a temporary file in its own directory, flushed
    to disk and renamed over the old one, so a kill at any moment leaves
    either the previous or the new version, never a torn one. The checkpoint
    is the run's truth: it carries its own record of the epochs done and of
    the history, so a missing or stale state.json (a kill between the two
    renames) or history.csv is rebuilt from it. A run killed before its first
    checkpoint resumes from epoch 0 with its saved configuration. A write
    that fails (a full disk, no permission) raises WriteError naming the file;
    the previous version stays.

One writer
    A `train` session (new or --resume) holds an exclusive `fcntl.flock` on
    RUN/.lock from before its first write to its end, and writes its pid into
    the file. A second session on the same run is refused at once (RunInUse,
    naming that pid). The kernel releases the lock with its holder, so a run
    whose writer was killed (SIGKILL, power loss) resumes at once; the pid
    its file still holds is then ignored. Readers (`evaluate`, `convert`)
    take no lock: `holder` tells them a run is being written, `snapshot`
    whether a file changed while they read it. flock locks are advisory,
    per host: two machines writing one run over NFS are not stopped. On
    Windows (no fcntl; the package targets Linux and macOS) no lock is
    taken: `RunLock` only writes the pid, and two writers are not stopped.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from keras_recu.app.distribution import backend
from keras_recu.app.errors import RunError, RunInUse, WriteError

try:
    import fcntl
except ImportError:  # Windows: see "One writer" above
    fcntl = None

__all__ = [
    "CHECKPOINT",
    "CHECKPOINTS",
    "CONFIG",
    "DIAGNOSTICS",
    "HISTORY",
    "INITIAL_KERNELS",
    "LOCK",
    "METRICS",
    "MODEL",
    "RECORD",
    "RECORD_FORMAT",
    "STAGE1",
    "STATE",
    "SUMMARY",
    "TFLITE",
    "ReadCheck",
    "RunFiles",
    "RunLock",
    "atomic_write",
    "check_writable",
    "history_columns",
    "history_csv",
    "holder",
    "run_directory_of",
    "snapshot",
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
LOCK = ".lock"
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
    leaves the old one and no temporary file. An OSError of the write (a full
    disk, no permission) is raised as WriteError, which names `path`: a write
    or flush that fails says which device is full, not which file.
    """
    path = Path(path)
    # Not mkstemp: its files are private (0600); these follow the umask like any other.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMPORARY_MARK}{path.suffix}")
    try:
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
    except WriteError:
        raise
    except OSError as error:
        raise _write_error(path, error) from None


def _write_error(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error) or type(error).__name__
    code = f" [Errno {error.errno}]" if error.errno else ""
    return WriteError(
        f"cannot write {path}: {reason}{code}; its previous version, if any, is kept. Free space on that disk or "
        "make it writable, then run the command again (a training run continues with --resume)."
    )


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
    """Create `out` if needed; RunError, naming it, when it is a file or this process cannot write there."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise RunError(
            f"cannot write the run directory {out}: {error.strerror or error}. Choose a writable --out."
        ) from None


# --------------------------------------------------------------------------- one writer


class RunLock:
    """The lock of a run directory's one writer: `fcntl.flock` on RUN/.lock (see "One writer" above).

    `acquire()` creates the directory if needed, takes the lock without
    waiting and writes this process's pid into the file; RunInUse, naming
    the holder's pid, when another process holds it. `release()` (or the end
    of a `with` block) empties the file and lets go; a killed holder's lock
    is released by the kernel. Locks are per open file: a second RunLock on
    the same run conflicts even within one process.
    """

    #: How long `acquire` retries when the lock is taken but names no living process:
    #: its holder has locked but not yet written its pid, or a reader is probing it.
    SETTLE_SECONDS = 1.0

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK
        self._descriptor: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        check_writable(self.out)
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunError(f"cannot write the run directory's lock {self.path}: {error.strerror or error}. "
                           "Choose a writable --out.") from None
        try:
            self._lock(descriptor)
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor
        return self

    def _lock(self, descriptor: int) -> None:
        if fcntl is None:
            return
        deadline = time.monotonic() + self.SETTLE_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pid = _pid_in(self.path)
                if pid is not None and not _alive(pid):
                    pid = None  # a killed writer's pid: its lock is gone, so someone else holds it now
                if pid is not None or time.monotonic() > deadline:
                    raise RunInUse(_in_use_message(self.out, pid), pid) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.ftruncate(descriptor, 0)  # no pid left behind to name a finished writer
        except OSError:
            pass
        os.close(descriptor)  # closing the last descriptor of the open file releases the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_in(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _in_use_message(out: Path, pid: Optional[int]) -> str:
    who = f"pid {pid}" if pid is not None else "a process whose pid is not yet written"
    return (f"{out} is in use: another keras-recu train ({who}) is writing this run, and a run has one writer. "
            f"Wait for it to end (or stop it, then `keras-recu train --out {out} --resume`), or choose another --out.")


def holder(out: Path) -> Optional[int]:
    """The pid of the train session that holds the run `out` (0 when its pid is unknown), or None when none does.

    For readers: probes the lock with a shared, non-blocking flock, creating nothing.
    """
    if fcntl is None:
        return None
    try:
        descriptor = os.open(Path(out) / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(Path(out) / LOCK) or 0
    finally:
        os.close(descriptor)
    return None


def run_directory_of(path: Path) -> Path:
    """The run directory a path names: itself, or the run a file of it (model.keras, checkpoints/last.keras) lies in."""
    path = Path(path)
    if path.is_dir():
        return path
    directory = path.parent
    return directory.parent if directory.name == CHECKPOINTS else directory


def snapshot(path: Path) -> Optional[Tuple[int, int, int]]:
    """What tells one version of a file from another: (inode, size, mtime in ns); None when it is missing.

    An atomic write replaces the inode, so a reader compares a snapshot taken
    before reading with one taken after.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class ReadCheck:
    """What a reader of a run (`evaluate`, `convert`) says when the run is being written while it reads.

    Made before reading `path` (a run directory, or a file of one);
    `warning()` after reading gives one line, or None: the file read
    changed meanwhile (an atomic write replaced it), or a train session
    holds the run.
    """

    def __init__(self, path: Path):
        path = Path(path)
        self.run = run_directory_of(path)
        self.files = [path / MODEL, path / CONFIG] if path.is_dir() else [path]
        self.before = [snapshot(file) for file in self.files]
        self.writer = holder(self.run)

    def warning(self) -> Optional[str]:
        writer = self.writer if self.writer is not None else holder(self.run)
        by = f" by keras-recu train (pid {writer})" if writer else ""
        for file, before in zip(self.files, self.before):
            if snapshot(file) != before:
                return (f"{file} changed while it was read{by}, so what this printed may mix two versions of the "
                        "run; run the command again once the run has finished.")
        if writer is not None:
            return (f"{self.run} is being trained{by}; this read its files as they were at this moment, and the "
                    "finished run will differ.")
        return None


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

    def __init__(self, source: Path, target: Path, model_name: Optional[str] = None):
        self.source = source
        self.target = target
        #: The run's --model, recorded in each checkpoint (to name it when a checkpoint of another model is found).
        self.model_name = model_name
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

    def checkpoint_model(self) -> Optional[str]:
        """The model the checkpoint was saved from: its record's --model, else the name in its Keras config."""
        try:
            with zipfile.ZipFile(self.checkpoint) as archive:
                names = archive.namelist()
                if RECORD in names:
                    model = json.loads(archive.read(RECORD)).get("model")
                    if model:
                        return str(model)
                return str(json.loads(archive.read("config.json"))["config"]["name"])
        except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile):
            return None

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
        if self.model_name is not None:
            record["model"] = self.model_name

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
        record = {"format": RECORD_FORMAT, "epochs_done": epochs_done, "history": history, "backend": trained_on}
        if self.model_name is not None:
            record["model"] = self.model_name
        write_json(self.state, record)
        write_text(self.source / HISTORY, history_csv(history))
