"""Train-step time of ReCU networks: against the straight-through floor, and across engines.

Two measurements, each side by side in interleaved rounds (`timing`):

* `floor`: `ReCUConv2D` against the cheapest binary conv with a channel scale
  (the same layer with a plain-STE input sign and an identity-gradient kernel
  sign), in one process, on the current Keras backend: a stack of N
  [binary conv 3x3 -> BatchNorm] blocks (`--model stack`) or ResNet-20 1w1a
  (`--model resnet20`); `--attribute` adds the hybrids that split ReCU's
  extra time between its kernel and input paths. Target: ReCU / floor <= 1.10.
* `engines`: ResNet-20 1w1a on several engines (`engines.py`: keras_recu on
  the JAX, TensorFlow or torch backend, on JAX also under mixed_bfloat16; the
  authors' PyTorch model, eager and under torch.compile), each in a worker
  process, with the same batch; `--seconds` sizes the rounds. Each engine's
  compile time (`compile_s`) is reported apart from its steady-state step.

What each number means, the machines and the recorded results: BENCHMARKS.md.

    python -m benchmarks.train_step floor --model resnet20 --jit off
    python -m benchmarks.train_step engines --engines keras-jax,keras-tensorflow --batch 256
    python -m benchmarks.train_step engines --engines keras-jax,authors-torch --seconds 60
    python -m benchmarks.train_step engines --engines keras-jax,keras-jax-bf16,authors-torch,authors-torch-compiled

(from the repository root).

The last line printed is `RESULT {...}`, the results as one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Dict, Optional, Sequence  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.engines import Worker  # noqa: E402
from benchmarks.timing import interleaved_rounds, time_steps  # noqa: E402

TARGET_RATIO = 1.10
QUICK = dict(batch=8, size=16, channels=16, layers=2, steps=3, rounds=2, warmup=1)


# --- floor: ReCU against the straight-through floor, one process ------------------------------


def floor_quantizers():
    """(input quantizer, kernel quantizer) of the floor, and the unnormalized ReCU input sign."""
    from keras import ops

    from keras_recu import ops as recu_ops

    @ops.custom_gradient
    def ste_input_sign(x):
        """keras_recu's sign forward; the gradient passed where |x| <= 1 (plain STE)."""

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.where(ops.less_equal(ops.abs(x), 1.0), upstream, 0.0)

        return recu_ops.sign(x), grad

    def unnormalized_input_sign(x):
        return recu_ops.input_sign(x, normalize_gradient=False)

    return ste_input_sign, recu_ops.sign, unnormalized_input_sign


def floor_variants() -> Dict[str, Dict[str, Any]]:
    """name -> ReCUConv2D quantizer overrides (none: ReCU itself)."""
    ste_input, ste_kernel, unnormalized = floor_quantizers()
    return {
        "floor": dict(input_quantizer=ste_input, kernel_quantizer=ste_kernel),
        "recu": {},
        "recu+floor_input": dict(input_quantizer=ste_input),
        "recu+floor_kernel": dict(kernel_quantizer=ste_kernel),
        "recu+unnorm_input": dict(input_quantizer=unnormalized),
    }


def build_floor_model(args: argparse.Namespace, overrides: Dict[str, Any]):
    """The stack or ResNet-20 with `overrides` on every ReCUConv2D, compiled; and its batch."""
    import keras
    import numpy as np

    from keras_recu import models
    from keras_recu.layers import ReCUConv2D

    keras.utils.set_random_seed(args.seed)  # the same initial weights for every variant
    kwargs = dict(overrides, **({"tau": None} if "kernel_quantizer" in overrides else {}))
    rng = np.random.default_rng(args.seed)
    if args.model == "resnet20":
        def conv(*, filters, kernel_size, strides, tau, name, kernel_initializer):
            return ReCUConv2D(filters, kernel_size, strides=strides, padding="same", name=name,
                              kernel_initializer=kernel_initializer, **{"tau": tau, **kwargs})

        model = models.resnet20_1w1a(input_shape=(32, 32, 3), num_classes=10, binary_conv=conv)
        x = rng.standard_normal((args.batch, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, size=(args.batch,)).astype(np.int32)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        inputs = keras.Input((args.size, args.size, args.channels))
        h = inputs
        for _ in range(args.layers):
            h = keras.layers.BatchNormalization()(ReCUConv2D(args.channels, 3, padding="same", **kwargs)(h))
        model = keras.Model(inputs, h)
        x, y = (rng.standard_normal((args.batch, args.size, args.size, args.channels), dtype=np.float32)
                for _ in range(2))
        loss = "mse"
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss, jit_compile=args.jit_compile)
    batch = tuple(keras.ops.convert_to_tensor(a) for a in (x, y))
    return model, batch


