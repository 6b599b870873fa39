"""The GPU session, under one deadline: train-step timing, ste sweep, ablation budget, report.

Started by `run.sh` as `python -m benchmarks.gpu.driver` (run.sh installs
the carried wheels and sets the environment). Phases, each a subprocess
running a module of benchmarks/ (`python -m benchmarks.<module>`):

(a) `train_step engines`: keras_recu ResNet-20 1w1a on JAX against the
    authors' PyTorch model (and Keras on torch), batch 256, 32x32x3,
    interleaved rounds on the idle GPU.
(b) `ablation run --budget sweep-e4`: the ste learning-rate sweep, as
    many runs at once as the main budget will have, so that its epoch times
    measure the GPU shared that way; then the largest predefined budget
    (`full-e50` down to `full-e10`) whose predicted time fits what is left,
    run with the variants by priority (the tiers of
    `ablation_design.VARIANTS`); runs that would end after the deadline are
    not started or are abandoned.
(c) `ablation report` for both budgets, then at most 8 files into $OUT:
    the budget's CSVs and reading, the timing JSON, the log, and a tar of
    everything.

`--smoke` does the same on budgets `sweep-smoke` and `smoke` with 2 runs at
once, for a CPU check of the whole path before the GPU session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from benchmarks.ablation_design import VARIANTS, stores
from benchmarks.campaign import kill_groups, number
from benchmarks.launch import ROOT, module_command, module_env

#: (epochs, runs at once) in order of preference: 50 epochs first (issue 10), then all six variants.
PLANS = ((50, 18), (50, 15), (30, 18), (30, 15), (20, 18), (20, 15), (15, 15), (10, 15))
RESERVE_S = 30  # for the reports and the packing at the end
SAFETY = 1.15  # predicted run times are multiplied by this before they must fit


def log(message: str) -> None:
    """A progress line of the driver, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] driver: {message}", flush=True)


def call(module: str, args, limit_s: float) -> int:
    """Run benchmark `module` with `args` in a process group of its own, killed as a whole after `limit_s`."""
    command = module_command(module, *args)
    log("$ " + " ".join(command))
    process = subprocess.Popen(command, cwd=ROOT, env=module_env(), start_new_session=True)
    try:
        return process.wait(max(1.0, limit_s))
    except subprocess.TimeoutExpired:
        log(f"stopping it after {limit_s:.0f} s")
        kill_groups([process])
        return 124


def timing(budget: str, results: Path):
    """(seconds per epoch, seconds of a run beyond its epochs) of the slowest finished run, or None."""
    rows = stores(results, budget)["runs"].rows()
    if not rows:
        return None
    per_epoch = max(number(r["seconds_per_epoch"]) for r in rows)
    overhead = max(number(r["seconds"]) - int(r["epochs"]) * number(r["seconds_per_epoch"]) for r in rows)
    return per_epoch, max(overhead, 0.0)


def choose_plan(sweep_timing, sweep_parallel: int, left_s: float):
    """The first plan in PLANS whose predicted time fits `left_s` (else the last), and its prediction."""
    per_epoch, overhead = sweep_timing
    # A full-data epoch trains 60k images where the sweep's trained 50k; validation is the same 10k.
    per_epoch *= 1.2
    for epochs, parallel in PLANS:
        crowding = max(1.0, parallel / sweep_parallel)  # pessimistic: the GPU was already saturated
        predicted = SAFETY * crowding * (overhead + epochs * per_epoch)
        if predicted <= left_s:
            return epochs, parallel, predicted
    epochs, parallel = PLANS[-1]
    return epochs, parallel, SAFETY * (overhead + epochs * per_epoch)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="the folder whose files come back ($OUT)")
    p.add_argument("--started", type=float, default=time.time(), help="start of the session (epoch seconds)")
    p.add_argument("--seconds", type=float, default=540, help="the whole session must end by started + this")
    p.add_argument("--data-dir", default=str(ROOT / ".data"))
    p.add_argument("--results", default="/tmp/recu-results", help="working folder of the CSVs and figures")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, 2 runs at once: a CPU check")
    args = p.parse_args()
    end = args.started + args.seconds
    out, results = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    left = lambda: end - time.time()  # noqa: E731
    log(f"{left():.0f} s left; results in {results}, returned files in {out}")
    common = ["--out", results, "--data-dir", args.data_dir]

    # (a) the train step, JAX against the authors' PyTorch, on the idle GPU
    engines = "keras-jax,authors-torch" + ("" if args.smoke else ",keras-torch")
    steps = ["--batch", 32, "--rounds", 3, "--steps", 2] if args.smoke else ["--batch", 256, "--rounds", 7,
                                                                              "--seconds", 25, "--ready-timeout", 100]
    call("benchmarks.train_step", ["engines", "--engines", engines, *steps, "--json", out / "train_step.json"],
         min(150, left() / 4))

    platform = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].platform)"],
                              capture_output=True, text=True).stdout.strip()
    if platform != "gpu" and not args.smoke:
        log(f"ERROR: JAX computes on {platform or 'nothing'}, not a GPU: no campaign (see the preflight line)")
        return 1

    # (b) the ste sweep, then the budget that fits
    sweep, parallel = ("sweep-smoke", 2) if args.smoke else ("sweep-e4", 15)
    call("benchmarks.ablation", ["run", "--budget", sweep, "--parallel", parallel, "--deadline",
                                 left() * (0.6 if args.smoke else 0.3), *common], left())
    measured = timing(sweep, results)
    if args.smoke:
        budget, parallel = "smoke", 2
    elif measured is None:
        log("no sweep run finished: the GPU is far slower than planned; falling back to full-e10")
        budget, parallel = "full-e10", 15
    else:
        epochs, parallel, predicted = choose_plan(measured, 15, left() - RESERVE_S)
        budget = f"full-e{epochs}"
        log(f"sweep: {measured[0]:.1f} s/epoch, {measured[1]:.0f} s per run beyond its epochs, at 15 at once; "
            f"chose {budget} with {parallel} at once, predicted {predicted:.0f} s of {left() - RESERVE_S:.0f}")
    order = sorted(VARIANTS, key=lambda name: VARIANTS[name].tier)
    ste = [] if stores(results, sweep)["runs"].rows() else ["--ste-learning-rate", 0.1]
    call("benchmarks.ablation", ["run", "--budget", budget, "--parallel", parallel, "--variants", ",".join(order),
                                 "--deadline", left() - RESERVE_S, *ste, *common], left() - RESERVE_S + 10)

    # (c) the reading, and the files that come back
    for name in (sweep, budget):
        if stores(results, name)["runs"].rows():
            call("benchmarks.ablation", ["report", "--budget", name, "--out", results], max(5, left() - 10))
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        tar.add(results, arcname="results")
    for name in (f"ablation-{budget}.csv", f"ablation-{budget}-epochs.csv", f"ablation-{budget}-report.md",
                 f"ablation-{sweep}-report.md"):
        if (results / name).exists():
            shutil.copy(results / name, out / name)
    summary = {"budget": budget, "sweep": sweep, "parallel": parallel, "seconds": round(time.time() - args.started),
               "runs": len(stores(results, budget)["runs"].rows()), "files": sorted(os.listdir(out))}
    log("summary " + json.dumps(summary))
    if "tensorflow" in sys.modules:
        log("ERROR: TensorFlow was imported by the driver")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
