"""Ablation of ReCU on ResNet-20 1w1a, as an accumulating campaign (issue 10).

Which part of ReCU does what: the same network, recipe and data in several
variants (`VARIANTS`), several seeds each, on a named budget (`BUDGETS`).
Each finished (variant, seed) run appends one row to
`<out>/ablation-<budget>.csv`, its per-epoch curves to
`ablation-<budget>-epochs.csv` and its latent-weight histograms (start,
middle, end) to `ablation-<budget>-histograms.csv`; a rerun skips the runs
already recorded, so a budget fills over days and machines. `report` reads
the CSVs and writes the tables and figures. What the variants isolate, the
columns, and the reading of the numbers: BENCHMARKS.md, "Ablation campaign".

    PYTHONPATH=. python benchmarks/ablation.py budgets
    PYTHONPATH=. python benchmarks/ablation.py run --budget sweep-e4      # ste learning rates
    PYTHONPATH=. python benchmarks/ablation.py run --budget full-e10 --parallel 1
    PYTHONPATH=. python benchmarks/ablation.py report --budget full-e10
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from campaign import GAVE_UP, RowStore, Task, exit_on_sigterm, number, python_command, run_pool  # noqa: E402

RESULTS = HERE / "results"
TAU_MIN, TAU_MAX, REFERENCE_TAU = 0.85, 0.99, 0.85
#: Histogram of the standardized latent weights (Laplace scale 2): fixed edges, so runs add up.
HIST_RANGE, HIST_BINS = (-12.0, 12.0), 96


@dataclasses.dataclass(frozen=True)
class Budget:
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
    "quick": Budget(3, 7000, 2000, 128, 2, sweep="sweep-quick"),
    **{f"full-e{e}": Budget(e, None, None, 256, 3, sweep="sweep-e4") for e in (10, 15, 20, 30, 50)},
    "sweep-smoke": Budget(1, 768, 256, 128, 1, validation=256, learning_rates=(0.1, 1.0)),
    "sweep-quick": Budget(3, 9000, 256, 128, 1, validation=2000, learning_rates=_SWEEP_RATES),
    "sweep-e4": Budget(4, None, 256, 256, 3, validation=10000, learning_rates=_SWEEP_RATES),
}


@dataclasses.dataclass(frozen=True)
class Variant:
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
    "quant_error_init", "seconds", "seconds_per_epoch", "date", "host", "versions",
)
EPOCH_COLUMNS = (
    "run_id", "variant", "seed", "epoch", "tau", "learning_rate", "loss", "accuracy", "val_loss",
    "val_accuracy", "dead_share", "dead_share_085", "quant_error", "latent_quant_error", "entropy",
    "entropy_standardized", "binary_entropy", "flip_ratio", "seconds",
)
HISTOGRAM_COLUMNS = ("run_id", "variant", "seed", "stage", "epoch", "low", "high", "underflow", "overflow",
                     "counts")


def stores(out: Path, budget: str) -> Dict[str, RowStore]:
    return {
        "runs": RowStore(out / f"ablation-{budget}.csv", RUN_COLUMNS),
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


# --- one run (the `_one` subcommand: a process of its own) -------------------------------------


def build_variant(name: str, input_shape, num_classes: int, epochs: int):
    """The model of variant `name` (not compiled), the callbacks its method needs, its binary layers' names.

    The names are those of the 18 binary convs of `resnet20_1w1a`; in the
    float twin they are the float convs in the same places.
    """
    import keras

    from keras_recu import models
    from keras_recu.callbacks import TauScheduler
    from keras_recu.constraints import ReCUClamp
    from keras_recu.layers import ReCUConv2D
    from keras_recu.quantizers import ReCUSign, SteSign
    from recorder import binary_layer_names

    variant = VARIANTS[name]
    tau = TAU_MIN if variant.tau is None else variant.tau

    def binary_conv(*, filters, kernel_size, strides, tau, name, kernel_initializer):
        # A new quantizer (and constraint) per layer: each holds its own tau.
        quantizer = SteSign(clip_value=None) if variant.kernel == "ste" else ReCUSign(
            tau=tau, clamp=variant.kernel != "recu_noclamp")
        return ReCUConv2D(filters, kernel_size, strides=strides, padding="same", kernel_quantizer=quantizer,
                          kernel_constraint=ReCUClamp(tau=tau) if variant.constraint else None,
                          kernel_initializer=kernel_initializer, name=name)

    model = models.resnet20_1w1a(input_shape=input_shape, num_classes=num_classes, tau=tau,
                                 binary_conv=binary_conv)
    names = binary_layer_names(model)
    if variant.kernel == "float":
        model = models.float_twin(model)
    callbacks: List[keras.callbacks.Callback] = []
    if variant.schedule:  # with a constraint it sets the clamp's tau (and the unused quantizer's)
        callbacks.append(TauScheduler(TAU_MIN, TAU_MAX, epochs=epochs))
    return model, callbacks, names


def _sweep_split(train, info, validation: int, batch_size: int, seed: int):
    """Fit on all but the last `validation` training images, score on those (the full split's normalization)."""
    from keras_recu.app.data import ImageBatches

    n = len(train.images) - validation
    common = dict(mean=info.mean, std=info.std)
    fit = ImageBatches(train.images[:n], train.labels[:n], batch_size, shuffle=True,
                       augmentation=info.augmentation, seed=seed, **common)
    return fit, ImageBatches(train.images[n:], train.labels[n:], batch_size, **common), n


def run_one(args: argparse.Namespace) -> int:
    """Train one (variant, seed[, learning rate]) and append its rows; GAVE_UP if it would miss the deadline."""
    import harness

    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        harness.hide_tensorflow()  # as on the GPU machine; see harness.hide_tensorflow
    import keras

    from keras_recu.app import data
    from keras_recu.app.train import TrainConfig, learning_rate_schedule
    from keras_recu.optimizers import L2SGD
    from recorder import Recorder

    budget, started = BUDGETS[args.budget], time.time()
    keras.utils.set_random_seed(args.seed)
    train, test, info = data.load("fashion_mnist", budget.batch_size, data_dir=args.data_dir, augment=True,
                                  limit_train=budget.train, limit_test=budget.test, seed=args.seed,
                                  download=False)
    train_examples, evaluated_on = info.train_examples, "test"
    if budget.validation:
        train, test, train_examples = _sweep_split(train, info, budget.validation, budget.batch_size, args.seed)
        evaluated_on = "validation"
    model, callbacks, names = build_variant(args.variant, info.input_shape, info.num_classes, budget.epochs)
    config = TrainConfig(epochs=budget.epochs, warmup_epochs=budget.warmup_epochs,
                         learning_rate=args.learning_rate, batch_size=budget.batch_size)
    model.compile(optimizer=L2SGD(learning_rate_schedule(config, len(train)), momentum=0.9, l2=args.weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    recorder = Recorder(VARIANTS[args.variant], REFERENCE_TAU, budget.epochs, args.deadline_at, HIST_RANGE,
                        HIST_BINS, names, label=f"{args.variant} seed {args.seed} lr {args.learning_rate:g}")
    history = model.fit(train, epochs=budget.epochs, validation_data=test, verbose=0, shuffle=False,
                        callbacks=[recorder.timer(), *callbacks, *recorder.callbacks()])
    if recorder.gave_up:
        print(f"[{harness.now()}] gave up {recorder.label}: it would not finish by the deadline", flush=True)
        return GAVE_UP
    run_id = f"{args.variant}-s{args.seed}-lr{args.learning_rate:g}-{int(started)}-{os.getpid()}"
    common = {"run_id": run_id, "variant": args.variant, "seed": args.seed}
    epochs = recorder.epoch_rows(history.history)
    run = {
        **common, **recorder.final(epochs), "budget": args.budget, "epochs": budget.epochs,
        "train_examples": train_examples, "test_examples": len(test.images), "evaluated_on": evaluated_on,
        "batch_size": budget.batch_size, "learning_rate": args.learning_rate, "weight_decay": args.weight_decay,
        "tau": "0.85->0.99" if VARIANTS[args.variant].schedule else VARIANTS[args.variant].tau,
        "backend": keras.backend.backend(), "device": harness.device_description(keras.backend.backend()),
        "test_accuracy": epochs[-1]["val_accuracy"], "test_loss": epochs[-1]["val_loss"],
        "seconds": round(time.time() - started, 1), "date": harness.environment()["date"],
        "host": os.uname().nodename, "versions": recorder.versions(),
    }
    out = stores(Path(args.out), args.budget)
    out["epochs"].append({**common, **row} for row in epochs)
    out["histograms"].append({**common, **row} for row in recorder.histograms)
    out["runs"].append([run])  # last: the run counts as done only once its curves are stored
    print(f"[{harness.now()}] done {recorder.label}: {evaluated_on} accuracy {100 * run['test_accuracy']:.2f}% "
          f"in {run['seconds']:.0f} s", flush=True)
    return 0


# --- the campaign ------------------------------------------------------------------------------


def planned_runs(args: argparse.Namespace) -> List[Tuple[tuple, str, int, float]]:
    """(key, variant, seed, learning rate) of every run of the budget, by priority (tier, seed, variant)."""
    budget = BUDGETS[args.budget]
    seeds = range(budget.seeds) if args.seeds is None else args.seeds
    if budget.validation:
        return [(("ste", seed, rate), "ste", seed, rate) for seed in seeds for rate in budget.learning_rates]
    ste_rate = args.ste_learning_rate or (best_learning_rate(Path(args.out), budget.sweep) if budget.sweep else None)
    if "ste" in args.variants and ste_rate is None:
        print(f"skipping ste: no learning rate (run --budget {budget.sweep} first, or pass --ste-learning-rate)",
              flush=True)
    names = [name for name in args.variants if name != "ste" or ste_rate is not None]
    return [((name, seed), name, seed, ste_rate if name == "ste" else args.learning_rate)
            for tier in sorted({VARIANTS[name].tier for name in names}) for seed in seeds
            for name in names if VARIANTS[name].tier == tier]


def pending_tasks(args: argparse.Namespace) -> List[Task]:
    """The planned runs not yet in the budget's CSV, each as the command of an `_one` process."""
    out = Path(args.out)
    done = {run_key(row) for row in stores(out, args.budget)["runs"].rows()}
    common = ["--budget", args.budget, "--out", out, "--weight-decay", args.weight_decay]
    common += ["--data-dir", args.data_dir] if args.data_dir else []
    common += ["--deadline-at", args.deadline_at] if args.deadline_at else []
    return [Task(key, python_command(HERE / "ablation.py", "_one", "--variant", variant, "--seed", seed,
                                     "--learning-rate", rate, *common))
            for key, variant, seed, rate in planned_runs(args) if key not in done]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("budgets", help="print the predefined budgets and variants")
    for name in ("run", "report", "_one"):
        c = commands.add_parser(name)
        c.add_argument("--budget", required=True, choices=sorted(BUDGETS))
        c.add_argument("--out", default=str(RESULTS), help="where the CSVs live (default benchmarks/results)")
        if name == "report":
            c.add_argument("--figures", default=None, help="where tables and figures go (default: --out)")
            continue
        c.add_argument("--data-dir", help="directory of the four Fashion-MNIST IDX files")
        c.add_argument("--weight-decay", type=float, default=5e-4)
        c.add_argument("--learning-rate", type=float, default=0.1)
        if name == "_one":
            c.add_argument("--variant", required=True, choices=sorted(VARIANTS))
            c.add_argument("--seed", type=int, required=True)
            c.add_argument("--deadline-at", type=float, help="time.time() by which the run must end")
            continue
        c.add_argument("--deadline", type=float, help="seconds from now: no run may end later")
        c.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
        c.add_argument("--seeds", help="comma-separated seeds (default 0..budget seeds - 1)")
        c.add_argument("--parallel", type=int, default=1, help="runs at once (processes)")
        c.add_argument("--estimate", type=float, help="prior seconds per run, for the deadline")
        c.add_argument("--ste-learning-rate", type=float, help="instead of the sweep's best")
    args = p.parse_args(argv)
    if args.command == "run":
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = sorted(set(args.variants) - set(VARIANTS))
        if unknown or not args.variants:
            p.error(f"unknown or no variants {unknown}; known: {', '.join(VARIANTS)}")
        args.seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
        args.deadline_at = None if args.deadline is None else time.time() + args.deadline
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == "budgets":
        for name, budget in BUDGETS.items():
            print(f"{name:<12} {budget}")
        for name, variant in VARIANTS.items():
            print(f"{name:<17} {variant}")
        return 0
    if args.command == "report":
        from ablation_report import report

        report(args.budget, Path(args.out), Path(args.figures or args.out))
        return 0
    if args.command == "_one":
        return run_one(args)
    import harness

    exit_on_sigterm()  # a parent's timeout ends the runs too (run_pool's cleanup)
    tasks = pending_tasks(args)
    print(f"[{harness.now()}] budget {args.budget}: {len(tasks)} runs to do, {args.parallel} at once", flush=True)
    outcomes = run_pool(tasks, args.parallel, args.deadline_at, args.estimate,
                        log=lambda line: print(f"[{harness.now()}] {line}", flush=True))
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("done", "failed", "gave up", "abandoned", "not started")}
    print(f"[{harness.now()}] budget {args.budget}: {counts}", flush=True)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
