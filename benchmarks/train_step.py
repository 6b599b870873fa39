"""Train-step cost of `ReCUConv2D` against a minimal binary conv (the cost floor).

What is measured
----------------
Two Keras models with the same structure are trained on the same random batch
with `model.train_on_batch` (the compiled `one_step_on_data` function that
`fit` runs, plus a few microseconds of Python), under
`SGD(0.1, momentum=0.9)` and an MSE loss:

    input (batch, size, size, channels)
    -> N x [binary conv 3x3 "same", no bias, * alpha  ->  BatchNormalization]

* **recu**: the binary conv is `keras_recu.layers.ReCUConv2D`: input through
  `ReCUInputSign` (sign forward; backward `max(0, 2 - 2|a0|)` chained through
  the per-sample normalization `a0 = a / std(a)`), kernel through `ReCUSign`
  (standardize per output channel, clamp at the Laplace tau-quantile, sign
  with a straight-through gradient), output times a learnable per-channel
  `alpha`.
* **floor**: `FloorBinaryConv2D`, defined below: the input binarized with sign
  forward and the plain straight-through gradient (passed where |x| <= 1), the
  kernel with sign forward and identity gradient, the same convolution, the
  same per-channel `alpha`.

Why the floor is the floor
--------------------------
Any binary convolution with a learned channel scale must, in a train step,
binarize the input and the kernel, run the convolution forward and its two
backward convolutions, and pass some gradient through both binarizations.
The floor does exactly that with the cheapest gradients there are (one mask
for the input, none for the kernel); everything else in the step (the
convolutions, BatchNormalization, the loss, the optimizer update) is common
to both models. The ratio ReCU / floor is therefore the relative price of
ReCU's own math: the kernel standardization and clamp (on tensors of kernel
size, cheap) and the normalized activation gradient (on tensors of
activation size, where any extra work shows).

Target: ratio of the median step times, ReCU / floor, at most 1.10.

Note that the first block's input is the model input, which needs no
gradient: TF prunes it, so the activation gradient runs in N - 1 blocks.

Method: every model is built, compiled and warmed up first. Then, in each
round, each model runs one untimed step (to re-warm caches after the other
model, as a model in `fit` always runs warm) and then `--steps` timed steps
(the order alternates between rounds to cancel drift such as thermal or
frequency changes); a round's time per step is its total over `--steps`.
Reported per model: the median and the minimum over rounds, and the median
over all single steps; the headline ratio is the ratio of the round medians,
the other two are given as checks. By default the whole comparison runs
twice, with `jit_compile=False` and with `jit_compile=True`, each with its own
ratio. `--attribute` adds two hybrids (ReCU with the floor's input quantizer,
ReCU with the floor's kernel quantizer) and ReCU with its activation gradient
not normalized, to say where ReCU's extra time goes.

ResNet-20 (`--model resnet20`)
------------------------------
The same comparison on the paper's network: `keras_recu.models.resnet20_1w1a`
(32 x 32 x 3 input, 10 classes, 18 `ReCUConv2D`; float stem conv and dense
head, BatchNorm, hardtanh, residuals) against the same network in which
every `ReCUConv2D`'s input quantizer is replaced by the floor's STE sign
(`ste_input_sign`) and its kernel quantizer by sign with identity gradient
(`ste_kernel_sign`): same graph, same alpha, same initial weights, only the
binarizations' gradients (and ReCU's kernel standardization and clamp)
differ. Loss: sparse categorical cross-entropy on random labels; optimizer
and method as above; batch 128 by default. Reported: the ratio and the steps
per second of both. `--attribute` adds the same hybrids, made by the same
quantizer swaps. `--size`, `--channels` and `--layers` do not apply.

The machine must be otherwise idle: another process on the same cores moves
single rounds by tens of percent. The 1-minute load average before and after
each jit setting is reported (the benchmark itself accounts for about
`cpu_count`); if the three ratios disagree, rerun.

Run (from the repository root):

    PYTHONPATH=. .venv/bin/python benchmarks/train_step.py
    PYTHONPATH=. .venv/bin/python benchmarks/train_step.py --quick
    PYTHONPATH=. .venv/bin/python benchmarks/train_step.py --jit off --attribute --json out.json
    PYTHONPATH=. .venv/bin/python benchmarks/train_step.py --model resnet20 --jit off

The last line printed is `RESULT {...}`, the results as one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Sequence  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from keras_recu import ops as recu_ops  # noqa: E402
from keras_recu.layers import ReCUConv2D  # noqa: E402
from keras_recu.models import resnet20_1w1a  # noqa: E402

# One tf.function per model is traced once; TF's "N out of the last M calls
# triggered retracing" warning counts across models and would only be noise.
tf.get_logger().setLevel("ERROR")

TARGET_RATIO = 1.10

QUICK = dict(batch=8, size=16, channels=16, layers=2, steps=3, rounds=2, warmup=1)
MODELS = ("stack", "resnet20")
DEFAULT_BATCH = {"stack": 64, "resnet20": 128}


# --------------------------------------------------------------------------
# The floor: the cheapest binary conv with a per-channel scale.
# --------------------------------------------------------------------------


def _sign_forward(x):
    # The same forward as keras_recu (a select between two scalars), so that
    # only the gradients differ between the two models.
    return ops.cast(ops.where(ops.greater_equal(x, 0), 1.0, -1.0), x.dtype)


@ops.custom_gradient
def ste_input_sign(x):
    """sign(x) forward; the upstream gradient passed where |x| <= 1 (plain STE)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return ops.where(ops.less_equal(ops.abs(x), 1.0), upstream, 0.0)

    return _sign_forward(x), grad


