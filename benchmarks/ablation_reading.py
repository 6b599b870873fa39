"""What an ablation budget's numbers say: the pairs, the tau study, the four questions, two budgets side by side.

The prose half of `ablation report` (`ablation_report.py` draws the tables
of each variant and the figures):

* `pair_table`: each pair of `PAIRS` whose variants both have two seeds,
  with Welch's test and the Bonferroni correction for the number of pairs
  tested (p x k, capped at 1): with k comparisons at once, one of them
  passes p < 0.05 by chance far more often than 5% of the time.
* `tau_study`: the fixed taus (0.85 = `clamp_fixed`, 0.94, 0.99) against
  the schedule (`recu`, 0.85 -> 0.99).
* `four_questions`: the seed's four questions (RECU_SPEC.md section 4),
  each answered from the rows, or saying which variants it still needs.
* `side_by_side`: the same tables at a shorter full budget that has rows.
* `missing`: the (variant, seed) runs or (rate, seed) runs a budget lacks.

Every number printed is computed from the rows; nothing is written for a
comparison whose variants are missing but "not measured yet".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from benchmarks.ablation_design import BUDGETS, VARIANTS, row_policy, stores
from benchmarks.campaign import number
from benchmarks.harness import fmt, markdown_table
from benchmarks.intervals import Difference, fmt_interval, t_interval, welch

#: (a, b): the differences the four questions read, then the optional variants' (tier 2, the tau study).
PAIRS = (("recu", "standardize_only"), ("recu", "clamp_fixed"), ("standardize_only", "ste"),
         ("recu", "full_precision"), ("clamp_fixed", "standardize_only"), ("recu_constraint", "recu"),
         ("recu", "tau_fixed_0.94"), ("recu", "tau_fixed_0.99"))
#: The variants with a fixed tau and ReCU's clamp: the tau study's rows, each against the schedule (recu).
TAU_STUDY = tuple(name for name, v in VARIANTS.items() if v.kernel == "recu" and v.tau is not None)
ALPHA = 0.05
FULL = "full-e"  # the prefix of the full-data budgets, the ones compared side by side
ByVariant = Dict[str, List[Dict[str, str]]]


def accuracies(rows) -> List[float]:
    """The rows' test (or validation) accuracies."""
    return [number(r["test_accuracy"]) for r in rows]


def seed_mean(rows, key: str) -> float:
    """Mean over the rows (seeds) of column `key`, NaN cells left out."""
    return t_interval([number(r[key]) for r in rows]).mean


def tested_pairs(by_variant: ByVariant) -> Dict[tuple, Difference]:
    """Welch's test of each pair of `PAIRS` whose two variants have at least two seeds each."""
    tests = {}
    for a, b in PAIRS:
        if len(by_variant.get(a, ())) >= 2 and len(by_variant.get(b, ())) >= 2:
            tests[(a, b)] = welch(accuracies(by_variant[a]), accuracies(by_variant[b]))
    return tests


def corrected(p: float, k: int) -> float:
    """Bonferroni: p times the number of pairs tested, at most 1."""
    return min(1.0, p * k)


def verdict(d: Optional[Difference], k: int) -> str:
    """Whether a difference is beyond the seed spread, before and after the correction for k pairs."""
    if d is None:
        return "not measured yet"
    if math.isnan(d.p):
        return "undefined (no spread on either side)"
    if corrected(d.p, k) < ALPHA:
        return f"beyond the seed spread, also after the correction for {k} pairs"
    if d.p < ALPHA:
        return f"beyond the seed spread at {ALPHA}, not after the correction for {k} pairs"
    return "within the seed spread"


def said(d: Optional[Difference], k: int) -> str:
    """A difference as the prose gives it: points, 95% interval, p and corrected p."""
    if d is None:
        return "not measured yet"
    return (f"{100 * d.diff:+.2f} points [{100 * d.low:+.2f}, {100 * d.high:+.2f}], p = {fmt(d.p, '.3f')}, "
            f"p x {k} = {fmt(corrected(d.p, k), '.3f')}: {verdict(d, k)}")


