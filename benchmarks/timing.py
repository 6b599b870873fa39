"""Timing steppers side by side: interleaved rounds, per-round and per-step milliseconds.

`interleaved_rounds(...)` times several steppers in rounds whose order
alternates, so that the drift of a shared machine spreads over all of them;
`Timing` holds one stepper's per-round and per-step times and their medians.

>>> timings = interleaved_rounds({"a": lambda n: [2.0] * n, "b": lambda n: [4.0] * n}, rounds=2, steps=3)
>>> timings["b"].median_ms / timings["a"].median_ms
2.0
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence


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