def ste_kernel_sign(w):
    """sign(w) forward, identity gradient (keras_recu's own `sign`)."""
    return recu_ops.sign(w)


def unnormalized_recu_input_sign(x):
    """ReCU's activation gradient `max(0, 2 - 2|x|)` without the per-sample normalization."""
    return recu_ops.input_sign(x, normalize_gradient=False)


# ReCUConv2D's kernel initializer (PyTorch's Conv2d default); same for the floor.
def _kernel_initializer() -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


class FloorBinaryConv2D(keras.layers.Layer):
    """`conv(ste_sign(x), sign(W)) * alpha`, no bias: the cost floor of a binary conv."""

    def __init__(self, filters: int, kernel_size: int, padding: str = "same", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = (kernel_size, kernel_size)
        self.padding = padding

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, input_shape[-1], self.filters),
            initializer=_kernel_initializer(),
        )
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.filters,),
            initializer=keras.initializers.RandomUniform(0.0, 1.0),
        )

    def call(self, inputs):
        x = ste_input_sign(inputs)
        w = ste_kernel_sign(ops.convert_to_tensor(self.kernel))
        y = ops.conv(x, w, strides=1, padding=self.padding)
        return y * self.alpha

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)


# --------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------

ConvFactory = Callable[[int], keras.layers.Layer]

#: name -> (description, factory of the binary conv with `filters` outputs).
VARIANTS: Dict[str, tuple] = {
    "floor": ("STE-sign input, sign kernel, alpha", lambda f: FloorBinaryConv2D(f, 3, "same")),
    "recu": ("keras_recu.layers.ReCUConv2D", lambda f: ReCUConv2D(f, 3, padding="same")),
    "recu+floor_input": (
        "ReCUConv2D, input quantizer = floor's",
        lambda f: ReCUConv2D(f, 3, padding="same", input_quantizer=ste_input_sign),
    ),
    "recu+floor_kernel": (
        "ReCUConv2D, kernel quantizer = floor's",
        lambda f: ReCUConv2D(f, 3, padding="same", tau=None, kernel_quantizer=ste_kernel_sign),
    ),
    "recu+unnorm_input": (
        "ReCUConv2D, input gradient not normalized",
        lambda f: ReCUConv2D(f, 3, padding="same", input_quantizer=unnormalized_recu_input_sign),
    ),
}
ATTRIBUTION = ("recu+floor_input", "recu+floor_kernel", "recu+unnorm_input")


def build_model(conv: ConvFactory, size: int, channels: int, layers: int, seed: int) -> keras.Model:
    """input -> `layers` x [binary conv 3x3 same -> BatchNormalization]."""
    keras.utils.set_random_seed(seed)  # same initial weights for every variant
    inputs = keras.Input((size, size, channels))
    x = inputs
    for _ in range(layers):
        x = conv(channels)(x)
        x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, x)


def compile_model(model: keras.Model, jit: bool) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="mse",
        jit_compile=jit,
    )