def pair_table(by_variant: ByVariant) -> List[str]:
    """The differences table: Welch's test per pair, p corrected for the number of pairs tested."""
    tests = tested_pairs(by_variant)
    k = len(tests)
    rows = [[f"{a} − {b}", f"{100 * d.diff:+.2f}", f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}]",
             fmt(d.p, ".3f"), fmt(corrected(d.p, k), ".3f"), f"{verdict(d, k)} (n={d.n_a}+{d.n_b}, df={d.df:.1f})"]
            for (a, b), d in tests.items()]
    untested = [f"{a} − {b}" for a, b in PAIRS if (a, b) not in tests]
    lines = [f"## Differences (test accuracy, points; Welch's t-test, two-sided; Bonferroni over {k} pairs)", "",
             markdown_table(["pair", "difference", "95% CI", "p", f"p x {k}", "reading"], rows) if rows
             else "No pair has two seeds on each side yet.\n"]
    if untested:
        lines += [f"Not tested (a side has fewer than two seeds): {', '.join(untested)}.", ""]
    return lines


def tau_study(by_variant: ByVariant) -> List[str]:
    """Fixed tau 0.85, 0.94, 0.99 against the schedule (recu): accuracy, diagnostics, the difference."""
    tests = tested_pairs(by_variant)
    k = len(tests)
    header = ["variant", "tau", "n", "test accuracy % (mean ± std [95% CI])", "dead share % (own tau)",
              "latent quant. error", "entropy (nats, std.)", "recu − this (points, 95% CI)", "p", f"p x {k}"]
    rows = []
    for name in (*TAU_STUDY, "recu"):
        mine = by_variant.get(name, [])
        tau = "0.85 -> 0.99 (schedule)" if VARIANTS[name].schedule else f"{VARIANTS[name].tau:g}"
        if not mine:
            rows.append([name, tau, 0, "not measured yet", "–", "–", "–", "–", "–", "–"])
            continue
        d = tests.get(("recu", name))
        if d is None and name != "recu" and len(mine) >= 2 and len(by_variant.get("recu", ())) >= 2:
            d = welch(accuracies(by_variant["recu"]), accuracies(mine))  # outside PAIRS: not corrected
        against = "–" if d is None else f"{100 * d.diff:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"
        rows.append([name, tau, len(mine), fmt_interval(t_interval(accuracies(mine)), ".2f", 100),
                     fmt(seed_mean(mine, "dead_share"), ".2f", 100), fmt(seed_mean(mine, "latent_quant_error")),
                     fmt(seed_mean(mine, "entropy_standardized")), against, fmt(None if d is None else d.p, ".3f"),
                     fmt(None if d is None else corrected(d.p, k), ".3f")])
    return ["## The tau study: a fixed tau against the schedule", "", markdown_table(header, rows)]


def four_questions(by_variant: ByVariant, epochs: Sequence[Dict[str, str]]) -> List[str]:
    """The four questions, each answered from the rows or saying what it still needs."""
    tests = tested_pairs(by_variant)
    k = len(tests)
    got = lambda a, b: said(tests.get((a, b)), k)  # noqa: E731
    error = {n: fmt(seed_mean(rows, "latent_quant_error")) for n, rows in by_variant.items()}
    q1 = (f"latent quantization error (seed means): standardize_only {error.get('standardize_only', '–')}, "
          f"recu {error.get('recu', '–')}, clamp_fixed {error.get('clamp_fixed', '–')}; accuracy "
          f"clamp_fixed − standardize_only: {got('clamp_fixed', 'standardize_only')}.")
    binary = [(seed_mean(rows, "entropy_standardized"), t_interval(accuracies(rows)).mean, n)
              for n, rows in by_variant.items() if VARIANTS[n].kernel != "float"]
    binary = sorted(b for b in binary if not math.isnan(b[0]))
    q2 = "needs at least three binary variants" if len(binary) < 3 else (
        "by final entropy: " + "; ".join(f"{n} {e:.3f} nats, {100 * a:.2f}%" for e, a, n in binary)
        + f"; rank correlation of entropy and accuracy across these {len(binary)} variants: "
        + f"{_spearman([e for e, _, _ in binary], [a for _, a, _ in binary]):+.2f}.")
    recu_epochs = [r for r in epochs if r["variant"] == "recu"]
    last = max((int(r["epoch"]) for r in recu_epochs), default=None)
    final_tau = [number(r["tau"]) for r in recu_epochs if int(r["epoch"]) == last]
    recu = by_variant.get("recu", [])
    q3 = ("recu not measured yet" if not recu else
          f"recu's final tau {fmt(t_interval(final_tau).mean, '.3f')}, its final dead share (own clamp) "
          f"{fmt(seed_mean(recu, 'dead_share'), '.2f', 100)}%; recu − standardize_only: "
          f"{got('recu', 'standardize_only')}; recu − clamp_fixed: {got('recu', 'clamp_fixed')}; "
          f"the fixed taus against it: the tau study above.")
    q4 = (f"standardize_only − ste: {got('standardize_only', 'ste')}; recu − standardize_only: "
          f"{got('recu', 'standardize_only')}.")
    return ["## The four questions, from these rows", "",
            f"1. Does the clamp lower the quantization error, and at what cost in accuracy? {q1}",
            f"2. Does a higher weight entropy go with a higher accuracy? {q2}",
            f"3. How much does the scheduled clamp do, and how does a fixed tau compare? {q3}",
            f"4. The clamp or the standardization? {q4}", ""]


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def shorter_budget(budget: str, out: Path) -> Optional[str]:
    """The full budget with the most epochs below `budget`'s that has rows in `out`, or None."""
    if not budget.startswith(FULL):
        return None
    candidates = [(b.epochs, name) for name, b in BUDGETS.items() if name.startswith(FULL)
                  and b.epochs < BUDGETS[budget].epochs and stores(out, name)["runs"].rows()]
    return max(candidates)[1] if candidates else None


