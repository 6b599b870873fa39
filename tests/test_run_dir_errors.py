"""What goes wrong around a run directory, as a user meets it: one line that names the path and says what to do.

Each case is a fresh `keras-recu train` process on what the previous one
left: a full disk in the middle of a run, a file given as --out, a
checkpoint of another model, Ctrl-C.
"""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.run_utils import CLI_WITH_TINY_MODEL, ROOT, TINY, TINY_FLAGS, cli_with_tiny_model, environment, no_traceback, python

FLAGS = ["--model", TINY, "--epochs", "2", *TINY_FLAGS]

# The disk fills up while epoch 2's checkpoint is written: the write fails as
# a full disk's does, with ENOSPC and no file name.
FULL_DISK_AT_SECOND_CHECKPOINT = """
import errno, os, sys
sys.argv[0] = "keras-recu"  # starts up as the command does (see keras_recu/__init__.py)
sys.path.insert(0, {root!r})
from keras_recu.app import quiet_imports
quiet_imports.quiet_environment()
with quiet_imports.captured():  # the driver's own imports, kept off stderr as the command keeps its own
    import keras
    from tests.run_utils import register_tiny_model
    register_tiny_model()
save, saved = keras.Model.save, []
def save_on_a_full_disk(self, filepath, *args, **kwargs):
    if "checkpoints" in str(filepath):
        saved.append(filepath)
        if len(saved) == 2:
            with open(filepath, "ab") as file:
                file.write(b"PK")  # a start, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(self, filepath, *args, **kwargs)
keras.Model.save = save_on_a_full_disk
from keras_recu.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _one_line(result):
    lines = no_traceback(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A run whose disk filled up at its second checkpoint: epoch 1 checkpointed, the failed write's result."""
    run = tmp_path_factory.mktemp("errors") / "run"
    result = python(["-c", FULL_DISK_AT_SECOND_CHECKPOINT.format(root=str(ROOT)), "train", "--out", str(run), *FLAGS],
                    label="train on a disk that fills up")
    return run, result


def test_a_full_disk_names_the_file_it_could_not_write_and_keeps_the_last_checkpoint(full_disk):
    run, result = full_disk
    line = _one_line(result)
    checkpoint = run / "checkpoints" / "last.keras"
    assert line.startswith(f"keras-recu train: cannot write {checkpoint}: No space left on device [Errno 28]; "
                           "its previous version, if any, is kept."), line
    assert "--resume" in line
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epochs_done"] == 1
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".last.keras.")]
    assert (run / ".lock").read_text() == ""


def test_a_file_given_as_out_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for resume in ([], ["--resume"]):
        result = cli_with_tiny_model(["train", "--out", str(path), *FLAGS, *resume], label="--out a file")
        assert _one_line(result) == f"keras-recu train: --out {path} is a file; give a directory."
    assert path.read_text() == "mine"


def test_resume_with_a_checkpoint_of_another_model_names_both_models(full_disk, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(full_disk[0], run)
    config = json.loads((run / "config.json").read_text())
    config["model"] = "resnet20_1w1a"  # as if this checkpoint had been copied in from a run of another model
    (run / "config.json").write_text(json.dumps(config))
    result = cli_with_tiny_model(["train", "--out", str(run), "--resume"], label="--resume, another model's checkpoint")
    assert _one_line(result) == (
        f"keras-recu train: {run / 'checkpoints' / 'last.keras'} was saved from the model 'tiny_recu', but this run "
        "builds 'resnet20_1w1a' (config.json's model), so it is not this run's checkpoint. Restore the run's own "
        "checkpoints/last.keras (or its config.json), or start a new run with another --out."
    )


def test_ctrl_c_exits_promptly_in_one_line_and_leaves_the_run_resumable(full_disk, tmp_path):
    from keras_recu.app.rundir import holder

    run = tmp_path / "run"
    shutil.copytree(full_disk[0], run)
    process = subprocess.Popen([sys.executable, "-c", CLI_WITH_TINY_MODEL.format(root=str(ROOT)), "train", "--out", str(run),
                                "--resume", "--verbose", "0"], env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (run / ".lock").read_text().strip() != str(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.01)
    time.sleep(0.5)  # building the model
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    seconds = time.monotonic() - sent
    assert process.returncode == 130, stderr[-3000:]
    lines = no_traceback(subprocess.CompletedProcess(process.args, 130, "", stderr))
    assert lines == [f"keras-recu train: interrupted; `keras-recu train --out {run} --resume` continues from the "
                     "last checkpoint."]
    assert seconds < 3.0, f"{seconds:.1f} s from SIGINT to exit"
    assert holder(run) is None and json.loads((run / "checkpoints" / "state.json").read_text())["epochs_done"] >= 1
