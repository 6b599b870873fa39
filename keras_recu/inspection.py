"""Finding things in a model: its layers, its binary layers, their quantizers, the tau holders.

One module answers these questions for the whole package: `deploy`,
`profile`, `diagnostics`, the tau schedulers and the training job all ask
it. Works on Keras 3 models (any backend) and on tf-keras / larq models,
whose layers follow the same conventions.

The conventions, larq's:

* a layer's quantizers are the values of its attributes `input_quantizer`,
  `kernel_quantizer`, `depthwise_quantizer` and `pointwise_quantizer`
  (`QUANTIZER_ATTRIBUTES`); `None` means no quantizer;
* a quantizer's bitwidth is its `precision` attribute (1 for a sign); a
  callable without one is a quantizer of unknown precision;
* a quantizer of the kernel applies to the variable in the layer's `kernel`
  attribute (`depthwise_kernel` and `pointwise_kernel` for the separable
  convolutions' quantizers).

Example:

>>> import keras
>>> from keras_recu import inspection
>>> from keras_recu.layers import QuantDense, ReCUConv2D
>>> model = keras.Sequential([
...     keras.Input((8, 8, 2)),
...     ReCUConv2D(4, 3, name="bconv"),
...     keras.layers.Flatten(),
...     QuantDense(3, kernel_quantizer="ste_sign", name="half_binary"),
... ])
>>> [(b.name, b.kind, b.binary_input, b.binary_kernel) for b in inspection.binary_layers(model)]
[('bconv', 'conv', True, True), ('half_binary', 'dense', False, True)]
>>> sorted(inspection.quantizers(model.get_layer("bconv")))
['input_quantizer', 'kernel_quantizer']
>>> [round(holder.tau, 2) for holder in inspection.tau_holders(model)]
[0.85]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from keras_recu._compat import keras_internals
from keras_recu.tau import HasTau

__all__ = [
    "QUANTIZER_ATTRIBUTES",
    "BinaryLayer",
    "QuantizedKernel",
    "binary_layers",
    "kernel_quantizer",
    "layers",
    "precision",
    "quantized_kernels",
    "quantizers",
    "tau_holders",
    "tau_variables",
]

#: The attributes that hold a layer's quantizers (larq's names).
QUANTIZER_ATTRIBUTES = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")

# A kernel quantizer and the attributes that may hold the variable it
# quantizes, in the order they are tried (Keras 3's DepthwiseConv2D keeps its
# depthwise kernel in `kernel`, tf-keras' in `depthwise_kernel`).
_QUANTIZED_VARIABLES = {
    "kernel_quantizer": ("kernel",),
    "depthwise_quantizer": ("depthwise_kernel", "kernel"),
    "pointwise_quantizer": ("pointwise_kernel",),
}


def layers(model, include_self: bool = False) -> List[Any]:
    """Every layer nested in `model` (in nested models and layers too), depth first, each once.

    Quantizers are layers too and appear right after the layer that holds
    them. With `include_self`, `model` comes first.
    """
    return keras_internals.flatten_layers(model, include_self=include_self)


def _read(obj, name: str):
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that cannot be read in this state (unbuilt, ...)
        return None


def quantizers(layer) -> Dict[str, Any]:
    """The quantizers of `layer` by attribute name (see `QUANTIZER_ATTRIBUTES`); {} for none."""
    found = {}
    for name in QUANTIZER_ATTRIBUTES:
        quantizer = _read(layer, name)
        if quantizer is not None:
            found[name] = quantizer
    return found


def precision(quantizer) -> Optional[int]:
    """The bitwidth of `quantizer` (its `precision`), None if it declares none or is None."""
    value = getattr(quantizer, "precision", None)
    return None if value is None else int(value)


def kernel_quantizer(layer):
    """The quantizer of the layer's weights: its `depthwise_quantizer`, else its `kernel_quantizer`."""
    found = quantizers(layer)
    return found.get("depthwise_quantizer", found.get("kernel_quantizer"))


