import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# larq needs tf.keras to be tf-keras, decided when TensorFlow is first
# imported; Keras 3 (`import keras`) is unaffected. One pytest process then
# tests both fronts. test_larq_front.py checks both import orders in
# subprocesses, and the CLI test runs Keras 3 without this variable.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras session, float32 policy, fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(20211011)
