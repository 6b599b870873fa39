"""The quantizers' forward lowers to larq-compute-engine's binary ops."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from larq_compute_engine import convert_saved_model
from larq_compute_engine.tflite.python.interpreter import Interpreter

from keras_recu.deploy import census
from keras_recu.layers import QuantConv2D, ReCUConv2D
from tests.model_utils import randomize_batch_norm

# Conversion needs TensorFlow and larq-compute-engine: the TensorFlow backend only.
pytestmark = pytest.mark.tf_only


def convert(model, tmp_path):
    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    return convert_saved_model(str(tmp_path / "saved_model"))


def test_recu_layers_become_lce_bconv2d(tmp_path, rng):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = ReCUConv2D(16, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = ReCUConv2D(32, 3, strides=2, padding="same", pad_values=1.0)(x)
    x = keras.layers.BatchNormalization()(x)
    x = QuantConv2D(32, 3, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    randomize_batch_norm(model, rng)

    flatbuffer = convert(model, tmp_path)
    ops = census(flatbuffer)
    assert ops["LceBconv2d"] == 3
    assert ops["CONV_2D"] == 1  # the full-precision first convolution
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    got = Interpreter(flatbuffer).predict(x)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_census_detects_a_binary_conv_left_in_float(tmp_path):
    """Control: a sign written with ones_like is not recognized by LCE."""

    def ones_like_sign(x):
        return tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))

    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        QuantConv2D(8, 3, input_quantizer=ones_like_sign, kernel_quantizer="recu_sign", use_bias=False),
    ])
    ops = census(convert(model, tmp_path))
    assert ops["LceBconv2d"] == 0 and ops["CONV_2D"] == 1
