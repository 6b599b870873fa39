"""Ablation of ReCU on ResNet-20 1w1a, as an accumulating campaign (issue 10).

The campaign's command line. Which part of ReCU does what: the same
network, recipe and data in several variants (`VARIANTS`), several seeds
each, on a named budget (`BUDGETS`), both in `ablation_design.py`. Each finished (variant, seed) run appends one
row to `<out>/ablation-<budget>.csv`, its per-epoch curves to
`ablation-<budget>-epochs.csv` and its latent-weight histograms (start,
middle, end) to `ablation-<budget>-histograms.csv`; a rerun skips the runs
already recorded, so a budget fills over days and machines. `report` reads
the CSVs and writes the tables and figures. What the variants isolate, the
columns, and the reading of the numbers: BENCHMARKS.md, "Ablation campaign".

    python -m benchmarks.ablation budgets
    python -m benchmarks.ablation run --budget sweep-e4      # ste learning rates
    python -m benchmarks.ablation run --budget full-e10 --parallel 1
    python -m benchmarks.ablation run --budget full-e50 --dtype-policy mixed_bfloat16
    python -m benchmarks.ablation report --budget full-e10

This module is the layer above the campaign (`ablation_campaign.py`), one
run (`ablation_one.py`, the `_one` subcommand) and the reading
(`ablation_report.py`); none of them imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from benchmarks import ablation_campaign, ablation_one, ablation_report  # noqa: E402
from benchmarks.ablation_design import BUDGETS, DTYPE_POLICIES, RESULTS, VARIANTS  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line: `budgets`, `run`, `report`, and `_one` (one run, started by `run`)."""
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
        c.add_argument("--dtype-policy", choices=DTYPE_POLICIES, default=None if name == "run" else DTYPE_POLICIES[0],
                       help="Keras dtype policy of every run (default for run: the budget's own, else float32); "
                            "a budget never mixes policies")
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
    """Run the command of `argv`; the process's exit status."""
    args = parse_args(argv)
    if args.command == "budgets":
        for name, budget in BUDGETS.items():
            print(f"{name:<12} {budget}")
        for name, variant in VARIANTS.items():
            print(f"{name:<17} {variant}")
        return 0
    if args.command == "report":
        ablation_report.report(args.budget, Path(args.out), Path(args.figures or args.out))
        return 0
    if args.command == "_one":
        return ablation_one.run_one(args)
    return ablation_campaign.run(args)


if __name__ == "__main__":
    sys.exit(main())
