"""keras_recu.larq: ReCU inside larq's layers under tf-keras."""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_recu.larq as recu_larq  # arranges tf-keras (conftest sets it too)
import larq
import tensorflow as tf
import torch

from keras_recu.deploy import census, convert, verify
from tests import torch_reference as ref
from tests.gradients import assert_gradients_close
from tests.model_utils import randomize_batch_norm
from tests.run_utils import environment

# larq runs under tf-keras on TensorFlow: the TensorFlow backend only.
pytestmark = pytest.mark.tf_only

def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment(), capture_output=True, text=True, timeout=300)


def test_import_sets_up_tf_keras_beside_keras3():
    result = run_python("""
        import keras_recu.larq, keras, tensorflow as tf
        print(tf.keras.layers.Layer.__module__.split(".")[0], keras.__version__[0])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["tf_keras", "3"]


def test_import_after_keras3_took_tf_keras_explains_the_fix():
    result = run_python("""
        import keras
        import keras_recu.larq
    """)
    assert result.returncode != 0
    assert "ImportError: keras_recu.larq needs tf.keras to be tf-keras" in result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr


def test_front_quantizers_match_the_reference(rng):
    kernel = rng.laplace(0.0, 0.1, size=(3, 3, 8, 16)).astype("float32")
    upstream = rng.normal(size=kernel.shape).astype("float32")
    variable = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        out = recu_larq.ReCUSign(tau=0.8)(variable)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, variable).numpy()
    w = ref.keras_kernel_to_torch(kernel)
    y = ref.recu_weight(w, tau=0.8)
    (y * ref.keras_kernel_to_torch(upstream)).sum().backward()
    np.testing.assert_array_equal(out.numpy(), ref.torch_kernel_to_keras(y))
    want = ref.torch_kernel_to_keras(w.grad)
    assert_gradients_close(grad, want)

    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(recu_larq.ReCUInputSign()(xv, training=True) * upstream[:2, :, :, :4].sum())
    xt = ref.nhwc_to_torch(x)
    (ref.binarize_activation(xt, True) * float(upstream[:2, :, :, :4].sum())).sum().backward()
    want = ref.torch_to_nhwc(xt.grad)
    assert_gradients_close(tape.gradient(loss, xv).numpy(), want)


def larq_model():
    return tf.keras.Sequential([
        tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False, input_shape=(16, 16, 3)),
        tf.keras.layers.BatchNormalization(),
        larq.layers.QuantConv2D(
            16, 3, padding="same", use_bias=False,
            input_quantizer=recu_larq.ReCUInputSign(), kernel_quantizer=recu_larq.ReCUSign(tau=0.9),
            kernel_constraint=recu_larq.ReCUClamp(tau=0.9),
        ),
        tf.keras.layers.BatchNormalization(),
        larq.layers.QuantConv2D(
            32, 3, strides=2, padding="same", use_bias=False,
            input_quantizer="ReCUInputSign", kernel_quantizer="ReCUSign",
        ),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ])


def test_larq_summary_reports_one_bit_and_no_tau():
    model = larq_model()
    profile = larq.models.ModelProfile(model)
    rows = {p.name: p for p in profile.layer_profiles}
    first, second = rows["quant_conv2d"], rows["quant_conv2d_1"]
    assert first.input_precision == 1 and second.input_precision == 1
    assert first.weight_count(bitwidth=1) == 3 * 3 * 16 * 16 and first.weight_count(bitwidth=32) == 0
    assert second.weight_count(bitwidth=1) == 3 * 3 * 16 * 32 and second.weight_count(bitwidth=32) == 0
    assert first.op_count("mac", 1) == 3 * 3 * 16 * 16 * 16 * 16 and first.op_count("mac", 32) == 0
    assert second.op_count("mac", 1) == 3 * 3 * 16 * 32 * 8 * 8 and second.op_count("mac", 32) == 0
    # first conv + BatchNorms (2 per channel once fused, as larq counts) + dense
    assert profile.weight_count(bitwidth=32) == 3 * 3 * 3 * 16 + 2 * 16 + 2 * 16 + 2 * 32 + 32 * 10 + 10
    assert profile.weight_count(bitwidth=1) == 3 * 3 * 16 * 16 + 3 * 3 * 16 * 32
    # tau lives on as state (a variable the quantizer tracks), not among the weights.
    taus = [layer.kernel_quantizer.tau_variable for layer in model.layers[2:5:2]]
    assert all(isinstance(t, tf.Variable) for t in taus)
    assert not any(w is t for w in model.weights for t in taus)


def test_h5_and_savedmodel_round_trips(tmp_path, rng):
    model = larq_model()
    model.compile(tf.keras.optimizers.SGD(0.05), "mse")
    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    y = rng.normal(size=(8, 10)).astype("float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[recu_larq.TauScheduler(0.7, 0.95)])
    expected_tau = model.layers[2].kernel_quantizer.tau
    assert expected_tau == pytest.approx(0.7 + 0.25 / (math.e - 1) * (math.exp(0.5) - 1))
    for path in (tmp_path / "model.h5", tmp_path / "saved_model"):
        model.save(path)
        loaded = tf.keras.models.load_model(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
        quantizer = loaded.layers[2].kernel_quantizer
        assert isinstance(quantizer, recu_larq.ReCUSign) and quantizer.tau == pytest.approx(expected_tau)
        assert loaded.layers[2].kernel_constraint.tau == pytest.approx(expected_tau)


LR = 0.5


def test_tau_schedule_reaches_larqs_compiled_train_step(rng):
    x = rng.normal(size=(32, 12)).astype("float32")
    y = rng.normal(size=(32, 5)).astype("float32")
    model = tf.keras.Sequential([
        larq.layers.QuantDense(5, kernel_quantizer=recu_larq.ReCUSign(), use_bias=False, input_shape=(12,)),
    ])
    model.compile(tf.keras.optimizers.SGD(LR), "mse")
    kernels = {}
    recorder = tf.keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: kernels.__setitem__(epoch, model.layers[0].kernel.numpy().copy())
    )
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0,
                        callbacks=[recu_larq.TauScheduler(0.6, 0.99), recorder])
    kernels[3] = model.layers[0].kernel.numpy()
    a = 0.39 / (math.e - 1)
    taus = [a * math.exp(i / 3) + 0.6 - a for i in range(3)]
    np.testing.assert_allclose(history.history["tau"], taus)

    def update(kernel, tau):
        w = ref.keras_kernel_to_torch(kernel)
        prediction = torch.tensor(x, dtype=torch.float64) @ ref.recu_weight(w, tau).T
        ((prediction - torch.tensor(y, dtype=torch.float64)) ** 2).mean().backward()
        return kernel - LR * ref.torch_kernel_to_keras(w.grad)

    for epoch, tau in enumerate(taus):
        np.testing.assert_allclose(kernels[epoch + 1], update(kernels[epoch], tau), rtol=1e-4, atol=1e-5)
        other = 0.99 if tau < 0.8 else 0.6
        assert not np.allclose(kernels[epoch + 1], update(kernels[epoch], other), rtol=1e-4, atol=1e-5)


def test_larq_model_converts_with_every_binary_conv_as_lce_bconv2d(rng):
    model = larq_model()
    randomize_batch_norm(model, rng)
    flatbuffer = convert(model)
    ops = census(flatbuffer)
    assert ops["LceBconv2d"] == 2 and ops["CONV_2D"] == 1
    report = verify(model, flatbuffer, rng.normal(size=(8, 16, 16, 3)))
    assert report.float_binary_layers == [] and report.max_rel_error < 1e-3
    assert report.argmax_agreement == 1.0


def test_front_rejects_bad_tau():
    with pytest.raises(ValueError, match=r"`tau` must lie in the open interval \(0.5, 1\)"):
        recu_larq.ReCUSign(tau=1.0)
    with pytest.raises(ValueError, match=r"`tau_min` \(0.9\) must not exceed"):
        recu_larq.TauScheduler(0.9, 0.8)
