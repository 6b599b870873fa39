"""What every benchmark script shares: the environment of a measurement, its record, its tables.

Written once here so that every script describes its machine, writes its
results and draws its tables the same way:

* `environment()`: versions, Keras backend, device, CPU count, load average,
  date and command line of a measurement. It never imports TensorFlow (it
  reports TF's version only when TF is already loaded or installed).
  `machine_description()` says the same machine in one line.
* `print_result(...)` and `write_json(...)`: the `RESULT {...}` line every
  script prints last, and the JSON record beside it.
* `fmt(...)` and `markdown_table(...)`: the cells and tables of the reports.

Timing (`timing.py`), statistics (`intervals.py`) and figures
(`figures.py`) are modules of their own.

>>> print(markdown_table(["a", "b"], [[1, fmt(None)]]), end="")
| a | b |
| --- | --- |
| 1 | – |
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence


# --- environment --------------------------------------------------------------------------


def _version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def loadavg() -> Optional[float]:
    """The 1-minute load average (above the benchmark's own share, others compete)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def device_description(backend: Optional[str] = None) -> str:
    """The accelerator the Keras backend computes on, in words ("cpu" when none).

    Asks only the framework of `backend` (default: `KERAS_BACKEND`, else
    tensorflow), and only if it is already imported, so that describing the
    device never loads a framework the process does not use.
    """
    backend = backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        if backend == "jax" and "jax" in sys.modules:
            import jax

            devices = jax.devices()
            return ", ".join(sorted({getattr(d, "device_kind", d.platform) for d in devices}))
        if backend == "torch" and "torch" in sys.modules:
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        if backend == "tensorflow" and "tensorflow" in sys.modules:
            tf = sys.modules["tensorflow"]
            gpus = tf.config.list_physical_devices("GPU")
            return ", ".join(g.name for g in gpus) if gpus else "cpu"
    except Exception as error:  # a broken driver must not end a benchmark that ran
        return f"unknown ({type(error).__name__})"
    return "cpu"


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """How this process was started, as a shell line.

    A module run with `python -m` is written so (`python -m benchmarks.x ...`),
    not as the absolute path Python puts in `sys.argv[0]`.
    """
    if argv is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        head = ["-m", spec.name.removesuffix(".__main__")] if spec is not None and spec.name else sys.argv[:1]
        argv = [*head, *sys.argv[1:]]
    return shlex.join([Path(sys.executable).name, *argv])


def environment(argv: Optional[Sequence[str]] = None, **extra: Any) -> Dict[str, Any]:
    """The facts a measurement needs next to it; `extra` is merged in."""
    facts: Dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": loadavg(),
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "device": device_description(),
    }
    for name in ("numpy", "keras", "jax", "jaxlib", "torch", "tensorflow", "larq-compute-engine"):
        version = _version(name)
        if version is not None:
            facts[name] = version
    facts.update(extra)
    return facts


def machine_description() -> str:
    """The machine in one line: processor, CPUs, and how many of them this process may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs ({usable} usable)"


def hide_tensorflow() -> None:
    """Make `import tensorflow` fail in this process, as on a machine without TensorFlow.

    For processes on another Keras backend: Keras imports TensorFlow whenever
    it is installed (`keras.utils.set_random_seed` seeds it), which costs
    seconds and memory per process and would hide a dependency on TF that
    the GPU machine (no TF) would expose. Call it before anything imports TF.
    """
    loaded = sys.modules.get("tensorflow")
    if loaded is not None:
        raise RuntimeError("hide_tensorflow() came too late: TensorFlow is already imported.")
    sys.modules["tensorflow"] = None  # the import system's "not importable" marker


def tensorflow_imported() -> bool:
    """Whether TensorFlow is loaded in this process (a process on JAX or torch should not have it)."""
    return sys.modules.get("tensorflow") is not None


def now() -> str:
    """Wall-clock time for progress lines (HH:MM:SS, local)."""
    return time.strftime("%H:%M:%S")


# --- records -------------------------------------------------------------------------------


def print_result(record: Dict[str, Any]) -> str:
    """Print `RESULT {...}`, the record as one JSON line (every script's last line); returns the JSON."""
    line = json.dumps(record, allow_nan=True, default=str)
    print("RESULT " + line, flush=True)
    return line


def write_json(path, record: Dict[str, Any], indent: Optional[int] = None) -> Path:
    """Write `record` as JSON (one line when `indent` is None) and a newline to `path`."""
    path = Path(path)
    path.write_text(json.dumps(record, indent=indent, allow_nan=True, default=str) + "\n")
    return path


# --- tables --------------------------------------------------------------------------------


def fmt(value: Optional[float], spec: str = ".3f", scale: float = 1.0) -> str:
    """`value * scale` formatted, or an en dash for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value * scale, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: `header`, then one line per row (cells as `str` writes them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
