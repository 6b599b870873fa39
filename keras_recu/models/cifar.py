"""The CIFAR builders: ResNet-20/18/34 1w1a and VGG-small 1w1a (see `keras_recu.models`)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras

from keras_recu.models.blocks import (
    BinaryConvFactory,
    batch_norm,
    binary_conv_builder,
    check_builder_args,
    hardtanh,
    kaiming_normal_fan_in,
    kaiming_normal_fan_out,
    option_a_shortcut,
    synchronized_batch_norm,
    torch_linear_init,
)
from keras_recu.ops import TAU_MIN

__all__ = ["resnet18_1w1a", "resnet20_1w1a", "resnet34_1w1a", "vgg_small_1w1a"]

#: The ResNets' `block` values: a residual per binary conv, or one per block.
_BLOCKS = ("bireal", "basic")


def _check_args(input_shape, num_classes, block: str, padding: str) -> Tuple[int, ...]:
    shape = check_builder_args(input_shape, num_classes, padding)
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
    padding: str,
) -> keras.Model:
    shape = _check_args(input_shape, num_classes, block, padding)
    sync = synchronized_batch_norm(sync_batch_norm, stacklevel=3)
    binary_conv_layer = binary_conv_builder(binary_conv, padding)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(
        filters[0], 3, padding="same", use_bias=False,
        kernel_initializer=kaiming_normal_fan_in(), name="stem_conv",
    )(inputs)
    x = batch_norm(sync, "stem_bn")(x)
    if block == "bireal":  # resnet.py: hardtanh after the stem; resnet2.py: none
        x = hardtanh("stem_hardtanh")(x)

    for stage, (stage_filters, stage_blocks) in enumerate(zip(filters, blocks), start=1):
        for index in range(1, stage_blocks + 1):
            prefix = f"stage{stage}_block{index}"
            strides = 2 if stage > 1 and index == 1 else 1
            shortcut = option_a_shortcut(x, stage_filters, strides, f"{prefix}_shortcut", padding)
            y = binary_conv_layer(stage_filters, strides, tau, kaiming_normal_fan_in(), f"{prefix}_conv1")(x)
            y = batch_norm(sync, f"{prefix}_bn1")(y)
            if block == "bireal":
                y = hardtanh(f"{prefix}_hardtanh1")(keras.layers.Add(name=f"{prefix}_add1")([y, shortcut]))
                shortcut = y
            else:
                y = hardtanh(f"{prefix}_hardtanh1")(y)
            y = binary_conv_layer(stage_filters, 1, tau, kaiming_normal_fan_in(), f"{prefix}_conv2")(y)
            y = batch_norm(sync, f"{prefix}_bn2")(y)
            x = hardtanh(f"{prefix}_hardtanh2")(keras.layers.Add(name=f"{prefix}_add2")([y, shortcut]))

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = batch_norm(sync, "head_bn")(x)
    kernel_init, bias_init = torch_linear_init(filters[-1])
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
        padding: "same" (Keras') or "torch": PyTorch's symmetric padding,
            which the authors' models use. They differ on even sizes at
            stride 2 (one pixel at the top/left in PyTorch, at the
            bottom/right in Keras); "torch" is needed to run weights trained
            in PyTorch (`keras_recu.torch_import`) and still converts to
            `LceBconv2d` (see `QuantConv2D`'s `torch_padding`).
"""

_BLOCK_ARG = """        block: "bireal" (a residual around each binary conv, hardtanh
            after the stem: the authors' ResNet-20) or "basic" (one residual
            per block, no stem hardtanh: the authors' CIFAR ResNet-18/34).
"""


def resnet20_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "bireal",
    binary_conv: Optional[BinaryConvFactory] = None,
    padding: str = "same",
) -> keras.Model:
    return _resnet(
        (16, 32, 64), (3, 3, 3), input_shape=input_shape, num_classes=num_classes, tau=tau,
        sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet20_1w1a",
        binary_conv=binary_conv, padding=padding,
    )


def resnet18_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "basic",
    binary_conv: Optional[BinaryConvFactory] = None,
    padding: str = "same",
) -> keras.Model:
    return _resnet(
        (64, 128, 256, 512), (2, 2, 2, 2), input_shape=input_shape, num_classes=num_classes,
        tau=tau, sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet18_1w1a",
        binary_conv=binary_conv, padding=padding,
    )


def resnet34_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    block: str = "basic",
    binary_conv: Optional[BinaryConvFactory] = None,
    padding: str = "same",
) -> keras.Model:
    return _resnet(
        (64, 128, 256, 512), (3, 4, 6, 3), input_shape=input_shape, num_classes=num_classes,
        tau=tau, sync_batch_norm=sync_batch_norm, block=block, name=name or "resnet34_1w1a",
        binary_conv=binary_conv, padding=padding,
    )


def vgg_small_1w1a(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    binary_conv: Optional[BinaryConvFactory] = None,
    padding: str = "same",
) -> keras.Model:
    shape = check_builder_args(input_shape, num_classes, padding)
    sync = synchronized_batch_norm(sync_batch_norm, stacklevel=2)
    binary_conv_layer = binary_conv_builder(binary_conv, padding)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(
        128, 3, padding="same", use_bias=False,
        kernel_initializer=kaiming_normal_fan_out(), name="conv0",
    )(inputs)
    x = hardtanh("hardtanh0")(batch_norm(sync, "bn0")(x))
    for index, (filters, pool) in enumerate(
        [(128, True), (256, False), (256, True), (512, False), (512, True)], start=1
    ):
        x = binary_conv_layer(filters, 1, tau, kaiming_normal_fan_out(), f"conv{index}")(x)
        if pool:  # the reference pools between the conv and its BN
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
        x = hardtanh(f"hardtanh{index}")(batch_norm(sync, f"bn{index}")(x))
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
