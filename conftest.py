"""The test suite runs on each Keras backend: `KERAS_BACKEND=tensorflow|jax|torch pytest`.

TensorFlow is the default. Tests marked `tf_only` (TensorFlow, tf-keras and
larq, larq-compute-engine, tf.distribute) run only there; on JAX and torch
they are deselected, and the rest of the suite runs as it would on a machine
without TensorFlow: TensorFlow and the packages built on it cannot be imported
in the test process, so a core module that needs them fails there as it
would for a user. A test module that needs TensorFlow to be imported at all
says so with `pytestmark = pytest.mark.tf_only` at top level; on the other
backends it is then not even imported.
"""

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
BACKEND = os.environ["KERAS_BACKEND"]
ON_TENSORFLOW = BACKEND == "tensorflow"

if ON_TENSORFLOW:
    # larq needs tf.keras to be tf-keras, decided when TensorFlow is first
    # imported; Keras 3 (`import keras`) is unaffected. One pytest process then
    # tests both fronts. test_larq_front.py checks both import orders in
    # subprocesses, and the CLI tests run Keras 3 without this variable.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
else:
    # As on a machine without TensorFlow: `import tensorflow` raises
    # ModuleNotFoundError and importlib.util.find_spec returns None.
    # Subprocesses that tests start are not affected.
    for _name in ("tensorflow", "tf_keras", "larq", "larq_compute_engine", "tensorflow_datasets"):
        sys.modules.setdefault(_name, None)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent
# Modules and packages of keras_recu that need TensorFlow to be imported: on
# the other backends they are not collected (a package: no file under it), so
# their doctests run on the TensorFlow backend only.
TF_BOUND_MODULES = {
    ROOT / "keras_recu" / "deploy",
    ROOT / "keras_recu" / "larq.py",
}
_TF_ONLY_MODULE = re.compile(r"^pytestmark\s*=.*\btf_only\b", re.MULTILINE)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


def _tf_bound(path: Path) -> bool:
    """A listed TensorFlow-bound module or package, or a file or folder under a listed package."""
    return any(path == bound or bound in path.parents for bound in TF_BOUND_MODULES)


def pytest_ignore_collect(collection_path, config):
    if ON_TENSORFLOW:
        return None
    if _tf_bound(collection_path):
        return True
    if collection_path.suffix != ".py":
        return None
    if collection_path.name.startswith("test_"):
        if _TF_ONLY_MODULE.search(collection_path.read_text(encoding="utf-8")):
            return True
    return None


def _runs_elsewhere(item) -> bool:
    """A test that belongs to another backend's pass: deselected here, not skipped."""
    if item.get_closest_marker("tf_only") and not ON_TENSORFLOW:
        return True
    return bool(item.get_closest_marker("jax_only")) and keras.backend.backend() != "jax"


def pytest_collection_modifyitems(config, items):
    deselected = [item for item in items if _runs_elsewhere(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not _runs_elsewhere(item)]


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from a clean Keras session, float32 policy, fixed seed."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    # Without the full garbage collection that clear_session runs by default:
    # it took about 1 s per test (all of the suite's time on torch), and
    # Python's own collector frees the same cycles as they accumulate.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.default_rng(20211011)


@pytest.fixture
def seeded_torch():
    """PyTorch's global generator seeded: the transcriptions' latent kernels come from torch's own init.

    So they are the same in every run. Not autouse, so that torch is imported
    only where it is needed: a test module that builds torch models says
    `pytestmark = pytest.mark.usefixtures("seeded_torch")`.
    """
    import torch

    torch.manual_seed(0)
