"""The ReCU paper's binary networks in Keras 3: ResNet-20/18/34 1w1a and VGG-small 1w1a.

Each builder returns a functional `keras.Model` in which the first
convolution and the last dense layer are full precision and every other
convolution is a `ReCUConv2D` (binary input, ReCU-binarized kernel, no bias,
learned per-channel scale `alpha`) followed by `BatchNormalization`. The
architectures are those of the authors' PyTorch code (github z-hXu/ReCU,
`models_cifar/resnet.py`, `resnet2.py`, `vgg.py`; RECU_SPEC.md section 2):

* **ResNet-20 1w1a** (`resnet.py`): stem conv 3x3/16 -> BN -> hardtanh; three
  stages of 16, 32, 64 filters with three blocks each; each binary conv has
  its own residual (Bi-Real style, ``block="bireal"``)::

      out = hardtanh(BN(conv1(x)) + shortcut(x))
      out = hardtanh(BN(conv2(out)) + out)

  then global average pool -> BN (the reference's BatchNorm1d) -> dense.
* **ResNet-18 / ResNet-34 1w1a** (`resnet2.py`, CIFAR variants): stem conv
  3x3/64 -> BN (no hardtanh); four stages of 64, 128, 256, 512 filters with
  [2, 2, 2, 2] / [3, 4, 6, 3] blocks; the reference's basic block has ONE
  residual per block (``block="basic"``)::

      out = hardtanh(BN(conv1(x)))
      out = hardtanh(BN(conv2(out)) + shortcut(x))

  then global average pool -> BN -> dense. ``block="bireal"`` gives them the
  ResNet-20 design instead (a residual per binary conv, hardtanh after the
  stem), as RECU_SPEC.md's "same block design" reads.
* **VGG-small 1w1a** (`vgg.py`): conv 128 (float) -> BN -> hardtanh, then
  bconv 128 -> maxpool, bconv 256, bconv 256 -> maxpool, bconv 512,
  bconv 512 -> maxpool, each followed by BN -> hardtanh (the pool comes
  between the conv and its BN, as in the reference), flatten, dense.

The down-sampling shortcut of the ResNets is "option A": a 2x2 average pool
(`padding="same"`, so that it matches the stride-2 conv on odd sizes too),
then zero channels split evenly before and after the input's channels, as
the reference's `F.pad(x, (0, 0, 0, 0, planes // 4, planes // 4))` does
(`ChannelZeroPad`, a registered layer that saves with the model and lowers
to TFLite's PAD op).

Faithful to the reference beyond the layer graph:

* BatchNormalization with PyTorch's defaults, `momentum=0.9` (PyTorch's
  momentum 0.1) and `epsilon=1e-5`; `sync_batch_norm=True` gives statistics
  over all replicas: `synchronized` layers on TensorFlow, plain ones on JAX,
  whose data-parallel step already normalizes over the global batch (see
  the builders' arguments).
* Initializers: ResNet convs (float and binary) `kaiming_normal_`, i.e.
  untruncated normal with std sqrt(2 / fan_in); the ResNet dense keeps
  PyTorch's default Linear initialization, U(+-1/sqrt(fan_in)) for kernel
  and bias (the authors' final `_weights_init` touches `nn.Conv2d` only).
  VGG-small convs normal with std sqrt(2 / (k * k * out_channels)) (fan_out),
  its dense normal(0, 0.01) with zero bias. `alpha` is U[0, 1), as in
  `ReCUConv2D`.

Known, deliberate differences (they matter only for porting PyTorch weights,
not for training from scratch): stride-2 convs use Keras' `padding="same"`,
which on even sizes pads (0, 1) where PyTorch's `padding=1` pads (1, 1), a
one-pixel offset of the sampling grid (an explicit ZeroPadding2D in front
of `ReCUConv2D` would be binarized to +1, not kept at 0 as in the reference);
VGG-small flattens (H, W, C) where PyTorch flattens (C, H, W).

Any input size and channel count works: ResNet heads pool globally, and
VGG-small's flatten sizes its dense layer from the input (4 * 4 * 512 for
32x32 inputs, 3 * 3 * 512 for 28x28).

Deployment: `keras_recu.deploy.convert` turns each of these into a
flatbuffer with every binary conv as `LceBconv2d` (ResNet-20 1w1a: 18) and
one float CONV_2D. It exports binary kernels already binarized, since the
converter would not constant-fold a quantizer over a kernel larger than
1 MiB (3x3x128x256 and up).

Parameters (`count_params()`, 32x32x3 inputs, 10 classes; this counts the BN
moving statistics and one tau state variable per `ReCUConv2D` as Keras does;
the trainable count is what PyTorch reports):

==================  ============  ==========  ===============
model               count_params  trainable   binary convs
==================  ============  ==========  ===============
resnet20_1w1a          272,044      270,522         18
resnet18_1w1a       11,013,850   11,005,002         16
resnet34_1w1a       21,133,162   21,116,874         32
vgg_small_1w1a       4,665,359    4,661,770          5
==================  ============  ==========  ===============

Example (Fashion-MNIST-sized input):

>>> from keras_recu import models
>>> from keras_recu.layers import ReCUConv2D
>>> model = models.resnet20_1w1a(input_shape=(28, 28, 1), num_classes=10)
>>> model.name, model.output_shape
('resnet20_1w1a', (None, 10))
>>> sum(isinstance(layer, ReCUConv2D) for layer in model.layers)
18
>>> sorted(models.MODELS)
['resnet18_1w1a', 'resnet20_1w1a', 'resnet34_1w1a', 'vgg_small_1w1a']
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_recu.layers import ReCUConv2D

__all__ = [
    "BinaryConvFactory",
    "ChannelZeroPad",
    "MODELS",
    "get",
    "recu_conv2d",
    "resnet18_1w1a",
    "resnet20_1w1a",
    "resnet34_1w1a",
    "vgg_small_1w1a",
]

# PyTorch's BatchNorm defaults: running = 0.9 * running + 0.1 * batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
_BLOCKS = ("bireal", "basic")


@keras.saving.register_keras_serializable(package="keras_recu")
class ChannelZeroPad(keras.layers.Layer):
    """Add zero channels before and after the channels of a channels-last tensor.

    The channel half of the ResNets' option-A shortcut. Lowers to one PAD
    op in TFLite / larq-compute-engine; saves and loads with the model
    (unlike a `Lambda`).

    Args:
        padding: `(before, after)` numbers of zero channels, or one int for both.

    Example:

    >>> import numpy as np
    >>> y = ChannelZeroPad((1, 2))(np.ones((1, 1, 1, 2), "float32"))
    >>> keras.ops.convert_to_numpy(y)[0, 0, 0].tolist()
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """

    # For `keras_recu.profile.summary`: padding multiplies nothing.
    performs_macs = False

    def __init__(self, padding=(0, 0), **kwargs) -> None:
        super().__init__(**kwargs)
        pair = (padding, padding) if isinstance(padding, int) else padding
        pair = tuple(pair) if isinstance(pair, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(p, int) and p >= 0 for p in pair):
            raise ValueError(
                f"`padding` must be a non-negative int or a pair (before, after) of "
                f"them, got {padding!r}."
            )
        self.padding = pair

    def call(self, inputs):
        pad_width = [(0, 0)] * (len(inputs.shape) - 1) + [self.padding]
        return ops.pad(inputs, pad_width)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (*input_shape[:-1], None if channels is None else channels + sum(self.padding))

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": list(self.padding)}


# --- initializers (fresh instances: each layer draws its own values) -------


def _kaiming_normal_fan_in():
    """torch.nn.init.kaiming_normal_: N(0, 2 / fan_in), untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _kaiming_normal_fan_out():
    """VGG-small's `normal_(0, sqrt(2 / (k * k * out_channels)))`, untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _torch_linear_init(fan_in: int):
    """PyTorch's default nn.Linear init: kernel and bias U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return (
        keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        keras.initializers.RandomUniform(-bound, bound),
    )


