"""ReCUSign, ReCUInputSign and SteSign against the PyTorch reference, forward and backward."""

import numpy as np
import pytest

from keras_recu.quantizers import ReCUInputSign, ReCUSign, SteSign, get, serialize
from tests import torch_reference as ref
from tests.gradients import assert_gradients_close, function_gradients, to_numpy

KERNEL_SHAPES = [(3, 3, 16, 32), (1, 1, 8, 4), (5, 5, 3, 7), (64, 10)]
TAUS = [0.6, 0.85, 0.9, 0.99]


def keras_forward_backward(quantizer, x, upstream, **call_kwargs):
    y, (grad,) = function_gradients(lambda x: quantizer(x, **call_kwargs), [x], upstream)
    return y, grad


def reference_kernel(kernel, upstream, **kwargs):
    w = ref.keras_kernel_to_torch(kernel)
    y = ref.recu_weight(w, **kwargs)
    (y * ref.keras_kernel_to_torch(upstream)).sum().backward()
    return ref.torch_kernel_to_keras(y), ref.torch_kernel_to_keras(w.grad)


@pytest.mark.parametrize("shape", KERNEL_SHAPES)
@pytest.mark.parametrize("tau", TAUS)
def test_recu_sign_matches_reference(shape, tau, rng):
    kernel = rng.normal(0.01, 0.05, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    y, grad = keras_forward_backward(ReCUSign(tau=tau), kernel, upstream)
    y_ref, grad_ref = reference_kernel(kernel, upstream, tau=tau)
    np.testing.assert_array_equal(y, y_ref)
    assert set(np.unique(y)) <= {-1.0, 1.0}
    # The gradient runs through the clamp mask and the standardization.
    assert_gradients_close(grad, grad_ref)


@pytest.mark.parametrize(
    "options, ref_options",
    [
        (dict(standardize=False), dict(standardize=False)),
        (dict(laplace_scale=1.0), dict(laplace_scale=1.0)),
        (dict(per_channel_threshold=True), dict(per_channel=True)),
        (dict(output_scale="mean_abs"), dict(output_scale="mean_abs")),
        (
            dict(per_channel_threshold=True, output_scale="mean_abs", laplace_scale=3.0),
            dict(per_channel=True, output_scale="mean_abs", laplace_scale=3.0),
        ),
    ],
)
def test_recu_sign_options_match_reference(options, ref_options, rng):
    shape = (3, 3, 8, 12)
    kernel = rng.laplace(0.0, 0.1, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    y, grad = keras_forward_backward(ReCUSign(tau=0.8, **options), kernel, upstream)
    y_ref, grad_ref = reference_kernel(kernel, upstream, tau=0.8, **ref_options)
    # Signs, or signs times a float32 mean |W2| (one rounding step apart).
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=0)
    assert_gradients_close(grad, grad_ref)


def test_recu_sign_clamps_both_tails_beyond_the_tau_quantile(rng):
    """For Laplace weights, a share 2 * (1 - tau) lies beyond +-Q(tau)."""
    kernel = rng.laplace(0.0, 1.0, size=(3, 3, 32, 16)).astype("float32")
    tau = 0.85
    _, grad = keras_forward_backward(ReCUSign(tau=tau), kernel, np.ones_like(kernel))
    clamped = ref.recu_clamped(ref.keras_kernel_to_torch(kernel), tau)
    q = clamped.abs().max().item()
    dead = np.abs(ref.torch_kernel_to_keras(clamped)) >= q * (1 - 1e-6)
    # 1 - tau of a Laplace sample lies above Q(tau), as much below -Q(tau).
    assert dead.mean() == pytest.approx(2 * (1 - tau), abs=0.03)
    # With a constant upstream gradient, the standardization's Jacobian makes
    # the gradient of every weight depend on the others; the dead ones still
    # receive only that indirect part, so compare against the reference.
    _, grad_ref = reference_kernel(kernel, np.ones_like(kernel), tau=tau)
    assert_gradients_close(grad, grad_ref)


def test_recu_sign_without_standardization_zeroes_dead_gradients(rng):
    kernel = rng.laplace(0.0, 1.0, size=(64, 32)).astype("float32")
    tau = 0.9
    _, grad = keras_forward_backward(ReCUSign(tau=tau, standardize=False), kernel, np.ones_like(kernel))
    q = -np.abs(kernel).mean() * np.log(2 - 2 * tau)
    np.testing.assert_array_equal(grad, (np.abs(kernel) <= q).astype("float32"))


def test_sign_of_zero_is_plus_one():
    kernel = np.zeros((3, 3, 2, 4), "float32")
    kernel[0, 0, 0, :] = [-1.0, 0.0, 1.0, 0.0]
    y = to_numpy(ReCUSign(standardize=False)(kernel))
    assert set(np.unique(y)) == {-1.0, 1.0}
    assert (y[1:] == 1.0).all()
    x = np.array([[-2.0, -0.0, 0.0, 3.0]], "float32")
    np.testing.assert_array_equal(to_numpy(ReCUInputSign()(x)), [[-1.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize("shape", [(2, 8, 8, 16), (3, 5, 7, 1), (4, 32)])
@pytest.mark.parametrize("training", [True, False])
def test_recu_input_sign_matches_reference(shape, training, rng):
    x = rng.normal(0.0, 0.7, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    y, grad = keras_forward_backward(ReCUInputSign(), x, upstream, training=training)
    xt = ref.nhwc_to_torch(x)
    yt = ref.binarize_activation(xt, training)
    (yt * ref.nhwc_to_torch(upstream)).sum().backward()
    np.testing.assert_array_equal(y, ref.torch_to_nhwc(yt))
    grad_ref = ref.torch_to_nhwc(xt.grad)
    assert_gradients_close(grad, grad_ref)


@pytest.mark.tf_only
def test_recu_input_sign_dynamic_spatial_shape(rng):
    """The per-sample count also works when H and W are unknown at trace time.

    Only TensorFlow traces with unknown dimensions; JAX and torch always see
    concrete shapes.
    """
    import tensorflow as tf

    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    quantizer = ReCUInputSign()

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])] * 2)
    def grad_of(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(quantizer(x, training=True) * upstream)
        return tape.gradient(loss, x)

    _, grad_static = keras_forward_backward(quantizer, x, upstream, training=True)
    np.testing.assert_allclose(grad_of(x, upstream).numpy(), grad_static, rtol=1e-5, atol=1e-6)


def test_ste_sign_gradient_is_clipped():
    x = np.array([[-1.5, -0.5, 0.0, 0.9, 1.0, 2.0]], "float32")
    y, grad = keras_forward_backward(SteSign(), x, np.ones_like(x))
    np.testing.assert_array_equal(y, [[-1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(grad, [[0, 1, 1, 1, 1, 0]])
    _, grad = keras_forward_backward(SteSign(clip_value=None), x, np.ones_like(x))
    np.testing.assert_array_equal(grad, np.ones_like(x))


def test_get_resolves_names_and_objects():
    assert isinstance(get("recu_sign"), ReCUSign)
    assert isinstance(get("ReCUInputSign"), ReCUInputSign)
    assert isinstance(get("ste_sign"), SteSign)
    assert get(None) is None
    q = ReCUSign(tau=0.9)
    assert get(q) is q
    clone = get(serialize(q))
    assert isinstance(clone, ReCUSign) and clone is not q and clone.tau == pytest.approx(0.9)
    with pytest.raises(ValueError, match="Unknown quantizer 'recu'.*recu_sign"):
        get("recu")
    with pytest.raises(TypeError, match="quantizer must be"):
        get(3)


def test_quantizers_report_one_bit():
    assert ReCUSign.precision == ReCUInputSign.precision == SteSign.precision == 1
