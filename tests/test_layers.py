"""Binary layers: ReCUConv2D against the PyTorch reference, and the larq-style Quant layers."""

import keras
import numpy as np
import pytest
import torch

from keras_recu.layers import LearnableBias, QuantConv2D, QuantDense, QuantDepthwiseConv2D, ReCUConv2D
from keras_recu.quantizers import NoOp, ReCUInputSign, ReCUSign, SteSign
from tests import torch_reference as ref
from tests.gradients import assert_gradients_close, layer_gradients, to_numpy


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_recu_conv2d_matches_reference(padding, strides, training, rng):
    x = rng.normal(size=(2, 9, 8, 6)).astype("float32")
    layer = ReCUConv2D(5, 3, strides=strides, padding=padding, tau=0.8)
    layer.build(x.shape)
    kernel = rng.laplace(0.0, 0.2, size=layer.kernel.shape).astype("float32")
    alpha = rng.uniform(size=(5,)).astype("float32")
    layer.kernel.assign(kernel)
    layer.alpha.assign(alpha)

    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    y, gx, grads = layer_gradients(layer, x, upstream, training=training)
    gk, ga = grads[layer.kernel.path], grads[layer.alpha.path]

    xt = ref.nhwc_to_torch(x)
    wt = ref.keras_kernel_to_torch(kernel)
    at = torch.tensor(alpha.astype("float64"), requires_grad=True)
    yt = ref.recu_conv2d(xt, wt, at, tau=0.8, stride=strides, padding=padding, training=training)
    (yt * ref.nhwc_to_torch(upstream)).sum().backward()

    # Integer sums of +-1 products (exact in float32) times alpha, rounded
    # once: bitwise the float64 reference rounded to float32.
    np.testing.assert_array_equal(y, ref.torch_to_nhwc(yt).astype("float32"))
    assert_gradients_close(gx, ref.torch_to_nhwc(xt.grad))
    assert_gradients_close(gk, ref.torch_kernel_to_keras(wt.grad))
    assert_gradients_close(ga, at.grad.numpy())


def test_recu_conv2d_weights_and_defaults(rng):
    layer = ReCUConv2D(8, 3, padding="same")
    layer.build((None, 16, 16, 4))
    assert [w.name for w in layer.trainable_weights] == ["kernel", "alpha"]
    assert layer.use_bias is False and layer.bias is None
    alpha = to_numpy(layer.alpha)
    assert alpha.shape == (8,) and (alpha >= 0).all() and (alpha < 1).all()
    # PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 36.
    kernel = to_numpy(layer.kernel)
    assert np.abs(kernel).max() <= 1 / 6 and np.abs(kernel).max() > 0.9 / 6
    assert isinstance(layer.input_quantizer, ReCUInputSign)
    assert isinstance(layer.kernel_quantizer, ReCUSign)
    assert layer.tau == pytest.approx(0.85)
    layer.tau = 0.9
    assert layer.kernel_quantizer.tau == pytest.approx(0.9)
    assert [v.name for v in layer.non_trainable_weights] == ["tau"]


def test_recu_conv2d_rejects_two_taus():
    with pytest.raises(ValueError, match="tau"):
        ReCUConv2D(4, 3, tau=0.9, kernel_quantizer=ReCUSign(tau=0.8))
    assert ReCUConv2D(4, 3, tau=None, kernel_quantizer=ReCUSign(tau=0.8)).tau == pytest.approx(0.8)


def test_quant_conv2d_equals_conv_of_quantized_operands(rng):
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    layer = QuantConv2D(4, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="recu_sign")
    y = to_numpy(layer(x))
    binary_kernel = ReCUSign()(layer.kernel)
    expected = keras.ops.conv(np.where(x >= 0, 1.0, -1.0).astype("float32"), binary_kernel, padding="same")
    expected = to_numpy(expected) + to_numpy(layer.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)


