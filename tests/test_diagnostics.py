"""Weight diagnostics: each against a hand-computed case, the callback in fit, TensorBoard."""

import math

import keras
import numpy as np
import pytest

from keras_recu import ops as recu_ops
from keras_recu.diagnostics import (
    METRICS,
    DiagnosticsCallback,
    histogram_entropy,
    kernel_diagnostics,
    model_diagnostics,
)
from keras_recu.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D, ReCUConv2D
from keras_recu.ops import ClampOptions
from keras_recu.quantizers import ReCUSign, SteSign
from tests.gradients import to_numpy

RAW = ClampOptions(standardize=False)
# mean|w| = 2 for HAND, so Q = -2 * ln(2 - 2 * tau) = 2 exactly at this tau.
TAU_Q2 = 1 - math.exp(-1) / 2
HAND = np.array([[-3.0], [-1.0], [1.0], [3.0]])  # (4 inputs, 1 output channel)


def binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_hand_computed_kernel():
    result = kernel_diagnostics(HAND, TAU_Q2, RAW)
    assert set(result) == {"dead_share", "quant_error", "entropy", "binary_entropy"}
    assert result["dead_share"] == 0.5  # -3 and 3 lie beyond Q = 2
    # w2 = [-2, -1, 1, 2], alpha = 1.5: four errors of 0.5^2 over sum(w2^2) = 10.
    assert result["quant_error"] == pytest.approx(0.1, rel=1e-5)
    assert result["binary_entropy"] == pytest.approx(math.log(2))
    # 16 bins of width 6/16 over [-3, 3], one weight in each of four: -ln(0.25 / 0.375).
    assert result["entropy"] == pytest.approx(math.log(1.5))


def test_plain_sign_layer_binarizes_its_raw_kernel():
    result = kernel_diagnostics(HAND, TAU_Q2, RAW, recu=False)
    assert result["dead_share"] == 0.5  # what ReCU would clamp at this tau
    # No clamp: alpha = 2, four errors of 1 over 9 + 1 + 1 + 9.
    assert result["quant_error"] == pytest.approx(0.2, rel=1e-6)
    # The raw kernel, not the standardized one, is binarized: all +1 here.
    positive = np.array([[1.0], [2.0], [3.0], [10.0]])
    result = kernel_diagnostics(positive, 0.85, recu=False)
    assert result["binary_entropy"] == 0.0
    assert result["quant_error"] == pytest.approx((9 + 4 + 1 + 36) / (1 + 4 + 9 + 100), rel=1e-6)
    assert 0 < result["dead_share"] <= 0.25  # standardized, 10 is far in the tail
    assert kernel_diagnostics(positive, 0.85)["binary_entropy"] > 0  # ReCU centres first


def test_binary_entropy_of_unbalanced_signs():
    kernel = np.array([[1.0], [2.0], [3.0], [-1.0]])
    assert kernel_diagnostics(kernel, 0.9, RAW)["binary_entropy"] == pytest.approx(binary_entropy(0.75))
    assert kernel_diagnostics(np.zeros((4, 2)), 0.9, RAW)["binary_entropy"] == 0.0  # sign(0) = +1


@pytest.mark.parametrize("options", [ClampOptions(), ClampOptions(per_channel_threshold=True), RAW])
def test_dead_share_is_what_recu_clamps(rng, options):
    kernel = rng.laplace(size=(3, 3, 16, 8)).astype("float32")
    seen = recu_ops.standardize(kernel) if options.standardize else kernel
    clamped = recu_ops.recu_kernel(kernel, 0.9, options)
    expected = np.mean(keras.ops.convert_to_numpy(clamped) != keras.ops.convert_to_numpy(seen))
    result = kernel_diagnostics(kernel, 0.9, options)
    assert result["dead_share"] == pytest.approx(expected)
    # A Laplace kernel: about 2 * (1 - tau) of the weights lie beyond +-Q(tau).
    assert 0.15 < result["dead_share"] < 0.25
    # The same kernel through a plain sign layer: ReCU would clamp as many.
    if options.standardize and not options.per_channel_threshold:
        assert kernel_diagnostics(kernel, 0.9, recu=False)["dead_share"] == result["dead_share"]


