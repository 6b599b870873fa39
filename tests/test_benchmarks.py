"""The benchmarks' shared harness and the ablation campaign's bookkeeping, on toy inputs.

No timing is asserted. What is: the interval and test arithmetic against
hand-computed numbers, the atomic CSV records (also with processes writing
at once), the pool's deadline, the campaign's skipping and priorities, the
variants' models, the report's tables, and the authors' PyTorch transcription.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import ablation, ablation_campaign, ablation_design, ablation_one, harness, intervals, timing
from benchmarks.campaign import RowStore, Task, run_pool
from benchmarks.figures import pyplot, save_figure
from benchmarks.launch import module_command, module_env, python_command

ROOT = Path(__file__).resolve().parents[1]

T_975_DF2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (tables)


# --- harness ---------------------------------------------------------------------------------


def test_t_interval_against_hand_computed_numbers():
    s = intervals.t_interval([0.70, 0.72, 0.74, float("nan")])  # NaN dropped
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.72), pytest.approx(0.02))
    assert (s.low, s.high) == (pytest.approx(0.72 - half), pytest.approx(0.72 + half))
    one = intervals.t_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.low)
    assert intervals.fmt_interval(s, ".2f", 100) == "72.00 ± 2.00 [67.03, 76.97]"
    assert intervals.fmt_interval(one, ".1f", 100) == "50.0 (n=1)"


def test_welch_against_hand_computed_numbers():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]
    # var(a) = 1, var(b) = 5/3; se^2 = 1/3 + 5/12 = 3/4
    d = intervals.welch(a, b)
    df = 0.75**2 / ((1 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert d.diff == pytest.approx(-3.5) and d.t == pytest.approx(-3.5 / math.sqrt(0.75))
    assert d.df == pytest.approx(df)
    assert d.p == pytest.approx(0.010077, abs=1e-6)  # t = -4.04 on 4.96 df
    from scipy import stats

    independent = stats.ttest_ind(a, b, equal_var=False)
    assert (d.t, d.p) == (pytest.approx(independent.statistic), pytest.approx(independent.pvalue))
    assert d.low < d.diff < d.high < 0
    flat = intervals.welch([1.0, 1.0], [2.0, 2.0])
    assert flat.diff == -1.0 and math.isnan(flat.p)  # undefined, reported as such
    with pytest.raises(ValueError, match=">= 2 values per side"):
        intervals.welch([1.0], [1.0, 2.0])


def test_interleaved_rounds_alternate_the_order():
    calls = []

    def runner(name, ms):
        return lambda n: calls.append(name) or [ms] * n

    timings = timing.interleaved_rounds({"a": runner("a", 2.0), "b": runner("b", 3.0)}, rounds=3, steps=4)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert timings["b"].median_ms == 3.0 and len(timings["a"].step_ms) == 12
    assert timings["a"].as_dict()["steps_per_s"] == 500.0


def test_environment_and_figure_limit(tmp_path):
    facts = harness.environment(["bench.py", "--x", "a b"])
    assert facts["command"].endswith("bench.py --x 'a b'") and facts["cpu_count"] >= 1
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(12, 9))
    axis.imshow(np.random.default_rng(0).random((400, 400)))  # noise compresses badly
    path = save_figure(figure, tmp_path / "noise.png", max_bytes=200_000)
    assert 0 < path.stat().st_size <= 200_000


# --- CSV records and the pool ----------------------------------------------------------------


def test_row_store_appends_reads_and_refuses_other_columns(tmp_path):
    store = RowStore(tmp_path / "r.csv", ("variant", "seed", "value"))
    assert store.rows() == []
    store.append([{"variant": "recu", "seed": 0, "value": 0.5}, {"variant": "ste", "seed": 0}])
    with open(store.path, "a") as file:
        file.write("recu,1\n")  # a damaged line, as a writer killed mid-row would leave
    store.append([{"variant": "recu", "seed": 2, "value": float("nan")},
                  {"variant": "recu", "seed": 3, "value": np.float64(0.25)}])
    rows = store.rows()
    assert [(r["variant"], r["seed"], r["value"]) for r in rows] == [
        ("recu", "0", "0.5"), ("ste", "0", ""), ("recu", "2", "nan"), ("recu", "3", "0.25")]
    with pytest.raises(ValueError, match="does not have"):
        store.append([{"variant": "recu", "other": 1}])
    with pytest.raises(ValueError, match="other columns"):
        RowStore(store.path, ("variant", "seed")).append([{"variant": "recu", "seed": 3}])


def test_row_store_concurrent_appends_lose_nothing(tmp_path):
    path = tmp_path / "r.csv"
    code = ("import sys; from benchmarks.campaign import RowStore\n"
            "s = RowStore(sys.argv[1], ('writer', 'i', 'pad'))\n"
            "for i in range(40): s.append([{'writer': sys.argv[2], 'i': i, 'pad': 'x' * 3000}])")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), str(w)], cwd=ROOT) for w in range(4)]
    assert all(w.wait(60) == 0 for w in writers)
    rows = RowStore(path, ("writer", "i", "pad")).rows()
    assert sorted((r["writer"], int(r["i"])) for r in rows) == [(str(w), i) for w in range(4) for i in range(40)]


def test_run_pool_statuses_and_deadline(tmp_path):
    def task(key, code):
        return Task((key,), [sys.executable, "-c", code])

    outcomes = run_pool([task("ok", "pass"), task("bad", "raise SystemExit(2)"), task("late", "raise SystemExit(3)")],
                        parallel=2, log=lambda _: None)
    assert {o.key[0]: o.status for o in outcomes} == {"ok": "done", "bad": "failed", "late": "gave up"}
    start = __import__("time").time()
    outcomes = run_pool([task("slow", "import time; time.sleep(60)"), task("next", "pass")], parallel=1,
                        deadline=start + 1.5, log=lambda _: None, poll_s=0.1)
    assert {o.key[0]: o.status for o in outcomes} == {"slow": "abandoned", "next": "not started"}
    assert __import__("time").time() - start < 15
    outcomes = run_pool([task("long", "pass")], parallel=1, deadline=start + 100, estimate_s=1e4,
                        log=lambda _: None)
    assert outcomes[0].status == "not started"


def test_run_pool_interrupted_by_sigterm_kills_its_runs(tmp_path):
    import os
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = ("import sys; from benchmarks.campaign import *\n"
              "exit_on_sigterm(); run_pool([Task(('s',), [sys.executable, '-c', sys.argv[1]])], 1, log=print)")
    pool = subprocess.Popen([sys.executable, "-c", parent, child], cwd=ROOT)
    for _ in range(300):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(30) == 128 + signal.SIGTERM
    for _ in range(100):  # the run's process group was killed with the pool
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the pool's run outlived the pool")


# --- the ablation campaign -------------------------------------------------------------------


def _row(variant, seed, budget="full-e10", accuracy=0.9, rate=0.1, **extra):
    row = {c: "" for c in ablation_design.RUN_COLUMNS}
    row.update(run_id=f"{variant}-{seed}-{rate}", variant=variant, seed=seed, budget=budget, epochs=10,
               learning_rate=rate, test_accuracy=accuracy, backend="jax", device="cpu", seconds=100,
               seconds_per_epoch=9.0, **extra)
    return row


def test_pending_tasks_skip_recorded_runs_in_priority_order(tmp_path, capsys):
    files = ablation_design.stores(tmp_path, "full-e10")
    files["runs"].append([_row("recu", 0), _row("ste", 1, rate=0.3)])
    args = ablation.parse_args(["run", "--budget", "full-e10", "--out", str(tmp_path),
                                "--variants", "tau_fixed_0.94,recu_constraint,recu,ste"])
    keys = [t.key for t in ablation_campaign.pending_tasks(args)]
    # tier 1 (recu; ste has no learning rate yet), seeds in order, then tier 2, then tier 3
    assert keys == [("recu", 1), ("recu", 2), ("recu_constraint", 0), ("recu_constraint", 1),
                    ("recu_constraint", 2), ("tau_fixed_0.94", 0), ("tau_fixed_0.94", 1), ("tau_fixed_0.94", 2)]
    assert "skipping ste: no learning rate" in capsys.readouterr().out
    sweep = ablation_design.stores(tmp_path, "sweep-e4")["runs"]
    sweep.append([_row("ste", s, "sweep-e4", acc, rate) for s, acc, rate in
                  [(0, 0.80, 0.3), (1, 0.82, 0.3), (0, 0.81, 1.0), (1, 0.81, 1.0), (0, 0.6, 0.03)]])
    assert ablation_design.best_learning_rate(tmp_path, "sweep-e4") == 0.3  # equal means: the smaller rate
    tasks = ablation_campaign.pending_tasks(args)
    ste = [t for t in tasks if t.key[0] == "ste"]
    assert [t.key for t in ste] == [("ste", 0), ("ste", 2)]
    assert ste[0].command[ste[0].command.index("--learning-rate") + 1] == "0.3"
    sweep_args = ablation.parse_args(["run", "--budget", "sweep-e4", "--out", str(tmp_path)])
    sweep_keys = [t.key for t in ablation_campaign.pending_tasks(sweep_args)]
    assert len(sweep_keys) == 15 - 5 and ("ste", 0, 0.1) in sweep_keys and ("ste", 0, 0.3) not in sweep_keys


def test_campaign_appends_then_a_rerun_skips(tmp_path):
    """A fake `_one` that appends its row: the second pass finds nothing left to do."""
    args = ablation.parse_args(["run", "--budget", "smoke", "--out", str(tmp_path),
                                "--variants", "recu,clamp_fixed", "--seeds", "0,1"])
    fake = ("import sys, pathlib; from benchmarks import ablation_design as design\n"
            "v, s = sys.argv[1], int(sys.argv[2])\n"
            "row = {c: '' for c in design.RUN_COLUMNS}\n"
            "row.update(run_id=f'{v}{s}', variant=v, seed=s, budget='smoke', learning_rate=0.1)\n"
            "design.stores(pathlib.Path(sys.argv[3]), 'smoke')['runs'].append([row])")
    pending = ablation_campaign.pending_tasks(args)
    assert all(t.command[1:4] == ["-m", "benchmarks.ablation", "_one"] for t in pending)
    tasks = [Task(t.key, [sys.executable, "-c", fake, t.key[0], str(t.key[1]), str(tmp_path)]) for t in pending]
    assert [t.key for t in tasks] == [("recu", 0), ("clamp_fixed", 0), ("recu", 1), ("clamp_fixed", 1)]
    assert all(o.status == "done" for o in run_pool(tasks, parallel=2, log=lambda _: None, env=module_env()))
    assert ablation_campaign.pending_tasks(args) == []
    assert python_command(Path("x.py"), "--seed", 3) == [sys.executable, "x.py", "--seed", "3"]
    assert module_command("benchmarks.ablation", "_one") == [sys.executable, "-m", "benchmarks.ablation", "_one"]


def test_variants_build_the_named_kernels_from_the_same_initial_weights():
    import keras

    from keras_recu.constraints import ReCUClamp
    from keras_recu.quantizers import ReCUSign, SteSign

    kernels = {}
    for name in ("recu", "standardize_only", "ste", "recu_constraint", "tau_fixed_0.99", "full_precision"):
        keras.utils.set_random_seed(7)
        model, callbacks, names = ablation_one.build_variant(name, (8, 8, 1), 3, epochs=4)
        assert len(names) == 18
        layer = model.get_layer(names[0])
        kernels[name] = keras.ops.convert_to_numpy(layer.kernel)
        quantizer = getattr(layer, "kernel_quantizer", None)
        if name == "ste":
            assert isinstance(quantizer, SteSign) and quantizer.clip_value is None
        elif name == "full_precision":
            assert quantizer is None and not callbacks
        else:
            assert isinstance(quantizer, ReCUSign)
            assert quantizer.options.clamp == (name not in ("standardize_only", "recu_constraint"))
        assert isinstance(layer.kernel.constraint, ReCUClamp) == (name == "recu_constraint")
        assert [type(c).__name__ for c in callbacks] == (
            ["TauScheduler"] if name in ("recu", "recu_constraint") else [])
        if name == "tau_fixed_0.99":
            assert quantizer.tau == pytest.approx(0.99)
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(kernel, kernels["recu"], err_msg=name)


def test_recorder_timer_measures_epochs_and_gives_up_before_the_deadline(capsys):
    import time
    import types

    from benchmarks.recorder import GIVE_UP_AFTER, Recorder

    epochs = GIVE_UP_AFTER + 3
    recorder = Recorder(ablation_design.VARIANTS["recu"], 0.85, epochs=epochs, deadline=time.time() + 0.6,
                        hist_range=(-1, 1), hist_bins=4, layer_names=[], label="fake")
    timer, model = recorder.timer(), types.SimpleNamespace(stop_training=False)
    timer.set_model(model)
    timer.on_train_begin()
    judged = GIVE_UP_AFTER  # 0-based epoch whose end first has GIVE_UP_AFTER intervals behind it
    for epoch in range(judged + 1):
        timer.on_epoch_begin(epoch)
        time.sleep(0.2 if epoch == 0 else 0.1)  # the first epoch compiles
        timer.on_epoch_end(epoch, {"val_accuracy": 0.5})
        # nothing is judged on fewer intervals; then 2 epochs x ~0.1 s left, past the deadline
        assert recorder.gave_up == model.stop_training == (epoch == judged)
    assert len(recorder.epoch_seconds) == judged + 1 and len(recorder.wall_seconds) == judged
    assert all(0.09 < s < 0.5 for s in recorder.wall_seconds)  # the compiling first epoch is not in it
    rows = [{"flip_ratio": 0.1}, {"flip_ratio": 0.3}]
    assert recorder.final(rows)["seconds_per_epoch"] == pytest.approx(np.median(recorder.wall_seconds), abs=1e-3)
    assert recorder.final(rows)["flip_ratio_mean"] == pytest.approx(0.2)
    assert f"fake: epoch 1/{epochs} val acc 50.00%" in capsys.readouterr().out


def test_report_tables_against_hand_computed_numbers(tmp_path):
    files = ablation_design.stores(tmp_path, "full-e10")
    accuracies = {"recu": (0.90, 0.91, 0.92), "standardize_only": (0.88, 0.89, 0.90),
                  "ste": (0.70, 0.72, 0.74), "full_precision": (0.93, 0.93, 0.94)}
    files["runs"].append(_row(v, s, accuracy=a, dead_share=0.1, dead_share_085=0.3)
                         for v, values in accuracies.items() for s, a in enumerate(values))
    files["epochs"].append({"run_id": f"{v}-{s}-0.1", "variant": v, "seed": s, "epoch": e, "val_accuracy": 0.5 + e / 10,
                            "dead_share": 0.1, "tau": 0.85} for v in accuracies for s in range(3) for e in (1, 2))
    files["histograms"].append({"run_id": f"{v}-0-0.1", "variant": v, "seed": 0, "stage": stage, "epoch": 0,
                                "low": -12, "high": 12, "underflow": 0, "overflow": 0, "counts": "1 2 3 2 1"}
                               for v in accuracies for stage in ("start", "end"))
    from benchmarks.ablation_report import report

    text = report("full-e10", tmp_path, tmp_path / "figures").read_text()
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # std 1 point for recu
    assert f"| recu | 3 | 91.00 ± 1.00 [{91 - half:.2f}, {91 + half:.2f}] | 10.00 | 30.00 |" in text
    # recu - standardize_only: +2 points, equal variances 1e-4, se = sqrt(2/3) points, df = 4
    t = 2 / math.sqrt(2 / 3)
    from scipy import stats

    assert f"| recu − standardize_only | +2.00 |" in text
    p = 2 * stats.t.sf(t, 4)  # 0.070; three pairs tested (recu-std, std-ste, recu-fp): Bonferroni x 3
    assert f"| {p:.3f} | {3 * p:.3f} | within the seed spread (n=3+3, df=4.0) |" in text
    assert "Best 1w1a variant: recu at 91.00%; the float twin scores 93.33%, 2.33 points above it." in text
    for figure in ("accuracy", "curves", "histograms"):
        size = (tmp_path / "figures" / f"ablation-full-e10-{figure}.png").stat().st_size
        assert 0 < size < 300_000


def test_engine_worker_protocol_and_failure():
    pytest.importorskip("torch")
    from benchmarks.engines import Worker

    worker = Worker("authors-torch", batch=2, warmup=0)
    try:
        facts = worker.ready()
        assert facts["engine"] == "authors-torch" and facts["first_step_s"] >= 0
        assert not facts["tensorflow_imported"]
        times = worker(3)
        assert len(times) == 3 and all(t > 0 for t in times)
    finally:
        assert worker.close() == 0
    slow = Worker("authors-torch", batch=2)
    with pytest.raises(TimeoutError, match="did not answer in time"):
        slow.ready(timeout_s=0.01)  # still importing torch
    assert slow.close(wait_s=0.1) != 0  # killed
    with pytest.raises(ValueError, match="Unknown engine"):
        Worker("keras-nope", batch=2)


@pytest.mark.jax_only  # once, in the JAX pass: the worker's backend is torch whatever the pass
def test_the_compiled_torch_engine_fails_in_one_line_without_a_compiler(monkeypatch):
    """torch.compile's engine on a machine where inductor cannot build C++: one recorded line, at once."""
    pytest.importorskip("torch")
    from benchmarks.engines import EngineUnavailable, Worker

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # a cached kernel would need no compiler
    worker = Worker("authors-torch-compiled", batch=2)
    try:
        with pytest.raises(EngineUnavailable, match=r"^torch.compile \(inductor\) cannot compile on this machine: "):
            worker.ready(timeout_s=120)
    finally:
        assert worker.close(wait_s=5) == 1


