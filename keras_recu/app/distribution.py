"""Where a run trains: the distribution strategies, the backends each runs on, and which process writes.

"mirrored" (one machine, several devices) and "multiworker" (several
processes with TF_CONFIG) are tf.distribute strategies, on the TensorFlow
backend only; "data-parallel" is `keras.distribution.DataParallel`, on JAX
only; "default" is one device.
"""

from __future__ import annotations

import json
import os

from keras_recu.app.errors import RunError

__all__ = ["STRATEGIES", "TF_STRATEGIES", "backend", "check_strategy_backend", "distribution", "is_chief"]

STRATEGIES = ("default", "mirrored", "multiworker", "data-parallel")
#: tf.distribute strategies: TensorFlow backend only.
TF_STRATEGIES = ("mirrored", "multiworker")


def backend() -> str:
    """The Keras backend this process runs on ("tensorflow", "jax", "torch", ...)."""
    import keras

    return keras.backend.backend()


def check_strategy_backend(strategy: str) -> None:
    """Raise ValueError when `strategy` cannot run on this process's backend, saying what to use instead."""
    current = backend()
    if strategy in TF_STRATEGIES and current != "tensorflow":
        raise ValueError(
            f"--strategy {strategy} is a tf.distribute strategy and runs on the TensorFlow backend only; "
            f"this process runs Keras on {current}. Use KERAS_BACKEND=tensorflow, or on JAX "
            "--strategy data-parallel."
        )
    if strategy == "data-parallel" and current != "jax":
        hint = "use --strategy mirrored" if current == "tensorflow" else "use KERAS_BACKEND=jax"
        raise ValueError(
            f"--strategy data-parallel is keras.distribution.DataParallel, which Keras implements on the "
            f"JAX backend only; this process runs Keras on {current}: {hint}."
        )


def is_chief() -> bool:
    """Whether this process writes the run's files (multi-worker: exactly one does)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        raise RunError("TF_CONFIG is not valid JSON; see the README's multi-worker section.") from None
    task = config.get("task", {})
    if "type" not in task:
        return True
    if "chief" in config.get("cluster", {}):
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task.get("index", 0)) == 0


def distribution(strategy: str):
    """The tf.distribute strategy to build the model under (None otherwise: a null scope).

    Must run before any TensorFlow op of the process: a multi-worker strategy
    configures the collective ops at program startup, and TensorFlow refuses
    that once its runtime is initialized (by a seed, a tensor, a dataset).
    """
    if strategy in TF_STRATEGIES:
        import tensorflow as tf

        from keras_recu._compat.distribute import multi_worker_strategy

        if strategy == "mirrored":
            return tf.distribute.MirroredStrategy()
        if not os.environ.get("TF_CONFIG"):
            raise RunError(
                "--strategy multiworker needs TF_CONFIG (the cluster and this worker's task) in the "
                "environment of every worker; see the README's multi-worker section."
            )
        return multi_worker_strategy()
    if strategy == "data-parallel":
        import keras

        # One batch split over every local device; the step is compiled once
        # for the whole mesh, so BatchNorm's batch statistics are computed
        # over the global batch, as synchronized BatchNorm does on TensorFlow.
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return None