def test_quantization_error_is_scale_free_and_zero_for_equal_magnitudes(rng):
    kernel = rng.normal(size=(3, 3, 8, 4))
    plain = kernel_diagnostics(kernel, 0.9, RAW, recu=False)["quant_error"]
    assert kernel_diagnostics(kernel * 1e-3, 0.9, RAW, recu=False)["quant_error"] == pytest.approx(plain, rel=1e-5)
    # Sums over the kernel: a channel weighs in with its energy.
    per_channel = np.array([0.01, 1.0, 7.0, 300.0])
    scaled = kernel * per_channel
    energy = np.sum(scaled**2, axis=(0, 1, 2))
    errors = [kernel_diagnostics(scaled[..., c:c + 1], 0.9, RAW, recu=False)["quant_error"] for c in range(4)]
    assert kernel_diagnostics(scaled, 0.9, RAW, recu=False)["quant_error"] == pytest.approx(
        np.dot(errors, energy) / energy.sum(), rel=1e-5
    )
    recu = kernel_diagnostics(kernel, 0.9, RAW)["quant_error"]
    assert kernel_diagnostics(kernel * 50.0, 0.9, RAW)["quant_error"] == pytest.approx(recu, rel=1e-5)
    assert recu < plain  # the clamp lowers the error of binarizing what remains
    signs = np.where(rng.normal(size=(16, 4)) >= 0, 1.0, -1.0) * per_channel
    assert kernel_diagnostics(signs, 0.9, RAW, recu=False)["quant_error"] == pytest.approx(0.0, abs=1e-6)
    assert kernel_diagnostics(np.zeros((4, 2)), 0.9, RAW, recu=False)["quant_error"] == 0.0


def test_entropy_estimates(rng):
    uniform = rng.uniform(-1.0, 1.0, size=(1000, 100))
    assert kernel_diagnostics(uniform, 0.9, RAW)["entropy"] == pytest.approx(math.log(2.0), abs=0.02)
    normal = rng.normal(size=100_000)
    assert histogram_entropy(normal) == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.02)
    # Scaling by c adds ln c, exactly: the bins scale with the range.
    assert histogram_entropy(3.0 * normal) == pytest.approx(histogram_entropy(normal) + math.log(3.0), abs=1e-9)
    assert histogram_entropy(np.ones(10)) == float("-inf")


def test_standardization_raises_the_entropy_to_that_of_laplace_b2(rng):
    laplace = rng.laplace(0.0, 0.05, size=(2000, 50))  # raw scale b = 0.05
    standardized = kernel_diagnostics(laplace, 0.9)["entropy"]
    raw = kernel_diagnostics(laplace, 0.9, RAW)["entropy"]
    assert standardized == pytest.approx(1 + math.log(2 * 2.0), abs=0.03)  # b = 2
    assert raw == pytest.approx(1 + math.log(2 * 0.05), abs=0.03)
    # The clamp is not seen by the entropy (taken before it), only by the dead share.
    assert kernel_diagnostics(laplace, 0.99)["entropy"] == standardized


def test_invalid_arguments():
    with pytest.raises(ValueError, match="open interval"):
        kernel_diagnostics(HAND, 1.0)
    with pytest.raises(ValueError, match="at least 2 weights per output channel"):
        kernel_diagnostics(np.ones((1, 4)), 0.9)
    with pytest.raises(ValueError, match="reference_tau"):
        DiagnosticsCallback(reference_tau=0.4)


