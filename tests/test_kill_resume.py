"""A run killed with SIGKILL at random moments, resumed after each kill, ends bit for bit as the uninterrupted run.

Every session is a fresh `keras-recu train` process (the tiny model, see
tests/run_utils.py) on what the killed one left on disk. The kill moments
are drawn from a seeded generator, uniformly over the uninterrupted run's
own length, counted from the moment a session holds the run's lock, so they
may fall in the model's build and compile, in the epochs and their checkpoint
writes, in the conversion or the report. After each kill the run is
continued with `--resume` (or started again when the kill came before its
config.json), as a user would. The finished run's weights, optimizer state,
model.tflite, history.csv and state.json must equal the uninterrupted run's,
byte for byte where they are bytes. The run trains under mixed_bfloat16.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from tests.run_utils import CLI_WITH_TINY_MODEL, ROOT, TINY, TINY_FLAGS, environment

#: The kills, and the seed of their moments.
KILLS = 3
SEED = 16
#: A tiny run long enough for kills to land in its epochs: 3 epochs of 20 steps. Under mixed_bfloat16, the
#: policy whose resume has the most to keep (float32 variables, bfloat16 compute, the float32 twin converted);
#: float32 runs resume bit for bit in tests/test_train.py and tests/test_cli_subprocess.py.
FLAGS = ["--model", TINY, "--epochs", "3", *TINY_FLAGS, "--limit-train", "640", "--seed", "3",
         "--dtype-policy", "mixed_bfloat16"]


def _start(run, *extra):
    log = open(run.parent / f"{run.name}.log", "ab")
    process = subprocess.Popen([sys.executable, "-c", CLI_WITH_TINY_MODEL.format(root=str(ROOT)), "train",
                                "--out", str(run), *extra], env=environment(), stdout=log, stderr=log)
    log.close()
    return process


def _locked_by(run, process, timeout=300.0) -> float:
    """Wait until `process` holds the run (its pid in RUN/.lock) or has ended; the time it was seen."""
    deadline = time.monotonic() + timeout
    lock = run / ".lock"
    while time.monotonic() < deadline:
        try:
            if lock.read_text().strip() == str(process.pid):
                return time.monotonic()
        except OSError:
            pass
        if process.poll() is not None:
            return time.monotonic()
        time.sleep(0.01)
    process.kill()
    raise AssertionError(f"{process.args[3:]} never took the lock of {run}")


def _log(run) -> str:
    path = run.parent / f"{run.name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run, and its length from taking the lock to its end (seconds)."""
    run = tmp_path_factory.mktemp("kill_resume") / "uninterrupted"
    process = _start(run, *FLAGS)
    locked = _locked_by(run, process)
    assert process.wait(timeout=600) == 0, _log(run)
    return run, time.monotonic() - locked


def _weights(path):
    """Every array of a .keras archive's weights file (model and optimizer), by name."""
    import h5py

    arrays = {}
    with zipfile.ZipFile(path) as archive, h5py.File(archive.open("model.weights.h5"), "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _assert_same_arrays(a, b, what):
    assert a.keys() == b.keys(), what
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), f"{what}: {name} differs"


def test_killed_at_random_moments_and_resumed_equals_the_uninterrupted_run_bit_for_bit(uninterrupted, tmp_path):
    reference, length = uninterrupted
    run = tmp_path / "killed"
    rng = random.Random(SEED)
    moments = [rng.uniform(0.0, length) for _ in range(KILLS)]
    killed, finished = [], False
    for moment in moments:
        resume = (run / "config.json").exists()
        process = _start(run, "--resume", "--verbose", "0") if resume else _start(run, *FLAGS)
        locked = _locked_by(run, process)
        while process.poll() is None and time.monotonic() < locked + moment:
            time.sleep(0.005)
        if process.poll() is not None:  # the session ended before its moment: the run is complete
            assert process.returncode == 0, _log(run)
            finished = True
            break
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
        killed.append(round(moment, 2))
        if (run / ".lock").exists():
            # The killed writer's pid stays in the file; its lock died with it.
            assert (run / ".lock").read_text().strip() in ("", str(process.pid))
    assert len(killed) >= 2, f"only {killed} of the moments {moments} fell inside a session"

    resume = (run / "config.json").exists()
    process = _start(run, "--resume", "--verbose", "0") if resume else _start(run, *FLAGS)
    assert process.wait(timeout=600) == 0, _log(run)
    print(f"\nkilled at {killed} s after taking the lock (run length {length:.1f} s); finished early: {finished}")

    converted = (reference / "model.tflite").exists()  # TensorFlow and LCE installed
    assert (run / "model.tflite").exists() == converted
    for name in ("history.csv", "checkpoints/state.json", *(["model.tflite"] if converted else [])):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"
    _assert_same_arrays(_weights(run / "model.keras"), _weights(reference / "model.keras"), "model.keras")
    _assert_same_arrays(_weights(run / "checkpoints" / "last.keras"), _weights(reference / "checkpoints" / "last.keras"),
                        "checkpoints/last.keras (weights and optimizer state)")
    metrics, expected = (json.loads((path / "metrics.json").read_text()) for path in (run, reference))
    assert metrics["history"] == expected["history"]
    assert metrics["test_accuracy"] == expected["test_accuracy"] and metrics["test_loss"] == expected["test_loss"]
    assert not [p.name for p in run.rglob(".*.tmp*")], "a killed write's temporary file was left behind"
    assert (run / ".lock").read_text() == ""  # the last writer let go cleanly
    assert not os.path.exists(run / "checkpoints" / ".lock")
