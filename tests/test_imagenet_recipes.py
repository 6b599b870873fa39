"""The ImageNet recipes, in process and on every backend: distillation, the two-stage hand-over, the settings.

The command-line runs of the same recipes, on JPEG trees, are in
test_cli_subprocess.py.
"""

import json

import keras
import numpy as np
import pytest

from keras_recu import models
from keras_recu.app import cli, distill, two_stage
from keras_recu.app.build import build_model
from keras_recu.app.config import TrainConfig
from keras_recu.app.errors import ConfigError
from keras_recu.app.recipes import RECIPES
from keras_recu.losses import DistributionLoss
from keras_recu.optimizers import L2Adam, L2SGD
from tests.gradients import function_gradients, to_numpy
from tests.run_utils import TINY


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------- the loss


def test_distribution_loss_is_the_authors_batch_mean_cross_entropy(rng):
    teacher, student = rng.normal(size=(2, 5, 7)).astype("float32") * 3
    # The authors' DistributionLoss: -bmm(softmax(t)[:, None, :], log_softmax(s)[:, :, None]).mean()
    want = -np.mean(np.sum(np.exp(_log_softmax(teacher.astype("float64"))) * _log_softmax(student.astype("float64")), -1))
    got = float(to_numpy(DistributionLoss()(teacher, student)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Equal logits: the teacher's entropy, the loss's minimum over the student.
    p = np.exp(_log_softmax(teacher.astype("float64")))
    np.testing.assert_allclose(float(to_numpy(DistributionLoss()(teacher, teacher))),
                               -np.mean(np.sum(p * np.log(p), -1)), rtol=1e-5)


def test_distribution_loss_gradient_reaches_the_student_only(rng):
    teacher, student = rng.normal(size=(2, 4, 6)).astype("float32")
    _, (to_teacher, to_student) = function_gradients(lambda t, s: DistributionLoss()(t, s), [teacher, student],
                                                     np.float32(1.0))
    softmax = lambda z: np.exp(_log_softmax(z.astype("float64")))  # noqa: E731
    np.testing.assert_allclose(to_student, (softmax(student) - softmax(teacher)) / len(student), atol=1e-6)
    # No gradient (TensorFlow: None) or a zero one.
    assert to_teacher is None or to_teacher.ndim == 0 and to_teacher.item() is None or not np.any(to_teacher)


def test_distribution_loss_round_trips_and_refuses_a_bad_temperature():
    clone = keras.losses.deserialize(keras.losses.serialize(DistributionLoss(temperature=2.0)))
    assert isinstance(clone, DistributionLoss) and clone.temperature == 2.0
    with pytest.raises(ValueError, match="temperature"):
        DistributionLoss(temperature=0)


# --------------------------------------------------------------------------- the distiller


def _student(classes=3):
    from keras_recu.layers import ReCUConv2D

    inputs = keras.Input((8, 8, 3))
    x = ReCUConv2D(4, 3, padding="same", name="s_conv")(inputs)
    x = keras.layers.BatchNormalization(name="s_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="s_fc")(x), name="student")


def _teacher(classes=3):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="t_conv")(inputs)
    x = keras.layers.BatchNormalization(name="t_bn")(x)  # moving statistics: must not move either
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="t_fc")(x), name="teacher")


def _compiled_distiller(student, teacher):
    model = distill.Distiller(student, teacher)
    model.compile(optimizer=L2Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_distiller_trains_the_student_on_the_teacher_and_leaves_the_teacher_alone(rng):
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=16).astype("int32")
    student, teacher = _student(), _teacher()
    teacher_before = [to_numpy(w).copy() for w in teacher.weights]
    student_before = [to_numpy(w).copy() for w in student.trainable_weights]
    model = _compiled_distiller(student, teacher)
    assert len(model.trainable_variables) == len(student.trainable_variables)

    # One full batch, one step: the logged loss is the distribution loss at the initial weights.
    student_logits = to_numpy(student(x, training=True))
    want = float(to_numpy(DistributionLoss()(to_numpy(teacher(x, training=False)), student_logits)))
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], want, rtol=1e-4)

    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for before, after in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, to_numpy(after))
    assert any(not np.array_equal(b, to_numpy(a)) for b, a in zip(student_before, student.trainable_weights))

    # Evaluation: the student, against the labels (the authors validate with cross-entropy).
    loss, accuracy = model.evaluate(x, y, batch_size=16, verbose=0)
    logits = to_numpy(student(x, training=False)).astype("float64")
    np.testing.assert_allclose(loss, -np.mean(_log_softmax(logits)[np.arange(16), y]), rtol=1e-4)
    np.testing.assert_allclose(accuracy, np.mean(logits.argmax(-1) == y), atol=1e-6)


