"""ReCUClamp: the range it clamps to, and that fit applies it."""

import keras
import numpy as np
import pytest

from keras_recu.constraints import ReCUClamp
from keras_recu.layers import QuantConv2D
from keras_recu.quantizers import ReCUSign, SteSign
from tests.gradients import to_numpy


def numpy_clamp(w, tau, standardize=True, b=2.0, eps=1e-5):
    """The documented range, computed in numpy (float64)."""
    w = w.astype("float64")
    axes = tuple(range(w.ndim - 1))
    if not standardize:
        q = -np.abs(w).mean() * np.log(2 - 2 * tau)
        return np.clip(w, -q, q)
    mean = w.mean(axis=axes, keepdims=True)
    scale = np.sqrt(w.var(axis=axes, ddof=1, keepdims=True) + eps) / (b * np.sqrt(2))
    q = -np.abs((w - mean) / scale).mean() * np.log(2 - 2 * tau)
    return np.clip(w, mean - q * scale, mean + q * scale)


@pytest.mark.parametrize("shape", [(3, 3, 8, 16), (40, 6)])
@pytest.mark.parametrize("tau", [0.7, 0.85, 0.99])
def test_clamp_matches_documented_range(shape, tau, rng):
    w = rng.laplace(0.02, 0.1, size=shape).astype("float32")
    clamped = to_numpy(ReCUClamp(tau=tau)(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(clamped, numpy_clamp(w, tau), rtol=1e-5, atol=1e-7)
    clamped = to_numpy(ReCUClamp(tau=tau, standardize=False)(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(clamped, numpy_clamp(w, tau, standardize=False), rtol=1e-5, atol=1e-7)


def test_clamp_moves_exactly_the_weights_recu_clamps(rng):
    w = rng.laplace(0.0, 0.1, size=(3, 3, 16, 8)).astype("float32")
    tau = 0.85
    moved = to_numpy(ReCUClamp(tau=tau)(keras.ops.convert_to_tensor(w))) != w
    axes = (0, 1, 2)
    standardized = (w - w.mean(axes)) / (np.sqrt(w.var(axes, ddof=1) + 1e-5) / (2 * np.sqrt(2)))
    q = -np.abs(standardized).mean() * np.log(2 - 2 * tau)
    np.testing.assert_array_equal(moved, np.abs(standardized) > q)
    # A Laplace kernel has about 2 * (1 - tau) of its weights beyond the range.
    assert moved.mean() == pytest.approx(2 * (1 - tau), abs=0.04)


def test_clamp_keeps_the_binary_kernel_and_is_not_idempotent(rng):
    w = rng.laplace(0.0, 0.1, size=(3, 3, 16, 8)).astype("float32")
    clamped = to_numpy(ReCUClamp(tau=0.85)(keras.ops.convert_to_tensor(w)))
    # Clamping towards the channel mean never crosses zero for these weights
    # (|mean| is far below the range), so the binarized kernel is unchanged.
    np.testing.assert_array_equal(to_numpy(SteSign()(clamped)), to_numpy(SteSign()(w)))
    # As documented: clamping narrows the spread, so the range recomputed from
    # the clamped kernel is narrower and a second application moves weights
    # again, never outside the first range.
    twice = to_numpy(ReCUClamp(tau=0.85)(keras.ops.convert_to_tensor(clamped)))
    assert (twice != clamped).mean() > 0.1
    assert twice.max() <= clamped.max() and twice.min() >= clamped.min()


def test_fit_applies_the_constraint_after_each_step(rng):
    clamp = ReCUClamp(tau=0.75)
    layer = QuantConv2D(8, 3, kernel_quantizer=ReCUSign(), kernel_constraint=clamp, use_bias=False)
    model = keras.Sequential([keras.Input((6, 6, 4)), layer, keras.layers.GlobalAveragePooling2D()])
    model.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: only the constraint moves weights
    layer.kernel.assign(rng.laplace(0.0, 0.1, size=layer.kernel.shape).astype("float32"))
    before = to_numpy(layer.kernel)
    model.fit(rng.normal(size=(4, 6, 6, 4)), np.zeros((4, 8)), batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(to_numpy(layer.kernel), numpy_clamp(before, 0.75), rtol=1e-5, atol=1e-7)


def test_constant_kernel_is_left_finite():
    w = keras.ops.ones((3, 3, 2, 4))
    np.testing.assert_array_equal(to_numpy(ReCUClamp()(w)), np.ones((3, 3, 2, 4)))
