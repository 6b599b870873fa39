"""Helpers of the training-job tests: a tiny ReCU model the job can train in seconds, and subprocess runs.

`tiny_recu` has the builder signature of `keras_recu.models` (input_shape,
num_classes, tau, sync_batch_norm) and a float path beside the binary conv,
so a non-finite input reaches the loss whatever the quantizers do with it.
Register it with `register_tiny_model()` (in a test, or in a subprocess
before calling `keras_recu.app.cli.main`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
TINY = "tiny_recu"

#: Flags of a tiny CLI run: the synthetic set (16x16x1, offline), a few steps.
TINY_FLAGS = [
    "--dataset", "synthetic", "--batch-size", "32", "--limit-train", "96", "--limit-test", "32",
    "--verify-samples", "8", "--warmup-epochs", "0", "--learning-rate", "0.05", "--verbose", "0",
]


def tiny_recu(input_shape, num_classes, tau=0.85, sync_batch_norm=False, name=None):
    import keras

    from keras_recu.layers import ReCUConv2D

    # Named like the paper's models: per-layer records (diagnostics) stay
    # keyed the same across sessions, also within one process.
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(synchronized=sync_batch_norm, name="bn")(x)
    binary = ReCUConv2D(8, 3, padding="same", tau=tau, name="binary_conv")(x)
    binary = layers.BatchNormalization(synchronized=sync_batch_norm, name="binary_bn")(binary)
    pooled = layers.Concatenate(name="pooled")(
        [layers.GlobalAveragePooling2D(name="binary_pool")(binary), layers.GlobalAveragePooling2D(name="pool")(x)]
    )
    return keras.Model(inputs, layers.Dense(num_classes, name="logits")(pooled), name=name or "tiny_recu")


def register_tiny_model() -> None:
    from keras_recu import models

    models.MODELS[TINY] = tiny_recu


def environment(**overrides: Optional[str]) -> Dict[str, str]:
    """The test process's environment for a subprocess, this checkout first on the path: the one way to build one.

    TF_USE_LEGACY_KERAS is dropped: the suite sets it for the larq front, a
    user of the Keras 3 CLI does not. Each override sets a variable, or drops
    it when its value is None (`environment(KERAS_BACKEND="jax", XLA_FLAGS=None)`).
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


#: Seconds spent in subprocesses by the tests of this session, by test (for the report).
SPENT: Dict[str, float] = {}


def python(args: Sequence[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 300,
           cwd: Optional[Path] = None, label: str = "") -> subprocess.CompletedProcess:
    """Run `python ARGS` in a fresh interpreter of this environment."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args], env=env or environment(), capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)
    SPENT[label] = SPENT.get(label, 0.0) + time.perf_counter() - start
    return result


def cli(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """`keras-recu ARGS` as a user runs it (`python -m keras_recu.app.cli`), in a fresh process."""
    return python(["-m", "keras_recu.app.cli", *args], **kwargs)


#: A driver for a subprocess: registers the tiny model, then runs the CLI as the console script does: argv[0]
#: "keras-recu" (the package leaves Keras to the command), and main() reading sys.argv, so that it is its own
#: process (Ctrl-C handling). Keras loads with its start-up log captured.
CLI_WITH_TINY_MODEL = """
import sys
sys.argv[0] = "keras-recu"
sys.path.insert(0, {root!r})
from keras_recu.app import quiet_imports
from tests.run_utils import register_tiny_model
quiet_imports.quiet_environment()
with quiet_imports.captured():
    register_tiny_model()
from keras_recu.app.cli import main
sys.exit(main())
"""


def cli_with_tiny_model(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return python(["-c", CLI_WITH_TINY_MODEL.format(root=str(ROOT)), *args], **kwargs)


def last_json_line(text: str, prefix: str = "RESULT ") -> dict:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert lines, f"no {prefix!r} line in:\n{text[-3000:]}"
    return json.loads(lines[-1][len(prefix):])


def no_traceback(result: subprocess.CompletedProcess) -> List[str]:
    """stderr's non-empty lines, asserting none is a traceback.

    `keras-recu` keeps TensorFlow's own log off its stderr (keras_recu.app.quiet_imports),
    so every line is the command's.
    """
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert not any("Traceback" in line for line in lines), result.stderr[-3000:]
    return lines


def one_line_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The one line a user error prints: asserts exit `status` and exactly one non-empty line on stderr, the whole of it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == status and len(lines) == 1, (result.returncode, result.stderr[-3000:])
    return lines[0]
