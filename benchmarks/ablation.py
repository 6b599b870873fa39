"""Ablation of ReCU on ResNet-20 1w1a: which part of the method does what.

Six variants of the same network are trained with the same data, recipe and
budget, each with several seeds, and compared on test accuracy, time per
epoch and the diagnostics of `keras_recu.diagnostics` (dead share,
quantization error, weight entropy, flip ratio), so that the open questions
of RECU_SPEC.md section 4 get numbers and plots.

The variants
------------
Every variant is `keras_recu.models.resnet20_1w1a` (first conv and last dense
in float, 18 `ReCUConv2D`), changed only where named below. In every binary
variant the INPUT quantizer stays `ReCUInputSign` (sign forward, the
reference's normalized `max(0, 2 - 2|a0|)` gradient backward) and every conv
keeps its learned per-channel scale `alpha`: only the treatment of the
KERNEL varies between the binary variants.

=================  ==========================================================
full_precision     `models.float_twin(resnet20_1w1a(...))`: the same graph
                   with float convs. The ceiling; no diagnostics (no binary
                   kernels).
ste                Kernel quantizer `SteSign(clip_value=None)`: sign of the
                   raw latent weights, identity gradient. No standardization,
                   no clamp: the plain binary baseline.
standardize_only   `ReCUSign(tau=0.99999)`: per-channel standardization
                   (Laplace scale b = 2), and a clamp so far out that it does
                   not act (see below). Standardization alone.
clamp_fixed        `ReCUSign(tau=0.85)`, no TauScheduler: standardization and
                   the clamp at full strength for the whole run.
recu               Full ReCU: `ReCUSign` with `TauScheduler(0.85, 0.99,
                   epochs)`, the clamp fading out over training.
recu_constraint    The standardize-only quantizer plus `ReCUClamp` as the
                   kernel's constraint (`layer.kernel.constraint`), scheduled
                   0.85 -> 0.99: the optimizer clamps the LATENT weights after
                   every step instead of only the copy that is binarized.
=================  ==========================================================

Why tau = 0.99999 stands for "no clamp": `ReCUSign` has no switch to drop the
clamp (tau must lie in the open interval (0.5, 1)), and this script adds
nothing to the package. At tau = 0.99999 the threshold is
`Q = -mean|w1| * ln(2e-5) = 10.8 * mean|w1|`, which is 7.7 standard
deviations of the standardized kernel for Laplace-distributed weights and
8.6 for Gaussian ones; a Laplace kernel has 2e-5 of its weights beyond it
(about 5 of ResNet-20's 270k binary weights), a Gaussian one practically
none. The clamp zeroes the gradient only there, so the quantizer is
standardization + sign + straight-through. The script does not take this on
trust: the diagnostics' dead share of a `ReCUSign` layer is measured at the
layer's own tau, so the "dead share (own tau)" column of standardize_only is
the share that its clamp actually cuts (expected: 0).

What each comparison isolates, and the open question of section 4 it answers
----------------------------------------------------------------------------
* ste -> standardize_only: standardization alone ("how much of the gain is
  the standardization"; "does higher weight entropy help accuracy"; the
  entropy column says how far it raises entropy). Note that standardization
  also divides the gradient that reaches the latent weights by the channel's
  scale (about 1/30 to 1/50 of a Kaiming-initialized kernel's std), so the
  latent weights of `ste` move at a very different effective learning rate
  under the same recipe: part of any difference is that, not entropy.
* standardize_only -> clamp_fixed: the clamp at full strength ("does the
  clamp really lower quantization error once the latent weights are updated
  after clamping"; the quantization-error and dead-share columns).
* clamp_fixed -> recu: the schedule ("with tau_e = 0.99 the clamp almost
  vanishes at the end: how much does it do"; compare recu's end-of-training
  dead share at its own tau, and at tau 0.85, with clamp_fixed's and
  standardize_only's).
* standardize_only -> recu: the clamp as published, on top of
  standardization ("how much of the gain is the clamp").
* recu -> recu_constraint: clamping the latent weights themselves, so that
  "updated after clamping" is literally true; the latent quantization
  error, the dead share at tau 0.85 and the flip ratio show whether the
  tails are revived.
* everything -> full_precision: the gap that binarization leaves.
The scaling factor is not ablated: every binary variant has the learned
`alpha` and none uses `output_scale="mean_abs"`.

The diagnostics (per epoch, means over the 18 binary layers; definitions in
`keras_recu.diagnostics`):

* from `DiagnosticsCallback(reference_tau=0.85)`, each layer as its own
  quantizer sees it: `dead_share` (latent weights beyond the layer's OWN
  clamp: tau 0.99999 for standardize_only and recu_constraint, 0.85 for
  clamp_fixed, the scheduled tau for recu, the reference 0.85 for ste),
  `quant_error` (relative squared error of binarizing what the layer
  binarizes, the clamped standardized kernel for ReCU layers, the raw kernel
  for ste, with the L2-optimal per-channel scale), `entropy` (differential
  entropy in nats of the standardized kernel for ReCU layers, of the RAW
  kernel for ste: not scale-free, so ste's is far lower by construction),
  `binary_entropy` and `flip_ratio` (share of binary weights whose sign
  changed during the epoch);
* added here (`reference_diagnostics`), every variant's latent kernels
  measured the same way: `ref_dead_share` (beyond the ReCU range at tau
  0.85) and `latent_quant_error` (binarization error of the latent kernel
  itself, no clamp).

Recipe (the same for every variant): `L2SGD` (momentum 0.9, PyTorch-style
weight decay 5e-4 on every trainable variable), learning rate 0.1 with a
linear warm-up then cosine decay to 0 (`keras_recu.app.train.
learning_rate_schedule`), sparse categorical cross-entropy on logits, the
data set's standard augmentation. Seed s fixes the data order, the
augmentation and the initial weights, so the binary variants of one seed
start from the same weights and see the same batches.

Per run: final test accuracy (`evaluate` on the whole test split), the
median wall time of an epoch (training only: the diagnostics' end-of-epoch
work is outside the timer), the diagnostics history. Runs go seed by seed,
variants interleaved, so slow drift of a shared machine spreads over all
variants; results.json is rewritten after every run.

Output in `--out` (default runs/ablation): results.json (every run, the
settings, the command), table.md (per variant: test accuracy mean +- std over
seeds; at the end of training the dead share at the own tau and at 0.85, the
quantization error of what is binarized and of the latent kernel, the
entropy; the flip ratio averaged over epochs; s/epoch: the mean over seeds of
each run's median epoch, and the fastest epoch after the first), accuracy.png (each
seed and the mean +- std per variant) and diagnostics.png (per-epoch curves
of the six diagnostics, seed-averaged, one line per binary variant).

Commands (repository root):

    # ~10 minutes on 2 CPU cores: 7000 Fashion-MNIST images, 3 epochs, 2 seeds
    PYTHONPATH=. .venv/bin/python benchmarks/ablation.py --quick
    # the full ablation, sized for a GPU: all 60k images, 100 epochs, 3 seeds
    PYTHONPATH=. .venv/bin/python benchmarks/ablation.py --out runs/ablation_full
    # a subset, other budget or data set
    PYTHONPATH=. .venv/bin/python benchmarks/ablation.py --variants ste,recu --seeds 5 --epochs 200
    PYTHONPATH=. .venv/bin/python benchmarks/ablation.py --dataset cifar10 --data-dir ~/tensorflow_datasets

A quick budget shows that everything runs and how the diagnostics move in the
first epochs; accuracy differences within the spread of the seeds are not
evidence of anything.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

# --------------------------------------------------------------------------
# Settings.
# --------------------------------------------------------------------------

#: --quick: 9.5 minutes measured on 2 x86-64 cores (7.8 with 6000 images; BENCHMARKS.md).
QUICK = dict(limit_train=7000, limit_test=2000, epochs=3, seeds=2, batch_size=128)
#: Default (full) mode, for a GPU: every image, 100 epochs, 3 seeds, the paper's batch.
FULL = dict(limit_train=None, limit_test=None, epochs=100, seeds=3, batch_size=256)

TAU_MIN, TAU_MAX = 0.85, 0.99
#: The "no clamp" tau of standardize_only (see the module docstring).
TAU_NO_CLAMP = 0.99999
#: The tau at which the diagnostics measure the dead share, for every variant.
REFERENCE_TAU = 0.85
#: What DiagnosticsCallback records (each layer at its own quantizer's tau, on what it binarizes).
DIAGNOSTICS = ("dead_share", "quant_error", "entropy", "binary_entropy", "flip_ratio")
#: What this script adds (every variant's latent kernels at tau = 0.85, see reference_diagnostics).
REFERENCE_METRICS = ("ref_dead_share", "latent_quant_error")
PLOTTED = ("dead_share", "ref_dead_share", "quant_error", "latent_quant_error", "entropy", "flip_ratio")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    binary: bool = True


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("full_precision", "float_twin(resnet20_1w1a): float convs, same graph", binary=False),
        Variant("ste", "SteSign(clip_value=None) kernel: sign + identity STE, no standardization, no clamp"),
        Variant("standardize_only", f"ReCUSign(tau={TAU_NO_CLAMP}): standardization, clamp out of reach"),
        Variant("clamp_fixed", f"ReCUSign(tau={TAU_MIN}), no TauScheduler"),
        Variant("recu", f"ReCUSign + TauScheduler({TAU_MIN}, {TAU_MAX}, epochs): full ReCU"),
        Variant(
            "recu_constraint",
            f"ReCUSign(tau={TAU_NO_CLAMP}) + ReCUClamp kernel constraint scheduled {TAU_MIN} -> {TAU_MAX}",
        ),
    )
}


# --------------------------------------------------------------------------
# Building the variants.
# --------------------------------------------------------------------------


def binary_convs(model) -> list:
    """Every `ReCUConv2D` of `model`, in graph order."""
    from keras_recu.layers import ReCUConv2D

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, ReCUConv2D)]


def replace_kernel_quantizer(layer, quantizer) -> None:
    """`layer.kernel_quantizer = quantizer` on a layer that is already built.

    Quantizers are Keras layers, tracked as sub-layers (that is how a model
    finds their tau variables, and how `TauScheduler` finds them). A built
    layer locks its tracker: a plain assignment of a new sub-layer raises
    "You cannot add new elements of state ... to a layer that is already
    built". So the tracker is unlocked for the assignment (as Keras' own
    `quantize()` does), the old quantizer is untracked (its variables leave
    the model) and the lock is restored. `ReCUConv2D.call` reads
    `self.kernel_quantizer` when it is traced, so the swap takes effect in
    the train step compiled afterwards.
    """
    tracker = getattr(layer, "_tracker", None)
    locked = bool(tracker is not None and tracker.locked)
    old = layer.kernel_quantizer
    if locked:
        tracker.unlock()
    try:
        if tracker is not None and old is not None:
            tracker.untrack(old)
        layer.kernel_quantizer = quantizer
    finally:
        if locked:
            tracker.lock()


def clamp_tau_scheduler(tau_min: float, tau_max: float, epochs: int):
    """A `TauScheduler` that sets only `ReCUClamp` constraints.

    In recu_constraint the kernel quantizers are `ReCUSign(tau=0.99999)`
    (standardization without a clamp); a plain `TauScheduler` would set
    them to the schedule too and clamp the binarized copy a second time.
    """
    from keras_recu.callbacks import TauScheduler
    from keras_recu.constraints import ReCUClamp

    class ClampTauScheduler(TauScheduler):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self._holders = [h for h in self._holders if isinstance(h, ReCUClamp)]
            if not self._holders:
                raise ValueError("ClampTauScheduler found no ReCUClamp constraint.")

    return ClampTauScheduler(tau_min, tau_max, epochs=epochs)


def build_variant(name: str, input_shape, num_classes: int, epochs: int):
    """The model of variant `name` (not compiled) and its extra callbacks."""
    from keras_recu import models
    from keras_recu.callbacks import TauScheduler
    from keras_recu.constraints import ReCUClamp
    from keras_recu.quantizers import ReCUSign, SteSign

    model = models.resnet20_1w1a(input_shape=input_shape, num_classes=num_classes, tau=TAU_MIN)
    callbacks: list = []
    if name == "full_precision":
        model = models.float_twin(model)
    elif name == "ste":
        for layer in binary_convs(model):
            replace_kernel_quantizer(layer, SteSign(clip_value=None))
    elif name == "standardize_only":
        for layer in binary_convs(model):
            replace_kernel_quantizer(layer, ReCUSign(tau=TAU_NO_CLAMP))
    elif name == "clamp_fixed":
        pass  # resnet20_1w1a(tau=0.85) is it; no scheduler
    elif name == "recu":
        callbacks.append(TauScheduler(TAU_MIN, TAU_MAX, epochs=epochs))
    elif name == "recu_constraint":
        for layer in binary_convs(model):
            replace_kernel_quantizer(layer, ReCUSign(tau=TAU_NO_CLAMP))
            layer.kernel.constraint = ReCUClamp(tau=TAU_MIN)
        callbacks.append(clamp_tau_scheduler(TAU_MIN, TAU_MAX, epochs))
    else:
        raise ValueError(f"Unknown variant {name!r}; known: {', '.join(VARIANTS)}.")
    return model, callbacks


def describe_kernels(model) -> Dict[str, Any]:
    """What the binary convs of `model` actually hold (recorded per run, as a check)."""
    convs = binary_convs(model)
    quantizers = sorted({
        f"{type(layer.kernel_quantizer).__name__}"
        + (f"(tau={layer.kernel_quantizer.tau:.5f})" if hasattr(layer.kernel_quantizer, "tau") else "")
        for layer in convs
    })
    constraints = sorted({
        type(layer.kernel.constraint).__name__ + (
            f"(tau={layer.kernel.constraint.tau:.5f})" if hasattr(layer.kernel.constraint, "tau") else "")
        for layer in convs if layer.kernel.constraint is not None
    })
    return {"binary_convs": len(convs), "kernel_quantizers": quantizers, "kernel_constraints": constraints,
            "tau_variables": sum(1 for v in model.variables if v.name == "tau")}


def reference_diagnostics():
    """A callback: every binary variant's latent kernels measured the same way, per epoch.

    `DiagnosticsCallback` measures each layer as its own quantizer sees it (a
    `ReCUSign` layer at its own tau and on its clamped kernel), which is what
    the variant binarizes but differs in meaning between variants. This one
    applies `keras_recu.diagnostics.kernel_diagnostics(kernel, 0.85,
    ClampOptions(), recu=False)` to every binary latent kernel, whatever the
    variant, and keeps two numbers (means over the binary layers):

    * `ref_dead_share`: share of latent weights beyond the ReCU range at
      tau = 0.85 (standardized per channel, one threshold per layer);
    * `latent_quant_error`: relative squared error of binarizing the LATENT
      kernel itself with the per-channel scale mean|w| (no clamp applied):
      how far the latent weights are from two values. Clamping the latent
      weights (recu_constraint) lowers it; clamping only the copy that is
      binarized (recu) does not, except through training.
    """
    import keras

    from keras_recu.diagnostics import kernel_diagnostics
    from keras_recu.ops import ClampOptions

    class ReferenceDiagnostics(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: Dict[str, List[float]] = {k: [] for k in REFERENCE_METRICS}

        def on_epoch_end(self, epoch, logs=None):
            per_layer = [
                kernel_diagnostics(keras.ops.convert_to_numpy(layer.kernel), REFERENCE_TAU, ClampOptions(),
                                   recu=False)
                for layer in binary_convs(self.model)
            ]
            self.history["ref_dead_share"].append(float(np.mean([d["dead_share"] for d in per_layer])))
            self.history["latent_quant_error"].append(float(np.mean([d["quant_error"] for d in per_layer])))

    return ReferenceDiagnostics()


# --------------------------------------------------------------------------
# One run.
# --------------------------------------------------------------------------


def epoch_timer():
    """A callback that records the wall time of every epoch (training steps only).

    It must come first in the callback list: its `on_epoch_end` then runs
    before the other callbacks' end-of-epoch work (the diagnostics).
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: List[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def _floats(values) -> List[float]:
    return [float(v) for v in values]


def run_one(variant: str, seed: int, args: argparse.Namespace) -> Dict[str, Any]:
    """Train one variant with one seed; return its record for results.json."""
    import keras

    from keras_recu.app import data
    from keras_recu.optimizers import L2SGD
    from keras_recu.app.train import TrainConfig, learning_rate_schedule

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    train_ds, test_ds, info = data.load(
        args.dataset, args.batch_size, data_dir=args.data_dir, augment=args.augment,
        limit_train=args.limit_train, limit_test=args.limit_test, seed=seed, download=args.download,
    )
    steps_per_epoch = math.ceil(info.train_examples / args.batch_size)
    config = TrainConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                         learning_rate=args.learning_rate, batch_size=args.batch_size)
    model, callbacks = build_variant(variant, info.input_shape, info.num_classes, args.epochs)
    model.compile(
        optimizer=L2SGD(learning_rate_schedule(config, steps_per_epoch), momentum=0.9, l2=args.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit_compile,
    )
    timer = epoch_timer()
    diagnostics = reference = None
    if VARIANTS[variant].binary:
        from keras_recu.diagnostics import DiagnosticsCallback

        diagnostics = DiagnosticsCallback(reference_tau=REFERENCE_TAU, per_layer=False)
        reference = reference_diagnostics()
        callbacks += [diagnostics, reference]
    kernels_before = describe_kernels(model)

    start = time.perf_counter()
    history = model.fit(train_ds, epochs=args.epochs, callbacks=[timer, *callbacks], verbose=args.verbose)
    train_seconds = time.perf_counter() - start
    test = model.evaluate(test_ds, verbose=0, return_dict=True)

    record: Dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "seconds_per_epoch": round(statistics.median(timer.seconds), 3),
        # The fastest epoch after the first (which traces the step): on a
        # shared machine the least disturbed one.
        "seconds_per_epoch_min": round(min(timer.seconds[1:] or timer.seconds), 3),
        "train_seconds": round(train_seconds, 2),
        "steps_per_epoch": steps_per_epoch,
        "history": {k: _floats(v) for k, v in history.history.items() if not k.startswith("diagnostics/")},
        "diagnostics": None,
        "kernels_at_start": kernels_before,
        "kernels_at_end": describe_kernels(model),
        "parameters": int(model.count_params()),
    }
    if diagnostics is not None:
        record["diagnostics"] = {k: _floats(diagnostics.history.get(k, [])) for k in DIAGNOSTICS}
        record["diagnostics"].update({k: _floats(v) for k, v in reference.history.items()})
    return record


