"""A run directory has one writer: a second `train` or `--resume` on a held run is refused at once, naming the holder.

As a user meets it, in fresh processes: one `train` holds the run (held open
at a gate after its first checkpoint, so the test does not race the clock),
then a second `train` with another seed, a `--resume` and an `evaluate` come
in; the first then finishes, and every file of the run is the first's. A
reader (`evaluate`, `convert`) of a run being written says so in one warning
line, and goes on.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.run_utils import ROOT, TINY, TINY_FLAGS, cli, cli_with_tiny_model, environment, no_traceback, python

# The CLI with the tiny model, whose checkpoints wait for the file $KERAS_RECU_TEST_GATE
# to exist (at most 5 minutes): the session holds its run for as long as the test needs.
GATED = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.run_utils import register_tiny_model
register_tiny_model()
from keras_recu.app import rundir
save = rundir.RunFiles.save
def save_then_wait(self, *args, **kwargs):
    save(self, *args, **kwargs)
    deadline = time.monotonic() + 300
    while not os.path.exists(os.environ["KERAS_RECU_TEST_GATE"]) and time.monotonic() < deadline:
        time.sleep(0.05)
rundir.RunFiles.save = save_then_wait
from keras_recu.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_for(condition, process, what, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the first train ended ({process.returncode}) before {what}:\n"
                                 f"{process.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def contested(tmp_path_factory):
    """A run trained by one `train` (seed 1) while a second `train` (seed 2), a `--resume` and an `evaluate` came in."""
    tmp = tmp_path_factory.mktemp("lock")
    run, gate = tmp / "run", tmp / "gate"
    flags = ["--model", TINY, "--epochs", "2", *TINY_FLAGS, "--out", str(run)]
    first = subprocess.Popen([sys.executable, "-c", GATED.format(root=str(ROOT)), "train", *flags, "--seed", "1"],
                             env=environment(KERAS_RECU_TEST_GATE=str(gate)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run / "checkpoints" / "state.json").exists(), first, "a first checkpoint")
        held = {
            "lock": (run / ".lock").read_text(),
            "second": cli_with_tiny_model(["train", *flags, "--seed", "2"], label="second train"),
            "resume": cli_with_tiny_model(["train", "--out", str(run), "--resume"], label="--resume"),
            "evaluate": cli(["evaluate", str(run)], label="evaluate"),
            "config": json.loads((run / "config.json").read_text()),
        }
    finally:
        gate.touch()
        stdout, stderr = first.communicate(timeout=600)
    return run, first, stderr, held


def _one_line(result):
    lines = no_traceback(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(contested):
    run, first, stderr, held = contested
    assert held["lock"] == f"{first.pid}\n"
    for name in ("second", "resume"):
        line = _one_line(held[name])
        assert line.startswith(f"keras-recu train: {run} is in use: another keras-recu train (pid {first.pid})"), line
        assert "--resume" in line and "another --out" in line
    assert held["config"]["seed"] == 1  # nothing of the second was written, not even its config
    assert first.returncode == 0, stderr[-3000:]
    # The run is the first's alone, every file of it.
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["seed"] == 1 and metrics["history"]["epoch"] == [0, 1]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epochs_done"] == 2
    assert (run / ".lock").read_text() == ""  # let go: no pid names a finished writer


def test_evaluate_of_a_run_in_training_names_the_writer(contested):
    run, first, _, held = contested
    line = _one_line(held["evaluate"])
    assert line == (f"keras-recu evaluate: {run} is being trained now by keras-recu train (pid {first.pid}) and has "
                    f"no model.keras yet: wait for it to finish, or evaluate its last checkpoint, "
                    f"{run / 'checkpoints' / 'last.keras'}.")


# A reader while a writer holds the run (this process, RUN/.lock) and replaces model.keras
# right after the first load, as a writer's atomic write does: evaluate, then convert.
READ_WHILE_WRITTEN = """
import os, shutil, sys
sys.path.insert(0, {root!r})
import keras
from keras_recu.app.rundir import RunLock
from keras_recu.app.cli import main
run, output = sys.argv[1:]
lock = RunLock(run).acquire()
load, loads = keras.models.load_model, []
def load_then_replace(path, *args, **kwargs):
    model = load(path, *args, **kwargs)
    loads.append(path)
    if len(loads) == 1:
        shutil.copyfile(path, str(path) + ".new")
        os.replace(str(path) + ".new", path)
    return model
keras.models.load_model = load_then_replace
print("EXIT", os.getpid(), main(["evaluate", run]), main(["convert", run, "-o", output]), flush=True)
"""


def test_a_reader_of_a_run_being_written_warns_in_one_line_and_goes_on(contested, tmp_path):
    run = contested[0]
    result = python(["-c", READ_WHILE_WRITTEN.format(root=str(ROOT)), str(run), str(tmp_path / "m.tflite")],
                    label="evaluate and convert while written")
    exits = [line.split() for line in result.stdout.splitlines() if line.startswith("EXIT ")]
    assert exits and exits[0][2:] == ["0", "0"], result.stderr[-3000:]
    pid = exits[0][1]
    lines = no_traceback(result)
    warnings = [line for line in lines if "warning:" in line]
    assert len(warnings) == 2, lines
    evaluate_warning, convert_warning = warnings
    assert evaluate_warning.startswith(f"keras-recu evaluate: warning: {run / 'model.keras'} changed while it was "
                                       f"read by keras-recu train (pid {pid}), so")
    assert convert_warning.startswith(f"keras-recu convert: warning: {run} is being trained by keras-recu train (pid {pid});")
    assert (tmp_path / "m.tflite").exists()