def make_batch(batch: int, size: int, channels: int, seed: int) -> tuple:
    """A random (x, y) batch, converted to tensors once so no step pays the copy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, channels), dtype=np.float32)
    y = rng.standard_normal((batch, size, size, channels), dtype=np.float32)
    return tf.convert_to_tensor(x), tf.convert_to_tensor(y)


# --------------------------------------------------------------------------
# ResNet-20 1w1a (--model resnet20).
# --------------------------------------------------------------------------

#: name -> (description, input quantizer or None to keep ReCU's, kernel quantizer or None).
RESNET_VARIANTS: Dict[str, tuple] = {
    "floor": ("resnet20_1w1a, every ReCUConv2D with the floor's quantizers", ste_input_sign, ste_kernel_sign),
    "recu": ("keras_recu.models.resnet20_1w1a", None, None),
    "recu+floor_input": ("resnet20_1w1a, input quantizers = floor's", ste_input_sign, None),
    "recu+floor_kernel": ("resnet20_1w1a, kernel quantizers = floor's", None, ste_kernel_sign),
    "recu+unnorm_input": ("resnet20_1w1a, input gradient not normalized", unnormalized_recu_input_sign, None),
}
RESNET_INPUT = (32, 32, 3)
RESNET_CLASSES = 10


def swap_quantizer(layer: keras.layers.Layer, attribute: str, quantizer: Callable) -> None:
    """Replace a built layer's quantizer (`input_quantizer` / `kernel_quantizer`).

    Quantizers are tracked sub-layers and a built layer locks its tracker, so
    the old one is untracked (its variables leave the model) and the new one
    set with the tracker briefly unlocked, as Keras' own `quantize()` does.
    `call` reads the attribute when the train step is traced.
    """
    tracker = layer._tracker
    locked = tracker.locked
    old = getattr(layer, attribute)
    if locked:
        tracker.unlock()
    try:
        if old is not None:
            tracker.untrack(old)
        setattr(layer, attribute, quantizer)
    finally:
        if locked:
            tracker.lock()


def build_resnet20(name: str, seed: int) -> keras.Model:
    """ResNet-20 1w1a, with the quantizers of variant `name` swapped in."""
    keras.utils.set_random_seed(seed)  # same initial weights for every variant
    model = resnet20_1w1a(input_shape=RESNET_INPUT, num_classes=RESNET_CLASSES)
    _, input_quantizer, kernel_quantizer = RESNET_VARIANTS[name]
    for layer in model.layers:
        if isinstance(layer, ReCUConv2D):
            if input_quantizer is not None:
                swap_quantizer(layer, "input_quantizer", input_quantizer)
            if kernel_quantizer is not None:
                swap_quantizer(layer, "kernel_quantizer", kernel_quantizer)
    return model


def compile_resnet20(model: keras.Model, jit: bool) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )


def make_resnet_batch(batch: int, seed: int) -> tuple:
    """Random images and random integer labels, as tensors."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *RESNET_INPUT), dtype=np.float32)
    y = rng.integers(0, RESNET_CLASSES, size=(batch,)).astype(np.int32)
    return tf.convert_to_tensor(x), tf.convert_to_tensor(y)


def descriptions(model: str) -> Dict[str, str]:
    table = RESNET_VARIANTS if model == "resnet20" else VARIANTS
    return {name: entry[0] for name, entry in table.items()}


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------


def run_steps(model: keras.Model, batch: tuple, steps: int) -> float:
    """Run `steps` train steps; return the last loss (a Python float: blocks)."""
    loss = float("nan")
    for _ in range(steps):
        loss = float(model.train_on_batch(*batch))  # returns numpy: waits for the step
    return loss


def time_steps(model: keras.Model, batch: tuple, steps: int) -> List[float]:
    """Milliseconds of each of `steps` consecutive steps."""
    out = []
    for _ in range(steps):
        start = time.perf_counter()
        run_steps(model, batch, 1)
        out.append((time.perf_counter() - start) * 1e3)
    return out


@dataclass
class VariantTimes:
    name: str
    per_round_ms: List[float] = field(default_factory=list)
    per_step_ms: List[float] = field(default_factory=list)
    final_loss: float = float("nan")

    @property
    def median_ms(self) -> float:
        return statistics.median(self.per_round_ms)

    @property
    def min_ms(self) -> float:
        return min(self.per_round_ms)

    @property
    def step_median_ms(self) -> float:
        return statistics.median(self.per_step_ms)

    def add_round(self, step_ms: List[float]) -> None:
        self.per_step_ms.extend(step_ms)
        self.per_round_ms.append(sum(step_ms) / len(step_ms))


