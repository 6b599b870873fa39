"""Diagnostics of kernels that are not finite (NaN, not 0) and of a ReCU quantizer without clamp.

Backend-neutral: runs under KERAS_BACKEND=tensorflow, jax and torch.
"""

import math

import keras
import numpy as np
import pytest

from keras_recu.diagnostics import (
    KERNEL_METRICS,
    DiagnosticsCallback,
    histogram_entropy,
    kernel_diagnostics,
    model_diagnostics,
)
from keras_recu.layers import QuantConv2D, ReCUConv2D
from keras_recu.ops import ClampOptions
from keras_recu.quantizers import ReCUSign

RAW = ClampOptions(standardize=False)
HAND = np.array([[-3.0], [-1.0], [1.0], [3.0]])  # (4 inputs, 1 output channel)
TAU_Q2 = 1 - math.exp(-1) / 2  # Q = 2 for HAND


def _with(kernel, index, value):
    kernel = np.array(kernel, dtype="float32")
    kernel.flat[index] = value
    return kernel


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("options", [ClampOptions(), RAW], ids=["standardized", "raw"])
@pytest.mark.parametrize("recu", [True, False], ids=["recu", "plain"])
def test_a_non_finite_kernel_has_nan_diagnostics(value, options, recu, rng):
    kernel = _with(rng.normal(size=(3, 3, 4, 8)), 5, value)
    result = kernel_diagnostics(kernel, 0.85, options, recu=recu)
    assert set(result) == set(KERNEL_METRICS)
    assert all(math.isnan(v) for v in result.values()), result


def test_a_finite_kernel_whose_standardization_overflows_is_nan_too():
    # float32 squares of 1e30 overflow: the variance, and so w1, are not finite.
    kernel = np.full((4, 2), 1e30, "float32") * np.array([[1], [-1], [1], [-1]], "float32")
    assert all(math.isnan(v) for v in kernel_diagnostics(kernel, 0.85).values())


def test_histogram_entropy_of_non_finite_values_is_nan():
    assert math.isnan(histogram_entropy([0.0, 1.0, np.nan]))
    assert math.isnan(histogram_entropy([0.0, np.inf]))
    assert histogram_entropy([1.0, 1.0]) == float("-inf")  # finite and constant: unchanged


def test_model_diagnostics_of_a_nan_layer_are_nan_and_the_others_unchanged(rng):
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        ReCUConv2D(4, 3, name="broken"),
        ReCUConv2D(4, 3, name="healthy"),
    ])
    healthy = model_diagnostics(model)["healthy"]
    broken = model.get_layer("broken")
    broken.kernel.assign(_with(keras.ops.convert_to_numpy(broken.kernel), 0, np.nan))
    result = model_diagnostics(model)
    assert all(math.isnan(v) for v in result["broken"].values())
    assert result["healthy"] == healthy


def test_callback_reports_nan_when_a_kernel_goes_non_finite(rng):
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        ReCUConv2D(4, 3, name="a"),
        ReCUConv2D(4, 3, name="b"),
        keras.layers.GlobalAveragePooling2D(),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: only the NaN below changes a kernel

    class Poison(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                layer = self.model.get_layer("a")
                layer.kernel.assign(_with(keras.ops.convert_to_numpy(layer.kernel), 3, np.nan))

    diagnostics = DiagnosticsCallback()
    x, y = rng.normal(size=(4, 6, 6, 2)).astype("float32"), np.zeros((4, 4), "float32")
    # Poison runs first: epoch 1's diagnostics see the NaN.
    model.fit(x, y, epochs=3, verbose=0, callbacks=[Poison(), diagnostics])
    history = diagnostics.history
    assert history["flip_ratio"][0] == 0.0 and not math.isnan(history["dead_share"][0])
    for metric in ("dead_share", "quant_error", "entropy", "binary_entropy", "flip_ratio"):
        assert math.isnan(history[metric][1]) and math.isnan(history[metric][2]), metric
        assert math.isnan(diagnostics.layer_history["a"][metric][1]), metric
    assert diagnostics.layer_history["b"]["flip_ratio"][1] == 0.0


def test_recu_quantizer_without_clamp_binarizes_the_standardized_kernel():
    # Without standardization, w2 = w1 = HAND: alpha = 2, four errors of 1 over 20.
    result = kernel_diagnostics(HAND, TAU_Q2, ClampOptions(standardize=False, clamp=False))
    assert result["quant_error"] == pytest.approx(0.2, rel=1e-6)
    assert result["dead_share"] == 0.5  # what a clamp at this tau would cut

    # In a model, the quantizer's unused tau gives way to reference_tau.
    model = keras.Sequential([
        keras.Input((4, 4, 1)),
        QuantConv2D(1, 2, input_quantizer="ste_sign", kernel_quantizer=ReCUSign(
            tau=0.99, clamp=False, standardize=False), name="unclamped"),
    ])
    model.get_layer("unclamped").kernel.assign(HAND.reshape(2, 2, 1, 1).astype("float32"))
    result = model_diagnostics(model, reference_tau=TAU_Q2)["unclamped"]
    assert result["dead_share"] == 0.5 and result["quant_error"] == pytest.approx(0.2, rel=1e-6)
