"""`keras-recu` as a user runs it: each command a fresh process on what the previous one left.

These are the slowest tests of the suite; each starts Python (and Keras'
backend) anew, and they keep the runs tiny. `SUBPROCESS_SECONDS` sums the
time spent in subprocesses (printed with -s).
"""

import importlib.metadata
import json
import os
import shlex
import socket
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.run_utils import (
    ROOT,
    SPENT,
    TINY,
    TINY_FLAGS,
    cli,
    cli_with_tiny_model,
    environment,
    last_json_line,
    no_traceback,
    one_line_error,
    python,
)

BACKEND = keras.backend.backend()


def _installed(*names):
    try:
        for name in names:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# In a non-TensorFlow session the suite hides TensorFlow from its own
# process; the subprocesses see what is installed.
HAS_TF_AND_LCE = _installed("tensorflow", "larq-compute-engine")


@pytest.fixture(scope="module", autouse=True)
def _report_time():
    yield
    print(f"\nSUBPROCESS_SECONDS {json.dumps({k: round(v, 1) for k, v in SPENT.items()})} "
          f"total {sum(SPENT.values()):.1f}")


# Kills the process mid-write of its second checkpoint: the file is cut in
# half on disk and the process dies without cleaning up, as a SIGKILL leaves it.
KILL_IN_SECOND_CHECKPOINT = """
import os, signal, sys
sys.path.insert(0, {root!r})
import keras
from tests.run_utils import register_tiny_model
register_tiny_model()
save, saved = keras.Model.save, []
def save_then_die(self, filepath, *args, **kwargs):
    save(self, filepath, *args, **kwargs)
    if "checkpoints" in str(filepath):
        saved.append(filepath)
        if len(saved) == 2:
            os.truncate(filepath, os.path.getsize(filepath) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save = save_then_die
from keras_recu.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_readme_commands_in_fresh_processes_survive_a_kill_mid_checkpoint(tmp_path):
    """train (killed while writing epoch 2's checkpoint) -> train --resume -> evaluate -> convert -> load.

    On TensorFlow the README's ResNet-20 (16x16 inputs, a few steps); on JAX
    and torch the tiny model, whose compile is quick there. After a run on
    JAX or torch, `train` converts in a TensorFlow subprocess when TF and LCE
    are installed, and `convert` runs itself on TensorFlow.

    The run directory's name has a space, and the user's environment no
    TF_CPP_MIN_LOG_LEVEL: stderr holds the commands' own lines only (none
    here), and the commands they print are quoted for the shell.
    """
    run = tmp_path / "my run"
    users = environment(TF_CPP_MIN_LOG_LEVEL=None)
    model = "resnet20_1w1a" if BACKEND == "tensorflow" else TINY
    flags = ["--out", str(run), "--model", model, "--epochs", "2", *TINY_FLAGS]
    if BACKEND == "tensorflow":
        flags += ["--batch-size", "64", "--limit-train", "256", "--limit-test", "64", "--verify-samples", "16"]

    killed = python(["-c", KILL_IN_SECOND_CHECKPOINT.format(root=str(ROOT)), "train", *flags], label="train, killed")
    assert killed.returncode == -9, killed.stderr[-3000:]
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.keras.")  # the torn write
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epochs_done"] == 1
    with zipfile.ZipFile(run / "checkpoints" / "last.keras") as archive:
        assert archive.testzip() is None  # the previous checkpoint is whole

    resumed = (cli if BACKEND == "tensorflow" else cli_with_tiny_model)(
        ["train", "--out", str(run), "--resume", "--verbose", "0"], env=users, label="train --resume")
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr[-3000:]
    report_path = shlex.quote(str(run.resolve() / "report.md"))
    assert "Test accuracy" in resumed.stdout and f"Report: {report_path} (" in resumed.stdout
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"]["epoch"] == [0, 1] and metrics["backend"] == BACKEND
    report = (run / "report.md").read_text()

    evaluated = cli(["evaluate", str(run)], env=users, label="evaluate")
    assert evaluated.returncode == 0 and evaluated.stderr == "", evaluated.stderr[-3000:]
    result = json.loads(evaluated.stdout)
    assert result["dataset"] == "synthetic" and result["test_examples"] == metrics["dataset"]["test_examples"]
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)

    # Only `import keras_recu.layers`, and on another backend than the one that trained (JAX starts fastest).
    elsewhere = "jax" if BACKEND != "jax" else ("tensorflow" if HAS_TF_AND_LCE else "torch")
    loaded = python(["-c", "import sys, keras, keras_recu.layers; m = keras.models.load_model(sys.argv[1]); "
                           "print(type(m.optimizer).__name__, m.count_params())", str(run / "model.keras")],
                    env=environment(KERAS_BACKEND=elsewhere), label=f"load in a new interpreter ({elsewhere})")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split()[0] == "L2SGD"

    binary_convs = 18 if model == "resnet20_1w1a" else 1
    converted = cli(["convert", str(run), "--verify", "--samples", "4", "-o", str(tmp_path / "again.tflite")],
                    env=users, label="convert --verify")
    if not HAS_TF_AND_LCE:
        assert "not converted" in report and f"keras-recu convert {shlex.quote(str(run))}" in report
        assert converted.returncode == 2 and "needs TensorFlow and larq-compute-engine" in converted.stderr
        return
    assert metrics["deployment"]["census"]["LceBconv2d"] == binary_convs
    assert metrics["deployment"]["argmax_agreement"] is not None
    assert (run / "model.tflite").exists() and "run as LceBconv2d" in report
    assert converted.returncode == 0 and converted.stderr == "", converted.stderr[-3000:]
    assert f"LceBconv2d x{binary_convs}" in converted.stdout and "argmax agreement" in converted.stdout


# Runs each argv through the CLI in this one process (one start-up for
# many cases) and reports exit status and stderr per case.
ERRORS = """
import contextlib, io, json, sys, traceback
from keras_recu.app.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            code, err = "raised", io.StringIO(traceback.format_exc())
    results.append([code, err.getvalue()])
