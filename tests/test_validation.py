"""Arguments are validated where objects are built: each error names the argument and what it may be.

Also ReCUSign's explicit "no clamp" (`clamp=False`), ReCUConv2D's tau
against its kernel quantizer's, and the one-element-per-sample case that
the unbiased variance cannot handle. Backend-neutral.
"""

import math
import re

import keras
import numpy as np
import pytest

from keras_recu import ops as recu_ops
from keras_recu.callbacks import TauScheduler
from keras_recu.constraints import ReCUClamp
from keras_recu.layers import (
    QuantConv2D,
    QuantDense,
    QuantDepthwiseConv2D,
    QuantizerSlots,
    ReCUConv2D,
)
from keras_recu.quantizers import ReCUInputSign, ReCUSign, SteSign
from tests.gradients import function_gradients, layer_gradients, to_numpy

CLAMP_HOLDERS = {"ReCUSign": ReCUSign, "ReCUClamp": ReCUClamp, "ClampOptions": recu_ops.ClampOptions}
BOOL_ARGS = ["standardize", "per_channel_threshold"]
NOT_BOOLS = ["no", "False", 0, 1, None, np.float32(1.0)]
NOT_POSITIVE = [math.inf, -math.inf, math.nan, 0.0, -1.0]


# Each test loops over its bad values: one test case per holder keeps the
# suite fast (every case pays for a Keras session teardown).


@pytest.mark.parametrize("make", CLAMP_HOLDERS.values(), ids=CLAMP_HOLDERS.keys())
def test_a_flag_must_be_a_bool(make):
    arguments = BOOL_ARGS + (["clamp"] if make is not ReCUClamp else [])
    for argument in arguments:
        for value in NOT_BOOLS:
            with pytest.raises(TypeError, match=re.escape(f"`{argument}` must be True or False, got {value!r}")):
                make(**{argument: value})


def test_bools_numpy_included_are_accepted():
    for value in [True, False, np.bool_(True)]:
        assert ReCUSign(standardize=value, clamp=value).options.standardize is bool(value)
        assert ReCUClamp(per_channel_threshold=value).options.per_channel_threshold is bool(value)


@pytest.mark.parametrize("make", CLAMP_HOLDERS.values(), ids=CLAMP_HOLDERS.keys())
def test_scales_must_be_finite_and_positive(make):
    for argument in ["laplace_scale", "epsilon"]:
        for value in NOT_POSITIVE:
            with pytest.raises(ValueError, match=f"`{argument}` must be a finite number > 0, got {value}"):
                make(**{argument: value})
        for value in ["2", True, None]:
            with pytest.raises(TypeError, match=f"`{argument}` must be a finite number > 0, got {value!r}"):
                make(**{argument: value})


def test_activation_epsilon_and_clip_value_must_be_finite_and_positive():
    for value in NOT_POSITIVE:
        with pytest.raises(ValueError, match="`epsilon` must be a finite number > 0"):
            ReCUInputSign(epsilon=value)
        with pytest.raises(ValueError, match="`clip_value` must be a finite number > 0.*None"):
            SteSign(clip_value=value)


def test_tau_must_be_a_finite_number():
    for value in [math.inf, -math.inf, math.nan]:
        with pytest.raises(ValueError, match=r"`tau` must lie in the open interval \(0.5, 1\)"):
            ReCUSign(tau=value)
    for value in ["0.9", True]:
        with pytest.raises(TypeError, match=r"`tau` must be a number in the open interval \(0.5, 1\)"):
            ReCUClamp(tau=value)


def test_validated_numbers_are_plain_floats():
    options = ReCUSign(laplace_scale=np.float32(1.5), epsilon=np.float64(1e-4)).options
    assert type(options.laplace_scale) is float and type(options.epsilon) is float
    assert options.laplace_scale == 1.5


# ReCUConv2D's tau and its kernel quantizer's.


