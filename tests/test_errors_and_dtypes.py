"""Bad input gets a clear error; degenerate input no NaN; reduced-precision policies train."""

import math

import keras
import numpy as np
import pytest

from keras_recu.callbacks import TauScheduler
from keras_recu.constraints import ReCUClamp
from keras_recu.layers import QuantDense, ReCUConv2D
from keras_recu.quantizers import ReCUInputSign, ReCUSign
from tests.gradients import function_gradients, layer_gradients, to_numpy

BAD_TAUS = [0.5, 1.0, 1.2, 0.0, -0.9, float("nan")]
TAU_RANGE = r"`tau` must lie in the open interval \(0.5, 1\), got"


@pytest.mark.parametrize("tau", BAD_TAUS)
@pytest.mark.parametrize("make", [ReCUSign, ReCUClamp, lambda tau: ReCUConv2D(4, 3, tau=tau)],
                         ids=["ReCUSign", "ReCUClamp", "ReCUConv2D"])
def test_tau_outside_open_interval_is_refused(make, tau):
    with pytest.raises(ValueError, match=TAU_RANGE):
        make(tau=tau)


@pytest.mark.parametrize("holder", [ReCUSign(), ReCUClamp()], ids=["ReCUSign", "ReCUClamp"])
def test_setting_a_bad_tau_is_refused_and_keeps_the_old_one(holder):
    holder.tau = 0.9
    with pytest.raises(ValueError, match=TAU_RANGE):
        holder.tau = 1.0
    with pytest.raises(TypeError, match="`tau` must be a number"):
        holder.tau = "high"
    assert holder.tau == pytest.approx(0.9)


@pytest.mark.parametrize("make", [ReCUSign, ReCUClamp])
def test_kernel_rank_below_two_is_refused(make):
    with pytest.raises(ValueError, match=r"expects a kernel of rank >= 2 .* shape \(5,\)"):
        make()(keras.ops.ones((5,)))


def test_single_weight_per_channel_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="at least 2 weights per output channel.*standardize=False"):
        ReCUSign()(keras.ops.ones((1, 4)))
    out = ReCUSign(standardize=False)(keras.ops.convert_to_tensor([[0.3, -0.2, 0.0, -1.0]]))
    np.testing.assert_array_equal(to_numpy(out), [[1.0, -1.0, 1.0, -1.0]])


@pytest.mark.parametrize("options", [{}, {"per_channel_threshold": True}, {"output_scale": "mean_abs"}])
def test_constant_kernel_gives_no_nan(options, rng):
    kernel = np.full((3, 3, 4, 8), 0.25, "float32")
    upstream = rng.normal(size=kernel.shape)
    out, (grad,) = function_gradients(ReCUSign(**options), [kernel], upstream)
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    if not options:
        np.testing.assert_array_equal(out, np.ones((3, 3, 4, 8)))


def test_constant_activations_give_no_nan():
    x = np.zeros((2, 4, 4, 3), "float32")
    _, (grad,) = function_gradients(lambda x: ReCUInputSign()(x, training=True), [x], np.ones_like(x))
    assert np.isfinite(grad).all()


def test_constant_layer_trains_without_nan(rng):
    model = keras.Sequential([keras.Input((6, 6, 2)), ReCUConv2D(4, 3, kernel_initializer="ones"),
                              keras.layers.GlobalAveragePooling2D()])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(np.zeros((4, 6, 6, 2)), np.ones((4, 4)), epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert np.isfinite(to_numpy(model.layers[0].kernel)).all()


def test_integer_inputs_are_refused_clearly():
    with pytest.raises(TypeError, match="floating-point tensors, got dtype int32.*Cast"):
        ReCUInputSign()(np.ones((2, 3), "int32"))
    with pytest.raises(TypeError, match="floating-point tensors, got dtype int32"):
        ReCUConv2D(4, 3)(np.ones((1, 5, 5, 2), "int32"))
    # JAX (without jax_enable_x64) converts int64 arrays to int32.
    with pytest.raises(TypeError, match="floating-point tensors, got dtype int(64|32)"):
        ReCUSign()(np.ones((3, 3), "int64"))


@pytest.mark.parametrize("bad", [dict(output_scale="max"), dict(laplace_scale=0.0), dict(epsilon=0.0)])
def test_recu_sign_rejects_bad_options(bad):
    with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
        ReCUSign(**bad)


def small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = ReCUConv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = QuantDense(6, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign")(x)
    outputs = keras.layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_binary_layer_is_exact_in_reduced_precision(policy, rng):
    """+-1 operands and integer sums are exact in float16/bfloat16; only alpha rounds."""
    x = rng.normal(size=(4, 8, 8, 6)).astype("float32")
    reference = ReCUConv2D(8, 3, padding="same")
    reference.build(x.shape)
    keras.config.set_dtype_policy(policy)
    layer = ReCUConv2D(8, 3, padding="same")
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    assert layer.compute_dtype == policy.split("_")[1]

    def forward_and_kernel_grad(net):
        out = to_numpy(net(x, training=True)).astype("float32")
        # The gradient of sum(out ** 2).
        _, _, grads = layer_gradients(net, x, 2.0 * out, training=True)
        return out, grads[net.kernel.path]

    (out, grad), (out_ref, grad_ref) = forward_and_kernel_grad(layer), forward_and_kernel_grad(reference)
    np.testing.assert_allclose(out, out_ref, rtol=1e-2, atol=1e-2)
    assert np.isfinite(grad).all()
    cosine = (grad * grad_ref).sum() / (np.linalg.norm(grad) * np.linalg.norm(grad_ref))
    assert cosine > 0.99


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_reduced_precision_model_trains(policy, rng):
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.normal(size=(32, 6)).astype("float32")
    keras.config.set_dtype_policy(policy)
    model = small_model()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[TauScheduler()])
    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert all(np.isfinite(w).all() for w in model.get_weights())
