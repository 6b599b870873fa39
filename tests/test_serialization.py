"""Configs, registration and .keras round trips."""

import keras
import numpy as np
import pytest

from keras_recu.callbacks import TauScheduler
from keras_recu.constraints import ReCUClamp
from keras_recu.inspection import tau_holders
from keras_recu.layers import (
    ConstantPadding2D,
    LearnableBias,
    QuantConv2D,
    QuantDense,
    QuantDepthwiseConv2D,
    ReCUConv2D,
)
from keras_recu.quantizers import NoOp, ReCUInputSign, ReCUSign, SteSign
from tests.gradients import to_numpy


@pytest.mark.parametrize(
    "obj",
    [
        ReCUSign(tau=0.91, per_channel_threshold=True, output_scale="mean_abs", laplace_scale=1.5),
        ReCUSign(standardize=False),
        ReCUInputSign(epsilon=1e-4),
        SteSign(clip_value=None),
        ReCUClamp(tau=0.93, standardize=False),
        QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer=ReCUSign(tau=0.9), pad_values=1.0, padding="same"),
        QuantDense(3, kernel_quantizer="recu_sign", kernel_constraint=ReCUClamp(0.8)),
        QuantDepthwiseConv2D(3, depthwise_quantizer="recu_sign"),
        ReCUConv2D(8, 3, strides=2, padding="same", tau=0.88),
        ReCUConv2D(8, 3, strides=2, padding="same", torch_padding=True, kernel_quantizer=NoOp()),
        QuantDepthwiseConv2D(3, strides=2, padding="same", torch_padding=True),
        NoOp(precision=8),
        LearnableBias(bias_initializer="ones"),
        ConstantPadding2D(((1, 0), (2, 3)), value=float("-inf")),
    ],
    ids=lambda o: f"{type(o).__name__}-{getattr(o, 'torch_padding', '')}",
)
def test_config_round_trip(obj):
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["module"] is None or "keras_recu" in str(serialized.get("registered_name"))
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(obj)
    config, clone_config = obj.get_config(), clone.get_config()
    config.pop("name", None), clone_config.pop("name", None)
    assert clone_config == config
    if hasattr(obj, "tau"):
        assert clone.tau == pytest.approx(obj.tau)


def build_model():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = ReCUConv2D(8, 3, padding="same", tau=0.86)(x)
    x = keras.layers.BatchNormalization()(x)
    x = QuantConv2D(
        16, 3, strides=2, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="recu_input_sign",
        kernel_quantizer=ReCUSign(tau=0.9, per_channel_threshold=True, output_scale="mean_abs"),
        kernel_constraint=ReCUClamp(tau=0.9),
    )(x)
    x = QuantDepthwiseConv2D(3, padding="same", input_quantizer=SteSign(), depthwise_quantizer="recu_sign")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = QuantDense(5, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign")(x)
    return keras.Model(inputs, outputs)


def test_saved_model_reloads_with_identical_outputs_and_tau(tmp_path, rng):
    model = build_model()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    x = rng.normal(size=(8, 12, 12, 3)).astype("float32")
    y = rng.normal(size=(8, 5)).astype("float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[TauScheduler(0.7, 0.95)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(to_numpy(loaded(x, training=True)), to_numpy(model(x, training=True)))
    taus = [h.tau for h in tau_holders(model)]
    assert len(taus) == 5 and [h.tau for h in tau_holders(loaded)] == pytest.approx(taus)
    assert taus[0] == pytest.approx(0.7 + (0.25 / (np.e - 1)) * (np.exp(0.5) - 1))
    # Training goes on from the loaded state, schedule included.
    loaded.fit(x, y, epochs=3, initial_epoch=2, verbose=0, callbacks=[TauScheduler(0.7, 0.95)])
    assert np.isfinite(loaded.predict(x, verbose=0)).all()



def test_an_unregistered_function_quantizer_is_refused_when_its_config_is_read_not_at_the_first_call(tmp_path):
    def my_sign(x):
        return keras.ops.sign(x)

    layer = QuantConv2D(4, 3, kernel_quantizer=my_sign)
    # On some backends Keras wraps from_config's ValueError in a TypeError that carries its message.
    with pytest.raises((TypeError, ValueError), match=r"(?s)Cannot rebuild the quantizer 'my_sign'.*register_keras"):
        QuantConv2D.from_config(layer.get_config())
