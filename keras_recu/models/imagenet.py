"""The ImageNet builders: ResNet-18/34 1w1a (vanilla recipe) and the two-stage ResNet-18.

Transcribed from the authors' imagenet/models_imagenet/resnet.py (vanilla)
and imagenet_two-stage/models_imagenet/resnet.py (ReActNet-like). Layer
names are the PyTorch module paths with "." -> "_" ("layer2.0.downsample.0"
is "layer2_0_downsample_0"), so that a state_dict maps by name and the
authors' rule "weight decay on names containing conv or fc" reads the same.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from keras_recu.layers import ConstantPadding2D, LearnableBias
from keras_recu.layers.padding import keras_padding, pads_like_torch, torch_read_padding
from keras_recu.models.blocks import (
    BinaryConvFactory,
    batch_norm,
    binary_conv_builder,
    check_builder_args,
    float_kernel_conv2d,
    hardtanh,
    kaiming_normal_fan_in,
    synchronized_batch_norm,
    torch_conv_init,
    torch_linear_init,
)
from keras_recu.ops import TAU_MIN

__all__ = ["imagenet_resnet18_1w1a", "imagenet_resnet18_two_stage", "imagenet_resnet34_1w1a"]


def _imagenet_input(input_shape, num_classes, padding: str):
    shape = check_builder_args(input_shape, num_classes, padding)
    if shape[-1] is None or any(size is not None and size < 32 for size in shape[:2]):
        raise ValueError(
            f"The ImageNet models downsample by 32; `input_shape` must be at least (32, 32, C) with a "
            f"known channel count, got {input_shape!r}."
        )
    if pads_like_torch(padding) and None in shape[:2]:
        raise ValueError(
            f"padding='torch' needs a static image size (it pads each side as PyTorch does for that "
            f"size), got input_shape={input_shape!r}. Give the size, or use padding='same'."
        )
    return keras.Input(shape, name="image")


def _imagenet_stem(x, *, padding: str, initializer, sync: bool, with_hardtanh: bool):
    """conv 7x7/2 (float) -> BN (-> hardtanh) -> max pool 3x3/2, PyTorch's paddings 3 and 1."""
    conv_name, bn_name = ("conv1", "bn1") if with_hardtanh else ("conv", "bn")
    if pads_like_torch(padding):
        x = keras.layers.ZeroPadding2D(torch_read_padding(x.shape[1:3], 7, 2, 3), name=f"{conv_name}_pad")(x)
    x = keras.layers.Conv2D(
        64, 7, strides=2, padding=keras_padding(padding), use_bias=False,
        kernel_initializer=initializer, name=conv_name,
    )(x)
    x = batch_norm(sync, bn_name, gamma=1e-8 if with_hardtanh else 1.0)(x)
    if with_hardtanh:
        x = hardtanh("nonlinear")(x)
    if pads_like_torch(padding):
        # PyTorch pads max pooling with -inf; the two-stage stem pools BN outputs of any sign.
        x = ConstantPadding2D(torch_read_padding(x.shape[1:3], 3, 2, 1), value=float("-inf"), name="maxpool_pad")(x)
    return keras.layers.MaxPooling2D(
        3, strides=2, padding=keras_padding(padding), name="maxpool"
    )(x)


def _imagenet_stages(blocks: Sequence[int]):
    """(stage, block index, filters, strides) in the authors' order."""
    for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for index in range(count):
            yield stage, index, filters, 2 if stage > 1 and index == 0 else 1


