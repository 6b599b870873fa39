"""The core's serializable objects, registered with Keras: `register_core()`.

A saved model names its custom objects by registered name
("keras_recu>ReCUConv2D"), and Keras finds one only once the module that
defines it has run. `import keras_recu` calls `register_core()`, so a saved
model loads in a fresh process after any `import keras_recu...`; the
`keras-recu` command calls it itself, once it has loaded Keras quietly
(`keras_recu.app.quiet_imports`), so that its `--help` needs no Keras.
"""

from __future__ import annotations

import importlib

__all__ = ["SERIALIZABLE_MODULES", "register_core"]

#: The modules of the core that define every serializable object.
SERIALIZABLE_MODULES = ("quantizers", "constraints", "layers", "models", "optimizers", "losses")


def register_core() -> None:
    """Import the modules that define the core's serializable objects (which imports Keras)."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(f"keras_recu.{name}")