def side_by_side(budget: str, by_variant: ByVariant, other: str, other_variants: ByVariant,
                 policies: Dict[str, str]) -> List[str]:
    """Accuracy per variant and each pair's difference at `other` (shorter) beside `budget`."""
    e, e_other = BUDGETS[budget].epochs, BUDGETS[other].epochs
    rows = []
    for name in VARIANTS:
        a, b = other_variants.get(name, []), by_variant.get(name, [])
        if not a and not b:
            continue
        change = t_interval(accuracies(b)).mean - t_interval(accuracies(a)).mean if a and b else float("nan")
        rows.append([name, fmt_interval(t_interval(accuracies(a)), ".2f", 100) if a else "not measured",
                     fmt_interval(t_interval(accuracies(b)), ".2f", 100) if b else "not measured yet",
                     fmt(change, "+.2f", 100)])
    before, after = tested_pairs(other_variants), tested_pairs(by_variant)
    pairs = [[f"{a} − {b}", said(before.get((a, b)), len(before)), said(after.get((a, b)), len(after))]
             for a, b in PAIRS if (a, b) in before or (a, b) in after]
    return [f"## {e_other} epochs (`{other}`, {policies[other]}) beside {e} epochs (`{budget}`, {policies[budget]})",
            "", markdown_table(["variant", f"{e_other} epochs %", f"{e} epochs %", "change (points)"], rows),
            markdown_table(["pair", f"at {e_other} epochs", f"at {e} epochs"], pairs)]


def policy_counts(runs: Sequence[Dict[str, str]]) -> Dict[str, int]:
    """How many of the rows ran under each dtype policy."""
    counts: Dict[str, int] = {}
    for row in runs:
        counts[row_policy(row)] = counts.get(row_policy(row), 0) + 1
    return counts


def policy_name(runs: Sequence[Dict[str, str]]) -> str:
    """The one dtype policy of the rows, or "mixed" (never so written by the campaign)."""
    counts = policy_counts(runs)
    return next(iter(counts)) if len(counts) == 1 else "mixed"


def policy_line(runs: Sequence[Dict[str, str]]) -> str:
    """The dtype policy the rows ran under, or a warning that they mix policies."""
    counts = policy_counts(runs)
    if len(counts) == 1:
        return (f"dtype policy: {next(iter(counts))} (all {len(runs)} rows; "
                "rows from before the column read as float32).")
    return ("dtype policy: MIXED (" + ", ".join(f"{n} rows {p}" for p, n in sorted(counts.items()))
            + "): these rows are not one experiment; compare within a policy only.")


def missing(budget: str, runs: Sequence[Dict[str, str]]) -> List[str]:
    """The runs the budget still lacks, each "not measured yet", with the command that adds them."""
    spec = BUDGETS[budget]
    if spec.validation:
        have = {(float(r["learning_rate"]), int(r["seed"])) for r in runs}
        groups = {f"rate {rate:g}": [s for s in range(spec.seeds) if (rate, s) not in have]
                  for rate in spec.learning_rates}
    else:
        have = {(r["variant"], int(r["seed"])) for r in runs}
        groups = {name: [s for s in range(spec.seeds) if (name, s) not in have] for name in VARIANTS}
    lacking = [f"{name}: seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}" for name, s in groups.items() if s]
    if not lacking:
        return [f"Complete: every run of `{budget}` is recorded.", ""]
    return ["## Missing runs", "", f"Not measured yet (needs a GPU session: "
            f"`python -m benchmarks.ablation run --budget {budget}`): " + "; ".join(lacking) + ".", ""]
