"""A NaN or infinite value that reaches a binarization in training surfaces as NaN.

A sign select turns NaN into -1, so a network whose float layers have gone
NaN used to keep a finite, flat loss. In training the quantizers now make
such values NaN (loss NaN, `TerminateOnNaN` stops `fit`); for finite values
the forward stays exactly +-1 and the gradients are those of before; in
inference the output is the pure sign select that LCE rewrites
(tests/test_lce_lowering.py and tests/test_deploy.py check the lowering).
Backend-neutral: runs under KERAS_BACKEND=tensorflow, jax and torch.
"""

import keras
import numpy as np
import pytest

from keras_recu import ops as recu_ops
from keras_recu.layers import QuantConv2D, QuantDense, ReCUConv2D
from keras_recu.quantizers import ReCUInputSign, ReCUSign, SteSign
from tests.gradients import BACKEND, function_gradients, layer_gradients, to_numpy

QUANTIZERS = {
    "ReCUSign": lambda: ReCUSign(tau=0.9),
    "ReCUSign_no_clamp": lambda: ReCUSign(clamp=False),
    "ReCUSign_mean_abs": lambda: ReCUSign(output_scale="mean_abs"),
    "ReCUInputSign": ReCUInputSign,
    "SteSign": SteSign,
    "SteSign_unclipped": lambda: SteSign(clip_value=None),
}
# "auto" compiles with XLA on TensorFlow and JAX (torch runs eagerly);
# TensorFlow's plain graph, rewritten by Grappler, is checked too.
JIT_MODES = [False, "auto"] if BACKEND == "tensorflow" else ["auto"]


def binary_values(out):
    return set(np.unique(to_numpy(out)).tolist())


@pytest.mark.parametrize("make", QUANTIZERS.values(), ids=QUANTIZERS.keys())
@pytest.mark.parametrize("training", [False, True])
def test_finite_input_binarizes_to_exactly_plus_minus_one(make, training, rng):
    x = rng.normal(size=(4, 3, 3, 8)).astype("float32")
    x[0, 0, 0, :] = 0.0  # sign(0) = +1
    quantizer = make()
    out = to_numpy(quantizer(x, training=training))
    if getattr(quantizer, "output_scale", None) == "mean_abs":
        out = np.sign(out)  # +-alpha_c with alpha_c > 0
    assert binary_values(out) == {-1.0, 1.0}
    assert out.dtype == np.float32