def test_quant_conv2d_without_quantizers_is_conv2d(rng):
    x = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    layer = QuantConv2D(4, 3, strides=2, padding="same", activation="relu")
    plain = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")
    plain.build(x.shape)
    layer.build(x.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(plain(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("strides, size", [(1, 7), (2, 8), (2, 7)])
def test_pad_values_one_pads_with_ones(strides, size, rng):
    x = rng.normal(size=(1, size, size, 2)).astype("float32")
    layer = QuantConv2D(3, 3, strides=strides, padding="same", pad_values=1.0, input_quantizer="ste_sign", use_bias=False)
    y = to_numpy(layer(x))
    binary = np.where(x >= 0, 1.0, -1.0).astype("float32")
    (top, bottom) = ref.tf_same_padding(size, 3, strides)
    padded = np.pad(binary, [(0, 0), (top, bottom), (top, bottom), (0, 0)], constant_values=1.0)
    expected = to_numpy(keras.ops.conv(padded, layer.kernel, strides=strides, padding="valid"))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="pad_values"):
        QuantConv2D(3, 3, padding="valid", pad_values=1.0)


def test_quant_dense_uses_binary_kernel_and_inputs(rng):
    x = rng.normal(size=(4, 10)).astype("float32")
    layer = QuantDense(6, input_quantizer="recu_input_sign", kernel_quantizer=ReCUSign(tau=0.9))
    y = to_numpy(layer(x))
    expected = np.where(x >= 0, 1.0, -1.0) @ to_numpy(ReCUSign(tau=0.9)(layer.kernel)) + to_numpy(layer.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)


def test_quant_depthwise_standardizes_each_filter(rng):
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = QuantDepthwiseConv2D(3, depth_multiplier=2, depthwise_quantizer=ReCUSign(tau=0.9), use_bias=False)
    y = to_numpy(layer(x))
    kernel = to_numpy(layer.kernel)  # (3, 3, 3, 2)
    filters = kernel.reshape(3, 3, 1, 6)
    binary = to_numpy(ReCUSign(tau=0.9)(filters)).reshape(3, 3, 3, 2)
    expected = to_numpy(keras.ops.depthwise_conv(x, binary, padding="valid"))
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)
    # Per-filter statistics: scaling one filter's latent weights changes nothing.
    scaled = kernel.copy()
    scaled[:, :, 1, 0] *= 7.0
    layer.kernel.assign(scaled)
    np.testing.assert_allclose(to_numpy(layer(x)), y, rtol=1e-6, atol=1e-5)


def test_quantizer_usable_as_a_layer(rng):
    inputs = keras.Input((5,))
    outputs = SteSign()(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    assert set(np.unique(model.predict(rng.normal(size=(8, 5)), verbose=0))) <= {-1.0, 1.0}


@pytest.mark.parametrize("size", [(8, 8), (9, 8), (7, 7), (10, 6)], ids=str)
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_torch_padding_matches_pytorch_padding_one(size, strides, training, rng):
    """PyTorch's padding=1, zeros in the binarized input: forward bitwise, gradients close."""
    x = rng.normal(size=(2, *size, 6)).astype("float32")
    layer = ReCUConv2D(5, 3, strides=strides, padding="same", tau=0.8, torch_padding=True)
    layer.build(x.shape)
    kernel = rng.laplace(0.0, 0.2, size=layer.kernel.shape).astype("float32")
    alpha = rng.uniform(size=(5,)).astype("float32")
    layer.kernel.assign(kernel)
    layer.alpha.assign(alpha)
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float32")
    y, gx, grads = layer_gradients(layer, x, upstream, training=training)

    xt = ref.nhwc_to_torch(x)
    wt = ref.keras_kernel_to_torch(kernel)
    at = torch.tensor(alpha.astype("float64"), requires_grad=True)
    yt = ref.recu_conv2d(xt, wt, at, tau=0.8, stride=strides, padding=1, training=training)
    (yt * ref.nhwc_to_torch(upstream)).sum().backward()

    np.testing.assert_array_equal(y, ref.torch_to_nhwc(yt).astype("float32"))
    assert_gradients_close(gx, ref.torch_to_nhwc(xt.grad))
    assert_gradients_close(grads[layer.kernel.path], ref.torch_kernel_to_keras(wt.grad))
    assert_gradients_close(grads[layer.alpha.path], at.grad.numpy())


def test_torch_padding_differs_from_same_only_where_pytorch_does(rng):
    x = rng.normal(size=(1, 8, 8, 4)).astype("float32")
    outputs = {}
    for torch_padding in (False, True):
        layer = QuantConv2D(3, 3, strides=2, padding="same", input_quantizer="ste_sign",
                            kernel_quantizer="ste_sign", torch_padding=torch_padding,
                            kernel_initializer="ones", use_bias=False)
        outputs[torch_padding] = to_numpy(layer(x))
    assert not np.array_equal(outputs[False], outputs[True])  # a one-pixel shift of the grid
    depthwise = QuantDepthwiseConv2D(3, strides=2, padding="same", torch_padding=True,
                                     depthwise_initializer="ones", use_bias=False)
    binary = np.where(x >= 0, 1.0, -1.0)
    expected = torch.nn.functional.conv2d(
        torch.tensor(binary).permute(0, 3, 1, 2), torch.ones(4, 1, 3, 3, dtype=torch.float64),
        stride=2, padding=1, groups=4,
    ).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(to_numpy(depthwise(binary.astype("float32"))), expected)


def test_torch_padding_errors():
    with pytest.raises(ValueError, match="padding='same'"):
        ReCUConv2D(4, 3, padding="valid", torch_padding=True)
    with pytest.raises(ValueError, match="odd kernel size"):
        ReCUConv2D(4, 2, padding="same", torch_padding=True)
    with pytest.raises(TypeError, match="torch_padding"):
        ReCUConv2D(4, 3, padding="same", torch_padding="yes")
    layer = ReCUConv2D(4, 3, strides=3, padding="same", torch_padding=True)
    with pytest.raises(ValueError, match="skips input pixels"):
        layer(np.zeros((1, 9, 9, 2), "float32"))  # PyTorch drops row 8 here; "same" keeps it


def test_noop_kernel_quantizer_keeps_the_float_kernel(rng):
    x = rng.normal(size=(1, 6, 6, 3)).astype("float32")
    layer = ReCUConv2D(4, 3, padding="same", kernel_quantizer=NoOp())
    y = to_numpy(layer(x))
    expected = keras.ops.conv(np.where(x >= 0, 1.0, -1.0).astype("float32"), layer.kernel, padding="same")
    np.testing.assert_allclose(y, to_numpy(expected) * to_numpy(layer.alpha), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="precision"):
        NoOp(precision=0)


def test_learnable_bias_adds_a_trained_channel_shift(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = LearnableBias()
    np.testing.assert_array_equal(to_numpy(layer(x)), x)  # zero at the start
    layer.bias.assign(np.arange(4, dtype="float32"))
    np.testing.assert_array_equal(to_numpy(layer(x)), x + np.arange(4, dtype="float32"))
    upstream = rng.normal(size=x.shape).astype("float32")
    _, _, grads = layer_gradients(layer, x, upstream)
    np.testing.assert_allclose(grads[layer.bias.path], upstream.sum(axis=(0, 1, 2)), rtol=1e-5)