@dataclasses.dataclass(frozen=True)
class QuantizedKernel:
    """A variable of a layer and the quantizer applied to it.

    Attributes:
        attribute: the quantizer's attribute (`"kernel_quantizer"`, ...).
        quantizer: the quantizer.
        variable: the latent variable it quantizes (the layer's own).
        bitwidth: the quantizer's precision, None if unknown.
    """

    attribute: str
    quantizer: Any = dataclasses.field(repr=False)
    variable: Any = dataclasses.field(repr=False)
    bitwidth: Optional[int]


def _own_variable(layer, names) -> Any:
    weights = list(layer.weights)
    by_id = {id(w) for w in weights}
    for name in names:
        value = _read(layer, name)
        if value is not None and id(value) in by_id:
            return value
    # The attribute may be a derived tensor (Keras 3's Dense with LoRA returns
    # kernel + update): the variable itself carries the name.
    for name in names:
        for weight in weights:
            if weight.name.split("/")[-1].split(":")[0] == name:
                return weight
    return None


def quantized_kernels(layer) -> List[QuantizedKernel]:
    """The latent variables of `layer` that its quantizers apply to (not the input's).

    Empty for an unbuilt layer or one without a kernel quantizer.
    """
    found = []
    for attribute, quantizer in quantizers(layer).items():
        if attribute not in _QUANTIZED_VARIABLES:
            continue
        variable = _own_variable(layer, _QUANTIZED_VARIABLES[attribute])
        if variable is not None:
            found.append(QuantizedKernel(attribute, quantizer, variable, precision(quantizer)))
    return found


@dataclasses.dataclass(frozen=True)
class BinaryLayer:
    """A layer with a 1-bit input or kernel quantizer.

    Attributes:
        name: the layer's name.
        kind: `"conv"`, `"dense"` or `"depthwise"` (depthwise and separable
            convolutions).
        input_precision, kernel_precision: the bitwidths of its input and
            kernel (depthwise) quantizers, None where there is none or it
            declares no precision.
        layer: the layer itself.
    """

    name: str
    kind: str
    input_precision: Optional[int]
    kernel_precision: Optional[int]
    layer: Any = dataclasses.field(repr=False, compare=False)

    @property
    def binary_input(self) -> bool:
        return self.input_precision == 1

    @property
    def binary_kernel(self) -> bool:
        return self.kernel_precision == 1

    @property
    def fully_binary(self) -> bool:
        """Binary input and binary kernel: what a binary convolution op needs."""
        return self.binary_input and self.binary_kernel


def _kind(layer) -> str:
    if hasattr(layer, "depthwise_quantizer"):
        return "depthwise"
    return "conv" if hasattr(layer, "filters") else "dense"


def binary_layers(model) -> List[BinaryLayer]:
    """Every layer nested in `model` with a 1-bit input or kernel quantizer, in `layers` order."""
    found = []
    for layer in layers(model):
        input_precision = precision(_read(layer, "input_quantizer"))
        kernel_precision = precision(kernel_quantizer(layer))
        if 1 in (input_precision, kernel_precision):
            found.append(BinaryLayer(layer.name, _kind(layer), input_precision, kernel_precision, layer))
    return found


def tau_holders(model) -> List[HasTau]:
    """Every object of `model` whose ReCU clamp quantile tau a scheduler may set, each once.

    Looks at `model` and every nested layer (quantizers are layers), at the
    layers' `*_constraint` attributes and at the constraints of the model's
    variables, so that nested models and constraints on variables built
    later count too.
    """
    found: Dict[int, HasTau] = {}

    def add(obj) -> None:
        if isinstance(obj, HasTau):
            found.setdefault(id(obj), obj)

    for layer in layers(model, include_self=True):
        add(layer)
        for name, value in vars(layer).items():
            if name.endswith("constraint"):
                add(value)
    for variable in model.variables:
        add(getattr(variable, "constraint", None))
    return list(found.values())


def tau_variables(model) -> List[Any]:
    """The variables that hold tau in `model`: training state, not parameters."""
    return [holder.tau_variable for holder in tau_holders(model)]