@pytest.mark.jax_only
def test_inductor_compiles_here_and_the_bf16_engine_takes_its_policy():
    """The C++ toolchain torch.compile needs on CPU works here; keras-jax-bf16 builds under mixed_bfloat16."""
    import shutil

    pytest.importorskip("torch")
    from benchmarks.engines import ENGINE_POLICIES, ENGINES, check_inductor

    assert {"keras-jax-bf16", "authors-torch-compiled"} <= set(ENGINES)
    assert ENGINE_POLICIES["keras-jax-bf16"] == "mixed_bfloat16"
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the engine fails in one line (test above)")
    check_inductor()


# --- the authors' model ----------------------------------------------------------------------


def test_authors_binarize_conv_computes_the_reference_formulas():
    torch = pytest.importorskip("torch")
    from benchmarks.authors_resnet20_torch import BinarizeConv2d, build

    conv = BinarizeConv2d(2, 3, kernel_size=3, padding=1, bias=False)
    conv.tau.fill_(0.9)
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    y = conv(x)
    w = conv.weight.detach().double()
    w1 = (w - w.mean([1, 2, 3], keepdim=True)) / (w.var([1, 2, 3], keepdim=True, unbiased=True) + 1e-5).sqrt() \
        * 2 * math.sqrt(2)
    q = -w1.abs().mean() * math.log(2 - 2 * 0.9)
    a0 = x.detach().double() / (x.detach().double().var([1, 2, 3], keepdim=True) + 1e-5).sqrt()
    expected = torch.nn.functional.conv2d(torch.sign(a0), torch.sign(w1.clamp(-q, q)), padding=1) \
        * conv.alpha.detach().double()
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.shape == x.shape and conv.weight.grad.shape == conv.weight.shape
    model = build(tau=0.85)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 270_522  # as resnet20_1w1a
    assert all(float(m.tau) == pytest.approx(0.85) for m in model.modules() if isinstance(m, BinarizeConv2d))


