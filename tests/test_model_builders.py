"""The model builders' options: a binary-conv factory, and sync_batch_norm on each backend.

Backend-neutral: runs under KERAS_BACKEND=tensorflow, jax and torch.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_recu import models
from keras_recu.layers import QuantConv2D, ReCUConv2D
from keras_recu.quantizers import SteSign

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
BINARY_CONVS = {"resnet20_1w1a": 18}


def _layers(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def _ste_conv(filters, kernel_size, strides, tau, name, kernel_initializer):
    """A binary conv with a plain sign (STE) kernel: the ablation's "no ReCU"."""
    return QuantConv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        input_quantizer="recu_input_sign", kernel_quantizer=SteSign(),
        kernel_initializer=kernel_initializer, name=name,
    )


def test_the_factory_builds_every_binary_conv_with_the_builders_arguments():
    name = "resnet20_1w1a"
    calls = []

    def factory(**kwargs):
        calls.append(kwargs)
        return _ste_conv(**kwargs)

    shape = (8, 8, 3)
    default = models.get(name)(input_shape=shape, tau=0.9)
    swapped = models.get(name)(input_shape=shape, tau=0.9, binary_conv=factory)

    recu = _layers(default, ReCUConv2D)
    assert len(calls) == len(recu) == len(_layers(swapped, QuantConv2D)) == BINARY_CONVS[name]
    assert not _layers(swapped, ReCUConv2D)
    for call, layer in zip(calls, recu):
        assert set(call) == {"filters", "kernel_size", "strides", "tau", "name", "kernel_initializer"}
        assert (call["name"], call["filters"], call["kernel_size"], call["tau"]) == (
            layer.name, layer.filters, 3, 0.9
        )
        assert (call["strides"], call["strides"]) == layer.strides
        assert keras.initializers.serialize(call["kernel_initializer"]) == keras.initializers.serialize(
            layer.kernel_initializer
        )
    # The same graph; only ReCUConv2D's alpha (one per filter) and tau are gone.
    alphas = sum(layer.filters for layer in recu)
    assert default.count_params() - swapped.count_params() == alphas + len(recu)  # alpha and tau
    assert [layer.name for layer in default.layers] == [layer.name for layer in swapped.layers]
    assert swapped.output_shape == default.output_shape


def test_the_default_factory_is_recu_conv2d_and_changes_nothing():
    keras.utils.set_random_seed(7)
    default = models.resnet20_1w1a(input_shape=(8, 8, 3))
    keras.utils.set_random_seed(7)
    explicit = models.resnet20_1w1a(input_shape=(8, 8, 3), binary_conv=models.recu_conv2d)
    assert default.count_params() == explicit.count_params()
    assert [(type(a), a.name) for a in default.layers] == [(type(b), b.name) for b in explicit.layers]
    for a, b in zip(default.weights, explicit.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_parameter_counts_are_those_of_before():
    # The table of keras_recu.models (32x32x3, 10 classes).
    assert models.resnet20_1w1a().count_params() == 272_044
    assert models.vgg_small_1w1a().count_params() == 4_665_359
    # VGG-small takes the factory too: 5 binary convs without alpha (1,664) and tau.
    assert models.vgg_small_1w1a(binary_conv=_ste_conv).count_params() == 4_665_359 - 1_664 - 5


def test_a_bad_factory_is_refused_with_what_is_expected():
    with pytest.raises(TypeError, match="callable.*recu_conv2d"):
        models.resnet20_1w1a(input_shape=(8, 8, 3), binary_conv="ste")
    with pytest.raises(TypeError, match="must return a Keras layer, got str for 'stage1_block1_conv1'"):
        models.resnet20_1w1a(input_shape=(8, 8, 3), binary_conv=lambda **kwargs: "conv")


def test_sync_batch_norm_on_this_backend():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = models.resnet20_1w1a(input_shape=(8, 8, 3), sync_batch_norm=True)
    bns = _layers(model, keras.layers.BatchNormalization)
    assert len(bns) == 20
    # TensorFlow: cross-replica statistics under tf.distribute. JAX: plain
    # layers, whose data-parallel step normalizes over the global batch (see
    # the next test). torch: plain, with a warning that the flag does nothing.
    assert all(bn.synchronized == (BACKEND == "tensorflow") for bn in bns)
    messages = [str(w.message) for w in caught if "sync_batch_norm" in str(w.message)]
    if BACKEND == "torch":
        assert len(messages) == 1 and "no effect on the torch backend" in messages[0]
        assert caught[0].filename == __file__  # points at the caller
    else:
        assert messages == []


def test_jax_data_parallel_batch_norm_uses_the_global_batch():
    # Two CPU devices, each holding half of the batch: ones on one, threes on
    # the other. A per-device BatchNormalization would record mean 1 or 3 and
    # variance 0; the global batch has mean 2 and variance 1.
    code = textwrap.dedent("""
        import json, jax, keras, numpy as np
        from keras_recu import models
        devices = jax.devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        layout = keras.distribution.distribution().get_data_layout((8, 3))
        bn = models.vgg_small_1w1a(input_shape=(8, 8, 1), sync_batch_norm=True).get_layer("bn1")
        model = keras.Sequential([keras.Input((3,)), bn.__class__.from_config(
            {**bn.get_config(), "momentum": 0.0, "center": False, "scale": False})])
        model.compile(keras.optimizers.SGD(0.0), "mse")
        x = np.concatenate([np.ones((4, 3)), 3 * np.ones((4, 3))]).astype("float32")
        model.fit(x, np.zeros((8, 3), "float32"), batch_size=8, epochs=1, shuffle=False, verbose=0)
        layer = model.layers[0]
        print(json.dumps({
            "devices": len(devices), "batch_axis": layout.axes[0], "synchronized": bn.synchronized,
            "mean": keras.ops.convert_to_numpy(layer.moving_mean).tolist(),
            "variance": keras.ops.convert_to_numpy(layer.moving_variance).tolist(),
        }))
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["devices"] == 2 and measured["batch_axis"] == "batch"
    assert measured["synchronized"] is False
    np.testing.assert_allclose(measured["mean"], [2.0] * 3, rtol=1e-6)
    np.testing.assert_allclose(measured["variance"], [1.0] * 3, rtol=1e-4)
