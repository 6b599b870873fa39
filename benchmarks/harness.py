"""What every benchmark script shares: environment, timing, statistics, tables, figures.

Written once here so that `train_step.py`, `convert.py` and `ablation.py`
measure, summarize and draw the same way:

* `environment()`: versions, Keras backend, device, CPU count, load average,
  date and command line of a measurement. It never imports TensorFlow (it
  reports TF's version only when TF is already loaded or installed).
* `interleaved_rounds(...)`: time several steppers side by side, in rounds
  whose order alternates, so drift of a shared machine spreads over all of
  them; `Timing` holds per-round and per-step milliseconds and their medians.
* `t_interval(...)` and `welch(...)`: mean, standard deviation and Student-t
  95% interval of a sample; difference of two means with Welch's unequal-
  variance t-test (interval and two-sided p-value).
* `markdown_table(...)`, `pyplot()`, `save_figure(...)`: tables and PNGs
  (each figure shrunk until it is under 300 KB).

Example:

>>> s = t_interval([0.70, 0.72, 0.74])
>>> round(s.mean, 2), round(s.std, 2), round(s.low, 4), round(s.high, 4)
(0.72, 0.02, 0.6703, 0.7697)
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

#: Largest PNG a benchmark may write (issue 10: each figure under 300 KB).
MAX_FIGURE_BYTES = 300_000


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
    """How this process was started, as a shell line (script path relative to the cwd)."""
    argv = list(sys.argv if argv is None else argv)
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
    return sys.modules.get("tensorflow") is not None


def now() -> str:
    """Wall-clock time for progress lines (HH:MM:SS, local)."""
    return time.strftime("%H:%M:%S")


# --- timing --------------------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
    """Per-round and per-step times (ms) of one stepper; a round's time is its mean step."""

    name: str
    round_ms: List[float] = dataclasses.field(default_factory=list)
    step_ms: List[float] = dataclasses.field(default_factory=list)

    def add_round(self, step_ms: Sequence[float]) -> None:
        self.step_ms.extend(step_ms)
        self.round_ms.append(statistics.fmean(step_ms))

    @property
    def median_ms(self) -> float:
        return statistics.median(self.round_ms)

    @property
    def min_ms(self) -> float:
        return min(self.round_ms)

    @property
    def step_median_ms(self) -> float:
        return statistics.median(self.step_ms)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "median_ms": round(self.median_ms, 3),
            "min_ms": round(self.min_ms, 3),
            "step_median_ms": round(self.step_median_ms, 3),
            "steps_per_s": round(1e3 / self.median_ms, 3),
            "round_ms": [round(v, 3) for v in self.round_ms],
        }


def time_steps(step: Callable[[], Any], steps: int) -> List[float]:
    """Milliseconds of each of `steps` calls of `step`; `step` must block until done."""
    out = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def interleaved_rounds(
    runners: Mapping[str, Callable[[int], Sequence[float]]], rounds: int, steps: int
) -> Dict[str, Timing]:
    """Time every runner in `rounds` rounds of `steps` steps, the order reversed every round.

    `runners[name](n)` runs one untimed step (caches re-warmed after the
    other runners, as a model in `fit` always runs warm) then `n` timed
    steps, and returns their milliseconds: an in-process stepper
    (`lambda n: (step(), time_steps(step, n))[1]`) or a proxy to a worker
    process alike.
    """
    if rounds < 1 or steps < 1:
        raise ValueError(f"rounds and steps must be >= 1, got {rounds} and {steps}.")
    names = list(runners)
    timings = {name: Timing(name) for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            timings[name].add_round(runners[name](steps))
    return timings


# --- statistics ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and two-sided Student-t interval of n values."""

    n: int
    mean: float
    std: float  # nan for n < 2
    low: float  # nan for n < 2
    high: float
    confidence: float = 0.95


def t_quantile(probability: float, df: float) -> float:
    """The `probability` quantile of Student's t with `df` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(probability, df))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """`mean +- t_{(1+c)/2, n-1} * std / sqrt(n)`; NaN values are dropped."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return Interval(0, nan, nan, nan, nan, confidence)
    mean = statistics.fmean(kept)
    if n < 2:
        nan = float("nan")
        return Interval(n, mean, nan, nan, nan, confidence)
    std = statistics.stdev(kept)
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half, confidence)


@dataclasses.dataclass(frozen=True)
class Difference:
    """`mean(a) - mean(b)` with Welch's t-test: interval, t, degrees of freedom, p (two-sided)."""

    diff: float
    low: float
    high: float
    t: float
    df: float
    p: float
    n_a: int
    n_b: int


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Welch's unequal-variance t-test of `mean(a) - mean(b)`; needs two values on each side.

    Standard error `sqrt(s_a^2/n_a + s_b^2/n_b)`, Welch-Satterthwaite degrees
    of freedom. With zero variance on both sides the test is undefined and
    `t`, `p` and the interval are NaN (reported as such, never guessed).
    """
    sa, sb = t_interval(a), t_interval(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values per side, got {sa.n} and {sb.n}.")
    diff = sa.mean - sb.mean
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        nan = float("nan")
        return Difference(diff, nan, nan, nan, nan, nan, sa.n, sb.n)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    t = diff / se
    from scipy import stats

    p = float(2 * stats.t.sf(abs(t), df))
    half = t_quantile((1 + confidence) / 2, df) * se
    return Difference(diff, diff - half, diff + half, t, df, p, sa.n, sb.n)


# --- tables and figures --------------------------------------------------------------------


def fmt(value: Optional[float], spec: str = ".3f", scale: float = 1.0) -> str:
    """`value * scale` formatted, or an en dash for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value * scale, spec)


def fmt_interval(s: Interval, spec: str = ".2f", scale: float = 1.0) -> str:
    """"mean ± std [low, high]" (the 95% t-interval), or the mean alone for one value."""
    if s.n == 0:
        return "–"
    if s.n < 2:
        return f"{fmt(s.mean, spec, scale)} (n=1)"
    return (f"{fmt(s.mean, spec, scale)} ± {fmt(s.std, spec, scale)} "
            f"[{fmt(s.low, spec, scale)}, {fmt(s.high, spec, scale)}]")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, max_bytes: int = MAX_FIGURE_BYTES, dpi: int = 110) -> Path:
    """Save `figure` as PNG at `path`, lowering the resolution until it fits `max_bytes`."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            figure.savefig(path, dpi=dpi)
            if path.stat().st_size <= max_bytes or dpi <= 40:
                break
            dpi = int(dpi * 0.8)
    finally:
        plt.close(figure)
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path} is {path.stat().st_size} bytes even at {dpi} dpi; draw less in it.")
    return path