def _mixed_model():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="float_conv")(inputs)
    x = ReCUConv2D(6, 3, padding="same", tau=0.9, name="recu")(x)
    x = QuantConv2D(6, 3, padding="same", kernel_quantizer=SteSign(), name="ste")(x)
    x = QuantConv2D(6, 3, padding="same", input_quantizer="ste_sign", name="input_only")(x)
    x = QuantDepthwiseConv2D(
        3, padding="same", depthwise_quantizer=ReCUSign(tau=0.95, per_channel_threshold=True), name="depthwise"
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = QuantDense(3, kernel_quantizer=ReCUSign(tau=0.88, standardize=False), name="dense")(x)
    return keras.Model(inputs, outputs)


def test_model_diagnostics_per_binary_kernel_at_its_own_tau():
    model = _mixed_model()
    result = model_diagnostics(model)
    assert list(result) == ["recu", "ste", "depthwise", "dense"]
    recu = model.get_layer("recu")
    assert result["recu"] == pytest.approx(kernel_diagnostics(to_numpy(recu.kernel), recu.tau))
    ste = to_numpy(model.get_layer("ste").kernel)
    assert result["ste"] == pytest.approx(kernel_diagnostics(ste, 0.85, recu=False))
    depthwise = model.get_layer("depthwise")
    filters = to_numpy(depthwise.kernel).reshape(3, 3, 1, 6)  # one channel per filter, as the quantizer sees it
    quantizer = depthwise.depthwise_quantizer
    assert result["depthwise"] == pytest.approx(kernel_diagnostics(filters, quantizer.tau, quantizer.options))
    dense = model.get_layer("dense")
    assert result["dense"] == pytest.approx(
        kernel_diagnostics(to_numpy(dense.kernel), dense.kernel_quantizer.tau, RAW)
    )
    # reference_tau concerns the non-ReCU layer only.
    later = model_diagnostics(model, reference_tau=0.99)
    assert later["ste"]["dead_share"] < result["ste"]["dead_share"]
    assert later["recu"] == result["recu"]


def _flip(layer, index):
    kernel = to_numpy(layer.kernel).copy()
    kernel[index] = -kernel[index]
    layer.kernel.assign(kernel)


def test_flip_ratio_is_pooled_over_the_weights_of_all_layers():
    model = keras.Sequential([
        keras.Input((4,)),
        QuantDense(4, kernel_quantizer=ReCUSign(standardize=False), use_bias=False, name="a"),  # 16 weights
        QuantDense(1, kernel_quantizer=SteSign(), use_bias=False, name="b"),  # 4 weights
    ])
    callback = DiagnosticsCallback()
    callback.set_model(model)
    callback.on_train_begin()
    _flip(model.get_layer("a"), (0, 0))
    _flip(model.get_layer("b"), (2, 0))
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["diagnostics/a/flip_ratio"] == 1 / 16
    assert logs["diagnostics/b/flip_ratio"] == 1 / 4
    assert logs["diagnostics/flip_ratio"] == 2 / 20
    assert logs["diagnostics/dead_share"] == pytest.approx(
        (logs["diagnostics/a/dead_share"] + logs["diagnostics/b/dead_share"]) / 2
    )
    callback.on_epoch_end(1, logs)
    assert logs["diagnostics/flip_ratio"] == 0.0
    assert callback.history["flip_ratio"] == [0.1, 0.0]
    assert callback.layer_history["a"]["flip_ratio"] == [1 / 16, 0.0]
    assert callback.epochs == [0, 1]


def _hand_model():
    model = keras.Sequential([
        keras.Input((4,)),
        QuantDense(1, kernel_quantizer=ReCUSign(tau=TAU_Q2, standardize=False), use_bias=False, name="bdense"),
    ])
    model.get_layer("bdense").kernel.assign(HAND)
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "mse")  # the kernel stays as set
    return model


class FlipAfterFirstEpoch(keras.callbacks.Callback):
    """Turns the -1 of HAND into +1 at the end of epoch 0 (before the diagnostics see it)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            _flip(self.model.get_layer("bdense"), (1, 0))


def _fit(model, callbacks, epochs=3):
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    return model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks)


def test_callback_in_fit_writes_history():
    model = _hand_model()
    diagnostics = DiagnosticsCallback()
    history = _fit(model, [FlipAfterFirstEpoch(), diagnostics]).history
    assert history["diagnostics/flip_ratio"] == [0.25, 0.0, 0.0]
    assert history["diagnostics/bdense/flip_ratio"] == [0.25, 0.0, 0.0]
    # After the flip the kernel is [-3, 1, 1, 3]: Q = 2, w2 = [-2, 1, 1, 2].
    assert history["diagnostics/dead_share"] == [0.5] * 3
    assert history["diagnostics/quant_error"] == pytest.approx([0.1] * 3, rel=1e-5)
    assert history["diagnostics/binary_entropy"] == pytest.approx([binary_entropy(0.75)] * 3)
    for metric in METRICS:
        assert diagnostics.history[metric] == history[f"diagnostics/{metric}"]
        assert len(history[f"diagnostics/bdense/{metric}"]) == 3
    assert diagnostics.epochs == [0, 1, 2]

    quiet = DiagnosticsCallback(per_layer=False)
    history = _fit(_hand_model(), [quiet], epochs=1).history
    assert sorted(key for key in history if key.startswith("diagnostics/")) == sorted(
        f"diagnostics/{metric}" for metric in METRICS
    )


def test_callback_refuses_a_model_without_binary_layers():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="found no binary layer"):
        _fit(model, [DiagnosticsCallback()], epochs=1)


def _scalars(directory):
    import tensorflow as tf

    found = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                found.setdefault(value.tag, {})[event.step] = number
    return found


# Keras' TensorBoard callback writes through tf.summary on every backend.
@pytest.mark.tf_only
def test_tensorboard_after_the_callback_gets_the_diagnostics(tmp_path):
    diagnostics = DiagnosticsCallback()
    tensorboard = keras.callbacks.TensorBoard(str(tmp_path), write_graph=False)
    _fit(_hand_model(), [FlipAfterFirstEpoch(), diagnostics, tensorboard], epochs=2)
    scalars = _scalars(tmp_path / "train")
    for metric in METRICS:
        assert scalars[f"epoch_diagnostics/{metric}"] == pytest.approx(dict(enumerate(diagnostics.history[metric])))
        assert f"epoch_diagnostics/bdense/{metric}" in scalars
    assert scalars["epoch_diagnostics/flip_ratio"] == {0: 0.25, 1: 0.0}