def test_distiller_saves_and_loads_whole(tmp_path, rng):
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    model = _compiled_distiller(_student(), _teacher())
    model.fit(x, np.zeros(4, "int32"), verbose=0)
    model.save(tmp_path / "distiller.keras")
    loaded = keras.models.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded, distill.Distiller) and not loaded.teacher.trainable
    np.testing.assert_allclose(to_numpy(loaded.predict(x, verbose=0)), to_numpy(model.predict(x, verbose=0)),
                               atol=1e-6)
    np.testing.assert_allclose(to_numpy(loaded.teacher(x)), to_numpy(model.teacher(x)), atol=1e-6)


def test_distiller_refuses_a_teacher_of_other_classes_or_inputs():
    with pytest.raises(ValueError, match="the teacher has 5 outputs and the student 3"):
        distill.Distiller(_student(3), _teacher(5))
    other = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"inputs of shape \(4, 4, 3\)"):
        distill.Distiller(_student(3), other)


def test_teacher_input_undoes_the_normalization_and_applies_the_application_preprocessing(rng):
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    pixels = rng.uniform(0, 255, size=(2, 4, 4, 3))
    normalized = ((pixels - mean) / std).astype("float32")
    layer = distill.TeacherInput(mean, std, application="resnet")
    # keras.applications.resnet: "caffe" mode, RGB -> BGR, minus the BGR ImageNet means, no scaling.
    want = pixels[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(to_numpy(layer(normalized)), want, atol=1e-3)
    resized = distill.TeacherInput(mean, std, size=(8, 6))(normalized)
    assert tuple(resized.shape) == (2, 8, 6, 3)
    clone = distill.TeacherInput.from_config(layer.get_config())
    assert clone.application == "resnet" and clone.mean == list(mean)
    with pytest.raises(ValueError, match="keras.applications module"):
        distill.TeacherInput(mean, std, application="no_such_family")


def test_load_teacher_takes_a_keras_file_and_refuses_unknown_names(tmp_path):
    _teacher().save(tmp_path / "teacher.keras")
    teacher = distill.load_teacher(str(tmp_path / "teacher.keras"), (8, 8, 3), (0, 0, 0), (1, 1, 1))
    assert not teacher.trainable and teacher.outputs[0].shape[-1] == 3
    with pytest.raises(ValueError, match="Known models: .*ResNet50"):
        distill.load_teacher("ResNet35", (8, 8, 3), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="no such file"):
        distill.load_teacher(str(tmp_path / "missing.keras"), (8, 8, 3), (0, 0, 0), (1, 1, 1))


# --------------------------------------------------------------------------- the two-stage hand-over


def test_stage_two_starts_from_stage_one_variable_by_variable(rng):
    shape = (32, 32, 3)
    stage1 = models.imagenet_resnet18_two_stage(shape, num_classes=5, binary_weights=False)
    for variable in stage1.weights:  # not the initial values: a copy must show
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    stage2 = models.imagenet_resnet18_two_stage(shape, num_classes=5, binary_weights=True)
    carried = two_stage.carry_weights(stage1, stage2)
    assert carried["values"] == sum(int(np.prod(v.shape)) for v in stage1.trainable_weights) + sum(
        int(np.prod(v.shape)) for v in stage1.non_trainable_weights if "moving" in v.name)
    source = {f"{w.path}": to_numpy(w) for w in stage1.weights if "tau" not in w.name}
    for w in stage2.weights:
        if w.path in source:
            np.testing.assert_array_equal(to_numpy(w), source[w.path])


def test_hand_over_fails_loudly_and_copies_nothing_on_a_mismatch():
    stage2 = _student(3)
    before = [to_numpy(w).copy() for w in stage2.weights]
    with pytest.raises(two_stage.StageMismatch, match=r"shapes differ: s_fc/bias \(5,\) -> \(3,\), s_fc/kernel \(4, 5\) -> \(4, 3\)"):
        two_stage.carry_weights(_student(5), stage2)
    with pytest.raises(two_stage.StageMismatch, match="in stage 1 only: t_bn/beta.*in stage 2 only: s_bn/beta"):
        two_stage.carry_weights(_teacher(3), stage2)
    for b, w in zip(before, stage2.weights):
        np.testing.assert_array_equal(b, to_numpy(w))


# --------------------------------------------------------------------------- the recipes' settings


def test_recipes_hold_the_authors_settings():
    vanilla = TrainConfig.for_recipe("imagenet")
    assert (vanilla.model, vanilla.dataset, vanilla.optimizer, vanilla.learning_rate, vanilla.momentum,
            vanilla.weight_decay, vanilla.weight_decay_paths, vanilla.batch_size, vanilla.epochs,
            vanilla.warmup_epochs, vanilla.tau_min, vanilla.tau_max, vanilla.teacher) == (
        "imagenet_resnet18_1w1a", "imagenet2012", "sgd", 0.1, 0.9, 1e-4, ("conv", "fc"), 512, 200, 5, 0.85, 0.99,
        None)
    stages = TrainConfig.for_recipe("two-stage")
    assert (stages.model, stages.optimizer, stages.learning_rate, stages.weight_decay, stages.batch_size,
            stages.epochs, stages.stage, stages.teacher, stages.tau_min, stages.tau_max) == (
        "imagenet_resnet18_two_stage", "adam", 1e-3, 0.0, 512, 256, 1, "ResNet50", 0.85, 0.99)
    assert TrainConfig.for_recipe("cifar") == TrainConfig(recipe="cifar") == TrainConfig()
    # The authors' per-epoch warm-up and cosine (their main.py) for both ImageNet recipes.
    assert vanilla.lr_schedule == stages.lr_schedule == "epoch" and TrainConfig().lr_schedule == "step"
    from keras_recu.app.build import learning_rate_schedule
    from keras_recu.optimizers import EpochWarmupCosine

    schedule = learning_rate_schedule(vanilla, steps_per_epoch=10)
    assert isinstance(schedule, EpochWarmupCosine) and (schedule.epochs, schedule.warmup_epochs) == (200, 5)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig.for_recipe("imagenet", lr_schedule="linear").validate()
    # Every value stays a flag; the saved record reads back equal.
    given = TrainConfig.for_recipe("imagenet", learning_rate=0.2, weight_decay_paths=["conv"])
    assert given.learning_rate == 0.2 and given.weight_decay_paths == ("conv",)
    from dataclasses import asdict

    assert TrainConfig(**json.loads(json.dumps(asdict(given)))) == given


def test_imagenet_optimizer_decays_what_the_authors_decay():
    """conv and fc parameters (binary kernels and alpha, stem, fc); not BN, the 1x1 downsample conv, BN1d."""
    config = TrainConfig.for_recipe("imagenet", dataset="synthetic", epochs=2, warmup_epochs=0)
    info = type("Info", (), {"input_shape": (32, 32, 3), "num_classes": 10})()
    model, student = build_model(config, info, steps_per_epoch=1)
    assert model is student and isinstance(model.optimizer, L2SGD)
    decayed = {v.path for v in model.trainable_variables if model.optimizer.decays(v)}
    kept = {v.path for v in model.trainable_variables} - decayed
    assert {"conv1/kernel", "layer1_0_conv1/kernel", "layer1_0_conv1/alpha", "fc/kernel", "fc/bias"} <= decayed
    assert {"bn1/gamma", "layer2_0_downsample_0/kernel", "layer2_0_downsample_1/gamma", "bn2/gamma"} <= kept
    assert all("conv" in p or "fc" in p for p in decayed) and not any("conv" in p or "fc" in p for p in kept)


def test_two_stage_builds_adam_and_the_distiller(tmp_path):
    _teacher_like((32, 32, 3), 10).save(tmp_path / "teacher.keras")
    config = TrainConfig.for_recipe("two-stage", dataset="synthetic", epochs=2, warmup_epochs=0,
                                    teacher=str(tmp_path / "teacher.keras"))
    info = type("Info", (), {"input_shape": (32, 32, 3), "num_classes": 10, "mean": (0,) * 3, "std": (1,) * 3})()
    model, student = build_model(config, info, steps_per_epoch=1)
    assert isinstance(model, distill.Distiller) and model.student is student
    assert isinstance(model.optimizer, L2Adam) and model.optimizer.l2 == 0.0
    # Stage 1: float kernels; nothing else differs from stage 2.
    from keras_recu.inspection import binary_layers

    assert binary_layers(student) and not any(found.binary_kernel for found in binary_layers(student))


def _teacher_like(shape, classes):
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(recipe="imagenet", stage=1), "needs a model with a binary-weights switch"),
        (dict(recipe="two-stage", stage=2), "pass --stage1"),
        (dict(recipe="two-stage", stage1="runs/s1"), "stage 1 starts from scratch"),
        (dict(recipe="cifar", stage1="runs/s1"), "pass --stage 2"),
        (dict(recipe="two-stage", stage=3, stage1="x"), "`stage` must be 1"),
        (dict(recipe="cifar", optimizer="rmsprop"), "Unknown optimizer 'rmsprop'. Known: sgd, adam"),
        (dict(recipe="cifar", image_size=32), "--image-size apply to the ImageNet-style data sets"),
        (dict(recipe="cifar", weight_decay_paths=("conv", "")), "`weight_decay_paths` must be"),
        (dict(recipe="imagenet", padding="valid"), "`padding` must be 'torch' or 'same'"),
    ],
)
def test_bad_settings_name_themselves(settings, message):
    recipe = settings.pop("recipe")
    settings.setdefault("dataset", "synthetic")
    with pytest.raises(ConfigError, match=message):
        TrainConfig.for_recipe(recipe, **settings).validate()


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="Unknown recipe 'resnet'. Known: cifar, imagenet, two-stage"):
        TrainConfig.for_recipe("resnet")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "vanilla"], "argument --recipe: invalid choice: 'vanilla'"),
        (["--stage", "3"], "expected 1 (float weights) or 2"),
        (["--crop-scale", "0.1"], "argument --crop-scale: expected 2 arguments"),
        (["--weight-decay-paths", "conv,,fc"], "expected 'all' or comma-separated substrings"),
        (["--recipe", "two-stage", "--stage", "2", "--dataset", "synthetic"], "pass --stage1"),
        (["--recipe", "imagenet", "--dataset", "synthetic", "--lighting-std", "0.2"],
         "--lighting-std apply to the ImageNet-style data sets"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(tmp_path, capsys, argv, message):
    try:
        code = cli.main(["train", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "config.json").exists()


# --------------------------------------------------------------------------- the job, in process


@pytest.fixture
def tiny_model():
    from tests.run_utils import register_tiny_model

    register_tiny_model()
    yield
    models.MODELS.pop(TINY, None)


def _weights_of(path):
    model = keras.models.load_model(path)
    return [to_numpy(v) for v in [*model.weights, *model.optimizer.variables]]


def test_distilled_run_resumes_exactly_and_keeps_the_teacher_and_the_student_apart(tmp_path, tiny_model):
    from keras_recu.app.train import run

    teacher_path = tmp_path / "teacher.keras"
    _teacher_like((16, 16, 1), 10).save(teacher_path)
    teacher_weights = [to_numpy(w) for w in keras.models.load_model(teacher_path).weights]

    def config(out, **overrides):
        return TrainConfig(out=str(out), model=TINY, dataset="synthetic", epochs=2, batch_size=32, warmup_epochs=0,
                           limit_train=64, limit_test=32, verify_samples=4, verbose=0, seed=3, optimizer="adam",
                           learning_rate=1e-2, weight_decay=1e-3, weight_decay_paths=("conv",),
                           teacher=str(teacher_path), **overrides)

    whole = run(config(tmp_path / "whole"))
    run(config(tmp_path / "parts", stop_after=1))
    parts = run(config(tmp_path / "parts"), resume=True)
    assert parts["history"] == whole["history"] and parts["test_accuracy"] == whole["test_accuracy"]
    checkpoints = [tmp_path / name / "checkpoints" / "last.keras" for name in ("whole", "parts")]
    for a, b in zip(*map(_weights_of, checkpoints), strict=True):
        np.testing.assert_array_equal(a, b)

    # The checkpoint holds the distiller (the teacher untouched); model.keras the student alone.
    distiller = keras.models.load_model(checkpoints[1])
    for want, got in zip(teacher_weights, distiller.teacher.weights, strict=True):
        np.testing.assert_array_equal(want, to_numpy(got))
    student = keras.models.load_model(tmp_path / "parts" / "model.keras")
    assert student.name == "tiny_recu" and len(student.weights) == len(distiller.student.weights)
    # Validation loss: cross-entropy on the labels; training loss: the distribution loss.
    assert whole["history"]["val_loss"] != whole["history"]["loss"]


def _jpeg_tree(root, classes=3, per_class=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(classes):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for index in range(per_class):
                Image.fromarray(rng.integers(0, 255, size=(36, 36, 3)).astype("uint8")).save(folder / f"{index}.JPEG")
    return root


def test_stage_two_from_another_model_is_refused_in_one_line(tmp_path, capsys):
    tree = _jpeg_tree(tmp_path / "tree")
    _teacher_like((32, 32, 3), 3).save(tmp_path / "other.keras")
    code = cli.main(["train", "--recipe", "two-stage", "--stage", "2", "--stage1", str(tmp_path / "other.keras"),
                     "--teacher", "none", "--dataset", "image_folder", "--data-dir", str(tree), "--image-size", "32",
                     "--resize-size", "36", "--epochs", "1", "--warmup-epochs", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "does not match stage 2" in err and "in stage 1 only: dense" in err and "in stage 2 only: bn/beta" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_evaluate_takes_a_bare_model_at_its_own_input_size(tmp_path):
    from keras_recu.app.evaluate import evaluate

    tree = _jpeg_tree(tmp_path / "tree")
    _teacher_like((32, 32, 3), 3).save(tmp_path / "bare.keras")
    result = evaluate(str(tmp_path / "bare.keras"), "image_folder", str(tree))
    assert result["dataset"] == "image_folder" and result["test_examples"] == 6
    assert 0.0 <= result["test_accuracy"] <= 1.0 and np.isfinite(result["test_loss"])


def test_a_keras_applications_teacher_sees_its_own_input_and_gives_logits(rng):
    """The default kind of teacher, built without its download: resized to 224, its preprocessing, no softmax."""
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    teacher = distill.load_teacher("MobileNetV2", (32, 32, 3), mean, std, weights=None)
    adapter = teacher.get_layer("teacher_input")
    assert adapter.size == [224, 224] and adapter.application == "mobilenet_v2" and not teacher.trainable
    logits = to_numpy(teacher(rng.normal(size=(2, 32, 32, 3)).astype("float32"), training=False))
    assert logits.shape == (2, 1000) and not np.allclose(logits.sum(-1), 1.0)


@pytest.mark.parametrize("name", ["imagenet_resnet18_1w1a", "imagenet_resnet18_two_stage"])
def test_the_decay_rule_picks_the_same_parameters_as_the_authors_param_groups(name):
    """imagenet/main.py: weight decay only on named_parameters() whose name holds "conv" or "fc"."""
    from tests import torch_models

    reference = getattr(torch_models, name)(num_classes=10)
    authors = [(n, p.numel()) for n, p in reference.named_parameters() if p.requires_grad]
    want = sum(size for n, size in authors if "conv" in n or "fc" in n), sum(
        size for n, size in authors if not ("conv" in n or "fc" in n))
    assert want[0] and want[1]

    optimizer = L2SGD(0.1, 0.9, l2=1e-4, l2_paths=RECIPES["imagenet"]["weight_decay_paths"])
    model = getattr(models, name)((32, 32, 3), num_classes=10)
    sizes = [(optimizer.decays(v), int(np.prod(v.shape))) for v in model.trainable_variables]
    assert (sum(s for d, s in sizes if d), sum(s for d, s in sizes if not d)) == want


def test_an_undownloadable_teacher_says_how_to_go_on(monkeypatch):
    def offline(**kwargs):
        assert kwargs == {"weights": "imagenet", "classifier_activation": None}
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Name or service not known")

    offline.__module__ = keras.applications.ResNet50.__module__
    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(OSError, match=r"cannot get the ImageNet weights of keras.applications.ResNet50 .*"
                                      r"Connect to the internet once .* or pass --teacher PATH.keras"):
        distill.load_teacher("ResNet50", (224, 224, 3), (0, 0, 0), (1, 1, 1))