print("RESULT " + json.dumps(results))
"""


@pytest.mark.tf_only
def test_user_errors_are_one_line_with_the_fix_and_exit_2(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(tmp_path / "model.keras")
    whole = (tmp_path / "model.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.keras").write_text("not a model")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, but not a Keras model")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 4, 4, 1), "float32"))
    (tmp_path / "file").write_text("")
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints" / "last.keras").write_bytes(whole)
    saved = tmp_path / "saved"
    saved.mkdir()
    settings = {"out": str(saved), "model": "resnet20_1w1a", "dataset": "synthetic", "epochs": 3, "warmup_epochs": 1}
    (saved / "config.json").write_text(json.dumps(settings))
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "config.json").write_text(json.dumps({**settings, "out": str(edited), "learning_rte": 0.1}))
    empty = tmp_path / "empty"
    empty.mkdir()
    m = str(tmp_path / "model.keras")

    cases = [
        (["convert", str(tmp_path / "text.keras")], "text.keras is not a Keras model file: a .keras file is a zip"),
        (["convert", str(tmp_path / "truncated.keras")], "truncated.keras is not a Keras model file"),
        (["convert", str(tmp_path / "other.keras")], "cannot load .*other.keras as a Keras model"),
        (["convert", str(tmp_path / "missing.keras")], "no such file: .*missing.keras"),
        (["convert", m, "-o", str(tmp_path / "nowhere" / "m.tflite")], "nowhere does not exist; create it"),
        (["convert", m, "--verify", "--inputs", str(tmp_path / "none.npy")], r"none.npy: no such file; pass a .npy array of shape \(N, 8, 8, 1\)"),
        (["convert", m, "--verify", "--inputs", str(tmp_path / "wrong.npy")], r"has shape \(2, 4, 4, 1\); the model takes a batch of shape \(N, 8, 8, 1\)"),
        (["convert", m, "--verify", "--inputs", str(tmp_path / "file")], "is not a .npy array"),
        (["convert", m, "--samples", "0"], "argument --samples: expected a positive integer, got 0"),
        (["convert", str(unfinished)], "has not finished .*--resume.*or convert its last checkpoint"),
        (["evaluate", str(tmp_path / "missing")], "no such file"),
        (["evaluate", str(tmp_path / "text.keras"), "--dataset", "synthetic"], "cannot load .*text.keras as a Keras model"),
        (["train", "--verbose", "loud"], "argument --verbose: expected auto, 0 .*got 'loud'"),
        (["train", "--learning-rate", "nan"], "argument --learning-rate: expected a finite number, got 'nan'"),
        (["train", "--weight-decay", "inf"], "argument --weight-decay: expected a finite number, got 'inf'"),
        (["train", "--tau-min", "nan"], "argument --tau-min: expected a finite number"),
        (["train", "--batch-size", "0"], "argument --batch-size: expected a positive integer"),
        (["train", "--epochs", "2", "--bogus"], r"keras-recu train: error: unrecognized arguments: --bogus \(see keras-recu train --help\)"),
        (["train", "--tau-min", "0.4", "--out", str(tmp_path / "t")], "`tau_min` must lie in the open interval"),
        (["train", "--out", str(tmp_path / "file" / "run"), "--dataset", "synthetic"], "cannot write the run directory .*Choose a writable --out"),
        (["train", "--out", str(tmp_path / "d"), "--dataset", "fashion_mnist", "--data-dir", str(empty)], "fashion"),
        (["train", "--out", str(tmp_path / "s"), "--strategy", "data-parallel"], "JAX backend only"),
        (["train", "--out", str(tmp_path / "w"), "--strategy", "multiworker"], "needs TF_CONFIG"),
        (["train", "--out", str(empty), "--resume"], "Nothing to resume .*no config.json"),
        (["train", "--out", str(edited), "--resume"], r"edited/config.json has unknown setting\(s\) 'learning_rte'"),
        (["train", "--out", str(saved), "--resume", "--epochs", "5", "--model", "vgg_small_1w1a"],
         r"--model: saved 'resnet20_1w1a', given 'vgg_small_1w1a'; --epochs: saved 3, given 5 .*only --verbose, --stop-after, --no-download may change"),
        (["train", "--out", str(saved), "--resume", "--stop-after", "9"], r"`stop_after` must be in \[1, epochs=3\], got 9"),
    ]
    result = python(["-c", ERRORS, json.dumps([argv for argv, _ in cases])], label="errors (one process)")
    assert result.returncode == 0, result.stderr[-3000:]
    import re

    for (argv, expected), (code, stderr) in zip(cases, last_json_line(result.stdout)):
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (argv, code, stderr)
        assert re.search(expected, lines[0]), (argv, lines[0])
        assert lines[0].startswith(("keras-recu train", "keras-recu convert", "keras-recu evaluate")), lines[0]

    # The same as a command on its own: the exit status and stderr a shell sees.
    argv, expected = cases[0]
    alone = cli(argv, env=environment(TF_CPP_MIN_LOG_LEVEL=None), label="errors (a separate process)")
    assert re.search(expected, one_line_error(alone)), alone.stderr[-2000:]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# `keras-recu train` in a process whose one CPU is split into two logical devices: mirrored on two devices.
TWO_LOGICAL_CPUS = """
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
print("LOGICAL_CPUS", len(tf.config.list_logical_devices("CPU")), flush=True)
"""


@pytest.mark.tf_only
def test_multiworker_two_processes_train_one_run_and_the_chief_writes_it(tmp_path):
    """Two workers on one machine; then `--strategy mirrored` on two devices gives the same run, bit for bit.

    Each of the two replicas computes the same half of every batch in both
    runs, and every all-reduce of two values (gradients, synchronized
    BatchNorm's sums) is a + b in either order: nothing is left to rounding.
    """
    import subprocess
    import time

    run = tmp_path / "run"
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    flags = ["--model", TINY, "--epochs", "2", *TINY_FLAGS]
    argv = ["train", "--out", str(run), "--strategy", "multiworker", *flags]
    from tests.run_utils import CLI_WITH_TINY_MODEL

    workers, scratch = [], []
    start = time.perf_counter()
    for index in range(2):
        scratch.append(tmp_path / f"tmp{index}")
        scratch[-1].mkdir()
        env = environment(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                          TMPDIR=str(scratch[-1]))
        workers.append(subprocess.Popen([sys.executable, "-c", CLI_WITH_TINY_MODEL.format(root=str(ROOT)), *argv],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=400) for worker in workers]
    SPENT["multiworker (2 processes)"] = time.perf_counter() - start
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    assert "Test accuracy" in outputs[0][0] and "Report:" in outputs[0][0]
    assert "the chief wrote the run directory" in outputs[1][0]
    assert not any(scratch[1].iterdir())  # the other worker's files went to its scratch directory, then away
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"]["epoch"] == [0, 1] and metrics["config"]["strategy"] == "multiworker"
    assert metrics["deployment"]["census"]["LceBconv2d"] == 1
    for name in ("model.keras", "model.tflite", "report.md", "checkpoints/last.keras", "history.csv"):
        assert (run / name).exists(), name

    mirrored = tmp_path / "mirrored"
    one = python(["-c", TWO_LOGICAL_CPUS + CLI_WITH_TINY_MODEL.format(root=str(ROOT)),
                  "train", "--out", str(mirrored), "--strategy", "mirrored", *flags], label="mirrored (2 devices)")
    assert one.returncode == 0, one.stderr[-3000:]
    assert "LOGICAL_CPUS 2" in one.stdout
    # The same history to the last digit (history.csv writes exact floats), and the same weights.
    assert (mirrored / "history.csv").read_text() == (run / "history.csv").read_text()
    import keras_recu.layers  # noqa: F401  (registers the binary layers for load_model)

    weights = [keras.models.load_model(path / "model.keras").get_weights() for path in (run, mirrored)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


DATA_PARALLEL = """
import json, sys
sys.modules["tensorflow"] = None  # as on a machine without TensorFlow
sys.path.insert(0, {root!r})
import keras, numpy as np
from tests.run_utils import register_tiny_model
register_tiny_model()
from keras_recu.app.cli import main
flags = sys.argv[2:]
codes = {{}}
for name, strategy in (("single", "default"), ("parallel", "data-parallel")):
    codes[name] = main(["train", "--out", sys.argv[1] + "/" + name, "--strategy", strategy, *flags])
devices = keras.distribution.distribution().device_mesh.shape
codes["odd"] = main(["train", "--out", sys.argv[1] + "/odd", "--strategy", "data-parallel", *flags, "--limit-train", "95"])
weights = {{name: np.concatenate([np.ravel(w) for w in keras.models.load_model(
    sys.argv[1] + "/" + name + "/model.keras").get_weights()]).tolist() for name in ("single", "parallel")}}
print("RESULT " + json.dumps(dict(codes=codes, devices=list(devices), weights=weights)))
"""


@pytest.mark.jax_only  # a JAX subprocess of its own: runs once, in the JAX pass of the suite
def test_data_parallel_on_two_jax_devices_without_tensorflow(tmp_path):
    """keras.distribution.DataParallel over two CPU devices matches one device up to rounding.

    Not bit-equal: the gradient is summed in two halves, then across them
    (measured 3e-7 relative L2; the bound leaves room for a flipped sign).
    """
    env = environment(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = python(["-c", DATA_PARALLEL.format(root=str(ROOT)), str(tmp_path), "--model", TINY, "--epochs", "2",
                     *TINY_FLAGS], env=env, label="data-parallel (JAX)")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = last_json_line(result.stdout)
    assert answer["codes"] == {"single": 0, "parallel": 0, "odd": 2} and answer["devices"] == [2]
    assert "does not divide by 2" in result.stderr
    single, parallel = (np.array(answer["weights"][k]) for k in ("single", "parallel"))
    assert np.linalg.norm(parallel - single) / np.linalg.norm(single) < 1e-3
    report = (tmp_path / "parallel" / "report.md").read_text()
    assert f"keras-recu convert {tmp_path / 'parallel'} --verify" in report  # no TensorFlow: convert later
    assert not (tmp_path / "parallel" / "model.tflite").exists()
    assert json.loads((tmp_path / "parallel" / "metrics.json").read_text())["config"]["strategy"] == "data-parallel"


# --------------------------------------------------------------------------- the ImageNet recipes, on a JPEG tree


def _jpeg_tree(root: Path, classes: int = 3, train: int = 4, val: int = 2) -> Path:
    """root/train/<class>/*.JPEG and root/val/<class>/*.JPEG: small colour images, a class per colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label in range(classes):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 60, size=(40, 48, 3)) + 60 * label
                Image.fromarray(pixels.astype("uint8")).save(folder / f"{index}.JPEG", quality=90)
    return root


#: A few steps of 32x32 crops of the tree (the ImageNet models' strides leave 1x1 at the end).
JPEG_FLAGS = ["--dataset", "image_folder", "--image-size", "32", "--resize-size", "36", "--batch-size", "6",
              "--warmup-epochs", "0", "--verify-samples", "4", "--verbose", "0"]


def _deployment_recorded(result, metrics) -> None:
    """At 32x32 the last stage's binary convs see 1x1 maps, which LCE 0.16 pads wrongly: refused, exit 1.

    The run itself is kept (model, metrics, report); the note says why it was not converted.
    Conversion at sizes LCE handles is tested in test_deploy_imagenet.py and the ImageNet example.
    """
    deployment = metrics["deployment"]
    assert not deployment.get("converted") and deployment.get("failed"), deployment
    assert result.returncode == 1, result.stderr[-3000:]
    assert "smaller than its 3x3 kernel" in deployment["note"], deployment["note"]


@pytest.mark.tf_only  # one pass is enough: the backends' training paths are test_imagenet_recipes.py's
def test_vanilla_imagenet_recipe_trains_evaluates_on_a_jpeg_tree(tmp_path):
    """train --recipe imagenet --model imagenet_resnet18_1w1a on a class-per-folder tree -> evaluate."""
    tree, run = _jpeg_tree(tmp_path / "tree"), tmp_path / "vanilla"
    trained = cli(["train", "--recipe", "imagenet", "--model", "imagenet_resnet18_1w1a", "--data-dir", str(tree),
                   "--epochs", "1", "--out", str(run), *JPEG_FLAGS], label="imagenet train")
    no_traceback(trained)
    metrics = json.loads((run / "metrics.json").read_text())
    _deployment_recorded(trained, metrics)
    config = metrics["config"]
    assert (config["recipe"], config["optimizer"], config["learning_rate"], config["momentum"],
            config["weight_decay"], config["weight_decay_paths"]) == ("imagenet", "sgd", 0.1, 0.9, 1e-4, ["conv", "fc"])
    assert metrics["dataset"]["input_shape"] == [32, 32, 3] and metrics["dataset"]["num_classes"] == 3
    assert metrics["input_wait_this_session"]["batches"] == 2  # 12 images in batches of 6

    evaluated = cli(["evaluate", str(run)], label="imagenet evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads(evaluated.stdout)
    assert result["dataset"] == "image_folder" and result["test_examples"] == 6
    # The same evaluation transform, rebuilt from the run's config.json.
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)


@pytest.mark.tf_only
def test_two_stage_recipe_distills_then_hands_over_in_fresh_processes(tmp_path):
    """stage 1 (float weights, KD from a random .keras teacher) -> stage 2 from it (stopped, resumed) -> evaluate."""
    tree = _jpeg_tree(tmp_path / "tree")
    teacher_path = tmp_path / "teacher.keras"
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="t_conv")(inputs))
    keras.Model(inputs, keras.layers.Dense(3, name="t_fc")(pooled), name="teacher").save(teacher_path)
    teacher_bytes = teacher_path.read_bytes()
    common = ["--recipe", "two-stage", "--teacher", str(teacher_path), "--data-dir", str(tree), *JPEG_FLAGS]

    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    first = cli(["train", *common, "--stage", "1", "--epochs", "1", "--out", str(stage1)], label="stage 1")
    assert first.returncode == 0, first.stderr[-3000:]
    metrics1 = json.loads((stage1 / "metrics.json").read_text())
    assert (metrics1["config"]["stage"], metrics1["config"]["optimizer"]) == (1, "adam")
    assert "stage 1 trains float weights" in metrics1["deployment"]["note"]

    second = cli(["train", *common, "--stage", "2", "--stage1", str(stage1), "--epochs", "1", "--out", str(stage2)],
                 label="stage 2")
    no_traceback(second)
    assert "Stage 2 starts from stage 1" in second.stdout
    carried = json.loads((stage2 / "stage1.json").read_text())
    assert carried["source"] == str(stage1 / "model.keras") and carried["variables"] > 100
    metrics2 = json.loads((stage2 / "metrics.json").read_text())
    _deployment_recorded(second, metrics2)
    assert metrics2["stage1"] == carried and metrics2["config"]["stage"] == 2
    assert teacher_path.read_bytes() == teacher_bytes

    # What the run directory keeps is the student alone, with binary weights.
    from keras_recu.inspection import binary_layers

    student = keras.models.load_model(stage2 / "model.keras")
    assert student.name == "imagenet_resnet18_two_stage" and len(binary_layers(student)) == 16
    assert all(found.binary_kernel for found in binary_layers(student))
    evaluated = cli(["evaluate", str(stage2)], label="stage 2 evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(metrics2["test_accuracy"], abs=1e-6)
