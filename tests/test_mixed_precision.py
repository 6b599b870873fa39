"""Mixed precision: where each dtype lives in a binary layer, the float32 twin, and `keras-recu train --dtype-policy`.

The layers' contract (every backend): under `mixed_bfloat16` and
`mixed_float16` a quantizer is handed the latent kernel in float32 (ReCU's
standardization and tau quantile never see a rounded weight), and the layer
computes and returns the policy's dtype. `keras_recu.precision.as_float32`
gives the same model in float32 with the same weights.

The command, as a user runs it (fresh `keras-recu` processes on what the
previous one left on disk): a run under `mixed_bfloat16` trains with a finite
loss, converts with every binary conv as `LceBconv2d` and verifies against the
float32 twin (disagreements only at ties). That a mixed_bfloat16 run killed at
random moments and resumed ends bit for bit as the uninterrupted run is
tests/test_kill_resume.py's test.
"""

import json

import keras
import numpy as np
import pytest

from keras_recu import precision
from keras_recu.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D, ReCUConv2D
from keras_recu.quantizers import ReCUSign
from tests.run_utils import TINY, TINY_FLAGS, cli, cli_with_tiny_model, no_traceback, one_line_error

MIXED = ["mixed_bfloat16", "mixed_float16"]


class DtypeRecordingSign(ReCUSign):
    """ReCUSign that records the dtype of every kernel it binarizes."""

    seen = []

    def call(self, inputs, training=None):
        DtypeRecordingSign.seen.append(keras.backend.standardize_dtype(inputs.dtype))
        return super().call(inputs, training=training)


def _layers(sign=DtypeRecordingSign):
    return [
        QuantConv2D(4, 3, padding="same", kernel_quantizer=sign(), input_quantizer="recu_input_sign"),
        QuantDepthwiseConv2D(3, padding="same", depthwise_quantizer=sign()),
        ReCUConv2D(4, 3, kernel_quantizer=sign()),
        keras.layers.Flatten(),
        QuantDense(3, kernel_quantizer=sign()),
    ]


@pytest.mark.parametrize("policy", MIXED)
def test_quantizers_see_the_latent_kernel_in_float32_and_layers_compute_in_the_policy(policy, rng):
    with precision.policy_scope(policy):
        model = keras.Sequential([keras.Input((6, 6, 4)), *_layers()])
    images = rng.normal(size=(4, 6, 6, 4)).astype("float32")
    DtypeRecordingSign.seen = []
    outputs = model(images, training=False)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, np.arange(4) % 3, epochs=1, verbose=0)
    assert DtypeRecordingSign.seen and set(DtypeRecordingSign.seen) == {"float32"}
    compute = policy.split("_", 1)[1]
    assert keras.backend.standardize_dtype(outputs.dtype) == compute
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}
    assert precision.compute_dtypes(model) == [compute] and precision.mixed_policy(model) == policy


def test_the_float32_twin_has_the_weights_and_answers_of_a_float32_build(rng):
    build = lambda: keras.Sequential([keras.Input((6, 6, 4)), *_layers(ReCUSign)], name="net")  # noqa: E731
    with precision.policy_scope("mixed_bfloat16"):
        mixed = build()
    for weight in mixed.trainable_weights:  # tau (not trainable) keeps its value
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    float32 = build()
    float32.set_weights(mixed.get_weights())
    twin = precision.as_float32(mixed)
    assert precision.compute_dtypes(twin) == ["float32"] and precision.mixed_policy(twin) is None
    assert precision.mixed_policy(mixed) == "mixed_bfloat16"  # the trained model is left as it was
    images = rng.normal(size=(4, 6, 6, 4)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(twin(images)), keras.ops.convert_to_numpy(float32(images)))
    assert precision.as_float32(float32) is float32


def test_policy_scope_restores_the_global_policy_and_refuses_unknown_names():
    with pytest.raises(RuntimeError):
        with precision.policy_scope("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="Unknown dtype policy 'float16'. Known: float32, mixed_bfloat16"):
        with precision.policy_scope("float16"):
            pass


def test_the_training_job_builds_under_its_policy_with_loss_scaling_for_float16():
    from keras_recu.app import data
    from keras_recu.app.build import build_model
    from keras_recu.app.config import TrainConfig
    from tests.run_utils import register_tiny_model

    register_tiny_model()
    train, _, info = data.load("synthetic", 32, limit_train=64, limit_test=32)
    config = TrainConfig(model=TINY, dataset="synthetic", epochs=2, warmup_epochs=0, dtype_policy="mixed_float16")
    model, student = build_model(config, info, len(train))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert precision.mixed_policy(student) == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    history = model.fit(train, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()


# --------------------------------------------------------------------------- the command

FLAGS = ["--model", TINY, "--epochs", "2", *TINY_FLAGS, "--dtype-policy", "mixed_bfloat16"]


def _train(*args):
    result = cli_with_tiny_model(["train", *args], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert no_traceback(result) == []
    return result


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A mixed_bfloat16 run, trained, converted and verified by `keras-recu train`."""
    run = tmp_path_factory.mktemp("mixed") / "run"
    _train(*FLAGS, "--out", str(run))
    return run


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_a_mixed_run_trains_converts_and_verifies_against_its_float32_twin(mixed_run):
    run = mixed_run
    metrics = _metrics(run)
    assert metrics["config"]["dtype_policy"] == "mixed_bfloat16"
    assert len(metrics["history"]["loss"]) == 2 and np.isfinite(metrics["history"]["loss"]).all()
    deployment = metrics["deployment"]
    assert deployment["converted"] and deployment["trained_policy"] == "mixed_bfloat16"
    assert deployment["census"]["LceBconv2d"] == deployment["binary_layers"] == 1
    assert deployment["binary_layers_left_in_float"] == []
    # The flatbuffer against the float32 evaluation of the same weights: disagreements only at ties.
    assert deployment["verified"] and deployment["unexplained"] == 0
    twin = metrics["float32_twin"]
    assert twin["test_examples"] == 32 and 0.0 <= twin["argmax_agreement"] <= 1.0
    assert "trained under `mixed_bfloat16`" in (run / "report.md").read_text()


def test_convert_takes_a_mixed_run_as_its_float32_twin(mixed_run, tmp_path):
    converted = cli(["convert", str(mixed_run), "--verify", "-o", str(tmp_path / "again.tflite")])
    assert converted.returncode == 0 and no_traceback(converted) == [], converted.stderr[-3000:]
    assert "computes under mixed_bfloat16: converted and verified as its float32 twin" in converted.stdout
    assert "LceBconv2d x1" in converted.stdout
    assert (tmp_path / "again.tflite").read_bytes() == (mixed_run / "model.tflite").read_bytes()


def test_resuming_under_another_policy_or_an_unknown_policy_is_one_line(mixed_run):
    resumed = mixed_run
    changed = one_line_error(cli(["train", "--out", str(resumed), "--resume", "--dtype-policy", "float32"]))
    assert "--dtype-policy" in changed and "mixed_bfloat16" in changed
    unknown = one_line_error(cli(["train", "--dtype-policy", "float16", "--out", str(resumed)]))
    assert "--dtype-policy" in unknown and "float16" in unknown