#: A record of an earlier smoke run in the format of before `runs` (one environment, one model): the run
#: below merges into it. Its one row is made up for the test; no record holds it.
EARLIER_SMOKE = {"benchmark": "imagenet_train", "model": "imagenet_resnet18_1w1a", "size": 32, "batch": 4,
                 "classes": 10, "smoke": True, "environment": {"command": "earlier", "device": "cpu"},
                 "rows": [{"engine": "authors-torch", "dtype": "float32", "feed": "device", "batch": 4,
                           "images_per_s": 1.0}]}


@pytest.fixture(scope="module")
def imagenet_smoke(tmp_path_factory):
    """One `benchmarks.imagenet_train --smoke` run on CPU (JAX), merged into EARLIER_SMOKE: its record."""
    folder = tmp_path_factory.mktemp("imagenet-train")
    earlier, out = folder / "earlier.json", folder / "imagenet-train.json"
    earlier.write_text(json.dumps(EARLIER_SMOKE))
    command = module_command("benchmarks.imagenet_train", "--smoke", "--rows", "pipeline,resnet18,two-stage",
                             "--dtypes", "float32", "--merge", earlier, "--json", out)
    done = subprocess.run(command, env=module_env(KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.jax_only  # a JAX subprocess of its own: runs once, in the JAX pass of the suite
def test_imagenet_train_smoke_writes_the_record(imagenet_smoke):
    """`benchmarks.imagenet_train --smoke` on CPU: the pipeline and JAX rows of both recipes, projections, record."""
    record = imagenet_smoke
    assert record["size"] == 32 and record["batch"] == 4 and record["smoke"] is True
    assert record["authors"]["min_per_epoch"] == 28.0 and record["imagenet_train_images"] == 1_281_167
    assert "command" in record["environment"] and "device" in record["environment"]
    rows = {(r["model"], r["engine"], r["dtype"], r["feed"]): r for r in record["rows"]}
    vanilla, two_stage = "imagenet_resnet18_1w1a", "imagenet_resnet18_two_stage"
    assert set(rows) == {(None, "input-pipeline", "uint8->float32", "pil")} | {
        (model, "keras_recu-jax", "float32", feed) for model in (vanilla, two_stage) for feed in ("device", "pil")
    } | {(vanilla, "authors-torch", "float32", "device")}
    for row in (row for row in rows.values() if row["run"] == 1):  # this run's (run 0: EARLIER_SMOKE's)
        assert "error" not in row, row
        assert row["images_per_s"] > 0 and row["min_per_epoch"] > 0
        assert row["vanilla_hours"] == pytest.approx(row["min_per_epoch"] * 200 / 60, rel=0.02, abs=0.1)
        assert row["two_stage_hours"] == pytest.approx(row["min_per_epoch"] * 512 / 60, rel=0.02, abs=0.1)
    assert rows[(vanilla, "keras_recu-jax", "float32", "device")]["loss_finite"] is True
    stage2 = rows[(two_stage, "keras_recu-jax", "float32", "device")]
    assert stage2["loss_finite"] is True and stage2["stage"] == 2 and stage2["teacher"].startswith("tiny")


@pytest.mark.jax_only
def test_imagenet_train_merges_into_the_earlier_record(imagenet_smoke):
    """The earlier run's row is kept as run 0; this run's rows are run 1, with its command and device."""
    record = imagenet_smoke
    assert [run["command"] for run in record["runs"]][0] == "earlier" and record["commands"][0] == "earlier"
    assert record["runs"][1]["rows"] == ["pipeline", "resnet18", "two-stage"] and record["runs"][1]["device"] == "cpu"
    kept = [row for row in record["rows"] if row["engine"] == "authors-torch"]
    assert kept == [{**EARLIER_SMOKE["rows"][0], "model": "imagenet_resnet18_1w1a", "size": 32, "classes": 10,
                     "run": 0}]
    assert {row["run"] for row in record["rows"] if row["engine"] != "authors-torch"} == {1}


@pytest.mark.jax_only
def test_the_two_stage_rows_build_the_recipes_teacher_under_the_policy():
    """Stage 2 as build_model makes it: a Distiller with the recipe's ResNet50 (random weights), L2Adam, the policy."""
    import argparse

    from benchmarks.imagenet_models import two_stage_model

    args = argparse.Namespace(size=32, batch=4, classes=10, teacher="ResNet50")
    model = two_stage_model(args, "mixed_bfloat16")
    assert type(model).__name__ == "Distiller" and model.student.name == "imagenet_resnet18_two_stage"
    assert model.teacher.name == "teacher_resnet50" and model.teacher.outputs[0].shape[-1] == 1000
    assert model.teacher.layers[-1].dtype_policy.name == "mixed_bfloat16"
    assert type(model.optimizer).__name__ == "L2Adam"


def test_the_h200_record_merges_with_its_old_figures_untouched():
    """Merging new rows into the committed record keeps every old row's figures; other devices are refused."""
    from benchmarks.imagenet_rows import MergeRefused, as_runs, finish, merge

    old = json.loads((ROOT / "benchmarks" / "results" / "imagenet-train-h200.json").read_text())
    row = {"model": "imagenet_resnet18_two_stage", "engine": "keras_recu-jax", "dtype": "float32",
           "feed": "device", "run": 0, "images_per_s": 100.0}
    new = finish({"size": 224, "smoke": False}, [row], [{"device": "NVIDIA H200", "command": "new"}])
    merged = merge(old, new)
    assert merged["rows"][:-1] == as_runs(old)["rows"] and len(merged["rows"]) == len(old["rows"]) + 1
    assert all(a["images_per_s"] == b["images_per_s"] for a, b in zip(merged["rows"], old["rows"]))
    assert merged["rows"][-1]["run"] == 1 and merged["commands"] == [old["environment"]["command"], "new"]
    assert merged["bf16_speedup"] == {"imagenet_resnet18_1w1a": old["bf16_speedup"]}
    with pytest.raises(MergeRefused, match="different devices"):
        merge(old, finish({"size": 224, "smoke": False}, [row], [{"device": "cpu"}]))
    with pytest.raises(MergeRefused, match="'smoke'"):
        merge(old, finish({"size": 224, "smoke": True}, [row], [{"device": "NVIDIA H200"}]))


def test_a_run_cut_short_leaves_a_merged_record_marked_partial(tmp_path):
    """After each row the record so far is written, merged and marked partial; a failing row records its error."""
    from benchmarks.imagenet_rows import Rows, finish, merge

    old = json.loads((ROOT / "benchmarks" / "results" / "imagenet-train-h200.json").read_text())
    path = tmp_path / "partial.json"
    run = {"device": "NVIDIA H200", "command": "new"}
    rows = Rows(partial=path, record=lambda measured: merge(old, finish({"size": 224, "smoke": False}, measured, [run])))
    labels = {"model": "imagenet_resnet18_two_stage", "engine": "keras_recu-jax", "feed": "device"}
    rows.add({**labels, "dtype": "float32"}, lambda: {"images_per_s": 100.0})
    rows.add({**labels, "dtype": "mixed_bfloat16"}, lambda: {"images_per_s": 1 / 0})
    written = json.loads(path.read_text())
    assert written["partial"] is True and len(written["rows"]) == len(old["rows"]) + 2
    assert written["rows"][-2]["min_per_epoch"] == round(1_281_167 / 100 / 60, 2)
    assert written["rows"][-1]["error"].startswith("ZeroDivisionError") and written["rows"][-1]["run"] == 1
    assert "partial" not in merge(written, finish({"size": 224, "smoke": False}, [], [run]))