# --- building blocks --------------------------------------------------------


def _synchronized_batch_norm(sync_batch_norm: bool, stacklevel: int) -> bool:
    """Whether to build `synchronized` BatchNormalization on this backend (see `_BUILDER_ARGS`)."""
    if not sync_batch_norm:
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return True
    if backend == "torch":
        warnings.warn(
            "sync_batch_norm=True has no effect on the torch backend, which Keras runs in "
            "one process: its BatchNormalization normalizes with the statistics of the "
            "whole batch it gets. Under torch's DistributedDataParallel each process "
            "would use its own batch's statistics.",
            stacklevel=stacklevel + 1,
        )
    # JAX: plain BatchNormalization is synchronized already (see _BUILDER_ARGS).
    return False


def _batch_norm(sync: bool, name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=sync, name=name
    )


def _hardtanh(name: str) -> keras.layers.Activation:
    return keras.layers.Activation("hard_tanh", name=name)


#: A callable that builds the binary convolutions of the models: called with
#: the keywords `filters`, `kernel_size`, `strides`, `tau`, `name` and
#: `kernel_initializer`, it returns a layer that maps (H, W, C) images to
#: (ceil(H / strides), ceil(W / strides), filters) ("same" padding).
BinaryConvFactory = Callable[..., keras.layers.Layer]