@pytest.mark.parametrize(
    "kernel_quantizer", [ReCUSign, lambda: "recu_sign", lambda: {"class_name": "ReCUSign", "config": {}}],
    ids=["object", "name", "config"],
)
def test_recu_conv2d_takes_a_default_recu_kernel_quantizer(kernel_quantizer):
    layer = ReCUConv2D(8, 3, kernel_quantizer=kernel_quantizer())
    assert isinstance(layer.kernel_quantizer, ReCUSign)
    assert layer.tau == pytest.approx(0.85)


def test_recu_conv2d_tau_matches_its_quantizers_up_to_float32_rounding():
    for tau in [0.85, np.float32(0.85), 0.8500000238418579, 0.93]:
        quantizer = ReCUSign(tau=float(np.float32(tau)))
        assert ReCUConv2D(8, 3, tau=tau, kernel_quantizer=quantizer).kernel_quantizer is quantizer


def test_recu_conv2d_refuses_two_different_taus():
    for tau in [0.86, 0.8500001]:  # the second is one float32 step away
        with pytest.raises(ValueError, match=f"`tau={tau}` and a kernel quantizer with tau=0.85: two different"):
            ReCUConv2D(8, 3, tau=tau, kernel_quantizer=ReCUSign(tau=0.85))


def test_recu_conv2d_tau_sets_a_quantizer_given_by_name():
    assert ReCUConv2D(8, 3, tau=0.9, kernel_quantizer="recu_sign").tau == pytest.approx(0.9)
    assert ReCUConv2D(8, 3, tau=0.9).tau == pytest.approx(0.9)


def test_recu_conv2d_refuses_a_tau_its_quantizer_would_ignore():
    for kernel_quantizer in ["ste_sign", SteSign(), lambda w: w]:
        with pytest.raises(ValueError, match="`tau=0.9`, but its kernel quantizer .* has no tau and would ignore it"):
            ReCUConv2D(8, 3, tau=0.9, kernel_quantizer=kernel_quantizer)
    assert isinstance(ReCUConv2D(8, 3, kernel_quantizer="ste_sign").kernel_quantizer, SteSign)


def test_recu_conv2d_checks_tau_before_the_quantizer():
    with pytest.raises(ValueError, match=r"`tau` must lie in the open interval \(0.5, 1\), got 1.5"):
        ReCUConv2D(8, 3, tau=1.5, kernel_quantizer="ste_sign")


def test_recu_conv2d_round_trips_the_quantizers_tau():
    layer = ReCUConv2D(8, 3, kernel_quantizer=ReCUSign(tau=0.93))
    config = layer.get_config()
    assert config["tau"] is None
    assert ReCUConv2D.from_config(config).tau == pytest.approx(0.93)


# One element per sample, one weight per output channel.


def test_one_element_per_sample_is_refused_with_its_shape():
    for shape in [(2, 1), (2, 1, 1, 1), (3, 1, 1)]:
        message = rf"at least 2 elements per sample; the input of shape \({shape[0]}, 1"
        with pytest.raises(ValueError, match=message):
            ReCUInputSign()(np.ones(shape, "float32"))
        with pytest.raises(ValueError, match="SteSign"):
            ReCUInputSign()(np.ones(shape, "float32"), training=True)


def test_one_element_per_sample_is_refused_at_the_first_step():
    model = keras.Sequential([keras.Input((1, 1, 1)), ReCUConv2D(4, 1, kernel_quantizer="ste_sign")])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"the input of shape \(\w+, 1, 1, 1\) has 1"):
        model.fit(np.ones((2, 1, 1, 1)), np.ones((2, 1, 1, 4)), verbose=0)
    dense = keras.Sequential([keras.Input((1,)), QuantDense(4, input_quantizer="recu_input_sign")])
    with pytest.raises(ValueError, match=r"the input of shape \(\w+, 1\) has 1"):
        dense.predict(np.ones((2, 1)), verbose=0)


