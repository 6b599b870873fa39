"""TauScheduler: the schedule, and proof that the compiled train step uses it."""

import math

import keras
import numpy as np
import pytest
import torch

from keras_recu.callbacks import TauScheduler
from keras_recu.constraints import ReCUClamp
from keras_recu.layers import QuantConv2D, QuantDense, ReCUConv2D
from keras_recu.quantizers import ReCUSign
from tests import torch_reference as ref
from tests.gradients import to_numpy

LR = 0.5


def schedule(epoch, epochs, tau_min, tau_max):
    """The spec's formula, written out independently."""
    a = (tau_max - tau_min) / (math.e - 1)
    return a * math.exp(epoch / epochs) + tau_min - a


class KernelRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.before, self.after = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.before[epoch] = to_numpy(self.model.layers[-1].kernel).copy()

    def on_epoch_end(self, epoch, logs=None):
        self.after[epoch] = to_numpy(self.model.layers[-1].kernel).copy()


def make_model(jit_compile):
    inputs = keras.Input((12,))
    outputs = QuantDense(5, kernel_quantizer=ReCUSign(tau=0.85), use_bias=False)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse", jit_compile=jit_compile)
    return model


def reference_update(kernel, x, y, tau):
    """The kernel after one plain SGD step on mean squared error, in PyTorch."""
    w = ref.keras_kernel_to_torch(kernel)
    prediction = torch.tensor(x, dtype=torch.float64) @ ref.recu_weight(w, tau).T
    loss = ((prediction - torch.tensor(y, dtype=torch.float64)) ** 2).mean()
    loss.backward()
    return kernel - LR * ref.torch_kernel_to_keras(w.grad)


def data(rng):
    return rng.normal(size=(32, 12)).astype("float32"), rng.normal(size=(32, 5)).astype("float32")


def assert_updates_used_scheduled_tau(recorder, x, y, taus):
    for epoch, tau in taus.items():
        before, after = recorder.before[epoch], recorder.after[epoch]
        np.testing.assert_allclose(after, reference_update(before, x, y, tau), rtol=1e-4, atol=1e-5)
        # The check discriminates: another tau would have given another update.
        for other in (0.6, 0.99):
            if abs(other - tau) > 0.05:
                assert not np.allclose(after, reference_update(before, x, y, other), rtol=1e-4, atol=1e-5)


# On torch, Keras' jit_compile=True means torch.compile (inductor): it passes,
# but compiling this one Dense layer took 85 s on 2 CPU cores. `keras-recu
# train` runs torch eagerly, so the torch pass checks that path only.
JIT_COMPILE = [False] if keras.backend.backend() == "torch" else [False, True]


@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_compiled_train_step_uses_the_scheduled_tau(jit_compile, rng):
    x, y = data(rng)
    model = make_model(jit_compile)
    recorder = KernelRecorder()
    history = model.fit(
        x, y, batch_size=32, epochs=4, shuffle=False, verbose=0,
        callbacks=[TauScheduler(0.6, 0.99), recorder],
    )
    expected = [schedule(i, 4, 0.6, 0.99) for i in range(4)]
    np.testing.assert_allclose(history.history["tau"], expected, rtol=1e-12)
    assert model.layers[-1].kernel_quantizer.tau == pytest.approx(expected[-1])
    assert_updates_used_scheduled_tau(recorder, x, y, dict(enumerate(expected)))


def test_resume_with_initial_epoch_continues_the_schedule(rng):
    x, y = data(rng)
    model = make_model(jit_compile=False)
    first = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[TauScheduler(0.6, 0.99, epochs=5)])
    recorder = KernelRecorder()
    second = model.fit(
        x, y, batch_size=32, epochs=5, initial_epoch=2, shuffle=False, verbose=0,
        callbacks=[TauScheduler(0.6, 0.99), recorder],
    )
    taus = [schedule(i, 5, 0.6, 0.99) for i in range(5)]
    np.testing.assert_allclose(first.history["tau"], taus[:2])
    np.testing.assert_allclose(second.history["tau"], taus[2:])
    assert_updates_used_scheduled_tau(recorder, x, y, {i: taus[i] for i in range(2, 5)})


def test_explicit_schedule_length_and_end_value():
    scheduler = TauScheduler(0.85, 0.99, epochs=10)
    assert scheduler.tau_at(0) == pytest.approx(0.85)
    assert scheduler.tau_at(9) == pytest.approx(schedule(9, 10, 0.85, 0.99))
    assert scheduler.tau_at(9) < 0.99
    # Past the end of the schedule tau stays at tau_max (still a valid tau).
    assert scheduler.tau_at(25) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="epochs"):
        TauScheduler().tau_at(0)


def test_every_recu_object_in_nested_models_is_scheduled(rng):
    inner_in = keras.Input((8, 8, 4))
    inner_out = ReCUConv2D(4, 3, padding="same")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    clamp = ReCUClamp(tau=0.7)
    inputs = keras.Input((8, 8, 4))
    h = inner(inputs)
    h = QuantConv2D(4, 3, kernel_quantizer=ReCUSign(tau=0.95), kernel_constraint=clamp)(h)
    outputs = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(rng.normal(size=(4, 8, 8, 4)), np.zeros((4, 4)), epochs=3, verbose=0, callbacks=[TauScheduler(0.6, 0.9)])
    final = schedule(2, 3, 0.6, 0.9)
    assert inner.layers[-1].tau == pytest.approx(final)
    assert model.layers[2].kernel_quantizer.tau == pytest.approx(final)
    assert clamp.tau == pytest.approx(final)


def test_scheduler_refuses_a_model_without_recu():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="found no ReCU"):
        model.fit(np.ones((2, 3)), np.ones((2, 1)), verbose=0, callbacks=[TauScheduler()])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tau_min=0.5), r"`tau_min` must lie in the open interval \(0.5, 1\), got 0.5"),
        (dict(tau_max=1.0), r"`tau_max` must lie in the open interval \(0.5, 1\), got 1.0"),
        (dict(tau_min=0.95, tau_max=0.9), r"`tau_min` \(0.95\) must not exceed `tau_max` \(0.9\)"),
        (dict(epochs=0), "`epochs` must be a positive integer"),
    ],
)
def test_scheduler_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TauScheduler(**kwargs)
