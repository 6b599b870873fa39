"""The GPU session, under one deadline: the missing speed rows, the ste sweep, `full-e50` by tier, the reports.

Started by `run.sh` as `python -m benchmarks.gpu.driver` (run.sh installs
the carried wheels and sets the environment). One device call of about
9 minutes (`--seconds`, 560 by default from run.sh's start), in phases:

(a) SPEED: the speed rows still missing (`SPEED_COMMANDS`: the CIFAR step
    with the compiled torch engine, the two-stage ImageNet rows; each a
    module of benchmarks/ with its arguments, at most `SPEED_SECONDS` for
    all), first, while the GPU is idle. Their JSON
    records go straight into $OUT.
(b) SWEEP: `ablation run --budget sweep-e4`, the runs it still lacks (of 3
    seeds x 5 rates), `SWEEP_PARALLEL` at once, under its own policy.
(c) FULL, at the same time as (b): `ablation run --budget full-e50`, the
    variants by tier (`ablation_design.VARIANTS`), `FULL_PARALLEL` at once,
    under one dtype policy (`choose_policy`). A run is started only if its
    predicted time (`prior_seconds`: the budget's own finished rows, else
    the measured `full-e20` rows, scaled to 50 epochs, x `SAFETY`) ends before
    the deadline; a run that falls behind gives up; finished rows stay, and
    the next session adds the rest. ste waits while the sweep is incomplete,
    so that every full-e50 ste run uses the sweep's final rate.
(d) `ablation report` for both budgets; into $OUT: their CSVs and
    readings, the log, and a tar of every CSV, reading and figure.

The working folder (`--results`) starts as a copy of the committed records
of these budgets (and `full-e20`, the prior and the side-by-side), so the
campaign skips what is recorded and the returned CSVs replace the committed
ones whole. `--smoke` does the same on CPU with budgets `sweep-tiny` and
`tiny` (one run each) and a one-line phase (a): the whole path in about a
minute (tests/test_ablation_driver.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.ablation_design import (BUDGETS, DTYPE_POLICIES, RESULTS, VARIANTS, budget_policies,
                                        run_key, stores)
from benchmarks.campaign import kill_groups, number
from benchmarks.launch import ROOT, module_command, module_env

# ---- PHASE (a), THE SPEED ROWS still missing (issue 17 items 2 and 3), on the idle GPU ----------------------
# Each entry: (module of benchmarks/, *arguments); "{out}" in an argument becomes $OUT. First the CIFAR step
# against the best torch (its bf16 figure also decides full-e50's policy, `choose_policy`), then the two-stage
# ResNet-18 rows merged into the committed ImageNet record. Each was estimated at 2-3 minutes on the H200.
# Once both records are committed, empty this tuple: the next sessions give all their time to (b) and (c).
SPEED_COMMANDS: Tuple[Tuple[str, ...], ...] = (
    ("benchmarks.train_step", "engines", "--engines", "keras-jax,keras-jax-bf16,authors-torch,authors-torch-compiled",
     "--batch", "256", "--rounds", "5", "--seconds", "15", "--ready-timeout", "200",
     "--json", "{out}/gpu-train-step-h200-compiled.json"),
    ("benchmarks.imagenet_train", "--rows", "two-stage", "--steps", "20", "--images", "2048",
     "--merge", "benchmarks/results/imagenet-train-h200.json", "--json", "{out}/imagenet-train-h200.json"),
)
SPEED_SECONDS = 330
# ---------------------------------------------------------------------------------------------------------------
SMOKE_SPEED_COMMANDS: Tuple[Tuple[str, ...], ...] = (("benchmarks.ablation", "budgets"),)
SMOKE_VARIANTS = ("recu",)  # the smoke's full budget: one run, enough to cross the whole path

#: (sweep, full budget, the measured budget whose rows are the full budget's prior), on the GPU and in the smoke.
BUDGET_NAMES = {False: ("sweep-e4", "full-e50", "full-e20"), True: ("sweep-tiny", "tiny", "smoke")}
SWEEP_PARALLEL, FULL_PARALLEL = 8, 8  # 16 processes for 16 cores; the H200 ran 15 at once before
RESERVE_S = 30  # for the reports and the packing at the end
SAFETY = 1.1  # predicted run times are multiplied by this before they must fit
SPEED_ENGINES = ("keras-jax", "keras-jax-bf16")  # train_step engines whose step times decide the policy


def log(message: str) -> None:
    """A progress line of the driver, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] driver: {message}", flush=True)