@pytest.mark.parametrize("make", ["ReCUInputSign", "SteSign", "SteSign_unclipped"])
def test_nonfinite_activation_is_nan_in_training_and_a_sign_in_inference(make, rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    bad = np.zeros(x.shape, bool)
    bad[0, 1, 2, 0] = bad[1, 0, 0, 2] = bad[1, 3, 3, 1] = True
    x[bad] = [np.nan, np.inf, -np.inf]
    quantizer = QUANTIZERS[make]()

    trained = to_numpy(quantizer(x, training=True))
    assert np.isnan(trained[bad]).all()
    np.testing.assert_array_equal(trained[~bad], np.where(x[~bad] >= 0, 1.0, -1.0))

    inferred = to_numpy(quantizer(x, training=False))
    assert binary_values(inferred) == {-1.0, 1.0}
    np.testing.assert_array_equal(inferred[~bad], trained[~bad])


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("make", ["ReCUSign", "ReCUSign_no_clamp", "ReCUSign_mean_abs", "SteSign"])
def test_nonfinite_latent_weight_is_nan_in_training(make, value, rng):
    kernel = rng.laplace(0.0, 0.1, size=(3, 3, 4, 6)).astype("float32")
    kernel[1, 1, 2, 3] = value
    quantizer = QUANTIZERS[make]()
    trained = to_numpy(quantizer(kernel, training=True))
    assert np.isnan(trained[1, 1, 2, 3])
    inferred = to_numpy(quantizer(kernel, training=False))
    if getattr(quantizer, "output_scale", None) is None:
        # The pure select; a mean_abs scale is a float of the kernel, NaN anyway.
        assert binary_values(inferred) <= {-1.0, 1.0}


@pytest.mark.parametrize("normalize", [True, False])
def test_propagation_leaves_the_activation_gradient_unchanged(normalize, rng):
    x = rng.normal(size=(3, 5, 5, 4)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    plain = function_gradients(lambda a: recu_ops.input_sign(a, normalize), [x], upstream)
    guarded = function_gradients(
        lambda a: recu_ops.input_sign(a, normalize, propagate_nonfinite=True), [x], upstream
    )
    np.testing.assert_array_equal(guarded[0], plain[0])
    np.testing.assert_array_equal(guarded[1][0], plain[1][0])


@pytest.mark.parametrize("options", [recu_ops.ClampOptions(), recu_ops.ClampOptions(clamp=False)])
@pytest.mark.parametrize("output_scale", [None, "mean_abs"])
def test_propagation_leaves_the_kernel_gradient_unchanged(options, output_scale, rng):
    kernel = rng.laplace(0.0, 0.1, size=(3, 3, 4, 6)).astype("float32")
    upstream = rng.normal(size=kernel.shape).astype("float32")

    def binarize(propagate):
        return lambda w: recu_ops.binarize_kernel(w, 0.85, options, output_scale, propagate)

    plain = function_gradients(binarize(False), [kernel], upstream)
    guarded = function_gradients(binarize(True), [kernel], upstream)
    np.testing.assert_array_equal(guarded[0], plain[0])
    np.testing.assert_array_equal(guarded[1][0], plain[1][0])


def test_layer_passes_training_to_its_quantizers(rng):
    """Quantizers inside a layer get `training` from the layer's call context."""
    layer = ReCUConv2D(4, 3, padding="same")
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    x[0, 2, 2, 1] = np.nan
    assert np.isnan(to_numpy(layer(x, training=True))[0]).any()
    assert np.isfinite(to_numpy(layer(x, training=False))).all()
    out, grad_x, grads = layer_gradients(layer, np.nan_to_num(x), np.ones((2, 5, 5, 4), "float32"))
    assert np.isfinite(out).all() and np.isfinite(grad_x).all()
    assert all(np.isfinite(g).all() for g in grads.values())


def tiny_model(kernel_quantizer="recu_sign"):
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = QuantConv2D(4, 3, padding="same", use_bias=False,
                    input_quantizer="recu_input_sign", kernel_quantizer=kernel_quantizer)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = QuantDense(3, input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer)(x)
    return keras.Model(inputs, outputs)


def fit(model, x, jit_compile, epochs=3):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(len(x), 3)).astype("float32")
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=jit_compile)
    return model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=[keras.callbacks.TerminateOnNaN()])


@pytest.mark.parametrize("jit_compile", JIT_MODES)
def test_nan_pixel_makes_the_loss_nan_and_terminate_on_nan_stops_fit(jit_compile, rng):
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    clean = fit(tiny_model(), x, jit_compile, epochs=2)
    assert np.isfinite(clean.history["loss"]).all()

    x[5, 3, 3, 0] = np.nan
    model = tiny_model()
    history = fit(model, x, jit_compile)
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
    assert model.stop_training


@pytest.mark.parametrize("kernel_quantizer", ["recu_sign", "ste_sign"])
def test_nan_latent_weight_makes_the_loss_nan(kernel_quantizer, rng):
    model = tiny_model(kernel_quantizer)
    conv = model.layers[3]
    kernel = to_numpy(conv.kernel).copy()
    kernel[0, 0, 0, 0] = np.nan
    conv.kernel.assign(kernel)
    history = fit(model, rng.normal(size=(8, 6, 6, 2)).astype("float32"), "auto")
    assert np.isnan(history.history["loss"][0]) and model.stop_training

