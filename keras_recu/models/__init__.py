"""The ReCU paper's binary networks in Keras 3: CIFAR ResNet-20/18/34 and VGG-small, ImageNet ResNet-18/34.

CIFAR: `resnet20_1w1a`, `resnet18_1w1a`, `resnet34_1w1a`, `vgg_small_1w1a`
(below). ImageNet: `imagenet_resnet18_1w1a` and `imagenet_resnet34_1w1a`
(the vanilla recipe) and `imagenet_resnet18_two_stage` (the ReActNet-like
model of the two-stage recipe), each described in its docstring, with
layer names that are the authors' PyTorch module paths.

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

Padding: the CIFAR builders use Keras' `padding="same"` by default, which on
even sizes at stride 2 pads (0, 1) where PyTorch's `padding=1` effectively
pads (1, 0), a one-pixel offset of the sampling grid. `padding="torch"`
reproduces PyTorch's exactly (zeros in the binarized input; see
`QuantConv2D`'s `torch_padding`), for weights trained in PyTorch; the
ImageNet builders default to it. VGG-small flattens (H, W, C) where PyTorch
flattens (C, H, W); `keras_recu.torch_import` permutes the dense kernel.

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
>>> sorted(name for name in models.MODELS if name.startswith("imagenet"))
['imagenet_resnet18_1w1a', 'imagenet_resnet18_two_stage', 'imagenet_resnet34_1w1a']
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_recu import quantizers
from keras_recu.layers import ChannelZeroPad, ConstantPadding2D, LearnableBias, QuantConv2D, ReCUConv2D

__all__ = [
    "BinaryConvFactory",
    "ChannelZeroPad",
    "ConstantPadding2D",
    "MODELS",
    "PADDINGS",
    "get",
    "imagenet_resnet18_1w1a",
    "imagenet_resnet18_two_stage",
    "imagenet_resnet34_1w1a",
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
#: The builders' `padding` values: Keras' "same", or PyTorch's symmetric padding.
PADDINGS = ("same", "torch")


# --- initializers (fresh instances: each layer draws its own values) -------


def _kaiming_normal_fan_in():
    """torch.nn.init.kaiming_normal_: N(0, 2 / fan_in), untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _kaiming_normal_fan_out():
    """VGG-small's `normal_(0, sqrt(2 / (k * k * out_channels)))`, untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _torch_conv_init():
    """PyTorch's default Conv2d init, kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)).

    A new instance per layer: an unseeded Keras initializer draws its seed
    once, so one instance shared by two same-shaped layers would give them
    the same weights.
    """
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


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


def _batch_norm(sync: bool, name: str, gamma: float = 1.0) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=sync, name=name,
        gamma_initializer="ones" if gamma == 1.0 else keras.initializers.Constant(gamma),
    )


def _hardtanh(name: str) -> keras.layers.Activation:
    return keras.layers.Activation("hard_tanh", name=name)


#: A callable that builds the binary convolutions of the models: called with
#: the keywords `filters`, `kernel_size`, `strides`, `tau`, `name` and
#: `kernel_initializer`, it returns a layer that maps (H, W, C) images to
#: (ceil(H / strides), ceil(W / strides), filters) ("same" padding). Builders
#: called with `padding="torch"` add `torch_padding=True` (see `QuantConv2D`).
BinaryConvFactory = Callable[..., keras.layers.Layer]


def recu_conv2d(
    filters: int,
    kernel_size,
    strides,
    tau: float,
    name: str,
    kernel_initializer,
    torch_padding: bool = False,
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
        kernel_initializer=kernel_initializer, name=name, torch_padding=torch_padding,
    )


def float_kernel_conv2d(
    filters: int,
    kernel_size,
    strides,
    tau: float,
    name: str,
    kernel_initializer,
    torch_padding: bool = False,
) -> ReCUConv2D:
    """`recu_conv2d` with float weights: binary input, `alpha`, the latent kernel as it is.

    Stage 1 of the two-stage recipe (`imagenet_resnet18_two_stage(
    binary_weights=False)`). The layer, its name and its variables `kernel`
    and `alpha` are those of stage 2, so stage 2 starts from them. `tau` is
    not used: a float kernel has no clamp.
    """
    del tau
    return ReCUConv2D(
        filters, kernel_size, strides=strides, padding="same",
        kernel_quantizer=quantizers.NoOp(), kernel_initializer=kernel_initializer, name=name,
        torch_padding=torch_padding,
    )


def _binary_conv_builder(
    binary_conv: Optional[BinaryConvFactory], padding: str = "same"
) -> Callable[..., keras.layers.Layer]:
    factory = recu_conv2d if binary_conv is None else binary_conv
    if not callable(factory):
        raise TypeError(
            f"`binary_conv` must be a callable (filters, kernel_size, strides, tau, name, "
            f"kernel_initializer) -> layer, such as keras_recu.models.recu_conv2d; got {binary_conv!r}."
        )
    extra = {"torch_padding": True} if padding == "torch" else {}

    def build(filters: int, strides: int, tau: float, initializer, name: str) -> keras.layers.Layer:
        try:
            layer = factory(
                filters=filters, kernel_size=3, strides=strides, tau=tau, name=name,
                kernel_initializer=initializer, **extra,
            )
        except TypeError as error:
            if extra and "torch_padding" in str(error):
                raise TypeError(
                    f"padding='torch' calls `binary_conv` with torch_padding=True, which "
                    f"{getattr(factory, '__name__', factory)!r} does not accept: add a "
                    "`torch_padding` argument and pass it to the layer (see recu_conv2d)."
                ) from None
            raise
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`binary_conv` must return a Keras layer, got {type(layer).__name__} for {name!r}."
            )
        return layer

    return build


def _option_a_shortcut(x, filters: int, strides: int, name: str, padding: str = "same"):
    """Identity, or average pool (stride) then zero channels split before/after."""
    if strides != 1:
        # PyTorch's AvgPool2d floors odd sizes; "same" matches the strided conv there.
        pool_padding = "valid" if padding == "torch" else "same"
        x = keras.layers.AveragePooling2D(strides, padding=pool_padding, name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    if extra < 0:
        raise ValueError(f"option-A shortcut cannot reduce channels ({x.shape[-1]} -> {filters}).")
    if extra:
        x = ChannelZeroPad((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)
    return x


def _check_args(input_shape, num_classes, block: str, padding: str = "same") -> Tuple[int, ...]:
    if padding not in PADDINGS:
        raise ValueError(
            f"`padding` must be one of {PADDINGS} (\"torch\": PyTorch's symmetric padding, "
            f"for weights trained there), got {padding!r}."
        )
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
    padding: str,
) -> keras.Model:
    shape = _check_args(input_shape, num_classes, block, padding)
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=3)
    binary_conv_layer = _binary_conv_builder(binary_conv, padding)
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
            shortcut = _option_a_shortcut(x, stage_filters, strides, f"{prefix}_shortcut", padding)
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
    tau: float = 0.85,
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
    tau: float = 0.85,
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
    tau: float = 0.85,
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
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    binary_conv: Optional[BinaryConvFactory] = None,
    padding: str = "same",
) -> keras.Model:
    shape = _check_args(input_shape, num_classes, "basic", padding)
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=2)
    binary_conv_layer = _binary_conv_builder(binary_conv, padding)
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


# --- ImageNet ----------------------------------------------------------------
#
# Transcribed from the authors' imagenet/models_imagenet/resnet.py (vanilla)
# and imagenet_two-stage/models_imagenet/resnet.py (ReActNet-like). Layer
# names are the PyTorch module paths with "." -> "_" ("layer2.0.downsample.0"
# is "layer2_0_downsample_0"), so that a state_dict maps by name and the
# authors' rule "weight decay on names containing conv or fc" reads the same.


def _imagenet_input(input_shape, num_classes, padding: str):
    shape = _check_args(input_shape, num_classes, "basic", padding)
    if shape[-1] is None or any(size is not None and size < 32 for size in shape[:2]):
        raise ValueError(
            f"The ImageNet models downsample by 32; `input_shape` must be at least (32, 32, C) with a "
            f"known channel count, got {input_shape!r}."
        )
    if padding == "torch" and None in shape[:2]:
        raise ValueError(
            f"padding='torch' needs a static image size (it pads each side as PyTorch does for that "
            f"size), got input_shape={input_shape!r}. Give the size, or use padding='same'."
        )
    return keras.Input(shape, name="image")


def _torch_read_padding(shape, kernel: int, stride: int, pad: int) -> Tuple[Tuple[int, int], ...]:
    """PyTorch's symmetric `pad`, trimmed to the rows and columns that the window reads.

    On an even size at stride 2 PyTorch's last pad row is never read. The
    trimmed pad gives the same result in Keras, and it keeps LCE's converter
    from folding a symmetric pad into a "same" conv whose padding is not
    symmetric there (measured: LCE 0.16 turns ZeroPadding2D(3) -> 7x7/2
    "valid" conv on 224x224 into a wrongly padded conv, silently).
    """
    amounts = []
    for size in shape:
        out = (size + 2 * pad - kernel) // stride + 1
        amounts.append((pad, max((out - 1) * stride + kernel - size - pad, 0)))
    return tuple(amounts)


def _imagenet_stem(x, *, padding: str, initializer, sync: bool, hardtanh: bool):
    """conv 7x7/2 (float) -> BN (-> hardtanh) -> max pool 3x3/2, PyTorch's paddings 3 and 1."""
    conv_name, bn_name = ("conv1", "bn1") if hardtanh else ("conv", "bn")
    if padding == "torch":
        x = keras.layers.ZeroPadding2D(_torch_read_padding(x.shape[1:3], 7, 2, 3), name=f"{conv_name}_pad")(x)
    x = keras.layers.Conv2D(
        64, 7, strides=2, padding="valid" if padding == "torch" else "same", use_bias=False,
        kernel_initializer=initializer, name=conv_name,
    )(x)
    x = _batch_norm(sync, bn_name, gamma=1e-8 if hardtanh else 1.0)(x)
    if hardtanh:
        x = _hardtanh("nonlinear")(x)
    if padding == "torch":
        # PyTorch pads max pooling with -inf; the two-stage stem pools BN outputs of any sign.
        x = ConstantPadding2D(_torch_read_padding(x.shape[1:3], 3, 2, 1), value=float("-inf"), name="maxpool_pad")(x)
    return keras.layers.MaxPooling2D(
        3, strides=2, padding="valid" if padding == "torch" else "same", name="maxpool"
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
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=3)
    binary_conv_layer = _binary_conv_builder(binary_conv, padding)
    # The authors' init loop: every nn.Conv2d kaiming_normal_, every
    # BatchNorm2d weight 1e-8 (bias 0); BatchNorm1d and Linear keep PyTorch's.
    x = _imagenet_stem(inputs, padding=padding, initializer=_kaiming_normal_fan_in(), sync=sync, hardtanh=True)
    for stage, index, filters, strides in _imagenet_stages(blocks):
        prefix = f"layer{stage}_{index}"
        residual = x
        y = binary_conv_layer(filters, strides, tau, _kaiming_normal_fan_in(), f"{prefix}_conv1")(x)
        y = _batch_norm(sync, f"{prefix}_bn1", gamma=1e-8)(y)
        if strides != 1 or x.shape[-1] != filters:
            residual = keras.layers.Conv2D(
                filters, 1, strides=strides, use_bias=False,
                kernel_initializer=_kaiming_normal_fan_in(), name=f"{prefix}_downsample_0",
            )(x)
            residual = _batch_norm(sync, f"{prefix}_downsample_1", gamma=1e-8)(residual)
        y = _hardtanh(f"{prefix}_nonlinear1")(keras.layers.Add(name=f"{prefix}_add1")([y, residual]))
        residual = y
        y = binary_conv_layer(filters, 1, tau, _kaiming_normal_fan_in(), f"{prefix}_conv2")(y)
        y = _batch_norm(sync, f"{prefix}_bn2", gamma=1e-8)(y)
        x = _hardtanh(f"{prefix}_nonlinear2")(keras.layers.Add(name=f"{prefix}_add2")([y, residual]))
    # AvgPool2d(7) on the 7x7 map of a 224 input: a global average pool.
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = _batch_norm(sync, "bn2")(x)
    kernel_init, bias_init = _torch_linear_init(512)
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
    tau: float = 0.85,
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
    tau: float = 0.85,
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
    tau: float = 0.85,
    sync_batch_norm: bool = False,
    name: Optional[str] = None,
    *,
    binary_weights: bool = True,
    padding: str = "torch",
    binary_conv: Optional[BinaryConvFactory] = None,
) -> keras.Model:
    inputs = _imagenet_input(input_shape, num_classes, padding)
    sync = _synchronized_batch_norm(sync_batch_norm, stacklevel=2)
    if not isinstance(binary_weights, bool):
        raise TypeError(f"`binary_weights` must be True or False, got {binary_weights!r}.")
    if not binary_weights and binary_conv is not None:
        raise ValueError(
            "binary_weights=False builds stage 1's float-kernel convs (float_kernel_conv2d); with "
            "your own `binary_conv`, build stage 1 through it and leave binary_weights=True."
        )
    binary_conv_layer = _binary_conv_builder(binary_conv if binary_weights else float_kernel_conv2d, padding)
    # No init loop in this file of the authors': PyTorch's defaults throughout
    # (convs U(+-1/sqrt(fan_in)), BN weight 1, PReLU 0.25).
    x = _imagenet_stem(inputs, padding=padding, initializer=_torch_conv_init(), sync=sync, hardtanh=False)
    for stage, index, filters, strides in _imagenet_stages((4, 4, 4, 4)):
        prefix = f"layer{stage}_{index}"
        residual = x
        y = LearnableBias(name=f"{prefix}_move0")(x)
        y = binary_conv_layer(filters, strides, tau, _torch_conv_init(), f"{prefix}_conv")(y)
        y = _batch_norm(sync, f"{prefix}_bn")(y)
        if strides != 1 or x.shape[-1] != filters:
            residual = keras.layers.AveragePooling2D(
                2, strides=strides, padding="valid" if padding == "torch" else "same",
                name=f"{prefix}_downsample_0",
            )(x)
            residual = keras.layers.Conv2D(
                filters, 1, use_bias=False, kernel_initializer=_torch_conv_init(),
                name=f"{prefix}_downsample_1",
            )(residual)
            residual = _batch_norm(sync, f"{prefix}_downsample_2")(residual)
        y = LearnableBias(name=f"{prefix}_move1")(keras.layers.Add(name=f"{prefix}_add")([y, residual]))
        y = keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2],
            name=f"{prefix}_nonlinear",
        )(y)
        x = LearnableBias(name=f"{prefix}_move2")(y)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    kernel_init, bias_init = _torch_linear_init(512)
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
    "imagenet_resnet18_1w1a": imagenet_resnet18_1w1a,
    "imagenet_resnet34_1w1a": imagenet_resnet34_1w1a,
    "imagenet_resnet18_two_stage": imagenet_resnet18_two_stage,
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
    (a float conv needs no output scale). A conv with `torch_padding=True`
    becomes a `QuantConv2D` without quantizers, a float conv that keeps
    PyTorch's padding. The full-precision baseline of an
    ablation, and the float32 reference of a size comparison. Weights are
    freshly initialized, not copied.

    >>> twin = float_twin(resnet20_1w1a(input_shape=(28, 28, 1)))
    >>> sum(isinstance(layer, ReCUConv2D) for layer in twin.layers)
    0
    """

    def clone(layer):
        if isinstance(layer, ReCUConv2D):
            # The layer's own initializer: under one seed the twin starts from
            # the binary model's latent weights (the ablation compares them).
            initializer = layer.kernel_initializer
            if layer.torch_padding:
                # A QuantConv2D without quantizers is a float conv; it keeps PyTorch's padding.
                return QuantConv2D(
                    layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                    use_bias=False, kernel_initializer=initializer, name=layer.name, torch_padding=True,
                )
            return keras.layers.Conv2D(
                layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                use_bias=False, kernel_initializer=initializer, name=layer.name,
            )
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)
