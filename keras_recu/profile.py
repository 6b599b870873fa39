"""Model profile: larq's summary table of parameters, memory and MACs, for Keras 3 models.

`larq.models.summary` profiles tf-keras models only. `summary` gives Keras 3
users the same two tables: one row per top-level layer with its input
precision, output shape, parameters per bitwidth, memory and
multiply-accumulate operations (MACs) per precision, then the model's
totals (parameters, model size, its float-32 equivalent, the compression
ratio and the share of binarized MACs). The numbers stay accessible on the
returned `ModelProfile`.

The rules are larq's:

* the kernel of a layer whose kernel quantizer (`depthwise_quantizer` for
  depthwise convolutions) has a `precision` counts as parameters of that
  bitwidth; every other weight counts as 32 bits;
* a BatchNormalization layer counts two weights per channel: `beta` and
  `gamma` fold into the moving mean and variance at inference;
* the MACs of a convolution or dense layer are, per weight other than the
  bias, its size times the number of output pixels, at precision
  `max(input precision or 32, weight bitwidth)`. ReCUConv2D's per-channel
  `alpha` is a scale applied after the convolution, not a MAC weight (it
  still counts as 32-bit parameters). A layer called several times in the
  graph counts its MACs once per call; where the output shape is unknown,
  the MACs read "?";
* only the top-level layers get a row; a nested model is one row that counts
  everything inside it;
* a layer that performs no MACs reads 0, any other layer whose MACs are not
  counted reads "?". Keras' shape-only layers (`ZERO_MAC_LAYERS`) and
  quantizers are known; a layer of your own declares it with the class
  attribute `performs_macs = False` (see `performs_no_macs`).

ReCU's `tau` is training state, not a parameter: its variables (held by the
quantizers, which are layers, and by `ReCUClamp` constraints) add neither
parameters nor memory.

Example:

>>> import keras
>>> from keras_recu.layers import QuantConv2D
>>> from keras_recu.profile import summary
>>> model = keras.Sequential([
...     keras.Input((8, 8, 3)),
...     QuantConv2D(4, 3, padding="same", input_quantizer="recu_input_sign",
...                 kernel_quantizer="recu_sign", use_bias=False),
...     keras.layers.BatchNormalization(),
... ])
>>> profile = summary(model, print_fn=lambda text: None)
>>> profile.weight_count(bitwidth=1), profile.weight_count(bitwidth=32)
(108, 8)
>>> profile.op_count(precision=1)  # 3 * 3 * 3 * 4 weights at 8 * 8 pixels
6912
>>> profile.memory  # bits: 108 binary weights, 8 float ones
364
>>> round(profile.compression_ratio, 4)  # 364 / (116 * 32)
0.0981
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import keras

from keras_recu import _compat, inspection
from keras_recu.layers import ReCUConv2D

__all__ = ["WeightProfile", "OperationProfile", "LayerProfile", "ModelProfile", "summary"]

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

_BITS_PER_KB = 8 * 1024


# --------------------------------------------------------------------------
# Profiles


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


class _Profile:
    """What a table row needs: weights, operations, input precision, output shape."""

    name: str
    weight_profiles: List[WeightProfile]
    op_profiles: List[OperationProfile]
    input_precision: Optional[int]
    # One tuple of output shapes per call of the layer, or None when unknown.
    output_shapes: Optional[List[Tuple[Shape, ...]]]
    _ops_known: bool

    @property
    def memory(self) -> int:
        """Size of the counted weights in bits."""
        return sum(p.memory for p in self.weight_profiles)

    @property
    def fp_equivalent_memory(self) -> int:
        """Size in bits were every counted weight float-32."""
        return sum(p.fp_equivalent_memory for p in self.weight_profiles)

    @property
    def int8_fp_weights_memory(self) -> int:
        """Size in bits with weights wider than 8 bits stored as 8 bits."""
        return sum(p.int8_fp_weights_memory for p in self.weight_profiles)

    def weight_count(self, bitwidth: Optional[int] = None, trainable: Optional[bool] = None) -> int:
        """Number of counted parameters, optionally of one bitwidth and/or trainability."""
        return sum(
            p.count
            for p in self.weight_profiles
            if (bitwidth is None or p.bitwidth == bitwidth)
            and (trainable is None or p.trainable == trainable)
        )

    def op_count(self, precision: Optional[int] = None, op_type: str = "mac") -> Optional[int]:
        """Number of MACs, optionally of one precision; None where unknown."""
        if op_type != "mac":
            raise ValueError(f"Only MACs are counted (op_type='mac'), got op_type={op_type!r}.")
        if not self._ops_known:
            return None
        return sum(
            op.n for op in self.op_profiles if precision is None or op.precision == precision
        )

    @property
    def unique_param_bitwidths(self) -> List[int]:
        return sorted({p.bitwidth for p in self.weight_profiles})

    @property
    def unique_op_precisions(self) -> List[int]:
        return sorted({op.precision for op in self.op_profiles})

    @property
    def output_shape(self) -> Union[None, Shape, List[Shape]]:
        """The output shape (None for the batch), a list of them for several
        outputs, or None when unknown or different between calls."""
        if not self.output_shapes or len(set(self.output_shapes)) != 1:
            return None
        shapes = self.output_shapes[0]
        return shapes[0] if len(shapes) == 1 else list(shapes)

    @property
    def output_shape_str(self) -> str:
        """As larq writes it: `(-1, 16, 16, 8)`, "multiple" or "?"."""
        if not self.output_shapes:
            return "?"
        if len(set(self.output_shapes)) != 1:
            return "multiple"
        shapes = [tuple(-1 if d is None else d for d in s) for s in self.output_shapes[0]]
        return str(shapes[0] if len(shapes) == 1 else shapes)

    def _table_row(self, config: "_TableConfig") -> List[Any]:
        return [self.name, self.input_precision or "-", self.output_shape_str, *config.cells(self)]


class LayerProfile(_Profile):
    """The profile of one layer (a row of the table).

    Args:
        layer: a built Keras 3 layer.
        calls: the output shapes of each call of the layer in the graph of
            the model it is profiled in (a tuple with one shape per output
            per call); None to use the shape it was built for.
        tau_ids: ids of the tau variables to leave out; found from `layer`
            when None.
        counted_ids: ids of variables already counted by earlier rows (a
            shared variable counts once); updated with this layer's.
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        calls: Optional[List[Tuple[Shape, ...]]] = None,
        tau_ids: Optional[Set[int]] = None,
        counted_ids: Optional[Set[int]] = None,
    ) -> None:
        self.layer = layer
        self.name = layer.name
        tau_ids = _tau_variable_ids(layer) if tau_ids is None else tau_ids
        bitwidths = _quantized_bitwidths(layer)
        self.weight_profiles = _weight_profiles(
            layer, tau_ids, bitwidths, set() if counted_ids is None else counted_ids
        )
        self.input_precision = inspection.precision(inspection.quantizers(layer).get("input_quantizer"))
        self.output_shapes = calls or _built_output_shapes(layer)

        self.op_profiles = []
        self._ops_known = performs_no_macs(layer)
        if isinstance(layer, MAC_LAYERS) and self.output_shapes:
            pixels = [_output_pixels(layer, shapes[0]) for shapes in self.output_shapes]
            if None not in pixels:
                self._ops_known = True
                # Every call of the layer in the graph does its MACs again.
                total_pixels = sum(pixels)
                for variable in _mac_weights(layer, tau_ids):
                    bitwidth = bitwidths.get(id(variable), 32)
                    self.op_profiles.append(
                        OperationProfile(
                            n=_count(variable) * total_pixels,
                            precision=max(self.input_precision or 32, bitwidth),
                        )
                    )


