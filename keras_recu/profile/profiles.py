"""The profiles of layers and models, and `summary`, which prints their tables.

A `LayerProfile` holds one layer's counted weights and MACs
(`keras_recu.profile.counting` applies larq's rules); a `ModelProfile` holds
one per top-level layer and sums them up; `summary` prints its two tables
(`keras_recu.profile.tables` lays them out).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Set, Tuple, Union

import keras

from keras_recu import inspection
from keras_recu._compat import keras_internals
from keras_recu.profile.counting import (
    MAC_LAYERS,
    OperationProfile,
    Shape,
    WeightProfile,
    built_output_shapes,
    mac_weights,
    output_pixels,
    performs_no_macs,
    quantized_bitwidths,
    tau_variable_ids,
    variable_size,
    weight_profiles,
)
from keras_recu.profile.tables import TableColumns, layer_table, readable_memory, readable_number, render_table


class _Profile:
    """What a profile holds (weights, operations, input precision, output shape) and its sums.

    Its public attributes are what a row of the layer table reads
    (`keras_recu.profile.tables.ProfileRow`).
    """

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
        """The bitwidths of the counted weights, ascending."""
        return sorted({p.bitwidth for p in self.weight_profiles})

    @property
    def unique_op_precisions(self) -> List[int]:
        """The precisions of the counted MACs, ascending."""
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
        tau_ids = tau_variable_ids(layer) if tau_ids is None else tau_ids
        bitwidths = quantized_bitwidths(layer)
        self.weight_profiles = weight_profiles(
            layer, tau_ids, bitwidths, set() if counted_ids is None else counted_ids
        )
        self.input_precision = inspection.precision(inspection.quantizers(layer).get("input_quantizer"))
        self.output_shapes = calls or built_output_shapes(layer)

        self.op_profiles = []
        self._ops_known = performs_no_macs(layer)
        if isinstance(layer, MAC_LAYERS) and self.output_shapes:
            pixels = [output_pixels(layer, shapes[0]) for shapes in self.output_shapes]
            if None not in pixels:
                self._ops_known = True
                # Every call of the layer in the graph does its MACs again.
                total_pixels = sum(pixels)
                for variable in mac_weights(layer, tau_ids):
                    bitwidth = bitwidths.get(id(variable), 32)
                    self.op_profiles.append(
                        OperationProfile(
                            n=variable_size(variable) * total_pixels,
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
        tau_ids = tau_variable_ids(model) if tau_ids is None else tau_ids
        counted_ids = set() if counted_ids is None else counted_ids
        inner_calls = keras_internals.graph_calls(model) or {}

        self.layer_profiles: List[_Profile] = []
        for layer in model.layers:
            cls = ModelProfile if isinstance(layer, keras.Model) else LayerProfile
            self.layer_profiles.append(cls(layer, inner_calls.get(id(layer)), tau_ids, counted_ids))
        own = weight_profiles(model, tau_ids, quantized_bitwidths(model), counted_ids)
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
        columns = TableColumns(
            self.unique_param_bitwidths, self.unique_op_precisions if include_macs else []
        )
        return layer_table(self, self.layer_profiles, columns)

    def generate_summary(self, include_macs: bool = True) -> List[List[Any]]:
        """The totals table as rows of (label, value)."""
        rows: List[List[Any]] = [
            ["Total params", readable_number(self.weight_count())],
            ["Trainable params", readable_number(self.weight_count(trainable=True))],
            ["Non-trainable params", readable_number(self.weight_count(trainable=False))],
            ["Model size", readable_memory(self.memory)],
            ["Model size (8-bit FP weights)", readable_memory(self.int8_fp_weights_memory)],
            ["Float-32 Equivalent", readable_memory(self.fp_equivalent_memory)],
            ["Compression Ratio of Memory", self.compression_ratio],
        ]
        if include_macs:
            total = self.op_count()
            rows.append(["Number of MACs", readable_number(total)])
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
        return render_table(
            self.generate_table(include_macs),
            title=f"{self.name} stats",
            right_aligned=True,
            heading_border=True,
            footing_border=True,
        )

    def summary_table(self, include_macs: bool = True) -> str:
        """The totals table as text, titled "<model name> summary"."""
        return render_table(self.generate_summary(include_macs), title=f"{self.name} summary")


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