def recu_conv2d(
    filters: int, kernel_size, strides, tau: float, name: str, kernel_initializer
) -> ReCUConv2D:
    """The models' default binary convolution: the paper's `ReCUConv2D`, "same" padding.

    Wrap it, or write another `BinaryConvFactory`, to change what the
    builders put in place of each binary convolution (an ablation's
    quantizers, say) without touching the built model:

    >>> from keras_recu.layers import QuantConv2D
    >>> def plain_sign_conv(filters, kernel_size, strides, tau, name, kernel_initializer):
    ...     return QuantConv2D(filters, kernel_size, strides=strides, padding="same",
    ...                        use_bias=False, input_quantizer="ste_sign",
    ...                        kernel_quantizer="ste_sign",
    ...                        kernel_initializer=kernel_initializer, name=name)
    >>> model = resnet20_1w1a(input_shape=(8, 8, 3), binary_conv=plain_sign_conv)
    >>> type(model.get_layer("stage1_block1_conv1")).__name__
    'QuantConv2D'
    """
    return ReCUConv2D(
        filters, kernel_size, strides=strides, padding="same", tau=tau,
        kernel_initializer=kernel_initializer, name=name,
    )


def _binary_conv_builder(binary_conv: Optional[BinaryConvFactory]) -> Callable[..., keras.layers.Layer]:
    factory = recu_conv2d if binary_conv is None else binary_conv
    if not callable(factory):
        raise TypeError(
            f"`binary_conv` must be a callable (filters, kernel_size, strides, tau, name, "
            f"kernel_initializer) -> layer, such as keras_recu.models.recu_conv2d; got {binary_conv!r}."
        )

    def build(filters: int, strides: int, tau: float, initializer, name: str) -> keras.layers.Layer:
        layer = factory(
            filters=filters, kernel_size=3, strides=strides, tau=tau, name=name,
            kernel_initializer=initializer,
        )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`binary_conv` must return a Keras layer, got {type(layer).__name__} for {name!r}."
            )
        return layer

    return build


