"""The ImageNet ResNet-18s and PyTorch's padding convert to all-LceBconv2d, exact flatbuffers.

Two conversions of LCE 0.16 that would be silently wrong are covered: an
explicit symmetric zero padding folded into a "same" conv that pads
elsewhere (the ImageNet stem), and a zero-padded binary conv on a map
smaller than its kernel. Inputs are 96x96, the smallest at which the
ResNets' last stage (1/32) is as large as its 3x3 kernels.
"""

import keras
import numpy as np
import pytest

from keras_recu import models
from keras_recu.deploy import ConversionError, census, convert, verify
from keras_recu.layers import ReCUConv2D
from tests.model_utils import randomize_batch_norm

# Conversion needs TensorFlow and larq-compute-engine: the TensorFlow backend only.
pytestmark = pytest.mark.tf_only


def torch_padded_binary_conv(x, kernel, alpha, stride):
    """PyTorch's BinarizeConv2d forward, padding=1: sign(x) (sign(0) = +1) zero-padded (1, 1), times alpha."""
    signs = np.pad(np.where(x >= 0, 1.0, -1.0), [(0, 0), (1, 1), (1, 1), (0, 0)])
    binary_kernel = np.where(kernel >= 0, 1.0, -1.0)
    kh, kw = kernel.shape[:2]
    rows = (signs.shape[1] - kh) // stride + 1
    cols = (signs.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            window = signs[:, i : i + stride * rows : stride, j : j + stride * cols : stride, :]
            out += window @ binary_kernel[i, j]
    return out * alpha


def randomize(model, rng):
    """Trained-looking statistics and biases, so that no value sits on a sign's tie."""
    randomize_batch_norm(model, rng)
    for layer in model.layers:
        if type(layer).__name__ == "LearnableBias":
            layer.set_weights([rng.normal(0, 0.2, w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("size", [16, 15])
def test_torch_padding_stride_2_binary_conv_is_an_exact_lce_bconv2d(size, rng):
    inputs = keras.Input((size, size, 64))
    layer = ReCUConv2D(32, 3, strides=2, padding="same", torch_padding=True, name="bconv")
    model = keras.Model(inputs, layer(inputs))
    x = rng.normal(size=(3, size, size, 64)).astype("float32")

    report = verify(model, convert(model), x)

    assert report.census["LceBconv2d"] == 1 and report.census["CONV_2D"] == 0
    # Flips only where "same" and PyTorch pad differently: the even size.
    assert report.census["REVERSE_V2"] == (2 if size % 2 == 0 else 0)
    kernel = keras.ops.convert_to_numpy(layer.kernel_quantizer(layer.kernel))
    want = torch_padded_binary_conv(x, kernel, keras.ops.convert_to_numpy(layer.alpha), stride=2)
    keras_out = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(keras_out, want, rtol=1e-5, atol=1e-4)
    assert report.max_abs_error <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize(
    "builder", [models.imagenet_resnet18_1w1a, models.imagenet_resnet18_two_stage], ids=lambda b: b.__name__
)
def test_imagenet_resnet18_converts_every_binary_conv_to_lce_bconv2d(builder, rng):
    model = builder(input_shape=(96, 96, 3), num_classes=10)
    randomize(model, rng)
    x = rng.normal(size=(3, 96, 96, 3)).astype("float32")

    report = verify(model, convert(model), x)

    assert len(report.binary_layers) == 16
    assert report.census["LceBconv2d"] == 16 and report.float_binary_layers == []
    # Only the float convs stay CONV_2D: the stem and the three 1x1 downsamples.
    assert report.census["CONV_2D"] == 4
    assert report.census["REVERSE_V2"] == 6  # around the three stride-2 binary convs
    assert report.argmax_agreement == 1.0
    assert report.max_rel_error < 1e-4


def test_symmetric_zero_padding_before_a_strided_conv_converts_exactly(rng):
    """The ImageNet stem: PyTorch's padding 3 of a 7x7 stride-2 conv on an even size.

    LCE 0.16 alone folds this PAD into a "same" conv, which pads (2, 3)
    instead of (3, 3): every output shifts. `convert` exports the pad
    without the row and column the conv never reads, and restores the layer.
    """
    inputs = keras.Input((32, 32, 3))
    pad = keras.layers.ZeroPadding2D(3)
    outputs = keras.layers.Conv2D(8, 7, strides=2, padding="valid", use_bias=False)(pad(inputs))
    model = keras.Model(inputs, outputs)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")

    flatbuffer = convert(model)

    assert census(flatbuffer)["PAD"] == 1
    assert verify(model, flatbuffer, x).max_rel_error < 1e-5
    assert pad.padding == ((3, 3), (3, 3))


def test_binary_conv_on_a_map_smaller_than_its_kernel_is_refused():
    model = keras.Sequential([keras.Input((2, 2, 64)), ReCUConv2D(32, 3, padding="same", name="tiny_map")])
    with pytest.raises(ConversionError, match=r"tiny_map: its 2x2 input is smaller than its 3x3 kernel"):
        convert(model)
