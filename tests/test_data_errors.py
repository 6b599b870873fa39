"""Bad data and offline runs, as a user meets them: one line on stderr naming the file, flag or value, exit 2.

Each scenario runs `keras-recu` in a fresh process on files left on disk:
a damaged JPEG found while training (TensorFlow's tf.data names no file; the
job finds it), a format the chosen decoder cannot read, an image folder whose
val/ lacks a class, flags that do not apply or sizes no model can take, and
`--no-download` (a run trained offline evaluates offline; a missing data set
or teacher is one line within seconds, and nothing is fetched or written).
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_recu.app import data
from keras_recu.app.config import MIN_IMAGE_SIZE, TrainConfig
from tests.run_utils import (
    ROOT,
    TINY,
    TINY_FLAGS,
    cli,
    cli_with_tiny_model,
    environment,
    last_json_line,
    no_traceback,
    python,
)

BACKEND = keras.backend.backend()
ON_TENSORFLOW = BACKEND == "tensorflow"

#: A tiny model on 16x16 crops of the tree, a few steps.
FOLDER_FLAGS = ["--model", TINY, "--dataset", "image_folder", "--image-size", "16", "--resize-size", "20",
                "--batch-size", "4", "--epochs", "1", "--warmup-epochs", "0", "--verify-samples", "2",
                "--verbose", "0", "--no-download"]


LIBJPEG_NOISE = ("Improper call to JPEG library", "Premature end of JPEG file", "Corrupt JPEG data")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """2 classes x 4 train and 2 val JPEGs."""
    root = tmp_path_factory.mktemp("tree")
    return data.write_synthetic_jpeg_tree(root, classes=2, per_class=4, size=(24, 20), val_per_class=2, seed=3)


def copy_of(tree, destination: Path) -> Path:
    shutil.copytree(tree, destination)
    return destination


def one_line(result, pattern: str) -> str:
    """The single line on stderr (TensorFlow's start-up log aside), exit status 2, matching `pattern`."""
    # libjpeg itself writes "Improper call to JPEG library ..." to the process's stderr (C, not Python)
    # while TensorFlow decodes a damaged file: what TensorFlow's native code writes is the stderr
    # item of issue 16, not this test's.
    lines = [line for line in no_traceback(result) if not line.startswith(LIBJPEG_NOISE)]
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr[-3000:])
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- damaged files


def _damaged(tree, destination: Path) -> Path:
    root = copy_of(tree, destination)
    victim = root / "train" / "n0000001" / "train_1_2.JPEG"
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])  # cut short, as an interrupted copy leaves it
    return victim


@pytest.mark.parametrize("decoder", ["tf", "pil"] if ON_TENSORFLOW else ["pil"])
def test_a_damaged_jpeg_met_while_training_is_named_in_one_line(tree, tmp_path, decoder):
    """TensorFlow says "jpeg::Uncompress failed" and PIL "image file is truncated", neither naming the file."""
    victim = _damaged(tree, tmp_path / "tree")
    result = cli_with_tiny_model(["train", *FOLDER_FLAGS, "--decoder", decoder, "--data-dir", str(tmp_path / "tree"),
                                  "--out", str(tmp_path / "run")], label=f"damaged jpeg ({decoder})")
    line = one_line(result, "cannot be decoded")
    assert line.startswith(f"keras-recu train: {victim} cannot be decoded ("), line
    assert ("TensorFlow: " if decoder == "tf" else "PIL: ") in line
    assert "Replace it with a good copy or delete it" in line


@pytest.mark.tf_only  # the tf decoder in this process
def test_the_tf_decoder_finds_the_damaged_file_of_a_batch(tree, tmp_path):
    """In process: the batch that fails raises CorruptDataError naming its file; the others are served."""
    victim = _damaged(tree, tmp_path / "tree")
    small = data.imagenet.ImageNetTransform(image_size=16, resize_size=20)
    train, _, _ = data.load("image_folder", 2, data_dir=tmp_path / "tree", transform=small, decoder="tf", seed=1)
    draws = train.epoch_draws(0)
    position = [os.fsdecode(train.source.paths[row]) for row in draws.order].index(str(victim))
    for index in range(len(train)):
        if index == position // 2:
            with pytest.raises(data.CorruptDataError, match=re.escape(f"{victim} cannot be decoded (TensorFlow: ")) as caught:
                train[index]
        else:
            images, _ = train[index]
            assert np.isfinite(images).all()
    # What the command line prints when tf.data wraps the error (Keras reads a PyDataset through it on TensorFlow).
    wrapped = RuntimeError(f"InvalidArgumentError: CorruptDataError: {caught.value}\nTraceback ...")
    assert data.data_error_behind(wrapped) is caught.value


