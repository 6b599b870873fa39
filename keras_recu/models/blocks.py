"""The building pieces the model builders share: initializers, batch norm, binary convs, shortcuts.

Every builder of `keras_recu.models` composes its network from these, so
that the CIFAR and ImageNet families initialize, normalize and binarize
alike, and a `BinaryConvFactory` swaps every binary convolution of any of
them at once.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable, Optional, Tuple

import keras

from keras_recu import quantizers
from keras_recu.layers import TORCH_CONV_INIT, ChannelZeroPad, ReCUConv2D
from keras_recu.layers.padding import check_padding, keras_padding, pads_like_torch

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "BinaryConvFactory",
    "batch_norm",
    "binary_conv_builder",
    "check_builder_args",
    "float_kernel_conv2d",
    "hardtanh",
    "kaiming_normal_fan_in",
    "kaiming_normal_fan_out",
    "option_a_shortcut",
    "recu_conv2d",
    "synchronized_batch_norm",
    "torch_conv_init",
    "torch_linear_init",
]

# PyTorch's BatchNorm defaults: running = 0.9 * running + 0.1 * batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


# --- initializers (fresh instances: each layer draws its own values) -------


def kaiming_normal_fan_in() -> keras.initializers.Initializer:
    """torch.nn.init.kaiming_normal_: N(0, 2 / fan_in), untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def kaiming_normal_fan_out() -> keras.initializers.Initializer:
    """VGG-small's `normal_(0, sqrt(2 / (k * k * out_channels)))`, untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def torch_conv_init() -> keras.initializers.Initializer:
    """PyTorch's default Conv2d init, kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)).

    `ReCUConv2D`'s default, `keras_recu.layers.TORCH_CONV_INIT`, built.

    A new instance per layer: an unseeded Keras initializer draws its seed
    once, so one instance shared by two same-shaped layers would give them
    the same weights.
    """
    return keras.initializers.get(copy.deepcopy(TORCH_CONV_INIT))


def torch_linear_init(fan_in: int) -> Tuple[keras.initializers.Initializer, keras.initializers.Initializer]:
    """PyTorch's default nn.Linear init: kernel and bias U(+-1/sqrt(fan_in)).

    The kernel's is that of `torch_conv_init`, the same kaiming_uniform_(a=sqrt(5)).
    """
    bound = 1.0 / math.sqrt(fan_in)
    return torch_conv_init(), keras.initializers.RandomUniform(-bound, bound)


def synchronized_batch_norm(sync_batch_norm: bool, stacklevel: int) -> bool:
    """Whether to build `synchronized` BatchNormalization on this backend.

    A builder's `sync_batch_norm` (see `resnet20_1w1a`'s arguments): True on
    TensorFlow; False on JAX, whose data-parallel step normalizes over the
    global batch already; False with a warning on torch. `stacklevel` is the
    builder's depth below the user's call, for the warning.
    """
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
    # JAX: plain BatchNormalization is synchronized already (see the docstring).
    return False


def batch_norm(sync: bool, name: str, gamma: float = 1.0) -> keras.layers.BatchNormalization:
    """PyTorch's BatchNorm (`BN_MOMENTUM`, `BN_EPSILON`), `synchronized` if `sync`, gamma from `gamma`."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=sync, name=name,
        gamma_initializer="ones" if gamma == 1.0 else keras.initializers.Constant(gamma),
    )


def hardtanh(name: str) -> keras.layers.Activation:
    """PyTorch's `nn.Hardtanh`: clip to [-1, 1]."""
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
    >>> from keras_recu.models import resnet20_1w1a
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


def binary_conv_builder(
    binary_conv: Optional[BinaryConvFactory], padding: str = "same"
) -> Callable[..., keras.layers.Layer]:
    """A builder's maker of 3x3 binary convs: `build(filters, strides, tau, initializer, name)`.

    It calls `binary_conv` (default `recu_conv2d`) with the factory's
    keywords, plus `torch_padding=True` under `padding="torch"`, and checks
    that it returns a Keras layer.
    """
    factory = recu_conv2d if binary_conv is None else binary_conv
    if not callable(factory):
        raise TypeError(
            f"`binary_conv` must be a callable (filters, kernel_size, strides, tau, name, "
            f"kernel_initializer) -> layer, such as keras_recu.models.recu_conv2d; got {binary_conv!r}."
        )
    extra = {"torch_padding": True} if pads_like_torch(padding) else {}

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


def option_a_shortcut(x, filters: int, strides: int, name: str, padding: str = "same"):
    """The ResNets' option-A shortcut of `x`: identity, or average pool (stride) then zero channels.

    The zero channels (`ChannelZeroPad`) are split before and after the
    input's, as the reference's `F.pad` does.
    """
    if strides != 1:
        # PyTorch's AvgPool2d floors odd sizes; "same" matches the strided conv there.
        x = keras.layers.AveragePooling2D(strides, padding=keras_padding(padding), name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    if extra < 0:
        raise ValueError(f"option-A shortcut cannot reduce channels ({x.shape[-1]} -> {filters}).")
    if extra:
        x = ChannelZeroPad((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)
    return x


def check_builder_args(input_shape, num_classes, padding: str = "same") -> Tuple[int, ...]:
    """A builder's `input_shape` as a tuple, after checking it, `num_classes` and `padding`."""
    check_padding(padding)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
    return shape
