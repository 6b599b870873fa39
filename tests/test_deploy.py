"""Conversion to larq-compute-engine: binary ops counted, outputs compared, refusals."""

import keras
import numpy as np
import pytest

from keras_recu.deploy import ConversionError, census, convert, verify
from keras_recu.layers import ChannelZeroPad, QuantConv2D, QuantDense, ReCUConv2D
from tests.model_utils import randomize_batch_norm

# Conversion needs TensorFlow and larq-compute-engine: the TensorFlow backend only.
pytestmark = pytest.mark.tf_only


def shortcut_a(x, filters):
    """Option A: 2x2 average pool, then zero-pad the new channels (in a Lambda: any Keras model converts)."""
    x = keras.layers.AveragePooling2D(2)(x)
    extra = filters - x.shape[-1]
    return keras.layers.Lambda(lambda t: keras.ops.pad(t, [(0, 0), (0, 0), (0, 0), (0, extra)]))(x)


def shortcut_a_layer(x, filters):
    """Option A with keras_recu's ChannelZeroPad, which saves and rebuilds from its config."""
    x = keras.layers.AveragePooling2D(2)(x)
    return ChannelZeroPad((0, filters - x.shape[-1]))(x)


def resnet_style(input_shape=(16, 16, 3), classes=10, shortcut_a=shortcut_a):
    """Bi-Real-style ResNet: every binary conv has its own residual and hardtanh."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("hard_tanh")(x)
    for filters, strides in [(16, 1), (16, 1), (32, 2), (32, 1)]:
        shortcut = x if strides == 1 else shortcut_a(x, filters)
        y = ReCUConv2D(filters, 3, strides=strides, padding="same")(x)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.Activation("hard_tanh")(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def test_resnet_style_keras3_model_converts_to_a_binary_model(tmp_path, rng):
    model = resnet_style()
    randomize_batch_norm(model, rng)
    flatbuffer = convert(model, tmp_path / "model.tflite")
    assert (tmp_path / "model.tflite").read_bytes() == flatbuffer
    ops = census(flatbuffer)
    assert ops["LceBconv2d"] == 4
    assert ops["CONV_2D"] == 1  # only the full-precision first conv
    report = verify(model, flatbuffer, rng.normal(size=(16, 16, 16, 3)))
    assert report.float_binary_layers == [] and report.is_binary
    assert len(report.binary_layers) == 4
    assert report.max_rel_error < 1e-3
    assert report.argmax_agreement == 1.0
    assert report.flatbuffer_bytes < report.float32_bytes
    assert "LceBconv2d x4" in str(report)


def test_int8_io(rng):
    model = resnet_style()
    randomize_batch_norm(model, rng)
    with pytest.raises(ConversionError, match="int8 inference input/output needs .*default_int8_range"):
        convert(model, inference_input_type="int8", inference_output_type="int8")
    flatbuffer = convert(
        model, inference_input_type="int8", inference_output_type="int8", default_int8_range=(-3.0, 3.0)
    )
    # verify quantizes the inputs and dequantizes the outputs with the flatbuffer's scales.
    report = verify(model, flatbuffer, rng.uniform(-1, 1, size=(8, 16, 16, 3)))
    assert report.census["LceBconv2d"] == 4 and report.census["QUANTIZE"] >= 1
    assert np.isfinite(report.max_abs_error) and report.argmax_agreement is not None


def test_binary_dense_is_refused_by_name_unless_float_is_allowed():
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        ReCUConv2D(8, 3),
        keras.layers.GlobalAveragePooling2D(),
        QuantDense(4, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign", name="binary_head"),
    ])
    with pytest.raises(ConversionError, match="(?s)1 binary layer.*binary_head: LCE has no binary fully-connected"):
        convert(model)
    flatbuffer = convert(model, allow_float=True)
    assert census(flatbuffer)["LceBconv2d"] == 1


def test_half_binary_conv_is_refused():
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        QuantConv2D(8, 3, kernel_quantizer="recu_sign", name="kernel_only"),
    ])
    with pytest.raises(ConversionError, match="kernel_only: only its kernel is binary"):
        convert(model)


def test_unrecognized_sign_pattern_is_refused():
    import tensorflow as tf

    def ones_like_sign(x):
        return tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))

    ones_like_sign.precision = 1
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        QuantConv2D(8, 3, input_quantizer=ones_like_sign, kernel_quantizer="recu_sign", name="odd_sign"),
    ])
    with pytest.raises(ConversionError, match="odd_sign: its binarization did not match an LCE sign pattern"):
        convert(model)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_mixed_precision_model_converts_as_its_float32_twin(policy, rng):
    from keras_recu import precision

    with precision.policy_scope(policy):
        model = resnet_style(shortcut_a=shortcut_a_layer)
    randomize_batch_norm(model, rng)
    with precision.policy_scope("float32"):
        twin = resnet_style(shortcut_a=shortcut_a_layer)
    twin.set_weights(model.get_weights())
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    flatbuffer = convert(model)
    assert census(flatbuffer) == census(convert(twin)) and census(flatbuffer)["LceBconv2d"] == 4
    images = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    # The float32 model built with the same weights converts to the same function (layer names aside).
    run = lambda buffer: np.asarray(Interpreter(buffer).predict(images))  # noqa: E731
    np.testing.assert_array_equal(run(flatbuffer), run(convert(twin)))
    report = verify(model, flatbuffer, images)
    assert report.is_binary and report.verified and report.trained_policy == policy
    assert f"computes under {policy}: converted and verified as its float32 twin" in str(report)
    # Verified against the float32 twin: the same answers as float32 Keras to float32 rounding.
    assert report.max_rel_error < 1e-3
    assert verify(twin, flatbuffer, images).trained_policy is None


def test_a_mixed_model_that_cannot_be_rebuilt_from_its_config_is_refused_with_the_fix():
    from keras_recu import precision

    with precision.policy_scope("mixed_bfloat16"):
        model = resnet_style()  # a Lambda whose function reads a global: its config cannot rebuild it
    with pytest.raises(ConversionError, match=r"cannot rebuild .* in float32 .*set_weights"):
        convert(model)


def test_a_tf_keras_model_under_a_mixed_policy_is_refused_with_the_fix():
    import tf_keras

    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tf_keras.Sequential([tf_keras.Input((8, 8, 4)), tf_keras.layers.Conv2D(8, 3)])
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(ConversionError, match=r"reduced precision: .*mixed_float16.*set_weights"):
        convert(model)


def test_bad_io_type_is_refused():
    model = keras.Sequential([keras.Input((8, 8, 4)), ReCUConv2D(8, 3)])
    with pytest.raises(ConversionError, match="float32 or int8, got float16"):
        convert(model, inference_input_type="float16")
