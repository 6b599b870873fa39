"""Bookkeeping of an accumulating campaign: CSV records and a pool of runs under a deadline.

A campaign is a list of tasks (for the ablation: one (variant, seed) run
each) whose results accumulate in CSV files over days and machines:

* `RowStore`: a CSV file with a fixed header. `append` adds rows atomically
  (an exclusive `flock` and one `write` of whole lines in append mode, so
  processes running side by side never interleave or lose rows, and a
  process killed mid-run leaves nothing half-written); `rows()` reads back
  every complete row and skips damaged ones.
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
    """Append-only CSV records with a fixed header (see the module docstring)."""

    def __init__(self, path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)

    def _line(self, row: Mapping[str, Any]) -> str:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"Row has columns {sorted(unknown)} that {self.path.name} does not have; "
                             f"its columns: {', '.join(self.columns)}.")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c)) for c in self.columns])
        return buffer.getvalue()

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append `rows` in one atomic write; writes the header into a new file."""
        body = "".join(self._line(row) for row in rows)
        if not body:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size == 0:
                body = ",".join(self.columns) + "\n" + body
            else:
                self._check_header()
            data = body.encode()
            written = os.write(fd, data)
            if written != len(data):  # a short write would leave a partial row: say so
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def _check_header(self) -> None:
        with open(self.path, newline="") as file:
            header = tuple(next(csv.reader(file), ()))
        if header != self.columns:
            raise ValueError(
                f"{self.path} was written with other columns ({', '.join(header)}); this script "
                f"writes {', '.join(self.columns)}. Move the file aside or write to another --out."
            )

    def rows(self) -> List[Dict[str, str]]:
        """Every complete row, as strings; damaged lines (a killed writer) are skipped."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with open(self.path, newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            return [dict(zip(header, cells)) for cells in reader if len(cells) == len(header)]


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