def floor(args: argparse.Namespace) -> Dict[str, Any]:
    variants = floor_variants()
    names = ["floor", "recu"] + (["recu+floor_input", "recu+floor_kernel", "recu+unnorm_input"]
                                 if args.attribute else [])
    runners: Dict[str, Callable] = {}
    for name in names:
        model, batch = build_floor_model(args, variants[name])
        step = (lambda m, b: lambda: float(m.train_on_batch(*b)))(model, batch)
        first = time_steps(step, 1)[0]
        print(f"  [{harness.now()}] {name:<18} first step (trace/compile) {first / 1e3:.1f} s", flush=True)
        runners[name] = (lambda s: lambda n: (s(), time_steps(s, n))[1])(step)
    for run in runners.values():  # warm up once every model exists (see BENCHMARKS.md)
        time_steps(lambda: run(1), args.warmup)
    load_before = harness.loadavg()
    timings = interleaved_rounds(runners, args.rounds, args.steps)
    base = timings["floor"]
    variants = {name: {**t.as_dict(), "ratio_median": round(t.median_ms / base.median_ms, 4),
                       "ratio_min": round(t.min_ms / base.min_ms, 4),
                       "ratio_step_median": round(t.step_median_ms / base.step_median_ms, 4)}
                for name, t in timings.items()}
    result: Dict[str, Any] = {"variants": variants, "ratio_median": variants["recu"]["ratio_median"],
                              "target_met": variants["recu"]["ratio_median"] <= TARGET_RATIO,
                              "loadavg_before_after": [load_before, harness.loadavg()]}
    if args.attribute:
        extra = {name: t.median_ms - base.median_ms for name, t in timings.items()}
        result["attribution_ms"] = {
            "total_extra": round(extra["recu"], 3), "kernel_path": round(extra["recu+floor_input"], 3),
            "input_path": round(extra["recu+floor_kernel"], 3),
            "input_normalization": round(extra["recu"] - extra["recu+unnorm_input"], 3)}
    return result


# --- engines: one worker process per engine ------------------------------------------------------


def engines(args: argparse.Namespace) -> Dict[str, Any]:
    workers = {name: Worker(name, args.batch, args.seed) for name in args.engines}
    facts: Dict[str, Any] = {}
    ready_by = time.time() + args.ready_timeout
    try:
        for name, worker in list(workers.items()):  # they build and compile concurrently
            try:
                facts[name] = worker.ready(max(1.0, ready_by - time.time()))
            except (RuntimeError, TimeoutError) as error:  # one engine failing must not cost the others
                print(f"  [{harness.now()}] {name} failed: {error}", flush=True)
                facts[name] = {"error": str(error)}
                workers.pop(name).close(wait_s=1)
                continue
            print(f"  [{harness.now()}] {name:<22} ready: first step {facts[name]['first_step_s']} s on "
                  f"{facts[name].get('device')}", flush=True)
        if not workers:
            raise RuntimeError("no engine became ready")
        if args.seconds:  # size the rounds from one short probe round
            probe = sum(statistics.median(w(3)) for w in workers.values()) / 1e3
            args.steps = max(2, min(500, int(args.seconds / (args.rounds * probe))))
        load_before = harness.loadavg()
        timings = interleaved_rounds(workers, args.rounds, args.steps)
    finally:
        for worker in workers.values():
            worker.close()
    base = next(iter(timings.values()))
    return {"variants": {name: {**t.as_dict(), f"ratio_to_{base.name}": round(t.median_ms / base.median_ms, 4),
                                "compile_s": compile_seconds(facts[name], t.median_ms), "facts": facts[name]}
                         for name, t in timings.items()},
            "failed": {name: f["error"] for name, f in facts.items() if "error" in f},
            "steps_per_round": args.steps, "loadavg_before_after": [load_before, harness.loadavg()]}