def test_two_elements_per_sample_give_finite_gradients(rng):
    x = rng.normal(size=(4, 2)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    out, (grad,) = function_gradients(lambda a: recu_ops.input_sign(a, normalize_gradient=True), [x], upstream)
    assert set(np.unique(out).tolist()) <= {-1.0, 1.0} and np.isfinite(grad).all()
    layer = QuantConv2D(3, 1, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign")
    out, grad_x, grads = layer_gradients(layer, rng.normal(size=(2, 1, 1, 2)), np.ones((2, 1, 1, 3)))
    assert np.isfinite(grad_x).all() and all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("make", [ReCUSign, ReCUClamp, lambda: ReCUSign(clamp=False)])
def test_one_weight_per_output_channel_is_refused_with_the_way_out(make):
    with pytest.raises(ValueError, match=r"at least 2 weights per output channel.*\(1, 4\).*standardize=False"):
        make()(keras.ops.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2 weights per output channel"):
        keras.Sequential([keras.Input((1,)), QuantDense(4, kernel_quantizer="recu_sign")]).predict(
            np.ones((2, 1)), verbose=0
        )


# ReCUSign(clamp=False): standardization without a clamp.


def numpy_standardized(w):
    axes = tuple(range(w.ndim - 1))
    centered = w - w.mean(axis=axes, keepdims=True)
    variance = (centered**2).sum(axis=axes, keepdims=True) / (math.prod(w.shape[:-1]) - 1)
    return centered / (np.sqrt(variance + 1e-5) / (2 * math.sqrt(2)))


def test_no_clamp_binarizes_the_standardized_kernel(rng):
    kernel = rng.laplace(0.2, 0.1, size=(3, 3, 4, 6)).astype("float32")
    kernel[:, :, :, 0] *= 50.0  # a far tail that a clamp would cut
    standardized = numpy_standardized(kernel.astype("float64"))
    out = to_numpy(ReCUSign(clamp=False)(kernel))
    np.testing.assert_array_equal(out, np.where(standardized >= 0, 1.0, -1.0))
    scaled = to_numpy(ReCUSign(clamp=False, output_scale="mean_abs")(kernel))
    alpha = np.abs(standardized).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(scaled, out * alpha, rtol=1e-5)
    # The clamp-at-tau version scales by the clamped kernel: smaller.
    clamped = to_numpy(ReCUSign(tau=0.85, output_scale="mean_abs")(kernel))
    assert (np.abs(clamped).max(axis=(0, 1, 2)) < alpha).all()


def test_no_clamp_passes_the_gradient_of_the_standardization_everywhere(rng):
    kernel = rng.laplace(0.0, 0.1, size=(3, 3, 4, 6)).astype("float32")
    upstream = rng.normal(size=kernel.shape).astype("float32")
    options = recu_ops.ClampOptions(clamp=False)
    _, (grad,) = function_gradients(lambda w: recu_ops.binarize_kernel(w, 0.6, options), [kernel], upstream)
    _, (want,) = function_gradients(recu_ops.standardize, [kernel], upstream)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    _, (clamped,) = function_gradients(lambda w: recu_ops.binarize_kernel(w, 0.6), [kernel], upstream)
    assert not np.allclose(clamped, want)  # the control: a clamp at 0.6 cuts gradients


def test_no_clamp_round_trips_and_keeps_a_settable_tau(rng):
    quantizer = ReCUSign(tau=0.9, clamp=False)
    config = quantizer.get_config()
    assert config["clamp"] is False and config["tau"] == pytest.approx(0.9)
    revived = ReCUSign.from_config(config)
    assert revived.options == quantizer.options
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    before = to_numpy(revived(kernel))
    revived.tau = 0.55
    np.testing.assert_array_equal(to_numpy(revived(kernel)), before)


def test_tau_scheduler_sets_an_unclamped_quantizer(rng):
    quantizer = ReCUSign(clamp=False)
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        QuantConv2D(3, 3, kernel_quantizer=quantizer, use_bias=False),
        keras.layers.GlobalAveragePooling2D(),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    history = model.fit(rng.normal(size=(4, 5, 5, 2)), rng.normal(size=(4, 3)), epochs=2, verbose=0,
                        callbacks=[TauScheduler(0.7, 0.95)])
    assert history.history["tau"][0] == pytest.approx(0.7)
    assert quantizer.tau == pytest.approx(history.history["tau"][1])


def test_a_constraint_always_clamps():
    config = ReCUClamp(tau=0.9).get_config()
    assert "clamp" not in config
    assert ReCUClamp.from_config(config).options.clamp is True
    with pytest.raises(TypeError, match="clamp"):
        ReCUClamp(clamp=False)


# One way of holding and serializing quantizers.


@pytest.mark.parametrize(
    "layer, names",
    [
        (QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer=ReCUSign(tau=0.9, clamp=False)),
         ("input_quantizer", "kernel_quantizer")),
        (QuantDense(4, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign"),
         ("input_quantizer", "kernel_quantizer")),
        (QuantDepthwiseConv2D(3, input_quantizer=SteSign(clip_value=None), depthwise_quantizer="recu_sign"),
         ("input_quantizer", "depthwise_quantizer")),
        (ReCUConv2D(4, 3, tau=0.93), ("input_quantizer", "kernel_quantizer")),
    ],
    ids=["QuantConv2D", "QuantDense", "QuantDepthwiseConv2D", "ReCUConv2D"],
)
def test_layers_hold_and_serialize_their_quantizers_alike(layer, names):
    assert isinstance(layer, QuantizerSlots) and layer.quantizer_names == names
    revived = type(layer).from_config(layer.get_config())
    for name in names:
        original, copy = getattr(layer, name), getattr(revived, name)
        assert type(copy) is type(original)
        assert copy.get_config() | {"name": None} == original.get_config() | {"name": None}
    assert QuantConv2D(4, 3).get_config()["kernel_quantizer"] is None


# L2SGD: non-finite hyperparameters are refused.


def test_l2sgd_refuses_non_finite_hyperparameters():
    from keras_recu.optimizers import L2SGD

    for kwargs, message in [
        (dict(learning_rate=math.nan), "`learning_rate` must be a finite number >= 0, or a schedule, got nan"),
        (dict(learning_rate=math.inf), "`learning_rate` must be a finite number >= 0, or a schedule, got inf"),
        (dict(l2=math.inf), "`l2` must be >= 0 and finite, got inf"),
        (dict(l2=math.nan), "`l2` must be >= 0 and finite, got nan"),
        (dict(momentum=math.nan), r"`momentum` must be a number in \[0, 1\], got nan"),
        (dict(momentum=1.5), r"`momentum` must be a number in \[0, 1\], got 1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            L2SGD(**kwargs)
    with pytest.raises(TypeError, match="`l2` must be >= 0 and finite, got '5e-4'"):
        L2SGD(l2="5e-4")
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    revived = L2SGD.from_config(L2SGD(schedule, momentum=np.float32(0.9), l2=5e-4).get_config())
    assert revived.l2 == 5e-4


def test_the_math_takes_numpy_arrays_on_every_backend(rng):
    kernel = rng.laplace(size=(3, 3, 2, 4)).astype("float32")
    standardized = to_numpy(recu_ops.standardize(kernel))
    np.testing.assert_allclose(standardized, numpy_standardized(kernel.astype("float64")), rtol=1e-5, atol=1e-5)
    mean, scale = (to_numpy(t) for t in recu_ops.standardization_moments(kernel))
    np.testing.assert_allclose((kernel - mean) / scale, standardized, rtol=1e-5, atol=1e-5)
    assert to_numpy(recu_ops.recu_kernel(kernel, 0.9)).shape == kernel.shape
