"""The ablation at scale (issue 17 item 4), on toy rows: no training here.

What is checked: a budget's dtype policy (recorded, defaulted for old rows,
a mixed budget refused in one line with exit 2), the migration of a CSV
written before the `dtype_policy` column, the 50-epoch reading (Welch and
its Bonferroni correction against scipy's own Welch test, the tau study,
the four questions, the 20-epoch side-by-side, the missing runs), the ste
sweep read with three seeds per rate, and the GPU driver's planning
(policy choice, prior run time, what the sweep lacks).
"""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from benchmarks import ablation, ablation_campaign, ablation_design, ablation_one
from benchmarks.ablation_report import report
from benchmarks.campaign import RowStore
from benchmarks.gpu import driver
from benchmarks.launch import ROOT

OLD_COLUMNS = tuple(c for c in ablation_design.RUN_COLUMNS if c != "dtype_policy")


def _row(variant, seed, budget, accuracy, rate=0.1, columns=ablation_design.RUN_COLUMNS, **extra):
    row = {c: "" for c in columns}
    row.update(run_id=f"{budget}-{variant}-{seed}-{rate}", variant=variant, seed=seed, budget=budget,
               epochs=ablation_design.BUDGETS[budget].epochs, learning_rate=rate, test_accuracy=accuracy,
               backend="jax", device="cpu", seconds=300, seconds_per_epoch=5.0)
    row.update(extra)
    return row


def test_an_old_csv_reads_as_float32_and_is_migrated_by_its_next_append(tmp_path):
    path = tmp_path / "ablation-full-e10.csv"
    old = RowStore(path, OLD_COLUMNS)
    old.append([_row("recu", s, "full-e10", 0.9, columns=OLD_COLUMNS) for s in (0, 1)])
    with open(path, "a") as file:
        file.write("recu,half a line from a killed writer\n")
    runs = ablation_design.stores(tmp_path, "full-e10")["runs"]
    assert [ablation_design.row_policy(r) for r in runs.rows()] == ["float32", "float32"]
    assert ablation_design.budget_policies(tmp_path, "full-e10") == {"float32": 2}
    runs.append([_row("recu", 2, "full-e10", 0.91, dtype_policy="float32")])
    with open(path, newline="") as file:
        lines = list(csv.reader(file))
    assert tuple(lines[0]) == ablation_design.RUN_COLUMNS and len(lines) == 4  # the damaged line is gone
    assert [r["dtype_policy"] for r in runs.rows()] == ["float32"] * 3
    assert [r["seed"] for r in runs.rows()] == ["0", "1", "2"]
    assert not list(tmp_path.glob(".*migrating*"))
    # a file with a column this store does not know is still refused, not migrated
    other = RowStore(tmp_path / "other.csv", ("a", "b"))
    other.append([{"a": 1, "b": 2}])
    with pytest.raises(ValueError, match="other columns"):
        RowStore(other.path, ("a", "c"), defaults={"c": "x"}).append([{"a": 3}])


def test_the_committed_records_read_with_their_policy():
    for budget, n in (("full-e20", 15), ("sweep-e4", 7)):
        rows = ablation_design.stores(ablation_design.RESULTS, budget)["runs"].rows()
        assert len(rows) >= n and {ablation_design.row_policy(r) for r in rows} == {"float32"}


