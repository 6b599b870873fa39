"""The reading of an ablation budget: tables and figures from its CSVs (`ablation report`).

Writes, next to each other in the figures directory:

* `ablation-<budget>-report.md`: per variant, test accuracy mean ± std and
  the 95% Student-t interval over seeds, and the final diagnostics (means
  over seeds); the dtype policy of the rows; the pairwise differences, each
  with Welch's unequal-variance t-test (difference, its 95% interval, p,
  two-sided, and p corrected for the number of pairs); the tau study; the
  four questions answered from the rows (`ablation_reading.py`); beside them
  what a shorter full budget with rows said; the gap between the best binary
  variant and the float twin; the runs still missing. For a sweep budget:
  validation accuracy per learning rate (n, mean ± std, each seed) instead,
  and the chosen rate against the runner-up.
* `ablation-<budget>-accuracy.png`, `-curves.png` (per-epoch means over
  seeds: accuracy, dead share, quantization errors, entropy, flip ratio,
  tau) and `-histograms.png` (standardized latent weights at the start,
  middle and end of training, summed over seeds and layers).

With three seeds per variant Welch's test has few degrees of freedom: a
difference "beyond the seed spread" here means its 95% interval excludes
zero (p < 0.05), nothing weaker. A permutation test would be exact, but with
3 + 3 runs its smallest possible two-sided p is 0.1, so it could never
reject; that is why it is not used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks import ablation_reading as reading
from benchmarks.ablation_design import BUDGETS, VARIANTS, best_learning_rate, stores
from benchmarks.ablation_reading import accuracies as _accuracies
from benchmarks.campaign import number
from benchmarks.figures import pyplot, save_figure
from benchmarks.harness import fmt, markdown_table
from benchmarks.intervals import fmt_interval, t_interval, welch
FINAL = (("dead_share", "dead share % (own tau)", ".2f", 100),
         ("dead_share_085", "dead share % (tau 0.85)", ".2f", 100),
         ("quant_error", "quant. error", ".3f", 1), ("latent_quant_error", "latent quant. error", ".3f", 1),
         ("entropy_standardized", "entropy (nats, std.)", ".3f", 1),
         ("flip_ratio_mean", "flip ratio %/epoch", ".2f", 100),
         ("dead_share_085_init", "dead share % at init (0.85)", ".2f", 100), ("seconds_per_epoch", "s/epoch", ".1f", 1))
CURVES = (("val_accuracy", "test accuracy"), ("dead_share", "dead share (own tau)"),
          ("dead_share_085", "dead share (tau 0.85)"), ("quant_error", "quant. error (binarized)"),
          ("latent_quant_error", "quant. error (latent)"), ("entropy_standardized", "entropy (std. latent, nats)"),
          ("flip_ratio", "flip ratio"), ("tau", "tau"))


def _unique_runs(rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """The first row of each (variant, seed, learning rate): a run done twice counts once."""
    seen, kept = set(), []
    for row in rows:
        key = (row["variant"], row["seed"], row["learning_rate"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def report(budget: str, out: Path, figures: Path) -> Path:
    """Write the budget's Markdown reading and figures into `figures`, print the reading; its path.

    A budget without rows, or with variants or seeds missing, gets a reading
    that says what is missing (and no figures without rows).
    """
    files = stores(out, budget)
    runs = _unique_runs(files["runs"].rows())
    figures.mkdir(parents=True, exist_ok=True)
    ids = {row["run_id"] for row in runs}
    epochs = [row for row in files["epochs"].rows() if row["run_id"] in ids]
    histograms = [row for row in files["histograms"].rows() if row["run_id"] in ids]
    machines = sorted({f"{row['backend']} on {row['device']}" for row in runs})
    lines = [f"# Ablation budget `{budget}`", "", f"{BUDGETS[budget]}", "",
             f"{len(runs)} runs; machines: {', '.join(machines) or 'none yet'}.", ""]
    lines += [reading.policy_line(runs), ""] if runs else []
    if runs and BUDGETS[budget].validation:
        lines += _sweep_tables(runs, out, budget)
        _sweep_figure(runs, figures / f"ablation-{budget}-sweep.png")
    elif runs:
        by_variant = _by_variant(runs)
        lines += _variant_tables(by_variant) + reading.tau_study(by_variant)
        lines += reading.four_questions(by_variant, epochs) + _beside_shorter(budget, out, by_variant, runs)
        _accuracy_figure(by_variant, figures / f"ablation-{budget}-accuracy.png")
        _curves_figure(by_variant, epochs, figures / f"ablation-{budget}-curves.png")
        _histogram_figure(by_variant, histograms, figures / f"ablation-{budget}-histograms.png")
    lines += reading.missing(budget, runs)
    path = figures / f"ablation-{budget}-report.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def _by_variant(runs) -> Dict[str, List[Dict[str, str]]]:
    by_variant = {name: [r for r in runs if r["variant"] == name] for name in VARIANTS}
    return {name: rows for name, rows in by_variant.items() if rows}


def _beside_shorter(budget: str, out: Path, by_variant, runs) -> List[str]:
    """What the longest shorter full budget with rows said, beside this one (none: nothing)."""
    other = reading.shorter_budget(budget, out)
    if other is None:
        return []
    other_runs = _unique_runs(stores(out, other)["runs"].rows())
    policies = {budget: reading.policy_name(runs), other: reading.policy_name(other_runs)}
    return reading.side_by_side(budget, by_variant, other, _by_variant(other_runs), policies)


def _mean_of_numbers(cells) -> float:
    values = [v for v in map(number, cells) if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _variant_tables(by_variant: Dict[str, List[Dict[str, str]]]) -> List[str]:
    header = ["variant", "n", "test accuracy % (mean ± std [95% CI])", *(title for _, title, _, _ in FINAL),
              "learning rate"]
    rows = []
    for name, mine in by_variant.items():
        finals = [fmt(t_interval([number(r[key]) for r in mine]).mean, spec, scale)
                  for key, _, spec, scale in FINAL]
        rates = sorted({float(r["learning_rate"]) for r in mine})
        rows.append([name, len(mine), fmt_interval(t_interval(_accuracies(mine)), ".2f", 100),
                     *finals, ", ".join(f"{rate:g}" for rate in rates)])
    lines = ["## Per variant (final values are means over seeds)", "", markdown_table(header, rows)]
    lines += reading.pair_table(by_variant)
    binary = {n: t_interval(_accuracies(r)).mean for n, r in by_variant.items() if n != "full_precision"}
    if binary and "full_precision" in by_variant:
        best = max(binary, key=binary.get)
        float_mean = t_interval(_accuracies(by_variant["full_precision"])).mean
        gap = 100 * (float_mean - binary[best])
        lines += [f"Best 1w1a variant: {best} at {100 * binary[best]:.2f}%; the float twin scores "
                  f"{100 * float_mean:.2f}%, {abs(gap):.2f} points {'above' if gap >= 0 else 'below'} it.", ""]
    return lines


def _sweep_tables(runs, out: Path, budget: str) -> List[str]:
    """Validation accuracy per rate (n, mean ± std [CI], each seed); the chosen rate against the runner-up."""
    rates = sorted({float(r["learning_rate"]) for r in runs})
    at = {rate: sorted((r for r in runs if float(r["learning_rate"]) == rate), key=lambda r: int(r["seed"]))
          for rate in rates}
    rows = [[f"{rate:g}", len(at[rate]), fmt_interval(t_interval(_accuracies(at[rate])), ".2f", 100),
             ", ".join(f"s{r['seed']} {fmt(number(r['test_accuracy']), '.2f', 100)}" for r in at[rate])]
            for rate in rates]
    best = best_learning_rate(out, budget)
    lines = ["## ste learning-rate sweep (validation accuracy %)", "",
             markdown_table(["learning rate", "n", "mean ± std [95% CI]", "each seed"], rows),
             f"Chosen: {best:g} (highest mean validation accuracy; ties go to the smaller rate), "
             f"on {len(at.get(best, []))} seed(s)."]
    means = sorted(((t_interval(_accuracies(at[rate])).mean, rate) for rate in rates if rate != best), reverse=True)
    if means and len(at[best]) >= 2 and len(at[means[0][1]]) >= 2:
        d = welch(_accuracies(at[best]), _accuracies(at[means[0][1]]))
        lines[-1] += (f" Against the runner-up {means[0][1]:g}: {100 * d.diff:+.2f} points "
                      f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}], p = {fmt(d.p, '.3f')} (Welch).")
    elif means:
        lines[-1] += f" Against the runner-up {means[0][1]:g}: not tested (a side has fewer than two seeds)."
    return lines + [""]


def _sweep_figure(runs, path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    rates = np.array([float(r["learning_rate"]) for r in runs])
    axis.scatter(rates, 100 * np.array(_accuracies(runs)), color="C0")
    axis.set(xscale="log", xlabel="learning rate (ste)", ylabel="validation accuracy (%)", title="ste sweep")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def _accuracy_figure(by_variant, path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(1.3 * len(by_variant) + 2, 4.5))
    for i, (name, rows) in enumerate(by_variant.items()):
        values = 100 * np.array(_accuracies(rows))
        axis.scatter(np.full(len(values), i) + np.linspace(-0.1, 0.1, len(values)), values, s=16, color="grey")
        s = t_interval(values)
        if s.n > 1:
            axis.errorbar(i, s.mean, yerr=[[s.mean - s.low], [s.high - s.mean]], fmt="o", color="C0", capsize=6)
    axis.set_xticks(range(len(by_variant)), list(by_variant), rotation=20, ha="right")
    axis.set(ylabel="test accuracy (%)", title="Test accuracy per seed; mean and 95% interval")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def _curves_figure(by_variant, epochs, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for i, name in enumerate(by_variant):
        mine = [r for r in epochs if r["variant"] == name]
        steps = sorted({int(r["epoch"]) for r in mine})
        for axis, (key, title) in zip(axes.flat, CURVES):
            curve = [_mean_of_numbers(r[key] for r in mine if int(r["epoch"]) == e) for e in steps]
            if steps and not np.all(np.isnan(curve)):
                axis.plot(steps, curve, color=f"C{i}", label=name, marker="o" if len(steps) < 20 else None, ms=3)
            axis.set(title=title, xlabel="epoch")
            axis.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)))
    figure.suptitle("Per epoch, means over seeds (diagnostics: means over the 18 binary layers)")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(figure, path, dpi=90)


def _histogram_figure(by_variant, histograms, path: Path) -> None:
    plt = pyplot()
    columns = min(4, len(by_variant))
    grid = math.ceil(len(by_variant) / columns)
    figure, axes = plt.subplots(grid, columns, figsize=(4.2 * columns, 3.2 * grid), squeeze=False)
    for axis, name in zip(axes.flat, by_variant):
        for stage, color in (("start", "C7"), ("middle", "C0"), ("end", "C3")):
            mine = [r for r in histograms if r["variant"] == name and r["stage"] == stage]
            if not mine:
                continue
            counts = np.sum([np.array(r["counts"].split(), dtype=float) for r in mine], axis=0)
            edges = np.linspace(float(mine[0]["low"]), float(mine[0]["high"]), len(counts) + 1)
            axis.stairs(counts / counts.sum(), edges, color=color, label=f"{stage} (epoch {mine[0]['epoch']})")
        axis.set(title=name, yscale="log", xlabel="standardized latent weight")
        if axis.get_legend_handles_labels()[0]:  # a variant without histograms has none
            axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(by_variant):]:
        axis.set_visible(False)
    figure.suptitle("Latent weights of the binary layers, standardized per channel (shares of weights)")
    figure.tight_layout()
    save_figure(figure, path, dpi=90)