def test_a_folder_with_formats_tensorflow_cannot_read_decodes_with_pil_unless_tf_is_asked(tree, tmp_path, capsys):
    root = copy_of(tree, tmp_path / "tree")
    jpeg = root / "train" / "n0000000" / "train_0_1.JPEG"
    Image.open(jpeg).save(jpeg.with_suffix(".ppm"))
    jpeg.unlink()
    small = data.imagenet.ImageNetTransform(image_size=16, resize_size=20)
    train, _, info = data.load("image_folder", 4, data_dir=root, transform=small, decoder="auto")
    assert train.decoder == "pil" and info.train_examples == 8
    assert np.isfinite(train[0][0]).all() and np.isfinite(train[1][0]).all()
    if ON_TENSORFLOW:
        assert "train_0_1.ppm is in a format TensorFlow cannot decode" in capsys.readouterr().out
        with pytest.raises(data.CorruptDataError, match=re.escape(f"{jpeg.with_suffix('.ppm')}: the tf decoder")):
            data.load("image_folder", 4, data_dir=root, transform=small, decoder="tf")


# --------------------------------------------------------------------------- refusals before training


# Runs each command line with `main` in one process, as the CLI tests do: one
# interpreter start for all the cases.
ERRORS = """
import contextlib, io, json, sys, time, traceback
sys.path.insert(0, {root!r})
from tests.run_utils import register_tiny_model
register_tiny_model()
from keras_recu.app.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err, start = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            code, err = "raised", io.StringIO(traceback.format_exc())
    results.append([code, err.getvalue(), time.perf_counter() - start])
print("RESULT " + json.dumps(results))
"""


@pytest.mark.tf_only  # one pass: what is checked happens before any backend computes
def test_inputs_that_cannot_work_are_refused_in_one_line_before_anything_runs(tree, tmp_path):
    empty_val = copy_of(tree, tmp_path / "empty_val")
    for image in (empty_val / "val" / "n0000001").iterdir():
        image.unlink()
    missing_val = copy_of(tree, tmp_path / "missing_val")
    shutil.rmtree(missing_val / "val" / "n0000001")
    ppm = copy_of(tree, tmp_path / "ppm")
    jpeg = ppm / "val" / "n0000000" / "val_0_0.JPEG"
    Image.open(jpeg).save(jpeg.with_suffix(".ppm"))
    empty = tmp_path / "empty"
    empty.mkdir()
    keras_home = tmp_path / "keras_home"

    def train(name, *flags):
        return ["train", "--out", str(tmp_path / name), *flags]

    folder = ["--dataset", "image_folder", "--data-dir", str(tree)]
    cases = [
        (train("m", *folder, "--manual-dir", str(empty)),
         rf"--manual-dir {empty}: it names the folder of the ILSVRC2012 tars .* image_folder reads --data-dir only: "
         "drop --manual-dir"),
        (train("s", *folder, "--model", "resnet20_1w1a", "--image-size", "1", "--resize-size", "1"),
         rf"--image-size 1: resnet20_1w1a takes images of at least {MIN_IMAGE_SIZE['resnet20_1w1a']}x"),
        (train("s2", *folder, "--recipe", "imagenet", "--model", "imagenet_resnet18_1w1a", "--image-size", "16"),
         rf"--image-size 16: imagenet_resnet18_1w1a takes images of at least "
         rf"{MIN_IMAGE_SIZE['imagenet_resnet18_1w1a']}x"),
        (train("r", *folder, "--model", "resnet20_1w1a", "--image-size", "300"),
         r"--resize-size 256 \(the default\) is smaller than --image-size 300: .* pass --resize-size 300 or more"),
        (train("p", "--dataset", "imagenette", "--decoder", "pil", "--model", "resnet20_1w1a"),
         "--decoder pil: --dataset imagenette comes from tensorflow-datasets"),
        (train("v", *FOLDER_FLAGS, "--data-dir", str(empty_val)),
         rf"{empty_val / 'val'} has class folder\(s\) without images: {empty_val / 'val' / 'n0000001'}\. "
         "train/ and val/ must hold the same classes"),
        (train("w", *FOLDER_FLAGS, "--data-dir", str(missing_val)),
         rf"{missing_val / 'val'} lacks the class folder\(s\) {missing_val / 'val' / 'n0000001'}\."),
        (train("t", *FOLDER_FLAGS, "--data-dir", str(ppm), "--decoder", "tf"),
         rf"{jpeg.with_suffix('.ppm')}: the tf decoder \(--decoder tf\) reads .jpg, .jpeg, .png, .bmp, .gif files "
         r"only; the pil decoder reads .*\.ppm.* Use --decoder pil"),
        (train("c", "--dataset", "cifar10", "--data-dir", str(empty), "--no-download", "--model", "resnet20_1w1a"),
         rf"Data set 'cifar10' is not in {empty} and downloads are off \(--no-download\)"),
        (train("k", *TINY_FLAGS, "--model", TINY, "--teacher", "ResNet50", "--no-download"),
         "--teacher ResNet50: .* ImageNet weights gives 1000 classes and the student has 10"),
    ]
    env = environment(KERAS_HOME=str(keras_home))
    result = python(["-c", ERRORS.format(root=str(ROOT)), json.dumps([argv for argv, _ in cases])], env=env,
                    label="refusals (one process)")
    assert result.returncode == 0, result.stderr[-3000:]
    for (argv, expected), (code, stderr, seconds) in zip(cases, last_json_line(result.stdout)):
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (argv, code, stderr[-3000:])
        assert lines[0].startswith("keras-recu train: ") and re.search(expected, lines[0]), (argv, lines[0])
        assert seconds < 30, (argv, seconds)
    assert not any(keras_home.glob("models/*")), "a teacher's weights were fetched"