# --------------------------------------------------------------------------
# Aggregation and output.
# --------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def _std(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.stdev(values) if len(values) > 1 else None


def summarize(runs: List[Dict[str, Any]], variants: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Per variant: accuracy mean/std over seeds and the seed means of the diagnostics."""
    out = {}
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        if not mine:
            continue
        accuracies = [r["test_accuracy"] for r in mine]
        entry: Dict[str, Any] = {
            "seeds": [r["seed"] for r in mine],
            "test_accuracy_mean": _mean(accuracies),
            "test_accuracy_std": _std(accuracies),
            "test_accuracies": accuracies,
            "seconds_per_epoch": _mean([r["seconds_per_epoch"] for r in mine]),
            "seconds_per_epoch_min": min(r["seconds_per_epoch_min"] for r in mine),
        }
        for key in DIAGNOSTICS + REFERENCE_METRICS:
            series = [r["diagnostics"][key] for r in mine if r["diagnostics"] and r["diagnostics"].get(key)]
            if key == "flip_ratio":
                entry["flip_ratio_mean"] = _mean([_mean(s) for s in series]) if series else None
            entry[f"{key}_final"] = _mean([s[-1] for s in series]) if series else None
            entry[f"{key}_per_epoch"] = _per_epoch_mean(series)
        out[name] = entry
    return out


def _per_epoch_mean(series: List[List[float]]) -> Optional[List[float]]:
    if not series:
        return None
    length = min(len(s) for s in series)
    return [float(np.nanmean([s[i] for s in series])) for i in range(length)]


def _fmt(value: Optional[float], spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, spec)


TABLE_COLUMNS = (
    "variant", "test accuracy % (mean ± std)", "dead share % (own tau, end)", "dead share % (tau 0.85, end)",
    "quant. error (end)", "latent quant. error (end)", "entropy nats (end)", "flip ratio % (mean/epoch)",
    "s/epoch median (min)",
)


def table_markdown(summary: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS)]
    for name, s in summary.items():
        n = len(s["seeds"])
        std = "–" if s["test_accuracy_std"] is None else f"{100 * s['test_accuracy_std']:.2f}"
        accuracy = f"{100 * s['test_accuracy_mean']:.2f} ± {std} (n={n})"
        lines.append("| " + " | ".join([
            name,
            accuracy,
            _fmt(s["dead_share_final"], ".3f", 100),
            _fmt(s["ref_dead_share_final"], ".2f", 100),
            _fmt(s["quant_error_final"], ".4f"),
            _fmt(s["latent_quant_error_final"], ".4f"),
            _fmt(s["entropy_final"], ".3f"),
            _fmt(s["flip_ratio_mean"], ".3f", 100),
            f"{_fmt(s['seconds_per_epoch'], '.1f')} ({_fmt(s['seconds_per_epoch_min'], '.1f')})",
        ]) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(summary: Dict[str, Dict[str, Any]], path: Path) -> None:
    """Each seed's test accuracy (dots) and the mean +- std (bar) per variant."""
    plt = _pyplot()
    names = list(summary)
    figure, axis = plt.subplots(figsize=(1.6 * len(names) + 2, 4.5))
    for i, name in enumerate(names):
        s = summary[name]
        values = 100 * np.asarray(s["test_accuracies"])
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        axis.scatter(i + offsets, values, s=18, color="grey", zorder=3, label="seed" if i == 0 else None)
        std = 0.0 if s["test_accuracy_std"] is None else 100 * s["test_accuracy_std"]
        axis.errorbar(i, 100 * s["test_accuracy_mean"], yerr=std, fmt="o", color="C0", capsize=6,
                      markersize=8, zorder=4, label="mean ± std" if i == 0 else None)
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axis.set(ylabel="test accuracy (%)", title="Test accuracy per variant")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_diagnostics(summary: Dict[str, Dict[str, Any]], path: Path) -> None:
    """Per-epoch dead share, quantization error, entropy and flip ratio, seed means."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    titles = {
        "dead_share": "dead share (beyond the variant's own clamp)",
        "ref_dead_share": f"dead share (beyond the tau={REFERENCE_TAU} range)",
        "quant_error": "quantization error (of what is binarized)",
        "latent_quant_error": "quantization error of the latent kernel",
        "entropy": "weight entropy (nats, of what ReCU sees)",
        "flip_ratio": "flip ratio (signs flipped per epoch)",
    }
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    for axis, key in zip(axes.flat, PLOTTED):
        for i, (name, s) in enumerate(summary.items()):
            curve = s.get(f"{key}_per_epoch")
            if curve:
                epochs = np.arange(1, len(curve) + 1)
                axis.plot(epochs, curve, marker="o", markersize=3, color=f"C{i}", label=name)
        axis.set(title=titles[key], xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=len(labels))
    figure.suptitle("Diagnostics per epoch (binary variants; means over layers, then over seeds)")
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def environment() -> Dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_outputs(out: Path, report: Dict[str, Any], final: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    if final:
        (out / "table.md").write_text(table_markdown(report["summary"]))
        plot_accuracy(report["summary"], out / "accuracy.png")
        plot_diagnostics(report["summary"], out / "diagnostics.png")


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help=f"CPU budget of ~10 minutes: {QUICK}")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    p.add_argument("--seeds", type=int, help=f"seeds 0..N-1 per variant (full {FULL['seeds']}, quick {QUICK['seeds']})")
    p.add_argument("--epochs", type=int, help=f"(full {FULL['epochs']}, quick {QUICK['epochs']})")
    p.add_argument("--limit-train", type=int, help="first N training images (full: all, quick: 7000)")
    p.add_argument("--limit-test", type=int, help="first N test images (full: all, quick: 2000)")
    p.add_argument("--batch-size", type=int, help=f"(full {FULL['batch_size']}, quick {QUICK['batch_size']})")
    p.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (default min(5, epochs // 10))")
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--dataset", default="fashion_mnist", help="any keras_recu.app.data set")
    p.add_argument("--data-dir", help="see keras_recu.app.data.load")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail at once when a tensorflow-datasets set is missing")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--verbose", type=int, default=0, help="fit's verbosity")
    p.add_argument("--out", default="runs/ablation")
    args = p.parse_args(argv)

    mode = QUICK if args.quick else FULL
    for key, value in mode.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        p.error(f"unknown or no variants {unknown}; known: {', '.join(VARIANTS)}")
    for key in ("seeds", "epochs", "batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    for key in ("limit_train", "limit_test"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup_epochs is None:
        args.warmup_epochs = min(5, args.epochs // 10)
    if not 0 <= args.warmup_epochs < args.epochs:
        p.error("--warmup-epochs must be in [0, epochs)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    import sys
    import warnings

    import tensorflow as tf

    # Every run builds new models: TF's retracing warning would only be noise,
    # and the data sets are shuffled by keras_recu.app.data, not by fit.
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [str(a) for a in argv]
    args = parse_args(argv)
    command = "PYTHONPATH=. .venv/bin/python " + shlex.join(["benchmarks/ablation.py", *argv])
    settings = {k: getattr(args, k) for k in (
        "quick", "variants", "seeds", "epochs", "limit_train", "limit_test", "batch_size", "warmup_epochs",
        "learning_rate", "weight_decay", "dataset", "data_dir", "augment", "jit_compile")}
    settings.update(tau_min=TAU_MIN, tau_max=TAU_MAX, tau_no_clamp=TAU_NO_CLAMP, reference_tau=REFERENCE_TAU,
                    momentum=0.9, model="resnet20_1w1a")
    print("settings:", json.dumps(settings), flush=True)
    out = Path(args.out)
    report: Dict[str, Any] = {
        "benchmark": "keras_recu ablation, ResNet-20 1w1a",
        "command": command,
        "settings": settings,
        "environment": environment(),
        "variants": {name: VARIANTS[name].description for name in args.variants},
        "runs": [],
        "summary": {},
    }
    start = time.perf_counter()
    for seed in range(args.seeds):
        for name in args.variants:
            record = run_one(name, seed, args)
            report["runs"].append(record)
            report["summary"] = summarize(report["runs"], args.variants)
            write_outputs(out, report, final=False)
            dead = (record["diagnostics"] or {}).get("dead_share")
            dead = f"{100 * dead[-1]:6.2f}%" if dead else "     –"
            print(
                f"  seed {seed} {name:<17} test accuracy {100 * record['test_accuracy']:6.2f}%  "
                f"{record['seconds_per_epoch']:6.1f} s/epoch  dead share (own tau, end) {dead}  "
                f"[{time.perf_counter() - start:7.1f} s so far]",
                flush=True,
            )
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    write_outputs(out, report, final=True)
    print()
    print(table_markdown(report["summary"]))
    print(f"wrote {out}/results.json, table.md, accuracy.png, diagnostics.png "
          f"({report['total_seconds']:.0f} s)")
    print("command:", command)
    return report


if __name__ == "__main__":
    main()
