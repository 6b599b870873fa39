"""Which Keras `tf.keras` is: tf-keras (Keras 2) for the larq front, decided before TensorFlow loads.

larq is written for Keras 2 and runs on TensorFlow 2.21 only when `tf.keras`
is tf-keras. TensorFlow decides that once, from the environment variable
`TF_USE_LEGACY_KERAS`, when it is first imported; nothing changes it later.
Two imports of keras_recu act before that moment, each with its own policy,
and this module is the one owner of both:

* `prefer_tf_keras`, run by `import keras_recu` before the core imports
  Keras 3 (which, on the TensorFlow backend, imports TensorFlow): it sets
  the variable only where it cannot hurt and may help, that is where the
  `larq` extra is installed, the backend is TensorFlow, TensorFlow is not
  loaded yet and the user has not set the variable. Without it,
  `import keras_recu.larq` could never work on the TensorFlow backend.
* `require_tf_keras`, run by `import keras_recu.larq`: the user asked for
  larq, so it sets the variable if TensorFlow is not loaded yet (the JAX
  and torch backends do not load it), and otherwise raises an ImportError
  that says how to fix the import order if TensorFlow already made Keras 3
  its `tf.keras`.

It imports nothing but the standard library, TensorFlow only once it is
loaded: importing Keras here would load TensorFlow before the variable is
set. That is also why these shims are not in `keras_recu._compat`, which
imports Keras.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = [
    "HOW_TO_FIX",
    "LEGACY_KERAS_VARIABLE",
    "backend_is_tensorflow",
    "prefer_tf_keras",
    "require_tf_keras",
]

#: The environment variable from which TensorFlow decides what `tf.keras` is.
LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"

#: What to do when TensorFlow was imported with Keras 3 as `tf.keras`.
HOW_TO_FIX = (
    "Import keras_recu.larq (or larq) before anything imports tensorflow or "
    "keras, or start Python with the environment variable "
    "TF_USE_LEGACY_KERAS=1 (for example `TF_USE_LEGACY_KERAS=1 python train.py`)."
)


def backend_is_tensorflow() -> bool:
    """Whether Keras will run on TensorFlow, as far as the environment says.

    Keras' own rule is KERAS_BACKEND, else ~/.keras/keras.json, else
    tensorflow; only the variable is read here, since keras.json is read when
    Keras loads, which must not happen yet.
    """
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


def prefer_tf_keras() -> None:
    """Set `TF_USE_LEGACY_KERAS=1` where the larq front is installed and nothing is decided yet.

    Only where tf-keras and larq are installed (the `larq` extra), the
    backend is TensorFlow, TensorFlow is not loaded and the user has not set
    the variable. Keras 3 (`import keras`) is unaffected either way.
    """
    if "tensorflow" in sys.modules or LEGACY_KERAS_VARIABLE in os.environ:
        return
    if not backend_is_tensorflow():
        return
    if importlib.util.find_spec("tf_keras") and importlib.util.find_spec("larq"):
        os.environ[LEGACY_KERAS_VARIABLE] = "1"


def require_tf_keras() -> None:
    """Make `tf.keras` tf-keras for the larq front, or raise an ImportError saying how.

    Sets `TF_USE_LEGACY_KERAS=1` if TensorFlow is not imported yet. If it is,
    its `tf.keras` must already be tf-keras; if it is Keras 3, the
    ImportError names the Keras version and how to fix the import order.
    """
    if "tensorflow" not in sys.modules:
        os.environ[LEGACY_KERAS_VARIABLE] = "1"
        return
    # Already loaded (or marked missing, which then raises here as before).
    import tensorflow as tf

    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith("tf_keras."):
        raise ImportError(
            "keras_recu.larq needs tf.keras to be tf-keras (Keras 2), the Keras "
            "that larq is written for, but TensorFlow was already imported with "
            f"Keras {getattr(tf.keras, '__version__', '3')} as tf.keras. {HOW_TO_FIX}"
        )