def start(module: str, args: Sequence) -> subprocess.Popen:
    """Start benchmark `module` with `args` in a process group of its own."""
    command = module_command(module, *args)
    log("$ " + " ".join(command))
    return subprocess.Popen(command, cwd=ROOT, env=module_env(), start_new_session=True)


def wait(processes: Sequence[subprocess.Popen], limit_s: float) -> List[int]:
    """Wait for `processes` until `limit_s` from now, then stop the rest; their exit statuses (124: stopped)."""
    end = time.time() + max(1.0, limit_s)
    for process in processes:
        try:
            process.wait(max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            log(f"stopping pid {process.pid} at its limit")
            kill_groups([process])
    return [124 if p.returncode is None or p.returncode < 0 else p.returncode for p in processes]


def prior_seconds(results: Path, budget: str, prior: str, policy: str) -> Optional[int]:
    """Predicted seconds of one run of `budget` x SAFETY: from its own rows of `policy`, else from `prior`'s.

    Start-up (seconds beyond the epochs) plus epochs x seconds per epoch,
    each the median over the rows; None without rows (then every run starts).
    """
    own = [r for r in stores(results, budget)["runs"].rows() if r.get("dtype_policy") == policy]
    rows = own or stores(results, prior)["runs"].rows()
    if not rows:
        return None
    per_epoch = statistics.median(number(r["seconds_per_epoch"]) for r in rows)
    start_up = statistics.median(number(r["seconds"]) - int(r["epochs"]) * number(r["seconds_per_epoch"])
                                 for r in rows)
    return round(SAFETY * (max(0.0, start_up) + BUDGETS[budget].epochs * per_epoch))


def step_times(*folders: Path) -> Dict[str, float]:
    """Median step milliseconds of each `train_step engines` engine in the JSON records in `folders`.

    Only steps timed on a device other than the CPU count. A later folder's
    figure replaces an earlier one's: pass the committed records first and
    this session's $OUT last.
    """
    times: Dict[str, float] = {}
    for path in [path for folder in folders for path in sorted(folder.glob("*.json"))]:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        variants = record.get("result") if record.get("benchmark") == "train_step engines" else None
        for engine, result in (variants.get("variants", {}) if isinstance(variants, dict) else {}).items():
            device = str(result.get("facts", {}).get("device", "")) if isinstance(result, dict) else ""
            if device and not device.lower().startswith("cpu") and "median_ms" in result:  # a GPU's step only
                times[engine] = float(result["median_ms"])
    return times


def choose_policy(results: Path, budget: str, out: Path, forced: Optional[str],
                  records: Path = RESULTS) -> Tuple[str, str]:
    """(policy, why): the budget's own if it has rows; else mixed_bfloat16 if measured faster; else float32."""
    held = budget_policies(results, budget)
    if held:
        return max(held, key=held.get), f"the policy of its {sum(held.values())} rows (a budget is never mixed)"
    if forced:
        return forced, "--dtype-policy"
    times = step_times(records, out)  # the committed records, then this session's phase (a)
    if all(engine in times for engine in SPEED_ENGINES):
        f32, bf16 = (times[engine] for engine in SPEED_ENGINES)
        return DTYPE_POLICIES[1] if bf16 < f32 else DTYPE_POLICIES[0], (
            f"no rows yet; ResNet-20 train step {f32:.2f} ms float32, {bf16:.2f} ms mixed_bfloat16")
    return DTYPE_POLICIES[0], "no rows yet and no mixed_bfloat16 step time measured (train_step keras-jax-bf16)"


def seed_results(results: Path, names: Sequence[str], source: Path = RESULTS) -> None:
    """Copy the committed records of `names` into the working folder (what is recorded is not rerun)."""
    for name in names:
        for store in stores(source, name).values():
            if store.path.exists() and not (results / store.path.name).exists():
                shutil.copy(store.path, results / store.path.name)


def sweep_pending(results: Path, sweep: str) -> int:
    """How many of the sweep's (rate, seed) runs are not yet recorded."""
    spec = BUDGETS[sweep]
    done = {run_key(row) for row in stores(results, sweep)["runs"].rows()}
    return sum(("ste", seed, rate) not in done for seed in range(spec.seeds) for rate in spec.learning_rates)


def run_ablation(args, results: Path, out: Path, end: float) -> str:
    """Phases (b) and (c) side by side until `end` - RESERVE_S; the full budget's policy."""
    sweep, full, prior = BUDGET_NAMES[args.smoke]
    common = ["--out", results, *(["--data-dir", args.data_dir] if args.data_dir else [])]
    deadline = round(end - RESERVE_S - time.time())
    policy, why = choose_policy(results, full, out, args.dtype_policy)
    estimate = prior_seconds(results, full, prior, policy)
    said = "no prior: every run starts" if estimate is None else f"predicted {estimate:.0f} s per run"
    log(f"{full}: {policy} ({why}); {said}, {deadline} s left")
    variants = sorted(VARIANTS, key=lambda name: VARIANTS[name].tier)
    if sweep_pending(results, sweep):  # ste's rate is the sweep's choice: only once the sweep is complete
        variants.remove("ste")
        log(f"ste of {full} waits: {sweep} has {sweep_pending(results, sweep)} runs to do")
    sweep_estimate = prior_seconds(results, sweep, sweep, "float32")
    processes = [
        start("benchmarks.ablation", ["run", "--budget", sweep, "--parallel", SWEEP_PARALLEL, "--deadline", deadline,
                                      *(["--estimate", sweep_estimate] if sweep_estimate else []), *common]),
        start("benchmarks.ablation", ["run", "--budget", full, "--parallel", FULL_PARALLEL, "--deadline", deadline,
                                      "--variants", ",".join(SMOKE_VARIANTS if args.smoke else variants),
                                      "--dtype-policy", policy, *(["--estimate", estimate] if estimate else []),
                                      *common]),
    ]
    log(f"(b) and (c) ended: exit {wait(processes, deadline + 10)}")
    return policy


def finish(results: Path, out: Path, names: Sequence[str]) -> None:
    """Phase (d): the readings, then the files that come back."""
    for name in names:
        if stores(results, name)["runs"].rows():
            wait([start("benchmarks.ablation", ["report", "--budget", name, "--out", results])], 60)
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        tar.add(results, arcname="results")
    for name in names:
        for path in (*(s.path for s in stores(results, name).values()), results / f"ablation-{name}-report.md"):
            if path.exists():
                shutil.copy(path, out / path.name)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The driver's command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", required=True, help="the folder whose files come back ($OUT)")
    p.add_argument("--started", type=float, default=time.time(), help="start of the session (epoch seconds)")
    p.add_argument("--seconds", type=float, default=560, help="the whole session must end by started + this")
    p.add_argument("--data-dir", default=str(ROOT / ".data") if (ROOT / ".data").is_dir() else None)
    p.add_argument("--results", default="/tmp/recu-results", help="working folder of the CSVs and figures")
    p.add_argument("--dtype-policy", choices=DTYPE_POLICIES, help="for a full budget without rows only")
    p.add_argument("--smoke", action="store_true", help="tiny budgets, one run each: a CPU check")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    end = args.started + args.seconds
    out, results = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    seed_results(results, BUDGET_NAMES[args.smoke])
    log(f"{end - time.time():.0f} s left; results in {results}, returned files in {out}")

    # (a) the speed rows, on the idle GPU
    speed_end = time.time() + min(SPEED_SECONDS, max(0.0, end - time.time() - RESERVE_S))
    commands = SMOKE_SPEED_COMMANDS if args.smoke else SPEED_COMMANDS
    log(f"(a) speed: {len(commands)} commands" + ("" if commands else " (none filled in: skipped)"))
    for module, *arguments in commands:
        if time.time() >= speed_end:
            log(f"(a) out of time: not started {module} {' '.join(arguments)}")
            continue
        wait([start(module, [a.replace("{out}", str(out)) for a in arguments])], speed_end - time.time())

    platform = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].platform)"],
                              capture_output=True, text=True).stdout.strip()
    if platform != "gpu" and not args.smoke:
        log(f"ERROR: JAX computes on {platform or 'nothing'}, not a GPU: no campaign (see the preflight line)")
        return 1
    policy = run_ablation(args, results, out, end)
    sweep, full, _ = BUDGET_NAMES[args.smoke]
    finish(results, out, (sweep, full))
    rows = {name: len(stores(results, name)["runs"].rows()) for name in (sweep, full)}
    files = sorted(path.name for path in out.iterdir())
    summary = {"rows": rows, "policy": policy, "seconds": round(time.time() - args.started), "files": files}
    log("summary " + json.dumps(summary))
    if "tensorflow" in sys.modules:
        log("ERROR: TensorFlow was imported by the driver")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
