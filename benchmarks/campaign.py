"""Bookkeeping of an accumulating campaign: CSV records and a pool of runs under a deadline.

A campaign is a list of tasks (for the ablation: one (variant, seed) run
each) whose results accumulate in CSV files over days and machines:

* `RowStore`: a CSV file with a fixed header. `append` adds rows atomically
  (an exclusive `flock` and one `write` of whole lines in append mode, so
  processes running side by side never interleave or lose rows, and a
  process killed mid-run leaves nothing half-written); `rows()` reads back
  every complete row and skips damaged ones. A column added later comes with
  a default: old rows read with it, and the first append rewrites the file
  under the new header (`RowStore.migrate`).
* `run_pool`: runs the pending tasks as subprocesses, at most `parallel` at
  once, in priority order. A task is not started if the estimate of its
  duration (the longest finished run so far, else the caller's prior) says it
  would end after the deadline; a task still running at the deadline is
  killed: it is abandoned, and the rows already written stay. Each task
  writes its own rows when it finishes, so a rerun skips what is done.

Example:

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "runs.csv"
>>> store = RowStore(path, ("variant", "seed", "accuracy"))
>>> store.append([{"variant": "recu", "seed": 0, "accuracy": 0.91}])
>>> [(row["variant"], row["seed"]) for row in store.rows()]
[('recu', '0')]
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence


class RowStore:
    """Append-only CSV records with a fixed header (see the module docstring).

    `defaults` are what a row written before a column existed holds in it:
    `rows()` fills them in, and the first `append` to a file whose header
    lacks only such columns rewrites it with the new header (`migrate`).
    """

    def __init__(self, path, columns: Sequence[str], defaults: Optional[Mapping[str, str]] = None) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        self.defaults = dict(defaults or {})

    def _line(self, row: Mapping[str, Any]) -> str:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"Row has columns {sorted(unknown)} that {self.path.name} does not have; "
                             f"its columns: {', '.join(self.columns)}.")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c)) for c in self.columns])
        return buffer.getvalue()

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append `rows` in one atomic write; writes the header into a new file, migrates an old one."""
        body = "".join(self._line(row) for row in rows)
        if not body:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._append_locked(body.encode()):
            pass  # the file was replaced by a migration while this process waited for the lock: reopen it

    def _append_locked(self, data: bytes) -> bool:
        """Write `data` under the file's lock; False if the path no longer names the locked file."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self.path.exists() or os.fstat(fd).st_ino != self.path.stat().st_ino:
                return False
            if os.fstat(fd).st_size == 0:
                data = (",".join(self.columns) + "\n").encode() + data
            elif self._header() != self.columns:
                self.migrate()  # checks that only defaulted columns are new; replaces the path
                return False
            written = os.write(fd, data)
            if written != len(data):  # a short write would leave a partial row: say so
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            os.fsync(fd)
            return True
        finally:
            os.close(fd)  # releases the lock

    def _header(self) -> tuple:
        with open(self.path, newline="") as file:
            return tuple(next(csv.reader(file), ()))

    def migrate(self) -> None:
        """Rewrite the file with this store's header, old rows given the defaults of their missing columns.

        Refused (ValueError) unless the file's columns are this store's minus
        columns that have a default. The new file replaces the old in one
        `os.replace`, so a reader sees either; a writer holds the old file's
        lock while calling this, and writers waiting on it reopen the path.
        Damaged lines (a killed writer) are not carried over.
        """
        header = self._header()
        missing = [c for c in self.columns if c not in header]
        if set(header) - set(self.columns) or set(missing) - set(self.defaults):
            raise ValueError(
                f"{self.path} was written with other columns ({', '.join(header)}); this script "
                f"writes {', '.join(self.columns)}. Move the file aside or write to another --out."
            )
        temporary = self.path.with_name(f".{self.path.name}.migrating-{os.getpid()}")
        with open(temporary, "w", newline="") as file:
            file.write(",".join(self.columns) + "\n")
            file.write("".join(self._line(row) for row in self.rows()))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, self.path)

    def rows(self) -> List[Dict[str, str]]:
        """Every complete row, as strings, defaults filled in; damaged lines (a killed writer) are skipped."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with open(self.path, newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            filled = {c: v for c, v in self.defaults.items() if c not in header}
            return [{**filled, **dict(zip(header, cells))} for cells in reader if len(cells) == len(header)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # float(): numpy 2 spells its float64's repr "np.float64(...)"
        value = float(value)
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def number(text: Optional[str]) -> float:
    """A CSV cell as a float; empty means NaN."""
    return float(text) if text not in (None, "") else float("nan")


# --- the pool ------------------------------------------------------------------------------


@dataclasses.dataclass
class Task:
    """One run: its key (for skipping and logs) and the command line that performs it."""

    key: tuple
    command: List[str]


#: Exit status of a task that stopped itself because it would not finish by the deadline.
GAVE_UP = 3
#: Exit status of a campaign (or run) refused because its record holds rows of another dtype policy.
POLICY_REFUSED = 2


@dataclasses.dataclass
class Outcome:
    key: tuple
    status: str  # "done", "failed", "gave up" (GAVE_UP), "abandoned" (killed at the deadline), "not started"
    seconds: float = 0.0
    returncode: Optional[int] = None


def run_pool(
    tasks: Sequence[Task],
    parallel: int,
    deadline: Optional[float] = None,
    estimate_s: Optional[float] = None,
    log: Callable[[str], None] = print,
    env: Optional[Mapping[str, str]] = None,
    poll_s: float = 0.5,
) -> List[Outcome]:
    """Run `tasks` in order, `parallel` at once, until done or `deadline` (time.time()).

    `estimate_s` is the prior duration of one task; once a task has finished,
    the longest finished one is used instead. The subprocesses share this
    process's stdout/stderr, each in its own process group (killed as one).
    If the pool is interrupted (an exception, or SIGTERM made `SystemExit` by
    `exit_on_sigterm`), it kills the runs still going.
    """
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1, got {parallel}.")
    queue = list(tasks)
    running: Dict[tuple, tuple] = {}  # key -> (Popen, start)
    outcomes: List[Outcome] = []
    durations: List[float] = []
    try:
        while queue or running:
            now = time.time()
            while queue and len(running) < parallel:
                guess = max(durations) if durations else estimate_s
                if deadline is not None and guess is not None and now + guess > deadline:
                    for task in queue:
                        outcomes.append(Outcome(task.key, "not started"))
                        log(f"not started {task.key}: ~{guess:.0f} s would end after the deadline")
                    queue.clear()
                    break
                task = queue.pop(0)
                process = subprocess.Popen(task.command, env=None if env is None else dict(env),
                                           start_new_session=True)
                running[task.key] = (process, now)
                log(f"started {task.key} (pid {process.pid})")
            for key, (process, start) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                seconds = time.time() - start
                del running[key]
                status = "done" if code == 0 else "gave up" if code == GAVE_UP else "failed"
                if status == "done":
                    durations.append(seconds)
                outcomes.append(Outcome(key, status, round(seconds, 1), code))
                log(f"{status} {key} in {seconds:.0f} s (exit {code})")
            if deadline is not None and time.time() >= deadline and running:
                kill_groups([process for process, _ in running.values()])
                for key, (process, start) in running.items():
                    outcomes.append(Outcome(key, "abandoned", round(time.time() - start, 1)))
                    log(f"abandoned {key} at the deadline after {time.time() - start:.0f} s")
                running.clear()
                for task in queue:
                    outcomes.append(Outcome(task.key, "not started"))
                queue.clear()
            if running:
                time.sleep(poll_s)
    finally:  # interrupted (SIGTERM from a parent's timeout, say): no run outlives the pool
        kill_groups([process for process, _ in running.values()])
    return outcomes


def kill_groups(processes: Sequence[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGTERM the processes' groups, then SIGKILL whatever still lives after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        end = time.time() + grace_s
        while time.time() < end and any(p.poll() is None for p in processes):
            time.sleep(0.1)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into `SystemExit`, so that `finally` blocks (run_pool's cleanup) run."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
