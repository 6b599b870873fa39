"""A fix for Keras 3 on `tf.distribute.MultiWorkerMirroredStrategy`, until Keras or TensorFlow mends it.

TensorFlow is imported inside the function: the core and the JAX and torch
backends run without it. Tested in tests/test_compat.py (a fresh process: a
strategy configures TensorFlow's runtime for the whole process).
"""

from __future__ import annotations

__all__ = ["multi_worker_strategy"]


def multi_worker_strategy():
    """A `tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` accepts what Keras 3 passes it.

    Why it exists: Keras 3 (up to 3.15 at least) calls `strategy.reduce` in
    two ways that this strategy alone refuses, so `fit` fails on it as is:

    * on the first `(x, y)` batch, a tuple, to build the model ("Attempt to
      convert a value (PerReplica...)"): reduced here leaf by leaf;
    * with `axis=0` on the scalar metrics of each step ("Invalid reduction
      dimension 0"): a scalar is reduced across the replicas, axis None.

    That is what those calls mean, and what MirroredStrategy does with them.
    TensorFlow is imported here, not at module level: the core runs without it.
    """
    import tensorflow as tf

    class KerasReduce(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def leaf(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return super(KerasReduce, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(leaf, value)

    return KerasReduce()
