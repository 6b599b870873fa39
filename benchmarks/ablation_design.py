"""What the ablation campaign is made of: its budgets, its variants and its records (issue 10).

The vocabulary that the campaign (`ablation_campaign.py`), one run
(`ablation_one.py`), the reading (`ablation_report.py`) and the GPU driver
share, defined once here:

* `BUDGETS`: named budgets (epochs, data, batch, seeds; a sweep's learning
  rates and the sweep a budget takes its ste learning rate from);
* `VARIANTS`: what each variant changes in ResNet-20 1w1a, and its tier;
* `stores(out, budget)`: the budget's CSV records (`RUN_COLUMNS`,
  `EPOCH_COLUMNS`, `HISTOGRAM_COLUMNS`), `run_key` (what makes a run
  unique) and `best_learning_rate` (a sweep's choice);
* `DTYPE_POLICIES`: the Keras dtype policies a budget may run under, one per
  budget (`budget_policies`, `policy_conflict`): rows written before the
  `dtype_policy` column existed ran under Keras' default and read as float32.

>>> BUDGETS["full-e10"].sweep, VARIANTS["recu"].schedule
('sweep-e4', True)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from benchmarks.campaign import RowStore, number
from keras_recu import vocabulary

#: Where the campaign's CSVs, tables and figures live by default.
RESULTS = Path(__file__).resolve().parent / "results"
#: The schedule's ends, and the fixed tau of `clamp_fixed`: the package's own defaults.
TAU_MIN, TAU_MAX, REFERENCE_TAU = vocabulary.TAU_MIN, vocabulary.TAU_MAX, vocabulary.TAU_MIN
#: The dtype policies a budget may run under, of the package's (Keras' names): mixed_float16 is left
#: out, since its loss scaling would be one more difference between variants. The first is Keras'
#: default, that of old rows.
DTYPE_POLICIES = tuple(policy for policy in vocabulary.DTYPE_POLICIES if policy != "mixed_float16")
DEFAULT_POLICY = DTYPE_POLICIES[0]
#: Histogram of the standardized latent weights (Laplace scale 2): fixed edges, so runs add up.
HIST_RANGE, HIST_BINS = (-12.0, 12.0), 96


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much one run of a budget trains, how many seeds it has, and where its ste rate comes from."""

    epochs: int
    train: Optional[int]  # first N training images (None: all 60,000)
    test: Optional[int]  # first N test images (None: all 10,000)
    batch_size: int
    seeds: int
    sweep: Optional[str] = None  # the budget whose best ste learning rate this one uses
    validation: int = 0  # > 0: a sweep: fit on the first train - N images, score on the last N
    learning_rates: Tuple[float, ...] = ()  # a sweep's ste learning rates

    @property
    def warmup_epochs(self) -> int:
        return min(5, self.epochs // 10)


_SWEEP_RATES = (0.03, 0.1, 0.3, 1.0, 3.0)
BUDGETS: Dict[str, Budget] = {
    "smoke": Budget(2, 512, 256, 128, 1, sweep="sweep-smoke"),
    "tiny": Budget(1, 256, 128, 128, 1, sweep="sweep-tiny"),  # the GPU driver's CPU smoke: one epoch
    "quick": Budget(3, 7000, 2000, 128, 2, sweep="sweep-quick"),
    **{f"full-e{e}": Budget(e, None, None, 256, 3, sweep="sweep-e4") for e in (10, 15, 20, 30, 50)},
    "sweep-smoke": Budget(1, 768, 256, 128, 1, validation=256, learning_rates=(0.1, 1.0)),
    "sweep-tiny": Budget(1, 384, 128, 128, 1, validation=128, learning_rates=(1.0,)),
    "sweep-quick": Budget(3, 9000, 256, 128, 1, validation=2000, learning_rates=_SWEEP_RATES),
    "sweep-e4": Budget(4, None, 256, 256, 3, validation=10000, learning_rates=_SWEEP_RATES),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a variant changes in ReCU's ResNet-20 1w1a, and its priority in the campaign."""

    tier: int  # 1 decides the bar (issue 10); 2 if the budget allows; 3 the tau study
    kernel: str  # "float", "ste", "recu" (ReCUSign) or "recu_noclamp" (ReCUSign(clamp=False))
    tau: Optional[float] = None  # fixed tau, or None with a schedule
    schedule: bool = False  # TauScheduler(0.85, 0.99, epochs)
    constraint: bool = False  # ReCUClamp on the latent kernel


VARIANTS: Dict[str, Variant] = {
    "recu": Variant(1, "recu", schedule=True),
    "standardize_only": Variant(1, "recu_noclamp"),
    "clamp_fixed": Variant(1, "recu", tau=0.85),
    "ste": Variant(1, "ste"),
    "full_precision": Variant(1, "float"),
    "recu_constraint": Variant(2, "recu_noclamp", schedule=True, constraint=True),
    "tau_fixed_0.94": Variant(3, "recu", tau=0.94),
    "tau_fixed_0.99": Variant(3, "recu", tau=0.99),
}

RUN_COLUMNS = (
    "run_id", "variant", "seed", "budget", "epochs", "train_examples", "test_examples", "evaluated_on",
    "batch_size", "learning_rate", "weight_decay", "tau", "backend", "device", "test_accuracy", "test_loss",
    "dead_share", "dead_share_085", "quant_error", "latent_quant_error", "entropy", "entropy_standardized",
    "binary_entropy", "flip_ratio", "flip_ratio_mean", "dead_share_init", "dead_share_085_init",
    "quant_error_init", "seconds", "seconds_per_epoch", "date", "host", "versions", "dtype_policy",
)
#: What a row written before a column existed holds in it (the CSVs are migrated with these).
RUN_DEFAULTS = {"dtype_policy": DEFAULT_POLICY}
EPOCH_COLUMNS = (
    "run_id", "variant", "seed", "epoch", "tau", "learning_rate", "loss", "accuracy", "val_loss",
    "val_accuracy", "dead_share", "dead_share_085", "quant_error", "latent_quant_error", "entropy",
    "entropy_standardized", "binary_entropy", "flip_ratio", "seconds",
)
HISTOGRAM_COLUMNS = ("run_id", "variant", "seed", "stage", "epoch", "low", "high", "underflow", "overflow",
                     "counts")


def stores(out: Path, budget: str) -> Dict[str, RowStore]:
    """The budget's three CSV records in `out`: "runs", "epochs" and "histograms"."""
    return {
        "runs": RowStore(out / f"ablation-{budget}.csv", RUN_COLUMNS, RUN_DEFAULTS),
        "epochs": RowStore(out / f"ablation-{budget}-epochs.csv", EPOCH_COLUMNS),
        "histograms": RowStore(out / f"ablation-{budget}-histograms.csv", HISTOGRAM_COLUMNS),
    }


def run_key(row) -> tuple:
    """What makes a run unique in its budget: (variant, seed), plus the learning rate in a sweep."""
    key = (row["variant"], int(row["seed"]))
    return key + (float(row["learning_rate"]),) if BUDGETS[row["budget"]].validation else key


def best_learning_rate(out: Path, sweep: str) -> Optional[float]:
    """The sweep's learning rate with the highest mean validation accuracy (ties: the smaller)."""
    by_rate: Dict[float, List[float]] = {}
    for row in stores(out, sweep)["runs"].rows():
        by_rate.setdefault(float(row["learning_rate"]), []).append(number(row["test_accuracy"]))
    scored = [(sum(v) / len(v), -rate) for rate, v in by_rate.items() if not any(map(math.isnan, v))]
    return -max(scored)[1] if scored else None


def row_policy(row) -> str:
    """The dtype policy a run row was trained under (empty or absent: Keras' default, float32)."""
    return row.get("dtype_policy") or DEFAULT_POLICY


def budget_policies(out: Path, budget: str) -> Dict[str, int]:
    """How many rows of the budget's CSV ran under each dtype policy ({} for a budget without rows)."""
    counts: Dict[str, int] = {}
    for row in stores(out, budget)["runs"].rows():
        counts[row_policy(row)] = counts.get(row_policy(row), 0) + 1
    return counts


def policy_conflict(out: Path, budget: str, policy: str) -> Optional[str]:
    """One line refusing `policy` if the budget already holds rows of another policy, else None."""
    others = {name: n for name, n in budget_policies(out, budget).items() if name != policy}
    if not others:
        return None
    held = ", ".join(f"{n} rows {name}" for name, n in sorted(others.items()))
    return (f"refused: budget {budget} in {out} holds {held}; a budget is never mixed: run it with "
            f"--dtype-policy {max(others, key=others.get)}, or write {policy} rows to another --out")