def _imagenet_resnet(
    blocks: Sequence[int], *, input_shape, num_classes, tau, sync_batch_norm, name, binary_conv, padding
) -> keras.Model:
    inputs = _imagenet_input(input_shape, num_classes, padding)
    sync = synchronized_batch_norm(sync_batch_norm, stacklevel=3)
    binary_conv_layer = binary_conv_builder(binary_conv, padding)
    # The authors' init loop: every nn.Conv2d kaiming_normal_, every
    # BatchNorm2d weight 1e-8 (bias 0); BatchNorm1d and Linear keep PyTorch's.
    x = _imagenet_stem(inputs, padding=padding, initializer=kaiming_normal_fan_in(), sync=sync, with_hardtanh=True)
    for stage, index, filters, strides in _imagenet_stages(blocks):
        prefix = f"layer{stage}_{index}"
        residual = x
        y = binary_conv_layer(filters, strides, tau, kaiming_normal_fan_in(), f"{prefix}_conv1")(x)
        y = batch_norm(sync, f"{prefix}_bn1", gamma=1e-8)(y)
        if strides != 1 or x.shape[-1] != filters:
            residual = keras.layers.Conv2D(
                filters, 1, strides=strides, use_bias=False,
                kernel_initializer=kaiming_normal_fan_in(), name=f"{prefix}_downsample_0",
            )(x)
            residual = batch_norm(sync, f"{prefix}_downsample_1", gamma=1e-8)(residual)
        y = hardtanh(f"{prefix}_nonlinear1")(keras.layers.Add(name=f"{prefix}_add1")([y, residual]))
        residual = y
        y = binary_conv_layer(filters, 1, tau, kaiming_normal_fan_in(), f"{prefix}_conv2")(y)
        y = batch_norm(sync, f"{prefix}_bn2", gamma=1e-8)(y)
        x = hardtanh(f"{prefix}_nonlinear2")(keras.layers.Add(name=f"{prefix}_add2")([y, residual]))
    # AvgPool2d(7) on the 7x7 map of a 224 input: a global average pool.
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = batch_norm(sync, "bn2")(x)
    kernel_init, bias_init = torch_linear_init(512)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init, name="fc"
    )(x)
    return keras.Model(inputs, outputs, name=name)


_IMAGENET_ARGS = """
    Args:
        input_shape: (height, width, channels), at least 32x32 (the
            network downsamples by 32); the paper's is (224, 224, 3).
        num_classes: outputs of the final dense layer (logits).
        tau: initial clamp quantile of every binary conv's `ReCUSign`.
        sync_batch_norm: as for the CIFAR builders (see `resnet20_1w1a`).
        name: model name (default: the builder's name).
        padding: "torch" (default): every conv and pool pads as the
            authors' PyTorch model, so that their weights give their
            outputs (`keras_recu.torch_import`); "same": Keras' padding
            throughout. Both convert to `LceBconv2d` for every binary conv.
        binary_conv: a `BinaryConvFactory` for the binary convolutions
            (default `recu_conv2d`).
"""


def imagenet_resnet18_1w1a(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    padding: str = "torch",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    return _imagenet_resnet(
        (2, 2, 2, 2), input_shape=input_shape, num_classes=num_classes, tau=tau,
        sync_batch_norm=sync_batch_norm, name=name or "imagenet_resnet18_1w1a",
        binary_conv=binary_conv, padding=padding,
    )


def imagenet_resnet34_1w1a(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    padding: str = "torch",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    return _imagenet_resnet(
        (3, 4, 6, 3), input_shape=input_shape, num_classes=num_classes, tau=tau,
        sync_batch_norm=sync_batch_norm, name=name or "imagenet_resnet34_1w1a",
        binary_conv=binary_conv, padding=padding,
    )


def imagenet_resnet18_two_stage(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    tau: float = TAU_MIN,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    binary_weights: bool = True,
    padding: str = "torch",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    inputs = _imagenet_input(input_shape, num_classes, padding)
    sync = synchronized_batch_norm(sync_batch_norm, stacklevel=2)
    if not isinstance(binary_weights, bool):
        raise TypeError(f"`binary_weights` must be True or False, got {binary_weights!r}.")
    if not binary_weights and binary_conv is not None:
        raise ValueError(
            "binary_weights=False builds stage 1's float-kernel convs (float_kernel_conv2d); with "
            "your own `binary_conv`, build stage 1 through it and leave binary_weights=True."
        )
    binary_conv_layer = binary_conv_builder(binary_conv if binary_weights else float_kernel_conv2d, padding)
    # No init loop in this file of the authors': PyTorch's defaults throughout
    # (convs U(+-1/sqrt(fan_in)), BN weight 1, PReLU 0.25).
    x = _imagenet_stem(inputs, padding=padding, initializer=torch_conv_init(), sync=sync, with_hardtanh=False)
    for stage, index, filters, strides in _imagenet_stages((4, 4, 4, 4)):
        prefix = f"layer{stage}_{index}"
        residual = x
        y = LearnableBias(name=f"{prefix}_move0")(x)
        y = binary_conv_layer(filters, strides, tau, torch_conv_init(), f"{prefix}_conv")(y)
        y = batch_norm(sync, f"{prefix}_bn")(y)
        if strides != 1 or x.shape[-1] != filters:
            residual = keras.layers.AveragePooling2D(
                2, strides=strides, padding=keras_padding(padding),
                name=f"{prefix}_downsample_0",
            )(x)
            residual = keras.layers.Conv2D(
                filters, 1, use_bias=False, kernel_initializer=torch_conv_init(),
                name=f"{prefix}_downsample_1",
            )(residual)
            residual = batch_norm(sync, f"{prefix}_downsample_2")(residual)
        y = LearnableBias(name=f"{prefix}_move1")(keras.layers.Add(name=f"{prefix}_add")([y, residual]))
        y = keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2],
            name=f"{prefix}_nonlinear",
        )(y)
        x = LearnableBias(name=f"{prefix}_move2")(y)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    kernel_init, bias_init = torch_linear_init(512)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=kernel_init, bias_initializer=bias_init, name="fc"
    )(x)
    return keras.Model(inputs, outputs, name=name or "imagenet_resnet18_two_stage")