def _option_a_shortcut(x, filters: int, strides: int, name: str):
    """Identity, or average pool (stride) then zero channels split before/after."""
    if strides != 1:
        x = keras.layers.AveragePooling2D(strides, padding="same", name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    if extra < 0:
        raise ValueError(f"option-A shortcut cannot reduce channels ({x.shape[-1]} -> {filters}).")
    if extra:
        x = ChannelZeroPad((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)
    return x


def _check_args(input_shape, num_classes, block: str) -> Tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
    if block not in _BLOCKS:
        raise ValueError(f"`block` must be one of {_BLOCKS}, got {block!r}.")
    return shape


def _resnet(
    filters: Sequence[int],
    blocks: Sequence[int],
    *,
    input_shape,
    num_classes: int,
    tau: float,
    sync_batch_norm: bool,
    block: str,
    name: str,
    binary_conv: Optional[BinaryConvFactory],
) -> keras.Model:
    shape = _check_args(input_shape, num_classes, block)
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=3)
    binary_conv_layer = _binary_conv_builder(binary_conv)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(
        filters[0], 3, padding="same", use_bias=False,
        kernel_initializer=_kaiming_normal_fan_in(), name="stem_conv",
    )(inputs)
    x = _batch_norm(sync, "stem_bn")(x)
    if block == "bireal":  # resnet.py: hardtanh after the stem; resnet2.py: none
        x = _hardtanh("stem_hardtanh")(x)

    for stage, (stage_filters, stage_blocks) in enumerate(zip(filters, blocks), start=1):
        for index in range(1, stage_blocks + 1):
            prefix = f"stage{stage}_block{index}"
            strides = 2 if stage > 1 and index == 1 else 1
            shortcut = _option_a_shortcut(x, stage_filters, strides, f"{prefix}_shortcut")
            y = binary_conv_layer(stage_filters, strides, tau, _kaiming_normal_fan_in(), f"{prefix}_conv1")(x)
            y = _batch_norm(sync, f"{prefix}_bn1")(y)
            if block == "bireal":
                y = _hardtanh(f"{prefix}_hardtanh1")(keras.layers.Add(name=f"{prefix}_add1")([y, shortcut]))
                shortcut = y
            else:
                y = _hardtanh(f"{prefix}_hardtanh1")(y)
            y = binary_conv_layer(stage_filters, 1, tau, _kaiming_normal_fan_in(), f"{prefix}_conv2")(y)
            y = _batch_norm(sync, f"{prefix}_bn2")(y)
            x = _hardtanh(f"{prefix}_hardtanh2")(keras.layers.Add(name=f"{prefix}_add2")([y, shortcut]))

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = _batch_norm(sync, "head_bn")(x)
    kernel_init, bias_init = _torch_linear_init(filters[-1])
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init, name="head_dense"
    )(x)
    return keras.Model(inputs, outputs, name=name)


_BUILDER_ARGS = """
    Args:
        input_shape: (height, width, channels) of the images; any size.
        num_classes: outputs of the final dense layer (logits).
        tau: initial clamp quantile of every `ReCUConv2D` (a `TauScheduler`
            changes it during `fit`).
        sync_batch_norm: batch statistics over all replicas. On TensorFlow
            every BatchNormalization is `synchronized` (cross-replica
            statistics under a `tf.distribute` strategy). On JAX the layers
            are plain BatchNormalization, which is synchronized already:
            under `keras.distribution.DataParallel` the train step is one
            XLA program over the global batch, sharded across the devices,
            so the mean and variance of each BatchNormalization (and its
            moving statistics) are those of the global batch, not of a
            device's shard. On torch, where Keras trains in one process,
            the layers are plain BatchNormalization over the whole batch,
            with a warning that the flag has no effect.
        name: model name (default: the builder's name).
        binary_conv: builds each binary convolution (`BinaryConvFactory`):
            called with the keywords `filters`, `kernel_size` (3),
            `strides`, `tau`, `name` and `kernel_initializer`, it returns a
            layer with "same" padding. Default `recu_conv2d` (the paper's
            `ReCUConv2D`); pass another to build the same network with other
            quantizers, say for an ablation.
"""

_BLOCK_ARG = """        block: "bireal" (a residual around each binary conv, hardtanh
            after the stem: the authors' ResNet-20) or "basic" (one residual
            per block, no stem hardtanh: the authors' CIFAR ResNet-18/34).
"""


def resnet20_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "bireal",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    return _resnet(
        (16, 32, 64), (3, 3, 3), input_shape=input_shape, num_classes=num_classes, tau=tau,
        sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet20_1w1a",
        binary_conv=binary_conv,
    )


def resnet18_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "basic",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    return _resnet(
        (64, 128, 256, 512), (2, 2, 2, 2), input_shape=input_shape, num_classes=num_classes,
        tau=tau, sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet18_1w1a",
        binary_conv=binary_conv,
    )


