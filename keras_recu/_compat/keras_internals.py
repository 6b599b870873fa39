"""The private Keras attributes keras_recu reads: the only place that reads any.

Keras has no public API for two things the package needs:

* every layer nested in a layer or model, each once, wherever it is held
  (`keras.Model.layers` lists only the top level, and plain layers list none);
* the calls of each layer in a functional model's own graph, with their
  output shapes (`Layer.output` gives the first call in any graph only).

Keras' own `summary` and weight tracking use the attributes below. Each
function says which attribute it reads, why, and where it exists; a test
(tests/test_compat.py) fails if an upgrade of Keras removes one, so that
this module, and nothing else, is what changes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import keras

Shape = Tuple[Optional[int], ...]

__all__ = ["flatten_layers", "graph_calls"]


def flatten_layers(layer, include_self: bool = True) -> List:
    """`layer` (if `include_self`) and every layer nested in it, depth first, each once.

    Reads `Layer._flatten_layers(include_self, recursive)`, the walk Keras
    itself uses to collect `layer.weights`: it sees sublayers held in any
    attribute, private ones, lists and, on the torch backend, torch's module
    registry included, so every layer that owns a variable of the model is
    found. Public attributes and `keras.Model.layers` do not suffice: they
    miss sublayers in private attributes, a Sequential's InputLayer and, on
    torch, every sublayer (torch keeps them outside the instance's
    `__dict__`). Present with this signature in Keras 3.0 to 3.15 (tested:
    3.15.1) and in tf-keras / Keras 2.x, which is why the larq front can use
    it too.
    """
    walk = getattr(layer, "_flatten_layers", None)
    if walk is None:
        raise NotImplementedError(
            f"keras_recu cannot list the layers nested in a {type(layer).__name__}: this "
            f"Keras ({keras.__version__}) has no Layer._flatten_layers. Install a Keras "
            "version keras_recu supports (see its requirements)."
        )
    return list(walk(include_self=include_self, recursive=True))


def graph_calls(model) -> Optional[Dict[int, List[Tuple[Shape, ...]]]]:
    """The calls in a Keras 3 functional (or Sequential) model's own graph, by layer.

    Returns `{id(layer): [output shapes of call 1, of call 2, ...]}` (each
    entry a tuple with one shape per output, in the order the calls were
    made) for every layer called in the graph of `model`, nested models
    included as one layer; None for a model without a graph (subclassed).

    Only the nodes of this graph count: a layer shared with another model,
    or rebuilt by a Sequential, has nodes of other graphs too. Reads
    `Functional._nodes_by_depth` (the graph's nodes), `Sequential._functional`
    (the functional model a built Sequential wraps) and
    `Operation._inbound_nodes` (a layer's calls, in order); Keras' own
    `Model.summary` reads the same. Present in Keras 3.0 to 3.15 (tested:
    3.15.1); Keras 3 only.
    """
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if not by_depth:
        return None
    in_graph = {id(node) for nodes in by_depth.values() for node in nodes}
    operations = {id(node.operation): node.operation for nodes in by_depth.values() for node in nodes}
    calls = {}
    for key, operation in operations.items():
        nodes = [node for node in operation._inbound_nodes if id(node) in in_graph]
        calls[key] = [tuple(tuple(tensor.shape) for tensor in node.outputs) for node in nodes]
    return calls