def benchmark(args: argparse.Namespace, jit: bool, names: Sequence[str]) -> Dict[str, Any]:
    """Build, warm up and time every variant in `names`, interleaved; one jit setting."""
    if args.model == "resnet20":
        batch = make_resnet_batch(args.batch, args.seed)
    else:
        batch = make_batch(args.batch, args.size, args.channels, args.seed)
    models = {}
    for name in names:
        if args.model == "resnet20":
            model = build_resnet20(name, args.seed)
            compile_resnet20(model, jit)
        else:
            model = build_model(VARIANTS[name][1], args.size, args.channels, args.layers, args.seed)
            compile_model(model, jit)
        start = time.perf_counter()
        run_steps(model, batch, 1)  # traces and compiles
        compile_s = time.perf_counter() - start
        models[name] = model
        print(f"  [jit={jit}] {name:<18} built, first step (trace/compile) {compile_s:.1f} s", flush=True)
    # Warm up only once every model exists: the first call of a model's step
    # after another model was built costs tens of milliseconds once (TF
    # runtime, not a retrace), which must not land in the first round.
    for name in names:
        run_steps(models[name], batch, args.warmup)

    times = {name: VariantTimes(name) for name in names}
    for r in range(args.rounds):
        order = list(names) if r % 2 == 0 else list(reversed(names))
        for name in order:
            run_steps(models[name], batch, 1)  # untimed: re-warm caches after the other model
            times[name].add_round(time_steps(models[name], batch, args.steps))
    for name in names:
        times[name].final_loss = run_steps(models[name], batch, 1)
    return summarize(jit, times, descriptions(args.model))