class ModelProfile(_Profile):
    """The profile of a model: one `LayerProfile` per top-level layer, and totals.

    A nested model is profiled as a `ModelProfile` too: one row of its parent
    that counts the weights and MACs of all its layers (larq's rule).

    Args:
        model: a built Keras 3 model.
        calls: as for `LayerProfile`: the model's calls in its parent's graph.
        tau_ids, counted_ids: as for `LayerProfile`.

    Attributes:
        layer_profiles: the rows, in the order of `model.layers` (plus a row
            "<name> (own weights)" for variables the model holds itself,
            outside any layer, if there are any).
    """

    def __init__(
        self,
        model: keras.Model,
        calls: Optional[List[Tuple[Shape, ...]]] = None,
        tau_ids: Optional[Set[int]] = None,
        counted_ids: Optional[Set[int]] = None,
    ) -> None:
        self.layer = model
        self.name = model.name
        tau_ids = _tau_variable_ids(model) if tau_ids is None else tau_ids
        counted_ids = set() if counted_ids is None else counted_ids
        inner_calls = _compat.graph_calls(model) or {}

        self.layer_profiles: List[_Profile] = []
        for layer in model.layers:
            cls = ModelProfile if isinstance(layer, keras.Model) else LayerProfile
            self.layer_profiles.append(cls(layer, inner_calls.get(id(layer)), tau_ids, counted_ids))
        own = _weight_profiles(model, tau_ids, _quantized_bitwidths(model), counted_ids)
        if own:
            self.layer_profiles.append(_OwnWeightsProfile(f"{model.name} (own weights)", own))

        self.weight_profiles = [w for lp in self.layer_profiles for w in lp.weight_profiles]
        # As larq: a layer with unknown MACs adds none to the model's count.
        self._ops_known = True
        self.input_precision = (
            self.layer_profiles[0].input_precision if self.layer_profiles else None
        )
        # Nested in a functional model: its calls there. Otherwise (larq's
        # rule) the output shape of its last layer, and one call.
        self.output_shapes = calls
        if not self.output_shapes and self.layer_profiles:
            self.output_shapes = self.layer_profiles[-1].output_shapes
        # Called n times in the parent's graph: n times the MACs.
        times = len(calls) if calls else 1
        self.op_profiles = [
            OperationProfile(op.n * times, op.precision, op.op_type)
            for lp in self.layer_profiles
            for op in lp.op_profiles
        ]

    @property
    def compression_ratio(self) -> float:
        """Model size over its float-32 equivalent (larq's "Compression Ratio of Memory")."""
        return self.memory / max(1e-8, self.fp_equivalent_memory)

    def generate_table(self, include_macs: bool = True) -> List[List[Any]]:
        """The layer table as rows of cells: header, one row per layer, totals."""
        config = _TableConfig(
            self.unique_param_bitwidths, self.unique_op_precisions if include_macs else []
        )
        header = [
            "Layer",
            "Input prec.\n(bit)",
            "Outputs",
            *(f"# {b}-bit\nx 1" for b in config.bitwidths),
            "Memory\n(kB)",
            *(f"{p}-bit MACs" for p in config.precisions),
        ]
        rows = [lp._table_row(config) for lp in self.layer_profiles]
        return [header, *rows, ["Total", "", "", *config.cells(self)]]

    def generate_summary(self, include_macs: bool = True) -> List[List[Any]]:
        """The totals table as rows of (label, value)."""
        rows: List[List[Any]] = [
            ["Total params", _readable_number(self.weight_count())],
            ["Trainable params", _readable_number(self.weight_count(trainable=True))],
            ["Non-trainable params", _readable_number(self.weight_count(trainable=False))],
            ["Model size", _readable_memory(self.memory)],
            ["Model size (8-bit FP weights)", _readable_memory(self.int8_fp_weights_memory)],
            ["Float-32 Equivalent", _readable_memory(self.fp_equivalent_memory)],
            ["Compression Ratio of Memory", self.compression_ratio],
        ]
        if include_macs:
            total = self.op_count()
            rows.append(["Number of MACs", _readable_number(total)])
            # Not in larq, whose total silently leaves such layers out.
            unknown = sum(lp.op_count() is None for lp in self.layer_profiles)
            if unknown:
                rows.append(["Layers with unknown MACs", str(unknown)])
            for bits, word in ((1, "binarized"), (2, "ternarized")):
                ratio = self.op_count(precision=bits) / max(1, total)
                if ratio > 0:
                    rows.append([f"Ratio of MACs that are {word}", f"{ratio:.4f}"])
        return rows

    def stats_table(self, include_macs: bool = True) -> str:
        """The layer table as text, titled "<model name> stats"."""
        return _render(
            self.generate_table(include_macs),
            title=f"{self.name} stats",
            right_aligned=True,
            heading_border=True,
            footing_border=True,
        )

    def summary_table(self, include_macs: bool = True) -> str:
        """The totals table as text, titled "<model name> summary"."""
        return _render(self.generate_summary(include_macs), title=f"{self.name} summary")


