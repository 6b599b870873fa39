"""The benchmark scripts' code paths on toy budgets (no timing asserted)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    return runpy.run_path(str(ROOT / "benchmarks" / name), run_name="benchmark")


@pytest.fixture(scope="module")
def ablation():
    return _script("ablation.py")


def test_ablation_tiny_run_writes_results_table_and_plots(tmp_path, ablation, capsys):
    out = tmp_path / "ablation"
    report = ablation["main"]([
        "--dataset", "synthetic", "--limit-train", "64", "--limit-test", "32", "--epochs", "1",
        "--seeds", "1", "--batch-size", "32", "--out", str(out),
    ])
    variants = list(ablation["VARIANTS"])
    for name in ("results.json", "table.md", "accuracy.png", "diagnostics.png"):
        assert (out / name).stat().st_size > 0, name

    results = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in results["runs"]] == variants
    assert results["command"].startswith("PYTHONPATH=. .venv/bin/python benchmarks/ablation.py --dataset synthetic")
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(variants)
    for name in variants:
        assert any(line.startswith(f"| {name} |") for line in table), name

    runs = {r["variant"]: r for r in results["runs"]}
    for name, run in runs.items():
        assert 0.0 <= run["test_accuracy"] <= 1.0 and len(run["epoch_seconds"]) == 1
        if name == "full_precision":
            assert run["diagnostics"] is None and run["kernels_at_end"]["binary_convs"] == 0
        else:
            assert all(len(run["diagnostics"][key]) == 1 for key in ablation["PLOTTED"]), name
            assert run["kernels_at_end"]["binary_convs"] == 18
    # The swaps took: the quantizers and constraints that each variant names are
    # the ones the model holds, and the replaced ReCUSign left with its tau.
    assert runs["ste"]["kernels_at_end"]["kernel_quantizers"] == ["SteSign"]
    assert runs["ste"]["kernels_at_end"]["tau_variables"] == 0
    assert runs["standardize_only"]["kernels_at_end"]["kernel_quantizers"] == ["ReCUSign(tau=0.99999)"]
    assert runs["clamp_fixed"]["kernels_at_end"]["kernel_quantizers"] == ["ReCUSign(tau=0.85000)"]
    assert runs["recu"]["kernels_at_end"]["kernel_quantizers"] == ["ReCUSign(tau=0.85000)"]  # epoch 0 of 1
    constrained = runs["recu_constraint"]["kernels_at_end"]
    assert constrained["kernel_quantizers"] == ["ReCUSign(tau=0.99999)"]  # not touched by the scheduler
    assert constrained["kernel_constraints"] == ["ReCUClamp(tau=0.85000)"]
    # The "no clamp" of standardize_only cuts nothing; the tau-0.85 clamp does.
    assert runs["standardize_only"]["diagnostics"]["dead_share"] == [0.0]
    assert runs["clamp_fixed"]["diagnostics"]["dead_share"][0] > 0.0
    assert runs["standardize_only"]["diagnostics"]["ref_dead_share"][0] > 0.0
    assert runs["recu_constraint"]["history"]["tau"] == pytest.approx([0.85])
    assert set(report["summary"]) == set(variants)
    assert "command: PYTHONPATH=. .venv/bin/python benchmarks/ablation.py" in capsys.readouterr().out


def test_ablation_swapped_quantizer_is_tracked_and_binarizes(ablation):
    """The quantizer assigned after build replaces the old one as a tracked sub-layer."""
    import keras
    import numpy as np

    model, _ = ablation["build_variant"]("ste", (8, 8, 1), 3, epochs=1)
    layer = ablation["binary_convs"](model)[0]
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    binarized = keras.ops.convert_to_numpy(layer.kernel_quantizer(kernel))
    np.testing.assert_array_equal(binarized, np.where(kernel >= 0, 1.0, -1.0))
    sublayers = list(layer._flatten_layers(include_self=False))
    assert layer.kernel_quantizer in sublayers
    assert not any(type(s).__name__ == "ReCUSign" for s in sublayers)


def test_ablation_quick_and_full_settings(ablation):
    parse = ablation["parse_args"]
    quick = parse(["--quick"])
    assert (quick.epochs, quick.seeds, quick.limit_train, quick.limit_test, quick.batch_size) == (
        3, 2, 7000, 2000, 128)
    full = parse([])
    assert (full.epochs, full.seeds, full.limit_train, full.batch_size, full.warmup_epochs) == (100, 3, None, 256, 5)
    assert parse(["--quick", "--epochs", "7", "--variants", "ste,recu"]).variants == ["ste", "recu"]
    with pytest.raises(SystemExit):
        parse(["--variants", "nope"])


def test_train_step_resnet20_quick_path_runs(capsys):
    namespace = _script("train_step.py")
    namespace["main"](["--model", "resnet20", "--quick", "--jit", "off"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert result["settings"]["model"] == "resnet20"
    variants = result["runs"][0]["variants"]
    assert set(variants) == {"floor", "recu"}
    assert all(v["steps_per_s"] > 0 for v in variants.values())
    assert "steps per second" in out

    floor = namespace["build_resnet20"]("floor", 0)
    convs = [layer for layer in floor.layers if isinstance(layer, namespace["ReCUConv2D"])]
    assert len(convs) == 18
    assert all(c.input_quantizer is namespace["ste_input_sign"] for c in convs)
    assert all(c.kernel_quantizer is namespace["ste_kernel_sign"] for c in convs)
    assert not any(v.name == "tau" for v in floor.variables)