# --------------------------------------------------------------------------- offline


@pytest.mark.tf_only  # tensorflow-datasets needs TensorFlow
def test_a_run_trained_offline_evaluates_offline_and_a_missing_set_is_one_line_at_once(tmp_path):
    """train --no-download -> evaluate RUN --dataset cifar10: no download, no ~/tensorflow_datasets, one line."""
    run, home, empty = tmp_path / "run", tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    empty.mkdir()
    trained = cli_with_tiny_model(["train", "--model", TINY, *TINY_FLAGS, "--epochs", "1", "--no-download",
                                   "--out", str(run)], label="offline train")
    assert trained.returncode in (0, 1), trained.stderr[-3000:]  # 1: LCE refused the tiny model; the run is whole
    assert json.loads((run / "config.json").read_text())["download"] is False
    env = environment(HOME=str(home), TFDS_DATA_DIR=None)
    cases = [
        (["evaluate", str(run), "--dataset", "cifar10"], home / "tensorflow_datasets"),
        (["evaluate", str(run / "model.keras"), "--dataset", "cifar10", "--no-download", "--data-dir", str(empty)],
         empty),
    ]
    for argv, directory in cases:
        start = time.perf_counter()
        result = cli(argv, env=env, label="offline evaluate")
        seconds = time.perf_counter() - start
        one_line(result, rf"keras-recu evaluate: Data set 'cifar10' is not in {directory} and downloads are off")
        assert seconds < 60, seconds  # not tensorflow-datasets' minutes of retries
    assert not (home / "tensorflow_datasets").exists()
    assert list(empty.iterdir()) == []


def test_a_teacher_is_never_downloaded_with_downloads_off(tmp_path):
    """load_teacher(download=False) with an empty Keras cache: OSError at once, and nothing fetched."""
    code = (
        "import sys, time\n"
        "from keras_recu.app.distill import load_teacher\n"
        "start = time.perf_counter()\n"
        "try:\n"
        "    load_teacher('ResNet50', (32, 32, 3), (0, 0, 0), (1, 1, 1), num_classes=1000, download=False)\n"
        "except OSError as error:\n"
        "    print('RESULT', repr(str(error)), time.perf_counter() - start)\n"
    )
    result = python(["-c", code], env=environment(KERAS_HOME=str(tmp_path)), label="teacher offline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT" in result.stdout, result.stdout[-2000:]
    message = result.stdout.split("RESULT", 1)[1]
    assert "--teacher ResNet50: its ImageNet weights are not in Keras' cache" in message
    assert "downloads are off (--no-download)" in message
    assert not any(tmp_path.glob("models/*"))


def test_evaluate_inherits_the_runs_download_setting(tmp_path, monkeypatch):
    """In process: evaluate() hands data.load the run's `download`, unless told otherwise."""
    from keras_recu.app import evaluate as evaluate_module

    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "model.keras")
    config = TrainConfig(out=str(tmp_path), dataset="synthetic", download=False, limit_train=32, limit_test=16)
    (tmp_path / "config.json").write_text(json.dumps(config.__dict__))
    seen = []
    load = data.load

    def spy(*args, **kwargs):
        seen.append(kwargs["download"])
        return load(*args, **kwargs)

    monkeypatch.setattr(data, "load", spy)
    evaluate_module.evaluate(str(tmp_path), "synthetic")
    evaluate_module.evaluate(str(tmp_path))
    evaluate_module.evaluate(str(tmp_path), "synthetic", download=True)
    evaluate_module.evaluate(str(tmp_path / "model.keras"), "synthetic")
    assert seen == [False, False, True, True]


# --------------------------------------------------------------------------- the smallest image sizes


@pytest.mark.tf_only  # shapes are the backends' alike; one pass
@pytest.mark.parametrize("name", sorted(MIN_IMAGE_SIZE))
def test_the_smallest_image_size_is_the_models_total_downsampling(name):
    from keras_recu import models

    side = MIN_IMAGE_SIZE[name]
    model = models.get(name)(input_shape=(7 * side, 7 * side, 3), num_classes=10)
    maps = [layer.output.shape[1:3] for layer in model.layers if len(layer.output.shape) == 4]
    assert tuple(maps[-1]) == (7, 7)  # the last map: the input divided by the minimum