def test_a_budget_never_mixes_policies(tmp_path, capsys):
    ablation_design.stores(tmp_path, "full-e10")["runs"].append([_row("recu", 0, "full-e10", 0.9)])
    argv = ["run", "--budget", "full-e10", "--out", str(tmp_path), "--variants", "recu", "--seeds", "0"]
    assert ablation.main([*argv, "--dtype-policy", "mixed_bfloat16"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("refused: budget full-e10") and "1 rows float32" in out[0]
    assert ablation.main(argv) == 0  # no policy given: the budget's own, and nothing left to do
    assert "budget full-e10 (float32): 0 runs to do" in capsys.readouterr().out
    one = ablation.parse_args(["_one", "--budget", "full-e10", "--out", str(tmp_path), "--variant", "recu",
                               "--seed", "1", "--dtype-policy", "mixed_bfloat16"])
    assert ablation_one.run_one(one) == 2  # refused before anything is imported or trained
    args = ablation.parse_args([*argv[:-4], "--dtype-policy", "float32", "--variants", "clamp_fixed"])
    (task,) = [t for t in ablation_campaign.pending_tasks(args) if t.key == ("clamp_fixed", 0)]
    assert task.command[task.command.index("--dtype-policy") + 1] == "float32"


E50 = {"recu": (0.920, 0.924, 0.921), "clamp_fixed": (0.915, 0.917, 0.912), "tau_fixed_0.94": (0.921, 0.919, 0.923),
       "tau_fixed_0.99": (0.925, 0.921), "standardize_only": (0.922, 0.920, 0.925), "ste": (0.910, 0.913, 0.909)}
E20 = {"recu": (0.914, 0.915, 0.913), "clamp_fixed": (0.909, 0.911, 0.910)}


@pytest.fixture(scope="module")
def e50_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("e50")
    for budget, table, policy in (("full-e50", E50, "mixed_bfloat16"), ("full-e20", E20, None)):
        files = ablation_design.stores(out, budget)
        files["runs"].append(_row(v, s, budget, a, dtype_policy=policy, latent_quant_error=0.2 + s / 100,
                                  entropy_standardized=2.0 + a, dead_share=0.01)
                             for v, values in table.items() for s, a in enumerate(values))
        files["epochs"].append({"run_id": f"{budget}-recu-{s}-0.1", "variant": "recu", "seed": s, "epoch": e,
                                "tau": 0.85 + e / 1000, "val_accuracy": 0.9} for s in range(3) for e in (1, 2))
    return report("full-e50", out, out / "figures").read_text()


def test_the_50_epoch_reading_states_its_policy_and_corrects_for_the_pairs(e50_report):
    text = e50_report
    assert "dtype policy: mixed_bfloat16 (all 17 rows" in text
    # pairs with two seeds on each side: recu-std, recu-clamp, std-ste, clamp-std, recu-0.94, recu-0.99
    k = 6
    assert f"Bonferroni over {k} pairs" in text
    for a, b in (("recu", "tau_fixed_0.99"), ("standardize_only", "ste"), ("recu", "clamp_fixed")):
        test = stats.ttest_ind(E50[a], E50[b], equal_var=False)
        diff = 100 * (np.mean(E50[a]) - np.mean(E50[b]))
        assert f"| {a} − {b} | {diff:+.2f} |" in text
        assert f"| {test.pvalue:.3f} | {min(1, k * test.pvalue):.3f} |" in text
    d = stats.ttest_ind(E50["standardize_only"], E50["ste"], equal_var=False)
    assert (d.pvalue * k < 0.05) == ("standardize_only − ste | " in text and "also after the correction" in
                                    text.split("| standardize_only − ste |")[1].split("\n")[0])


def test_the_tau_study_puts_each_fixed_tau_against_the_schedule(e50_report):
    section = e50_report.split("## The tau study")[1].split("## ")[0]
    for name, tau in (("clamp_fixed", "0.85"), ("tau_fixed_0.94", "0.94"), ("tau_fixed_0.99", "0.99")):
        values = 100 * np.array(E50[name])
        line = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
        mean, std = values.mean(), values.std(ddof=1)
        assert f"| {name} | {tau} | {len(values)} | {mean:.2f} ± {std:.2f} [" in line
        test = stats.ttest_ind(E50["recu"], E50[name], equal_var=False)
        half = stats.t.ppf(0.975, test.df) * (100 * np.mean(E50["recu"]) - mean) / test.statistic
        diff = 100 * np.mean(E50["recu"]) - mean
        assert f"| {diff:+.2f} [{diff - half:+.2f}, {diff + half:+.2f}] | {test.pvalue:.3f} |" in line
    assert "| recu | 0.85 -> 0.99 (schedule) | 3 |" in section


def test_the_reading_answers_the_four_questions_and_says_what_is_missing(e50_report):
    text = e50_report
    questions = text.split("## The four questions")[1].split("## ")[0]
    assert all(f"\n{i}. " in questions for i in range(1, 5))
    assert "recu's final tau 0.852" in questions  # the last epoch's tau, from the epochs CSV
    assert "rank correlation of entropy and accuracy across these 6 variants: +1.00" in questions
    assert "standardize_only 0.210" in questions  # the seed mean of latent_quant_error (0.20, 0.21, 0.22)
    side = text.split("## 20 epochs (`full-e20`, float32) beside 50 epochs (`full-e50`, mixed_bfloat16)")[1]
    change = 100 * (np.mean(E50["recu"]) - np.mean(E20["recu"]))
    assert "| recu | 91.40 ± 0.10 [" in side and f"| {change:+.2f} |" in side
    assert "| ste | not measured |" in side
    missing = text.split("## Missing runs")[1]
    assert "full_precision: seeds 0, 1, 2" in missing and "tau_fixed_0.99: seed 2" in missing
    assert "recu_constraint: seeds 0, 1, 2" in missing and "recu:" not in missing


def test_the_ste_sweep_reads_three_seeds_per_rate(tmp_path):
    values = {0.3: (0.78, 0.77, 0.79), 1.0: (0.80, 0.74, 0.79), 3.0: (0.10,)}
    ablation_design.stores(tmp_path, "sweep-e4")["runs"].append(
        _row("ste", s, "sweep-e4", a, rate) for rate, seeds in values.items() for s, a in enumerate(seeds))
    text = report("sweep-e4", tmp_path, tmp_path).read_text()
    for rate, seeds in values.items():
        pct = 100 * np.array(seeds)
        spread = f" ± {pct.std(ddof=1):.2f} [" if len(seeds) > 1 else " (n=1)"
        assert f"| {rate:g} | {len(seeds)} | {pct.mean():.2f}{spread}" in text
    assert "| 0.3 | 3 |" in text and "s0 78.00, s1 77.00, s2 79.00" in text
    test = stats.ttest_ind(values[0.3], values[1.0], equal_var=False)
    assert "Chosen: 0.3" in text and "on 3 seed(s). Against the runner-up 1: " in text
    assert f"{100 * (np.mean(values[0.3]) - np.mean(values[1.0])):+.2f} points" in text
    assert f"p = {test.pvalue:.3f} (Welch)" in text
    assert "rate 0.03: seeds 0, 1, 2" in text and "rate 3: seeds 1, 2" in text and "rate 1:" not in text


def test_report_of_a_budget_without_rows_lists_what_is_missing(tmp_path):
    text = report("full-e50", tmp_path, tmp_path).read_text()
    assert "0 runs; machines: none yet." in text and "recu: seeds 0, 1, 2" in text


def test_the_driver_plans_from_measured_rows(tmp_path):
    results, out, records = (tmp_path / name for name in ("results", "out", "records"))
    for folder in (results, out, records):
        folder.mkdir()
    cpu = {"device": "cpu"}
    (records / "cpu.json").write_text(json.dumps({"benchmark": "train_step engines", "result": {"variants": {
        "keras-jax": {"median_ms": 9.0, "facts": cpu}, "keras-jax-bf16": {"median_ms": 1.0, "facts": cpu}}}}))
    assert driver.choose_policy(results, "full-e50", out, None, records)[0] == "float32"  # no GPU step measured

    def engines(f32, bf16):
        gpu = {"device": "NVIDIA H200"}
        variants = {"keras-jax": {"median_ms": f32, "facts": gpu}, "keras-jax-bf16": {"median_ms": bf16, "facts": gpu}}
        (out / "train_step.json").write_text(json.dumps({"benchmark": "train_step engines",
                                                         "result": {"variants": variants}}))

    engines(10.0, 7.0)
    assert driver.choose_policy(results, "full-e50", out, None, records)[0] == "mixed_bfloat16"
    engines(10.0, 12.0)
    assert driver.choose_policy(results, "full-e50", out, None, records)[0] == "float32"
    assert driver.choose_policy(results, "full-e50", out, "mixed_bfloat16", records)[0] == "mixed_bfloat16"
    prior = [_row("recu", s, "full-e20", 0.9, seconds=20 * spe + up, seconds_per_epoch=spe)
             for s, (spe, up) in enumerate(((6.0, 60.0), (7.0, 80.0), (8.5, 100.0)))]
    ablation_design.stores(results, "full-e20")["runs"].append(prior)
    assert driver.prior_seconds(results, "full-e50", "full-e20", "float32") == round(driver.SAFETY * (80 + 50 * 7))
    ablation_design.stores(results, "full-e50")["runs"].append(
        [_row("recu", 0, "full-e50", 0.9, seconds=50 * 4 + 40, seconds_per_epoch=4.0, dtype_policy="float32")])
    assert driver.prior_seconds(results, "full-e50", "full-e20", "float32") == round(driver.SAFETY * (40 + 200))
    engines(10.0, 7.0)  # bf16 faster, but the budget has float32 rows: it stays float32
    assert driver.choose_policy(results, "full-e50", out, "mixed_bfloat16", records)[0] == "float32"
    assert driver.sweep_pending(ablation_design.RESULTS, "sweep-e4") == 15 - len(
        ablation_design.stores(ablation_design.RESULTS, "sweep-e4")["runs"].rows())
    assert math.isclose(driver.SAFETY, 1.1)


def test_writers_racing_a_migration_lose_no_row(tmp_path):
    """Four processes append to an old-header file at once: one migrates, the others reopen the new file."""
    path = tmp_path / "r.csv"
    RowStore(path, ("writer", "i")).append([{"writer": "old", "i": i} for i in range(3)])
    code = ("import sys; from benchmarks.campaign import RowStore\n"
            "s = RowStore(sys.argv[1], ('writer', 'i', 'policy'), defaults={'policy': 'float32'})\n"
            "for i in range(30): s.append([{'writer': sys.argv[2], 'i': i, 'policy': 'bf16'}])")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), str(w)], cwd=ROOT) for w in range(4)]
    assert all(w.wait(60) == 0 for w in writers)
    rows = RowStore(path, ("writer", "i", "policy")).rows()
    assert sorted((r["writer"], int(r["i"]), r["policy"]) for r in rows) == sorted(
        [("old", i, "float32") for i in range(3)] + [(str(w), i, "bf16") for w in range(4) for i in range(30)])
    assert path.read_text().startswith("writer,i,policy\n") and path.read_text().count("writer,") == 1


def test_the_gpu_sessions_speed_commands_are_valid_for_their_modules():
    """A typo in a speed command would cost a GPU session: each parses with its module's own parser."""
    import importlib

    assert driver.SPEED_COMMANDS, "phase (a) holds the speed rows still missing (issue 17)"
    for module, *arguments in driver.SPEED_COMMANDS:
        parsed = importlib.import_module(module).parse_args([a.replace("{out}", "/tmp/out") for a in arguments])
        assert str(parsed.json).startswith("/tmp/out/")
        merge = getattr(parsed, "merge", None)
        assert merge is None or (ROOT / merge).is_file()  # the committed record that the new rows join
