"""larq's counting rules on one Keras layer: which weights count, at which bitwidth, and which layers do MACs.

`keras_recu.profile` states the rules; this module applies them to a layer
(and its sublayers), for `LayerProfile` and `ModelProfile` to sum up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

import keras

from keras_recu import inspection
from keras_recu.layers import ReCUConv2D

Shape = Tuple[Optional[int], ...]

# Layers whose MACs are (weights other than the bias) x (output pixels).
# Conv2DTranspose is left out, as in larq: its MACs scale with the input.
MAC_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
)

# Keras layers known to perform no MACs: their MAC cells read 0 rather than
# "?". Other layers declare it themselves (see `performs_no_macs`).
ZERO_MAC_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.BatchNormalization,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.Dropout,
    keras.layers.Permute,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Concatenate,
    keras.layers.Add,
)


@dataclass(frozen=True)
class WeightProfile:
    """One variable as the summary counts it.

    Attributes:
        name: the variable's path (e.g. `"conv2d/kernel"`).
        count: number of scalars.
        bitwidth: bits per scalar (the quantizer's precision, else 32).
        trainable: whether the optimizer updates it.
    """

    name: str
    count: int
    bitwidth: int
    trainable: bool

    @property
    def memory(self) -> int:
        """Size in bits."""
        return self.count * self.bitwidth

    @property
    def fp_equivalent_memory(self) -> int:
        """Size in bits were it float-32."""
        return self.count * 32

    @property
    def int8_fp_weights_memory(self) -> int:
        """Size in bits with weights wider than 8 bits stored as 8 bits."""
        return self.count * min(self.bitwidth, 8)


@dataclass(frozen=True)
class OperationProfile:
    """`n` operations of one type (`"mac"`) at one precision (bits)."""

    n: int
    precision: int
    op_type: str = "mac"


def variable_size(variable: Any) -> int:
    """Number of scalars in `variable`."""
    return int(math.prod(variable.shape))


def performs_no_macs(layer: Any) -> bool:
    """Whether `layer` is known to perform no multiply-accumulates (its MACs read 0, not "?").

    True for the Keras layers of `ZERO_MAC_LAYERS`, for quantizers used as
    layers (a layer with a `precision`, as larq's quantizers and ours), and
    for any layer whose class declares so with the class attribute
    `performs_macs = False` (as `keras_recu.models.ChannelZeroPad` does). A
    MAC layer (`MAC_LAYERS`) has its MACs counted instead.
    """
    return (
        isinstance(layer, ZERO_MAC_LAYERS)
        or getattr(layer, "precision", None) is not None
        or getattr(type(layer), "performs_macs", True) is False
    )


def tau_variable_ids(layer: Any) -> Set[int]:
    """ids of ReCU's tau variables in the layer tree: training state, neither parameters nor memory."""
    # ReCU's tau is state for the scheduler, held by every tau holder in the
    # layer tree (quantizer layers, ReCUClamp constraints); identity, not the
    # name "tau", decides.
    return {id(variable) for variable in inspection.tau_variables(layer)}


def quantized_bitwidths(layer: Any) -> Dict[int, int]:
    """id(kernel variable) -> bitwidth, for every quantized kernel in the layer tree."""
    return {
        id(kernel.variable): kernel.bitwidth
        for sublayer in inspection.layers(layer, include_self=True)
        for kernel in inspection.quantized_kernels(sublayer)
        if kernel.bitwidth is not None
    }


def _fused_batchnorm_ids(layer: Any) -> Set[int]:
    """ids of the BatchNormalization weights that fold into the moving statistics."""
    fused = set()
    for sublayer in inspection.layers(layer, include_self=True):
        if not isinstance(sublayer, keras.layers.BatchNormalization):
            continue
        for folded, kept in (("beta", "moving_mean"), ("gamma", "moving_variance")):
            weight = getattr(sublayer, folded, None)
            if weight is not None and getattr(sublayer, kept, None) is not None:
                fused.add(id(weight))
    return fused


def weight_profiles(
    layer: Any, tau_ids: Set[int], bitwidths: Dict[int, int], counted_ids: Set[int]
) -> List[WeightProfile]:
    """The counted weights of `layer`: all but tau and the BatchNormalization weights that fold away.

    A variable whose id is in `counted_ids` (counted by an earlier row) is
    skipped; the ids of those counted here are added to it. `bitwidths` maps
    quantized kernels to their bitwidth (see `quantized_bitwidths`); every
    other weight counts as 32 bits.
    """
    skip = tau_ids | _fused_batchnorm_ids(layer)
    trainable = {id(w) for w in layer.trainable_weights}
    profiles = []
    for variable in layer.weights:
        if id(variable) in skip or id(variable) in counted_ids:
            continue
        counted_ids.add(id(variable))
        profiles.append(
            WeightProfile(
                name=getattr(variable, "path", variable.name),
                count=variable_size(variable),
                bitwidth=bitwidths.get(id(variable), 32),
                trainable=id(variable) in trainable,
            )
        )
    return profiles


def mac_weights(layer: Any, tau_ids: Set[int]) -> List[Any]:
    """The layer's own weights that take part in its MACs."""
    excluded = set(tau_ids)
    bias = getattr(layer, "bias", None)
    if bias is not None:
        excluded.add(id(bias))
    if isinstance(layer, ReCUConv2D):
        # ReCUConv2D's alpha scales each output channel once per output
        # value: a multiplication after the convolution, not a weight of its
        # MACs. (larq leaves out only the bias; it has no such scale.)
        excluded.add(id(layer.alpha))
    for sublayer in inspection.layers(layer):
        excluded.update(id(w) for w in sublayer.weights)
    return [
        w for w in layer.weights if id(w) not in excluded and w.name.split("/")[-1] != "bias"
    ]


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        d is None or isinstance(d, int) for d in value
    )


def built_output_shapes(layer: Any) -> Optional[List[Tuple[Shape, ...]]]:
    """The output shapes of a layer outside any graph (in a subclassed model).

    Its output shape for the input shape it was built with stands for its
    one call; None when it was built for several inputs or that fails.
    """
    try:
        input_shape = (layer.get_build_config() or {}).get("input_shape")
        output = layer.compute_output_shape(input_shape) if input_shape is not None else None
    except Exception:
        return None
    if _is_shape(output):
        shapes = [output]
    else:
        shapes = list(output) if isinstance(output, (list, tuple)) else []
    if not shapes or not all(_is_shape(s) and len(s) > 0 for s in shapes):
        return None
    # The batch size the layer was first called with is no property of it.
    return [tuple((None, *s[1:]) for s in shapes)]


def output_pixels(layer: Any, shape: Shape) -> Optional[int]:
    """Positions at which the kernel is applied: the product of the spatial
    axes of the output (1 for a dense layer on vectors); None if unknown."""
    if len(shape) < 2:
        return None
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]
    if any(d is None for d in spatial):
        return None
    return int(math.prod(spatial))


# --------------------------------------------------------------------------
