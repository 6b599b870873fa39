"""keras_recu.inspection: layers, binary layers, quantizers and tau holders of a model, on every backend."""

import keras
import numpy as np

from keras_recu import inspection
from keras_recu.constraints import ReCUClamp
from keras_recu.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D, ReCUConv2D
from keras_recu.models import ChannelZeroPad
from keras_recu.profile import performs_no_macs, summary
from keras_recu.quantizers import ReCUSign, SteSign


def _model():
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            QuantDepthwiseConv2D(3, padding="same", input_quantizer="ste_sign",
                                 depthwise_quantizer="recu_sign", name="dw"),
        ],
        name="inner",
    )
    inputs = keras.Input((8, 8, 4), name="image")
    x = ReCUConv2D(4, 3, padding="same", tau=0.9, name="bconv")(inputs)
    x = inner(x)
    x = QuantConv2D(4, 3, padding="same", kernel_quantizer="recu_sign", name="kernel_only")(x)
    x = keras.layers.Conv2D(4, 1, kernel_constraint=ReCUClamp(tau=0.95), name="clamped")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = QuantDense(3, input_quantizer="ste_sign", name="input_only")(x)
    return keras.Model(inputs, outputs, name="net")


def test_layers_are_every_nested_layer_once_in_order():
    model = _model()
    names = [layer.name for layer in inspection.layers(model)]
    assert len(names) == len(set(names))
    top = ["bconv", "inner", "kernel_only", "clamped", "gap", "input_only"]
    assert [name for name in names if name in top] == top
    assert "dw" in names and names.index("dw") > names.index("inner")
    assert inspection.layers(model, include_self=True)[0] is model
    assert model not in inspection.layers(model)


def test_quantizers_and_their_precision():
    model = _model()
    bconv = model.get_layer("bconv")
    found = inspection.quantizers(bconv)
    assert sorted(found) == ["input_quantizer", "kernel_quantizer"]
    assert found["kernel_quantizer"] is bconv.kernel_quantizer
    assert inspection.quantizers(model.get_layer("clamped")) == {}
    assert inspection.precision(bconv.kernel_quantizer) == 1
    assert inspection.precision(None) is None
    assert inspection.precision(lambda x: x) is None

    def two_bit(x):
        return x

    two_bit.precision = 2.0  # larq's quantizers carry an int; any number converts
    assert inspection.precision(two_bit) == 2


def test_kernel_quantizer_prefers_the_depthwise_one():
    model = _model()
    dw = model.get_layer("inner").get_layer("dw")
    assert inspection.kernel_quantizer(dw) is dw.depthwise_quantizer
    assert inspection.kernel_quantizer(model.get_layer("input_only")) is None


def test_quantized_kernels_are_the_layers_own_variables():
    model = _model()
    bconv = model.get_layer("bconv")
    (kernel,) = inspection.quantized_kernels(bconv)
    assert kernel.variable is bconv.kernel and kernel.bitwidth == 1
    assert kernel.attribute == "kernel_quantizer" and kernel.quantizer is bconv.kernel_quantizer

    dw = model.get_layer("inner").get_layer("dw")
    (depthwise,) = inspection.quantized_kernels(dw)
    assert depthwise.attribute == "depthwise_quantizer"
    assert tuple(depthwise.variable.shape) == (3, 3, 4, 1)

    dense = QuantDense(2, kernel_quantizer=SteSign())
    assert inspection.quantized_kernels(dense) == []  # not built: no variable yet
    dense.build((None, 5))
    (dense_kernel,) = inspection.quantized_kernels(dense)
    assert tuple(dense_kernel.variable.shape) == (5, 2)
    assert any(dense_kernel.variable is w for w in dense.trainable_weights)


def test_binary_layers_with_kinds_and_precisions():
    model = _model()
    found = {b.name: b for b in inspection.binary_layers(model)}
    assert list(found) == ["bconv", "dw", "kernel_only", "input_only"]
    assert (found["bconv"].kind, found["bconv"].fully_binary) == ("conv", True)
    assert found["bconv"].layer is model.get_layer("bconv")
    assert (found["dw"].kind, found["dw"].binary_input, found["dw"].binary_kernel) == ("depthwise", True, True)
    assert (found["kernel_only"].input_precision, found["kernel_only"].kernel_precision) == (None, 1)
    assert found["kernel_only"].binary_kernel and not found["kernel_only"].fully_binary
    assert (found["input_only"].kind, found["input_only"].binary_input) == ("dense", True)
    assert not found["input_only"].binary_kernel


def test_tau_holders_are_quantizers_and_constraints_each_once():
    model = _model()
    holders = inspection.tau_holders(model)
    # bconv's and kernel_only's ReCUSign, dw's ReCUSign, the ReCUClamp.
    assert len(holders) == 4 and len({id(h) for h in holders}) == 4
    assert sorted(round(h.tau, 4) for h in holders) == [0.85, 0.85, 0.9, 0.95]
    assert model.get_layer("bconv").kernel_quantizer in holders
    assert model.get_layer("clamped").kernel_constraint in holders
    variables = inspection.tau_variables(model)
    assert [id(v) for v in variables] == [id(h.tau_variable) for h in holders]

    # A constraint shared by two layers is one holder.
    clamp = ReCUClamp()
    shared = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_constraint=clamp),
                               keras.layers.Dense(2, kernel_constraint=clamp)])
    assert inspection.tau_holders(shared) == [clamp]


def test_tau_holders_reach_a_kernel_quantizer_set_on_a_plain_layer():
    quantizer = ReCUSign(tau=0.88)
    model = keras.Sequential([keras.Input((4,)), QuantDense(2, kernel_quantizer=quantizer)])
    assert inspection.tau_holders(model) == [quantizer]
    model.predict(np.ones((1, 4), "float32"), verbose=0)  # and after use
    assert inspection.tau_holders(model) == [quantizer]


class _Identity(keras.layers.Layer):
    def call(self, x):
        return x


class _DeclaredIdentity(_Identity):
    performs_macs = False


def test_a_layer_declares_that_it_performs_no_macs():
    assert performs_no_macs(ChannelZeroPad(1)) and performs_no_macs(_DeclaredIdentity())
    assert performs_no_macs(keras.layers.Flatten()) and performs_no_macs(ReCUSign())
    assert not performs_no_macs(_Identity()) and not performs_no_macs(keras.layers.Dense(2))

    inputs = keras.Input((4, 4, 2))
    x = ChannelZeroPad((1, 1), name="pad")(inputs)
    x = _DeclaredIdentity(name="declared")(x)
    outputs = _Identity(name="unknown")(x)
    profile = summary(keras.Model(inputs, outputs), print_fn=lambda text: None)
    rows = {row.name: row for row in profile.layer_profiles}
    assert rows["pad"].op_count() == 0 and rows["declared"].op_count() == 0
    assert rows["unknown"].op_count() is None
    # A class attribute: neither tracked nor saved.
    assert "performs_macs" not in ChannelZeroPad(1).get_config()