def summarize(jit: bool, times: Dict[str, VariantTimes], described: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    described = described or descriptions("stack")
    floor = times["floor"]
    variants = {}
    for name, t in times.items():
        variants[name] = {
            "description": described[name],
            "steps_per_s": round(1e3 / t.median_ms, 3),
            "median_ms": round(t.median_ms, 3),
            "min_ms": round(t.min_ms, 3),
            "step_median_ms": round(t.step_median_ms, 3),
            "per_round_ms": [round(v, 3) for v in t.per_round_ms],
            "ratio_median": round(t.median_ms / floor.median_ms, 4),
            "ratio_min": round(t.min_ms / floor.min_ms, 4),
            "ratio_step_median": round(t.step_median_ms / floor.step_median_ms, 4),
            "final_loss": t.final_loss,
        }
    recu = variants["recu"]
    result: Dict[str, Any] = {
        "jit_compile": jit,
        "variants": variants,
        "ratio_median": recu["ratio_median"],
        "ratio_min": recu["ratio_min"],
        "ratio_step_median": recu["ratio_step_median"],
        "loadavg_before_after": None,
        "target_met": recu["ratio_median"] <= TARGET_RATIO,
    }
    if "recu+floor_input" in times and "recu+floor_kernel" in times:
        result["attribution"] = attribute(times)
    return result


def attribute(times: Dict[str, VariantTimes]) -> Dict[str, float]:
    """Split ReCU's extra ms per step (medians) between its kernel and input paths.

    kernel path = (ReCU with the floor's input quantizer) - floor;
    input path  = (ReCU with the floor's kernel quantizer) - floor;
    of the input path, the per-sample normalization = ReCU - ReCU with an
    unnormalized input gradient. The two paths need not add up exactly to
    the total (noise, and interactions between the two).
    """
    floor = times["floor"].median_ms
    out = {
        "total_extra_ms": times["recu"].median_ms - floor,
        "kernel_path_ms": times["recu+floor_input"].median_ms - floor,
        "input_path_ms": times["recu+floor_kernel"].median_ms - floor,
    }
    if "recu+unnorm_input" in times:
        out["input_normalization_ms"] = times["recu"].median_ms - times["recu+unnorm_input"].median_ms
    return {k: round(v, 3) for k, v in out.items()}


# --------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------


def print_table(result: Dict[str, Any]) -> None:
    print(f"\njit_compile={result['jit_compile']}  (ms per train step)")
    header = (
        f"  {'variant':<18} {'median ms':>10} {'min ms':>9} {'step med':>9} "
        f"{'ratio(med)':>11} {'ratio(min)':>11} {'ratio(step)':>12}  per-round ms"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, v in result["variants"].items():
        rounds = " ".join(f"{x:.1f}" for x in v["per_round_ms"])
        print(
            f"  {name:<18} {v['median_ms']:>10.2f} {v['min_ms']:>9.2f} {v['step_median_ms']:>9.2f} "
            f"{v['ratio_median']:>11.3f} {v['ratio_min']:>11.3f} {v['ratio_step_median']:>12.3f}  {rounds}"
        )
    verdict = "met" if result["target_met"] else "NOT met"
    print(
        "  steps per second (from the round medians): "
        + ", ".join(f"{name} {v['steps_per_s']:.2f}" for name, v in result["variants"].items())
    )
    print(
        f"  ReCU / floor: {result['ratio_median']:.3f} (round medians), {result['ratio_min']:.3f} "
        f"(round mins), {result['ratio_step_median']:.3f} (step medians); "
        f"target <= {TARGET_RATIO:.2f} {verdict}; load average before/after "
        f"{result['loadavg_before_after']}"
    )
    if "attribution" in result:
        a = result["attribution"]
        print(
            "  extra ms/step over the floor (medians): ReCU {total_extra_ms:.2f}; kernel path "
            "(recu+floor_input - floor) {kernel_path_ms:.2f}; input path "
            "(recu+floor_kernel - floor) {input_path_ms:.2f}".format(**a)
        )
        if "input_normalization_ms" in a:
            print(
                "  per-sample normalization of the input gradient "
                "(recu - recu+unnorm_input): {input_normalization_ms:.2f}".format(**a)
            )


def _loadavg() -> Optional[float]:
    """1-minute load average: above the benchmark's own ~cpu_count, others compete."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def environment() -> Dict[str, Any]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--model", choices=MODELS, default="stack",
        help="stack: N blocks of [binary conv -> BN] (the default); resnet20: ResNet-20 1w1a, 32x32x3",
    )
    p.add_argument("--batch", type=int, help="batch size (stack 64, resnet20 128)")
    p.add_argument("--size", type=int, default=32, help="input height = width (stack only)")
    p.add_argument("--channels", type=int, default=64, help="input channels = filters of every conv (stack only)")
    p.add_argument("--layers", type=int, default=6, help="binary conv blocks (stack only)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (compiling) one")
    p.add_argument("--jit", choices=("both", "on", "off"), default="both", help="jit_compile setting(s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attribute", action="store_true", help="also time the hybrids that attribute ReCU's overhead")
    p.add_argument("--quick", action="store_true", help="tiny settings, for a smoke test: " + str(QUICK))
    p.add_argument("--json", metavar="PATH", help="also write the RESULT JSON to PATH")
    args = p.parse_args(argv)
    if args.batch is None:
        args.batch = DEFAULT_BATCH[args.model]
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    for key in ("batch", "size", "channels", "layers", "steps", "rounds"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    jits = {"both": (False, True), "on": (True,), "off": (False,)}[args.jit]
    names = ("floor", "recu") + (ATTRIBUTION if args.attribute else ())
    keys = ("batch", "size", "channels", "layers", "steps", "rounds", "warmup", "seed", "quick", "attribute")
    if args.model == "resnet20":
        keys = ("model",) + tuple(k for k in keys if k not in ("size", "channels", "layers"))
    settings = {k: getattr(args, k) for k in keys}
    print("settings:", json.dumps(settings))
    runs = []
    for jit in jits:
        load_before = _loadavg()
        result = benchmark(args, jit, names)
        result["loadavg_before_after"] = [load_before, _loadavg()]
        print_table(result)
        runs.append(result)
    report = {
        "benchmark": (
            "keras_recu train step, ResNet-20 1w1a: ReCU vs floor quantizers"
            if args.model == "resnet20" else "keras_recu train step, ReCUConv2D vs floor"
        ),
        "settings": settings,
        "environment": environment(),
        "target_ratio": TARGET_RATIO,
        "runs": runs,
        "target_met": all(r["target_met"] for r in runs),
    }
    line = json.dumps(report, allow_nan=True)
    print("RESULT " + line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(report, indent=2, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