class _OwnWeightsProfile(_Profile):
    """Variables a model creates itself (`Model.add_weight`), outside its layers."""

    def __init__(self, name: str, weight_profiles: List[WeightProfile]) -> None:
        self.name = name
        self.weight_profiles = weight_profiles
        self.op_profiles = []
        self._ops_known = True
        self.input_precision = None
        self.output_shapes = None

    @property
    def output_shape_str(self) -> str:
        return "-"


def summary(
    model: keras.Model,
    print_fn: Optional[Callable[[str], Any]] = None,
    include_macs: bool = True,
) -> ModelProfile:
    """Print larq's summary tables of a Keras 3 model and return its profile.

    The first table ("<name> stats") has one row per top-level layer: input
    precision (the bitwidth of its input quantizer, "-" for none), output
    shape, number of parameters per bitwidth, memory in kB (8 * 1024 bits)
    and, with `include_macs`, the multiply-accumulate operations per
    precision ("?" where unknown), then the totals. The second ("<name>
    summary") gives the parameter counts, the model size, its float-32
    equivalent, their ratio (model size / float-32 size, as larq), the
    number of MACs (and of layers whose MACs are unknown, if any) and the
    share of binarized (and ternarized) MACs.

    A MAC is one multiplication and one addition; its precision is the larger
    bitwidth of its two operands. ReCU's tau variables are not parameters and
    are not counted.

    Args:
        model: a built Keras 3 model.
        print_fn: called once per table with its text; defaults to `print`.
        include_macs: whether to count MACs.

    Returns:
        The `ModelProfile`, whose methods give the numbers of the tables.

    Raises:
        TypeError: if `model` is not a Keras 3 model.
        ValueError: if the model is not built yet.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"summary() profiles Keras 3 models (keras.Model), got "
            f"{type(model).__module__}.{type(model).__name__}. For a tf-keras "
            "model use larq.models.summary."
        )
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built yet, so it has no weights to "
            "profile. Build it first: give it an input (keras.Input(...) as the "
            "first layer), call `model.build(input_shape)` or call the model on "
            "a batch of data."
        )
    print_fn = print if print_fn is None else print_fn
    profile = ModelProfile(model)
    print_fn(profile.stats_table(include_macs))
    print_fn(profile.summary_table(include_macs))
    return profile


# --------------------------------------------------------------------------
# Weights


def _count(variable) -> int:
    return int(math.prod(variable.shape))


def performs_no_macs(layer) -> bool:
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


def _tau_variable_ids(layer) -> Set[int]:
    # ReCU's tau is state for the scheduler, held by every tau holder in the
    # layer tree (quantizer layers, ReCUClamp constraints); identity, not the
    # name "tau", decides.
    return {id(variable) for variable in inspection.tau_variables(layer)}


def _quantized_bitwidths(layer) -> Dict[int, int]:
    """id(kernel variable) -> bitwidth, for every quantized kernel in the layer tree."""
    return {
        id(kernel.variable): kernel.bitwidth
        for sublayer in inspection.layers(layer, include_self=True)
        for kernel in inspection.quantized_kernels(sublayer)
        if kernel.bitwidth is not None
    }


def _fused_batchnorm_ids(layer) -> Set[int]:
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


def _weight_profiles(
    layer, tau_ids: Set[int], bitwidths: Dict[int, int], counted_ids: Set[int]
) -> List[WeightProfile]:
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
                count=_count(variable),
                bitwidth=bitwidths.get(id(variable), 32),
                trainable=id(variable) in trainable,
            )
        )
    return profiles


def _mac_weights(layer, tau_ids: Set[int]) -> List[Any]:
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


# --------------------------------------------------------------------------
# Shapes


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(
        d is None or isinstance(d, int) for d in value
    )


def _built_output_shapes(layer) -> Optional[List[Tuple[Shape, ...]]]:
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


def _output_pixels(layer, shape: Shape) -> Optional[int]:
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
# Text


class _TableConfig:
    def __init__(self, bitwidths: Sequence[int], precisions: Sequence[int]) -> None:
        self.bitwidths = list(bitwidths)
        self.precisions = list(precisions)

    def cells(self, profile: _Profile) -> List[Any]:
        memory = profile.memory
        return [
            *(profile.weight_count(b) for b in self.bitwidths),
            memory / _BITS_PER_KB if memory else 0,
            *(_or_unknown(profile.op_count(p)) for p in self.precisions),
        ]


def _or_unknown(value: Optional[int]) -> Union[int, str]:
    return "?" if value is None else value


def _readable_number(num: float) -> str:
    """3 significant figures with a k / M / B / T suffix: 1234 -> "1.23 k"."""
    num = float(f"{num:.3g}")  # so that 999500 reads "1 M" rather than "1e+03 k"
    if num < 1000:
        return f"{num:g}"
    if num >= 1e15:
        return f"{num:.2E}"
    for suffix in (" k", " M", " B", " T"):
        num /= 1000.0
        if num < 1000:
            return f"{num:.3g}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def _readable_memory(bits: int) -> str:
    """Bits as bytes with a binary prefix: 8 * 2048 -> "2.00 KiB"."""
    size = bits / 8
    for suffix in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.2f} {suffix}"
        size /= 1024
    return f"{size:,.2f} GiB"


def _cell_text(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _render(
    rows: Sequence[Sequence[Any]],
    title: str,
    right_aligned: bool = False,
    heading_border: bool = False,
    footing_border: bool = False,
) -> str:
    """An ASCII table in larq's layout: `|` and `+--+` borders only, no
    column separators, the title in the top border, cells padded by one space
    and split into lines at "\\n"; with `right_aligned`, every column but the
    first is right-aligned."""
    cells = [[_cell_text(v).split("\n") for v in row] for row in rows]
    n_columns = max(len(row) for row in cells)
    cells = [row + [[""]] * (n_columns - len(row)) for row in cells]
    widths = [
        max(len(line) for row in cells for line in row[c]) for c in range(n_columns)
    ]
    inner = sum(w + 2 for w in widths)
    border = "+" + "-" * inner + "+"

    def text_lines(row: List[List[str]]) -> Iterable[str]:
        height = max(len(cell) for cell in row)
        for i in range(height):
            parts = []
            for c, cell in enumerate(row):
                line = cell[i] if i < len(cell) else ""
                justify = line.rjust if right_aligned and c > 0 else line.ljust
                parts.append(" " + justify(widths[c]) + " ")
            yield "|" + "".join(parts) + "|"

    top = "+" + title + "-" * (inner - len(title)) + "+" if len(title) <= inner else border
    lines = [top]
    for r, row in enumerate(cells):
        if r == len(cells) - 1 and footing_border and r > 0:
            lines.append(border)
        lines.extend(text_lines(row))
        if r == 0 and heading_border and len(cells) > 1:
            lines.append(border)
    lines.append(border)
    return "\n".join(lines)
