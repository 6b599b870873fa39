"""What a TFLite flatbuffer executes: its operator census, and the binary layers it runs in float."""

from __future__ import annotations

import collections
import re
from typing import Any, Dict, List, Tuple

from keras_recu.inspection import BinaryLayer, binary_layers

# The ops in which LCE executes a binary layer.
LCE_BINARY_OPS = ("LceBconv2d",)


def census(flatbuffer: bytes) -> Dict[str, int]:
    """Operator counts of a TFLite flatbuffer (a Counter: absent ops count 0).

    LCE's custom ops appear by their names (`LceBconv2d`, `LceQuantize`, ...),
    builtin ops by TFLite's (`CONV_2D`, ...).
    """
    return collections.Counter(op for op, _ in operators(flatbuffer))


def operators(flatbuffer: bytes) -> List[Tuple[str, List[str]]]:
    """(op name, tensor names it reads and writes) for each op of the main subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode:
            name = code.customCode.decode()
        else:
            name = builtin_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
        tensors = [graph.tensors[i].name.decode() for i in [*op.inputs, *op.outputs] if i >= 0]
        ops.append((name, tensors))
    return ops


def _layer_pattern(name: str) -> re.Pattern:
    # Exported graphs scope ops by layer name; Keras 3 export adds "_<n>".
    return re.compile(rf"(^|/){re.escape(name)}(_\d+)?(/|;|$)")


def float_binary_layers(model: Any, flatbuffer: bytes) -> List[BinaryLayer]:
    """Binary layers of `model` that the flatbuffer does not execute as a binary op."""
    ops = operators(flatbuffer)
    left = []
    layers = binary_layers(model)
    for layer in layers:
        pattern = _layer_pattern(layer.name)
        binary_ops = [op for op, tensors in ops if op in LCE_BINARY_OPS and any(pattern.search(t) for t in tensors)]
        if not (layer.kind == "conv" and layer.fully_binary and binary_ops):
            left.append(layer)
    # Names are a heuristic; the count is not: trust it when they disagree.
    expected = sum(1 for layer in layers if layer.kind == "conv" and layer.fully_binary)
    converted = sum(1 for op, _ in ops if op in LCE_BINARY_OPS)
    convs_left = [layer for layer in left if layer.kind == "conv" and layer.fully_binary]
    if converted >= expected and convs_left:
        left = [layer for layer in left if layer not in convs_left]
    return left