imagenet_resnet18_1w1a.__doc__ = (
    """ImageNet ResNet-18 1w1a, the paper's vanilla recipe model: 16 binary convs, 60.98% top-1.

    The authors' `imagenet/models_imagenet/resnet.py`: stem conv 7x7/2
    (float) -> BN -> hardtanh -> max pool 3x3/2; four stages of 64, 128,
    256, 512 filters with [2, 2, 2, 2] blocks. Each block has two binary
    3x3 convs, each followed by BN, a residual add and hardtanh (a residual
    per conv); the first block of stages 2-4 downsamples its first
    residual with a float 1x1/2 conv and BN. Head: global average pool,
    BatchNorm1d, dense. BN gammas of the 2-D BatchNorms start at 1e-8, as
    the authors' init loop sets them; convs are kaiming_normal.

    11,694,376 trainable parameters for (224, 224, 3) and 1000 classes
    (what the authors' PyTorch model counts: torchvision's 11,689,512, plus
    3,840 alphas and the BatchNorm1d's 1,024).

    >>> model = imagenet_resnet18_1w1a(input_shape=(64, 64, 3), num_classes=10)
    >>> from keras_recu.layers import ReCUConv2D
    >>> sum(isinstance(layer, ReCUConv2D) for layer in model.layers)
    16
"""
    + _IMAGENET_ARGS
)
imagenet_resnet34_1w1a.__doc__ = (
    """ImageNet ResNet-34 1w1a (vanilla recipe): [3, 4, 6, 3] blocks, 32 binary convs, 65.10% top-1.

    The same design as `imagenet_resnet18_1w1a`, deeper.
"""
    + _IMAGENET_ARGS
)
imagenet_resnet18_two_stage.__doc__ = (
    """The two-stage recipe's ResNet-18 (ReActNet-like): 16 binary convs, one per block, 66.4% top-1.

    The authors' `imagenet_two-stage/models_imagenet/resnet.py`: stem conv
    7x7/2 (float) -> BN -> max pool 3x3/2 (no nonlinearity); [4, 4, 4, 4]
    blocks of one binary 3x3 conv each::

        out = move2(PReLU(move1(BN(conv(move0(x))) + shortcut(x))))

    where the moves are `LearnableBias` layers and the shortcut of the
    first block of stages 2-4 is average pool 2x2/2 -> float 1x1 conv ->
    BN. Head: global average pool, dense (no BatchNorm1d). PyTorch's
    default initializers throughout.

    Args (besides those below):
        binary_weights: False for stage 1 of the recipe (binary
            activations, float weights: `float_kernel_conv2d`); True for
            stage 2 and deployment. Both build the same layers and
            variables, so stage 2 starts from stage 1's weights.
"""
    + _IMAGENET_ARGS
)
