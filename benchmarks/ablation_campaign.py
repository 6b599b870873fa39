"""The ablation as an accumulating campaign: the runs a budget still needs, run by priority.

`planned_runs` lists every (variant, seed[, learning rate]) of a budget by
priority (tier, seed, variant); `pending_tasks` keeps those not yet in the
budget's CSV, each as the command of a process of its own (`ONE_RUN _one`,
see `ablation_one.py`); `run` runs them, `--parallel` at once, under the
deadline (`campaign.run_pool`). A rerun skips what is recorded, so a budget
fills over days and machines.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Tuple

from benchmarks import harness
from benchmarks.ablation_design import (BUDGETS, DEFAULT_POLICY, VARIANTS, best_learning_rate, budget_policies,
                                        policy_conflict, run_key, stores)
from benchmarks.campaign import POLICY_REFUSED, Task, exit_on_sigterm, run_pool
from benchmarks.launch import module_command, module_env

#: The module whose `_one` subcommand performs one run (the ablation's command line).
ONE_RUN = "benchmarks.ablation"


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
    common = ["--budget", args.budget, "--out", out, "--weight-decay", args.weight_decay,
              "--dtype-policy", args.dtype_policy]
    common += ["--data-dir", args.data_dir] if args.data_dir else []
    common += ["--deadline-at", args.deadline_at] if args.deadline_at else []
    return [Task(key, module_command(ONE_RUN, "_one", "--variant", variant, "--seed", seed,
                                     "--learning-rate", rate, *common))
            for key, variant, seed, rate in planned_runs(args) if key not in done]


def run(args: argparse.Namespace) -> int:
    """Run the budget's pending runs (`ablation.py run`); 1 if any failed, POLICY_REFUSED if refused."""
    exit_on_sigterm()  # a parent's timeout ends the runs too (run_pool's cleanup)
    if args.dtype_policy is None:  # the budget's own policy; a new budget's is Keras' default
        held = budget_policies(Path(args.out), args.budget)
        args.dtype_policy = max(held, key=held.get) if held else DEFAULT_POLICY
    refusal = policy_conflict(Path(args.out), args.budget, args.dtype_policy)
    if refusal:
        print(refusal, flush=True)
        return POLICY_REFUSED
    tasks = pending_tasks(args)
    print(f"[{harness.now()}] budget {args.budget} ({args.dtype_policy}): {len(tasks)} runs to do, "
          f"{args.parallel} at once", flush=True)
    outcomes = run_pool(tasks, args.parallel, args.deadline_at, args.estimate,
                        log=lambda line: print(f"[{harness.now()}] {line}", flush=True), env=module_env())
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("done", "failed", "gave up", "abandoned", "not started")}
    refused = sum(o.returncode == POLICY_REFUSED for o in outcomes)  # another campaign wrote first
    counts["failed"] -= refused
    counts.update({"refused (policy)": refused} if refused else {})
    print(f"[{harness.now()}] budget {args.budget}: {counts}", flush=True)
    return 1 if counts["failed"] else POLICY_REFUSED if refused else 0
