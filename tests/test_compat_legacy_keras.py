"""keras_recu._compat.legacy_keras: the two policies for TF_USE_LEGACY_KERAS, in process.

The real import orders (TensorFlow loaded before or after keras_recu.larq)
run in subprocesses in test_larq_front.py, on TensorFlow. Here `sys.modules`
and the environment are patched, so these run on every backend.
"""

import importlib.util
import os
import sys
import types

import pytest

from keras_recu._compat.legacy_keras import LEGACY_KERAS_VARIABLE, prefer_tf_keras, require_tf_keras


@pytest.fixture
def undecided(monkeypatch):
    """TensorFlow not loaded, the variable unset, the TensorFlow backend, the larq extra installed."""
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv(LEGACY_KERAS_VARIABLE, raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())
    return monkeypatch


def fake_tensorflow(layer_module: str) -> types.ModuleType:
    tf = types.ModuleType("tensorflow")
    layer = type("Layer", (), {"__module__": layer_module})
    tf.keras = types.SimpleNamespace(layers=types.SimpleNamespace(Layer=layer), __version__="3.15.1")
    return tf


def installed_except(missing: str):
    """A `find_spec` under which every package but `missing` is installed."""
    return lambda name, *args: None if name == missing else object()


def test_prefer_sets_the_variable_where_nothing_is_decided(undecided):
    prefer_tf_keras()
    assert os.environ[LEGACY_KERAS_VARIABLE] == "1"


def test_prefer_leaves_the_users_choice(undecided):
    undecided.setenv(LEGACY_KERAS_VARIABLE, "0")
    prefer_tf_keras()
    assert os.environ[LEGACY_KERAS_VARIABLE] == "0"


@pytest.mark.parametrize(
    "change",
    [
        lambda mp: mp.setitem(sys.modules, "tensorflow", fake_tensorflow("keras.src.layers.layer")),
        lambda mp: mp.setenv("KERAS_BACKEND", "jax"),
        lambda mp: mp.setattr(importlib.util, "find_spec", installed_except("larq")),
        lambda mp: mp.setattr(importlib.util, "find_spec", installed_except("tf_keras")),
    ],
    ids=["tensorflow-loaded", "jax-backend", "no-larq", "no-tf-keras"],
)
def test_prefer_does_nothing_where_it_could_hurt_or_cannot_help(undecided, change):
    change(undecided)
    prefer_tf_keras()
    assert LEGACY_KERAS_VARIABLE not in os.environ


def test_require_sets_the_variable_before_tensorflow_loads(undecided):
    undecided.setenv("KERAS_BACKEND", "jax")  # the backends that do not load TensorFlow
    require_tf_keras()
    assert os.environ[LEGACY_KERAS_VARIABLE] == "1"


def test_require_accepts_tensorflow_with_tf_keras(undecided):
    undecided.setitem(sys.modules, "tensorflow", fake_tensorflow("tf_keras.src.engine.base_layer"))
    require_tf_keras()
    assert LEGACY_KERAS_VARIABLE not in os.environ


def test_require_explains_the_fix_when_tensorflow_has_keras3(undecided):
    undecided.setitem(sys.modules, "tensorflow", fake_tensorflow("keras.src.layers.layer"))
    with pytest.raises(ImportError, match="Keras 3.15.1 as tf.keras") as raised:
        require_tf_keras()
    assert "TF_USE_LEGACY_KERAS=1" in str(raised.value)
