"""The run directory's files: written all or nothing, and a run that --resume can always continue or refuse clearly."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_recu.app import rundir
from keras_recu.app.errors import RunError, RunInUse, WriteError
from keras_recu.app.rundir import RECORD, ReadCheck, RunFiles, RunLock, atomic_write, holder
from keras_recu.layers import ReCUConv2D
from keras_recu.optimizers import L2SGD


def small_model():
    model = keras.Sequential([keras.Input((6, 6, 2)), ReCUConv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3)])
    model.compile(L2SGD(0.1, momentum=0.9, l2=5e-4), "mse")
    model.fit(np.ones((4, 6, 6, 2)), np.zeros((4, 3)), verbose=0)  # optimizer state to save
    return model


def test_a_failing_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(path, lambda temporary: temporary.write_text("old"))

    def dies_halfway(temporary):
        temporary.write_text("ne")
        raise OSError(28, "No space left on device")  # as a write() on a full disk: no file name

    # The error names the file it could not write; still an OSError for those who catch one.
    with pytest.raises(WriteError, match=rf"cannot write {path}: No space left on device \[Errno 28\]; its previous"):
        atomic_write(path, dies_halfway)
    with pytest.raises(OSError):
        atomic_write(path, dies_halfway)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    atomic_write(path, lambda temporary: temporary.write_text("new"))
    assert path.read_text() == "new"


def test_the_checkpoint_carries_its_record_and_stays_a_keras_model(tmp_path):
    model = small_model()
    files = RunFiles(tmp_path, tmp_path)
    history = [{"epoch": 0, "loss": 0.5, "tau": 0.85}, {"epoch": 1, "loss": 0.25, "tau": 0.9}]
    files.save(model, 2, history)

    with zipfile.ZipFile(files.checkpoint) as archive:
        record = json.loads(archive.read(RECORD))
    assert record["epochs_done"] == 2 and record["history"] == history
    assert record["backend"] == keras.backend.backend()
    loaded = keras.models.load_model(files.checkpoint)  # Keras ignores the extra member
    for a, b in zip([*model.weights, *model.optimizer.variables], [*loaded.weights, *loaded.optimizer.variables]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,tau\n0,0.5,0.85\n1,0.25,0.9\n"

    # A kill between the checkpoint and state.json, or a lost state.json:
    # the checkpoint's record wins.
    (files.state).write_text(json.dumps({"epochs_done": 1, "history": history[:1]}))
    assert files.restore() == (2, history, keras.backend.backend())
    files.state.unlink()
    assert files.restore() == (2, history, keras.backend.backend())


def test_a_damaged_checkpoint_is_refused_with_its_cause(tmp_path):
    model = small_model()
    files = RunFiles(tmp_path, tmp_path)
    files.save(model, 1, [{"epoch": 0, "loss": 1.0}])
    whole = files.checkpoint.read_bytes()
    for damaged in (b"", whole[: len(whole) // 2]):
        files.checkpoint.write_bytes(damaged)
        with pytest.raises(RunError, match=r"last\.keras is damaged .*not a complete \.keras archive"):
            files.restore()


def test_an_older_checkpoint_without_a_record_needs_state_json(tmp_path):
    files = RunFiles(tmp_path, tmp_path)
    files.checkpoint.parent.mkdir()
    small_model().save(files.checkpoint)  # as keras-recu 0.1 wrote it: no record inside
    with pytest.raises(RunError, match="carries no record .*state.json is missing.*restart the schedules at epoch 0"):
        files.restore()
    files.state.write_text(json.dumps({"epochs_done": 3}))
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.5\n1,1.25\n2,1.0\n")
    assert files.restore() == (3, [{"epoch": e, "loss": v} for e, v in enumerate((1.5, 1.25, 1.0))], None)


def test_state_without_its_checkpoint_is_refused_and_an_empty_run_starts_at_epoch_0(tmp_path):
    files = RunFiles(tmp_path, tmp_path)
    assert files.restore() == (0, [], None)  # killed before the first checkpoint: nothing lost
    files.state.parent.mkdir()
    files.state.write_text(json.dumps({"epochs_done": 2}))
    with pytest.raises(RunError, match=r"records 2 finished epoch.*last\.keras is missing"):
        files.restore()


def test_one_writer_holds_the_run_and_lets_go(tmp_path):
    out = tmp_path / "run"
    assert holder(out) is None  # no directory: nobody holds it, and nothing is created
    assert not out.exists()
    with RunLock(out) as lock:
        assert (out / rundir.LOCK).read_text() == f"{os.getpid()}\n"
        assert holder(out) == os.getpid()
        # A lock is per open file: a second one conflicts, in this process as in another.
        with pytest.raises(RunInUse, match=rf"{out} is in use: another keras-recu train \(pid {os.getpid()}\)") as error:
            RunLock(out).acquire()
        assert error.value.pid == os.getpid() and "\n" not in str(error.value)
        assert lock.acquire() is lock  # taking one's own lock again is a no-op
    assert holder(out) is None and (out / rundir.LOCK).read_text() == ""
    with RunLock(out):  # free again
        pass


def test_a_dead_writers_pid_neither_blocks_nor_names_the_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / rundir.LOCK).write_text(dead.stdout)  # what a SIGKILLed writer leaves: its pid, no lock
    assert holder(out) is None
    with RunLock(out):
        assert (out / rundir.LOCK).read_text() == f"{os.getpid()}\n"


def test_out_that_is_a_file_is_refused_in_one_line(tmp_path):
    out = tmp_path / "a_file"
    out.write_text("x")
    with pytest.raises(RunError, match=rf"^--out {out} is a file; give a directory\.$"):
        RunLock(out).acquire()
    assert out.read_text() == "x"


def test_a_reader_says_when_the_run_is_written_under_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.MODEL).write_bytes(b"one")
    (run / rundir.CONFIG).write_text("{}")
    assert ReadCheck(run).warning() is None
    reading = ReadCheck(run / rundir.MODEL)
    rundir.write_bytes(run / rundir.MODEL, b"one")  # same bytes, but replaced: another version
    assert reading.warning().startswith(f"{run / rundir.MODEL} changed while it was read, so")
    with RunLock(run):
        warning = ReadCheck(run).warning()
    assert warning.startswith(f"{run} is being trained by keras-recu train (pid {os.getpid()});")


def test_the_checkpoint_names_the_model_it_was_saved_from(tmp_path):
    files = RunFiles(tmp_path, tmp_path, model_name="resnet20_1w1a")
    files.save(small_model(), 1, [{"epoch": 0, "loss": 1.0}])
    assert files.checkpoint_model() == "resnet20_1w1a"
    assert json.loads(files.state.read_text())["model"] == "resnet20_1w1a"
    anonymous = RunFiles(tmp_path / "old", tmp_path / "old")
    model = small_model()
    anonymous.save(model, 1, [{"epoch": 0, "loss": 1.0}])  # no --model recorded: the name in Keras' config
    assert anonymous.checkpoint_model() == model.name