def compile_seconds(facts: Dict[str, Any], median_ms: float) -> Optional[float]:
    """Seconds of compilation: the first step and the warm-up beyond what as many steady-state steps take.

    XLA compiles in the first step; torch.compile also recompiles in the
    next ones (the authors' `.item()` threshold is specialized per value).
    """
    if "first_step_s" not in facts or "warmup_s" not in facts:
        return None
    steady = (1 + facts.get("warmup_steps", 0)) * median_ms / 1e3
    return round(max(0.0, facts["first_step_s"] + facts["warmup_s"] - steady), 2)


def print_table(result: Dict[str, Any]) -> None:
    rows = [[name, harness.fmt(v["median_ms"], ".2f"), harness.fmt(v["min_ms"], ".2f"),
             harness.fmt(v["step_median_ms"], ".2f"), harness.fmt(v["steps_per_s"], ".2f"),
             next((f"{v[k]:.3f}" for k in v if k.startswith("ratio")), "–"), harness.fmt(v.get("compile_s"), ".1f")]
            for name, v in result["variants"].items()]
    rows += [[name, f"failed: {error}", "", "", "", "", ""] for name, error in result.get("failed", {}).items()]
    print(harness.markdown_table(["", "ms/step (round median)", "min", "step median", "steps/s", "ratio", "compile s"],
                                 rows))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = p.add_subparsers(dest="command", required=True)
    for name in ("floor", "engines"):
        c = commands.add_parser(name)
        c.add_argument("--batch", type=int, help="batch size (floor: stack 64, resnet20 128; engines 256)")
        c.add_argument("--steps", type=int, default=20, help="timed steps per round")
        c.add_argument("--rounds", type=int, default=5)
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--json", metavar="PATH", help="also write the RESULT JSON to PATH")
    f = commands.choices["floor"]
    f.add_argument("--model", choices=("stack", "resnet20"), default="stack")
    f.add_argument("--size", type=int, default=32, help="stack: input height = width")
    f.add_argument("--channels", type=int, default=64, help="stack: channels of every conv")
    f.add_argument("--layers", type=int, default=6, help="stack: binary conv blocks")
    f.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    f.add_argument("--jit", choices=("both", "on", "off"), default="both", help="jit_compile setting(s)")
    f.add_argument("--attribute", action="store_true", help="also time the attribution hybrids")
    f.add_argument("--quick", action="store_true", help=f"tiny settings for a smoke test: {QUICK}")
    e = commands.choices["engines"]
    e.add_argument("--engines", default="keras-jax,keras-tensorflow", help="comma-separated, see engines.py")
    e.add_argument("--seconds", type=float, help="size --steps so the timed rounds take about this long")
    e.add_argument("--ready-timeout", type=float, default=600, help="seconds for every engine to start")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands.choices and argv[0] not in ("-h", "--help"):
        argv = ["floor", *argv]  # the default measurement, as before the subcommands
    args = p.parse_args(argv)
    if args.command == "floor":
        args.batch = args.batch or (128 if args.model == "resnet20" else 64)
        if args.quick:
            vars(args).update(QUICK)
    else:
        args.batch = args.batch or 256
        args.engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    report: Dict[str, Any] = {"benchmark": f"train_step {args.command}", "settings": dict(vars(args)),
                              "environment": harness.environment()}
    if args.command == "engines":
        report["result"] = engines(args)
        print_table(report["result"])
    else:
        report["runs"] = []
        for jit in {"both": (False, True), "on": (True,), "off": (False,)}[args.jit]:
            args.jit_compile = jit
            result = dict(floor(args), jit_compile=jit)
            print(f"jit_compile={jit}")
            print_table(result)
            report["runs"].append(result)
    harness.print_result(report)
    if args.json:
        harness.write_json(args.json, report, indent=2)
    return report


if __name__ == "__main__":
    main()
