"""Importing the authors' PyTorch checkpoints: `keras_recu.torch_import` and `keras-recu import-torch`.

The reference is `tests/torch_models.py`, a transcription of the authors'
models with their module names. Each test randomizes every parameter and
buffer of a transcription (BatchNorm statistics, alpha, tau, the two-stage
model's biases and PReLU), saves its state_dict with `torch.save`, imports the
file and compares the Keras model's eval-mode outputs with the transcription's:
`relative_difference` = max |Keras - PyTorch| over max |PyTorch logits|, at
most 1e-5. Both compute in float32.
"""

import json
import re

import keras
import numpy as np
import pytest
import torch

from keras_recu import models
from keras_recu.layers import ReCUConv2D
from keras_recu.torch_import import (
    TorchImportError,
    UntrainedTauError,
    guess_model_name,
    import_torch_checkpoint,
    keras_model_for,
    load_torch_state_dict,
    read_torch_checkpoint,
    torch_name,
)
from tests import torch_models
from tests.run_utils import cli, no_traceback

# The transcriptions' latent kernels come from PyTorch's own init: the same in every run.
pytestmark = pytest.mark.usefixtures("seeded_torch")

TOLERANCE = 1e-5


def _images(shape, count=2, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype("float32")


def _keras_logits(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def _transcription(name, seed=0, **kwargs):
    return torch_models.randomize_(torch_models.TORCH_MODELS[name](**kwargs), seed=seed).eval()


# --------------------------------------------------------------------------- every model, through a file


# (model, input shape, checkpoint form): CIFAR ResNet-18 and VGG-small only
# work at 32x32 in the authors' code (avg_pool2d(4), a 512 * 4 * 4 fc);
# ResNet-20 pools globally at any size.
CIFAR_CASES = [
    ("resnet20_1w1a", (16, 16, 3), "raw"),
    ("resnet20_1w1a", (16, 16, 3), "wrapped"),
    ("resnet18_1w1a", (32, 32, 3), "wrapped"),
    ("vgg_small_1w1a", (32, 32, 3), "raw"),
]


@pytest.mark.parametrize("name,shape,form", CIFAR_CASES, ids=lambda v: v if isinstance(v, str) else "x".join(map(str, v)))
def test_cifar_checkpoint_imports_with_the_authors_outputs(tmp_path, name, shape, form):
    net = _transcription(name, seed=len(form))
    path = tmp_path / "checkpoint.pth.tar"
    torch_models.save_checkpoint(net, path, form)

    model = import_torch_checkpoint(path, name, input_shape=shape[:2])

    assert model.name == name and tuple(model.inputs[0].shape[1:]) == shape
    images = _images(shape)
    difference = torch_models.relative_difference(_keras_logits(model, images), torch_models.reference_logits(net, images))
    assert difference < TOLERANCE
    # tau comes from each conv's buffer, not from the builder's default.
    taus = {layer.name: layer.tau for layer in model.layers if isinstance(layer, ReCUConv2D)}
    state = net.state_dict()
    for layer_name, tau in taus.items():
        assert tau == pytest.approx(float(state[f"{torch_name(model, layer_name)}.tau"]), abs=1e-7)


# The ImageNet ResNet-18s through a file, at 64x64 (their forward at 224 is
# test_imagenet_models', with the same loader): the vanilla model's
# AvgPool2d(7), global at 224, is made global here too. ResNet-34: its
# weights mapping here, its forward in test_imagenet_models.
IMAGENET_CASES = [("imagenet_resnet18_1w1a", "wrapped"), ("imagenet_resnet18_two_stage", "raw")]


@pytest.mark.parametrize("name,form", IMAGENET_CASES)
def test_imagenet_checkpoint_imports_with_the_authors_outputs(tmp_path, name, form):
    net = torch_models.pool_globally_(_transcription(name, seed=3))
    path = tmp_path / "checkpoint.pth"
    torch_models.save_checkpoint(net, path, form)

    model = import_torch_checkpoint(path, name, input_shape=(64, 64))

    assert tuple(model.inputs[0].shape[1:]) == (64, 64, 3) and model.outputs[0].shape[-1] == 1000
    images = _images((64, 64, 3))
    difference = torch_models.relative_difference(_keras_logits(model, images), torch_models.reference_logits(net, images))
    assert difference < TOLERANCE


def test_the_default_input_of_an_imagenet_model_is_224(tmp_path):
    net = torch_models.imagenet_resnet18_two_stage(num_classes=7)
    model = keras_model_for(net.state_dict(), "imagenet_resnet18_two_stage", tau=0.9)
    assert tuple(model.inputs[0].shape[1:]) == (224, 224, 3) and model.outputs[0].shape[-1] == 7


def _assert_every_variable_holds_its_tensor(model, net):
    """Each Keras weight equals its PyTorch tensor in Keras' layout (an independent re-derivation)."""
    state = {key: value.detach().numpy() for key, value in net.state_dict().items()}
    checked = set()
    for layer in model.layers:
        for variable in layer.weights:
            if variable.name == "tau":
                continue
            prefix = torch_name(model, layer.name)
            key, expected = _torch_counterpart(layer, variable, prefix, state)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected, err_msg=variable.path)
            checked.add(key)
    unused = {key for key in state if not key.endswith((".num_batches_tracked", ".tau"))} - checked
    assert unused == set()


def _torch_counterpart(layer, variable, prefix, state):
    bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    if isinstance(layer, keras.layers.BatchNormalization):
        key = f"{prefix}.{bn[variable.name]}"
        return key, state[key]
    if variable.name == "kernel" and isinstance(layer, keras.layers.Conv2D):
        key = f"{prefix}.weight"
        return key, np.einsum("oihw->hwio", state[key])
    if variable.name == "kernel" and isinstance(layer, keras.layers.Dense):
        key = f"{prefix}.weight"
        return key, state[key].T
    if variable.name == "alpha" and isinstance(layer, keras.layers.PReLU):
        key = f"{prefix}.weight"
        return key, state[key].reshape(1, 1, -1)
    key = f"{prefix}.{variable.name}"  # alpha (C, 1, 1), bias
    return key, state[key].reshape(-1)


def test_imagenet_resnet34_weights_all_map(tmp_path):
    net = _transcription("imagenet_resnet34_1w1a", seed=4)
    path = tmp_path / "resnet34.pth.tar"
    torch_models.save_checkpoint(net, path, "wrapped")

    model = import_torch_checkpoint(path, "imagenet_resnet34_1w1a")

    _assert_every_variable_holds_its_tensor(model, net)
    assert sum(isinstance(layer, ReCUConv2D) for layer in model.layers) == 32


# --------------------------------------------------------------------------- the mapping on its own


def test_vgg_small_fc_rows_go_from_chw_to_hwc():
    net = _transcription("vgg_small_1w1a")
    model = keras_model_for(net.state_dict(), "vgg_small_1w1a")
    kernel = keras.ops.convert_to_numpy(model.get_layer("fc").kernel)
    weight = net.fc.weight.detach().numpy()  # (10, 512 * 4 * 4), columns in (C, H, W) order
    c, h, w = 5, 2, 3
    np.testing.assert_array_equal(kernel[(h * 4 + w) * 512 + c], weight[:, c * 16 + h * 4 + w])


def test_every_transcription_is_recognized_from_its_keys():
    for name, build in torch_models.TORCH_MODELS.items():
        keys = {f"module.{key}": None for key in build().state_dict()}
        assert guess_model_name(keys) == name
    assert guess_model_name({"encoder.weight": None}) is None


def _small_resnet20():
    net = _transcription("resnet20_1w1a", seed=5)
    return net, models.resnet20_1w1a(input_shape=(8, 8, 3), padding="torch")


def _weights(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def test_a_checkpoint_that_does_not_fit_fails_listing_every_problem_and_changes_nothing():
    net, model = _small_resnet20()
    before = _weights(model)
    state = dict(net.state_dict())
    del state["layer2.1.bn1.running_var"]
    state["layer9.0.conv1.weight"] = torch.zeros(3)
    state["linear.weight"] = torch.zeros(10, 32)
    state["layer1.0.conv2.alpha"] = torch.full((16, 1, 1), float("nan"))

    with pytest.raises(TorchImportError) as raised:
        load_torch_state_dict(model, state)

    message = str(raised.value)
    assert "missing from the checkpoint: layer2.1.bn1.running_var" in message
    assert "in the checkpoint but not in the model: layer9.0.conv1.weight" in message
    assert "linear.weight has shape (10, 32), head_dense/kernel needs (10, 64)" in message
    assert "NaN or infinite values in: layer1.0.conv2.alpha" in message
    assert "\n" not in message
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


def test_a_checkpoint_of_another_model_names_the_model_it_looks_like():
    net = _transcription("vgg_small_1w1a")
    with pytest.raises(TorchImportError, match="looks like a checkpoint of vgg_small_1w1a"):
        keras_model_for(net.state_dict(), "resnet20_1w1a")
    resnet20 = _transcription("resnet20_1w1a")
    with pytest.raises(TorchImportError, match=r"looks like vgg_small_1w1a|pass that model|resnet20_1w1a; pass"):
        load_torch_state_dict(models.vgg_small_1w1a(), resnet20.state_dict())


def test_an_untrained_tau_needs_an_explicit_one():
    net = torch_models.resnet20_1w1a()  # tau buffers at 1.0, as the authors' constructor leaves them
    model = models.resnet20_1w1a(input_shape=(8, 8, 3), padding="torch")
    with pytest.raises(UntrainedTauError, match=r"^18 tau buffers \(layer1\.0\.conv1\.tau first\) hold 1") as raised:
        load_torch_state_dict(model, net.state_dict())
    assert len(str(raised.value)) < 300 and raised.value.keys[0] == "layer1.0.conv1.tau"
    state = {**net.state_dict(), "layer1.0.conv2.tau": torch.tensor([0.3])}  # a tau that is wrong, not untrained
    with pytest.raises(TorchImportError, match=r"layer1\.0\.conv2\.tau = 0\.3 .*; 17 tau buffers at 1") as raised:
        load_torch_state_dict(model, state)
    assert not isinstance(raised.value, UntrainedTauError)

    load_torch_state_dict(model, net.state_dict(), tau=0.9)

    taus = [layer.tau for layer in model.layers if isinstance(layer, ReCUConv2D)]
    assert len(taus) == 18 and taus == pytest.approx([0.9] * 18)


def test_numpy_arrays_load_like_tensors():
    net, model = _small_resnet20()
    load_torch_state_dict(model, {key: value.numpy() for key, value in net.state_dict().items()})
    _assert_every_variable_holds_its_tensor(model, net)


def test_reading_a_file_that_is_not_a_checkpoint_fails_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        read_torch_checkpoint(tmp_path / "missing.pth")
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint\n")
    with pytest.raises(TorchImportError, match=r"notes\.pth is not a PyTorch checkpoint: .* this file is a text file") as raised:
        read_torch_checkpoint(path)
    assert "\n" not in str(raised.value)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(TorchImportError, match=r"empty\.pth is not a PyTorch checkpoint: .* this file is empty"):
        read_torch_checkpoint(tmp_path / "empty.pth")
    torch.save({"w": torch.zeros(2)}, tmp_path / "whole.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:200])  # a zip cut short
    with pytest.raises(TorchImportError, match=r"cannot read .*cut\.pth as a PyTorch checkpoint"):
        read_torch_checkpoint(tmp_path / "cut.pth")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": np.zeros(3)}, tmp_path / "array.pth")
    with pytest.raises(TorchImportError, match=r"it pickles numpy\.\S+, which a weights-only load does not run"):
        read_torch_checkpoint(tmp_path / "array.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(TorchImportError, match="holds a list, not a state_dict"):
        read_torch_checkpoint(tmp_path / "list.pth")


def test_a_checkpoint_with_numpy_and_tensor_scalars_reads_in_both_file_formats(tmp_path):
    state = {"conv1.weight": torch.ones(2, 3, 3, 3)}
    entries = {"epoch": np.int64(7), "best_prec1": np.float64(91.25), "best_prec5": torch.tensor(99.5)}
    for legacy in (False, True):  # the authors' PyTorch 1.1 wrote the legacy (non-zip) format
        path = tmp_path / f"legacy{legacy}.pth.tar"
        torch.save({**entries, "state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
        arrays, info = read_torch_checkpoint(path)
        assert info == {"epoch": 7, "best_prec1": 91.25, "best_prec5": 99.5}
        np.testing.assert_array_equal(arrays["conv1.weight"], np.ones((2, 3, 3, 3)))


# --------------------------------------------------------------------------- keras-recu import-torch


def test_cli_imports_a_checkpoint_that_evaluate_then_takes(tmp_path):
    # One input channel, so that the offline synthetic set (16x16x1) fits.
    net = _transcription("resnet20_1w1a", seed=6, in_channels=1)
    checkpoint = tmp_path / "model_best.pth.tar"
    torch_models.save_checkpoint(net, checkpoint, "wrapped")
    run = tmp_path / "run"

    imported = cli(["import-torch", str(checkpoint), "--model", "resnet20_1w1a", "--out", str(run),
                    "--input-shape", "16,16"], label="import-torch")
    assert imported.returncode == 0, imported.stderr[-3000:]
    no_traceback(imported)
    info = json.loads((run / "import.json").read_text())
    assert info["model"] == "resnet20_1w1a" and info["input_shape"] == [16, 16, 1]
    assert info["checkpoint_entries"]["epoch"] == 3 and info["padding"] == "torch"

    evaluated = cli(["evaluate", str(run), "--dataset", "synthetic"], label="evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert result["dataset"] == "synthetic" and 0.0 <= result["test_accuracy"] <= 1.0

    # The saved file holds the authors' function, not only their weights.
    model = keras.models.load_model(run / "model.keras")
    images = _images((16, 16, 1))
    difference = torch_models.relative_difference(_keras_logits(model, images), torch_models.reference_logits(net, images))
    assert difference < TOLERANCE


@pytest.fixture(scope="module")
def resnet20_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "resnet20.pth"
    torch_models.save_checkpoint(_transcription("resnet20_1w1a"), path, "raw")
    return path


@pytest.mark.parametrize(
    "arguments,expected",
    [
        (["--model", "resnet21_1w1a"], r"unknown --model 'resnet21_1w1a'; choose one of: .*resnet20_1w1a"),
        (["--model", "vgg_small_1w1a"], r"looks like a checkpoint of resnet20_1w1a: pass that model"),
        (["--model", "resnet20_1w1a", "--input-shape", "16,16,3,1"], r"expected H,W or H,W,C"),
        (["--model", "resnet20_1w1a", "--input-shape", "31,31"], r"cannot build resnet20_1w1a at input shape \(31, 31\)"),
        ("missing", r"no such checkpoint file: .*missing\.pth"),
    ],
    ids=["unknown-model", "other-model", "bad-shape", "odd-size", "missing-file"],
)
def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys, resnet20_checkpoint, arguments, expected):
    checkpoint = tmp_path / "missing.pth" if arguments == "missing" else resnet20_checkpoint
    flags = ["--model", "resnet20_1w1a"] if arguments == "missing" else arguments

    status = _cli_status(["import-torch", str(checkpoint), *flags, "--out", str(tmp_path / "run")])

    assert status == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(expected, lines[0]), lines
    assert not (tmp_path / "run" / "model.keras").exists()


def _cli_status(argv):
    """The exit status of `keras-recu ARGV` run in this process (argparse exits, commands return)."""
    from keras_recu.app.cli import main

    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_cli_refuses_to_overwrite_an_imported_run(tmp_path, capsys, resnet20_checkpoint):
    run = tmp_path / "run"
    argv = ["import-torch", str(resnet20_checkpoint), "--model", "resnet20_1w1a", "--out", str(run), "--input-shape", "8,8"]
    assert _cli_status(argv) == 0
    assert _cli_status(argv) == 2
    assert "already holds model.keras; choose another --out" in capsys.readouterr().err


def test_the_importer_imports_torch_and_tensorflow_only_to_read_a_file():
    from tests.test_layout import TF_BOUND, _is_under, _module_level_imports

    at_import = [name for _, name in _module_level_imports("torch_import")]
    assert not [name for name in at_import if _is_under(name, (*TF_BOUND, "torch"))]


# --------------------------------------------------------------------------- what a user mistyping sees


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("untrained") / "untrained.pth"
    torch_models.save_checkpoint(torch_models.resnet20_1w1a(), path, "raw")  # tau buffers at 1.0
    return path


def _one_error_line(result):
    assert result.returncode == 2, result.stderr[-3000:]
    lines = no_traceback(result)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("tau", ["nan", "1", "0.5", "abc"])
def test_cli_refuses_a_bad_tau_naming_the_flag_before_reading_anything(tmp_path, capsys, resnet20_checkpoint, tau):
    # In this process: argparse's one line, from the --tau type (the subprocess test below runs one of them).
    status = _cli_status(["import-torch", str(resnet20_checkpoint), "--model", "resnet20_1w1a", "--tau", tau,
                          "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"argument --tau: expected a number in the open interval (0.5, 1), e.g. 0.85, got '{tau}'" in err
    assert "input shape" not in err and not (tmp_path / "run").exists()


def test_import_run_refuses_a_bad_tau_before_the_input_shape():
    from keras_recu.app.import_torch import ImportRunError, import_run

    with pytest.raises(ImportRunError, match=r"^--tau must be a number in the open interval \(0\.5, 1\)"):
        import_run("missing.pth", "resnet20_1w1a", "unused", tau=float("nan"))


def test_cli_user_errors_as_a_user_sees_them(tmp_path, untrained_checkpoint):
    """Three mistakes, each a fresh `keras-recu import-torch`: one line naming the file or flag, exit 2."""
    common = ["--model", "resnet20_1w1a", "--input-shape", "8,8"]
    line = _one_error_line(cli(["import-torch", str(untrained_checkpoint), *common, "--tau", "nan",
                                "--out", str(tmp_path / "a")], label="import-torch --tau nan"))
    assert "argument --tau: expected a number in the open interval (0.5, 1)" in line and "'nan'" in line, line
    assert "input shape" not in line

    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not weights\n")
    line = _one_error_line(cli(["import-torch", str(notes), *common, "--out", str(tmp_path / "b")],
                               label="import-torch text file"))
    assert f"{notes} is not a PyTorch checkpoint" in line and "is a text file" in line, line
    assert "(101)" not in line

    line = _one_error_line(cli(["import-torch", str(untrained_checkpoint), *common, "--out", str(tmp_path / "c")],
                               label="import-torch untrained"))
    assert line.startswith(f"keras-recu import-torch: {untrained_checkpoint} is an untrained model's"), line
    assert "its 18 tau buffers (layer1.0.conv1.tau first) hold 1" in line and "Pass --tau 0.85" in line, line
    assert len(line) < 300 and line.count("tau buffers") == 1, line
    for run in "abc":
        assert not (tmp_path / run / "model.keras").exists()

    # What the message says to do works (in this process: a successful import-torch is tested as a subprocess above).
    assert _cli_status(["import-torch", str(untrained_checkpoint), *common, "--tau", "0.85", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "import.json").read_text())["tau"] == [0.85]