def resnet34_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "basic",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    return _resnet(
        (64, 128, 256, 512), (3, 4, 6, 3), input_shape=input_shape, num_classes=num_classes,
        tau=tau, sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet34_1w1a",
        binary_conv=binary_conv,
    )


def vgg_small_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    shape = _check_args(input_shape, num_classes, "basic")
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=2)
    binary_conv_layer = _binary_conv_builder(binary_conv)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(
        128, 3, padding="same", use_bias=False,
        kernel_initializer=_kaiming_normal_fan_out(), name="conv0",
    )(inputs)
    x = _hardtanh("hardtanh0")(_batch_norm(sync, "bn0")(x))
    for index, (filters, pool) in enumerate(
        [(128, True), (256, False), (256, True), (512, False), (512, True)], start=1
    ):
        x = binary_conv_layer(filters, 1, tau, _kaiming_normal_fan_out(), f"conv{index}")(x)
        if pool:  # the reference pools between the conv and its BN
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
        x = _hardtanh(f"hardtanh{index}")(_batch_norm(sync, f"bn{index}")(x))
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
        bias_initializer="zeros",
        name="fc",
    )(x)
    return keras.Model(inputs, outputs, name=name or "vgg_small_1w1a")


resnet20_1w1a.__doc__ = (
    """ResNet-20 1w1a (CIFAR): 16-32-64 channels, 3 stages of 3 blocks, 18 binary convs.

    0.27M parameters (270,522 trainable for 32x32x3 / 10 classes).
"""
    + _BUILDER_ARGS
    + _BLOCK_ARG
)
resnet18_1w1a.__doc__ = (
    """ResNet-18 1w1a (CIFAR variant): 64-128-256-512 channels, [2, 2, 2, 2] blocks, 16 binary convs.

    11.0M parameters (11,005,002 trainable for 32x32x3 / 10 classes).
"""
    + _BUILDER_ARGS
    + _BLOCK_ARG
)
resnet34_1w1a.__doc__ = (
    """ResNet-34 1w1a (CIFAR variant): 64-128-256-512 channels, [3, 4, 6, 3] blocks, 32 binary convs.

    21.1M parameters (21,116,874 trainable for 32x32x3 / 10 classes).
"""
    + _BUILDER_ARGS
    + _BLOCK_ARG
)
vgg_small_1w1a.__doc__ = (
    """VGG-small 1w1a: conv 128 (float), 5 binary convs (128, 256, 256, 512, 512), 3 max pools, dense.

    4.66M parameters (4,661,770 trainable for 32x32x3 / 10 classes).
"""
    + _BUILDER_ARGS
)

MODELS: Dict[str, Callable[..., keras.Model]] = {
    "resnet20_1w1a": resnet20_1w1a,
    "resnet18_1w1a": resnet18_1w1a,
    "resnet34_1w1a": resnet34_1w1a,
    "vgg_small_1w1a": vgg_small_1w1a,
}


def get(name: str) -> Callable[..., keras.Model]:
    """The builder called `name` (a key of `MODELS`).

    Raises:
        ValueError: `name` is not one of `MODELS`; the message lists them.

    >>> get("resnet20_1w1a") is resnet20_1w1a
    True
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}."
        ) from None


def float_twin(model: keras.Model) -> keras.Model:
    """The same network with every `ReCUConv2D` replaced by a float `Conv2D`.

    Same graph, shapes, names and initializers; no quantizers and no alpha
    (a float conv needs no output scale). The full-precision baseline of an
    ablation, and the float32 reference of a size comparison. Weights are
    freshly initialized, not copied.

    >>> twin = float_twin(resnet20_1w1a(input_shape=(28, 28, 1)))
    >>> sum(isinstance(layer, ReCUConv2D) for layer in twin.layers)
    0
    """

    def clone(layer):
        if isinstance(layer, ReCUConv2D):
            return keras.layers.Conv2D(
                layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                use_bias=False, kernel_initializer=layer.kernel_initializer, name=layer.name,
            )
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)
