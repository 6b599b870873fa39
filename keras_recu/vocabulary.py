"""The values the core's settings take, known without Keras: the default tau range, the paddings, the dtype policies.

`keras_recu.ops` (tau), `keras_recu.layers.padding` (`PADDINGS`) and
`keras_recu.precision` (`DTYPE_POLICIES`) hold the behaviour and re-export these; they live here, in a module that imports
nothing, so that the `keras-recu` command can offer them in its `--help`
before (or without) loading Keras and TensorFlow.
"""

from __future__ import annotations

__all__ = ["DTYPE_POLICIES", "PADDINGS", "TAU_MAX", "TAU_MIN"]

#: The reference's tau schedule runs from TAU_MIN to TAU_MAX; TAU_MIN is
#: also the default tau of every quantizer, constraint and layer.
TAU_MIN = 0.85
TAU_MAX = 0.99

#: The builders' `padding` values: PyTorch's symmetric padding (the authors'
#: models), or Keras' "same". The command line's `--padding` offers these.
PADDINGS = ("torch", "same")

#: The Keras dtype policies a ReCU model trains under (`keras_recu.precision`
#: says where each dtype lives); the command line's `--dtype-policy` offers these.
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
