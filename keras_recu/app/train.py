"""The main job: train a ReCU BNN the paper's way, convert it, verify it, report.

`run(config)` (and `keras-recu train`) trains `config.model` on
`config.dataset` with the ReCU recipe: SGD with momentum and PyTorch-style
weight decay, a linear warm-up then cosine decay to zero, and the tau
schedule 0.85 -> 0.99. It checkpoints every epoch; when the last epoch is
done it evaluates on the test split, converts to a larq-compute-engine
flatbuffer, verifies it on test images and writes the report.

Recipes (`RECIPES`, `TrainConfig.for_recipe`, `keras-recu train --recipe`)
    "cifar", the default, is the paper's CIFAR recipe. "imagenet" is the
    authors' vanilla ImageNet recipe (imagenet/run.sh): ResNet-18 1w1a, SGD
    0.1, momentum 0.9, batch 512, 200 epochs, weight decay 1e-4 on the
    variables whose name holds "conv" or "fc" only. "two-stage" is
    imagenet_two-stage/run.sh: Adam 1e-3 without weight decay, 256 epochs,
    distillation from a float teacher (`keras_recu.app.distill`); stage 1
    (`stage=1`) trains float weights with binary activations, stage 2
    (`stage=2`, `stage1=` the stage-1 run) binary weights starting from stage
    1's (`keras_recu.app.two_stage`). A recipe only sets defaults: every
    value is a setting of its own, and config.json records them all.

The application, module by module:

    recipes        the authors' recipes, as data
    config         TrainConfig: every setting, its validation, what --resume may change
    distribution   the strategies, their backends, which process writes
    rundir         the run directory: file names, atomic writes, the checkpoint's record
    build          the compiled model, optimizer, learning-rate schedule, data stream
    checkpointing  the callback that checkpoints each epoch and stops a diverged run
    diagnostics_log  --diagnostics, across sessions
    evaluate       the end of a run (test, save, convert, verify, report) and `evaluate`
    train          this module: one training session, from the run directory to the end

Exact resume
    Batch i of epoch e is a pure function of (seed, e, i) (`keras_recu.app.data`),
    the optimizer state, the learning-rate schedule's step and tau come back
    from the checkpoint, and the model is rebuilt and compiled exactly as in
    the first session, so `--stop-after k` then `--resume` gives the same
    weights as the uninterrupted run, bit for bit on CPU.

Backends and strategies
    Training runs on any Keras backend. Conversion needs TensorFlow and LCE:
    after a run on JAX or torch, the saved model.keras is converted and
    verified in a TensorFlow-backend subprocess when both are installed;
    otherwise the run succeeds and the report says how to convert later.
    `strategy`: see `keras_recu.app.distribution`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from keras_recu.app import rundir
from keras_recu.app.build import binary_kernels, build_model, check_batches_divide, epoch_stream
from keras_recu.app.checkpointing import checkpoint_callback
from keras_recu.app.config import TrainConfig
from keras_recu.app.diagnostics_log import diagnostics_callbacks, trim_diagnostics
from keras_recu.app.distribution import backend, distribution, is_chief
from keras_recu.app.errors import CheckpointMismatch, RunError, TrainingDiverged
from keras_recu.app.evaluate import finish
from keras_recu.app.messages import first_line
from keras_recu.app.rundir import RunFiles
from keras_recu.app.two_stage import carry_stage1

# The old import path: these names lived here before the application was
# split, and users, benchmarks and tests import them from keras_recu.app.train.
# New code imports them from their owners.
from keras_recu.app.build import learning_rate_schedule  # noqa: F401
from keras_recu.app.config import RESUMABLE  # noqa: F401
from keras_recu.app.distribution import STRATEGIES  # noqa: F401
from keras_recu.app.errors import ConfigError  # noqa: F401
from keras_recu.app.evaluate import evaluate  # noqa: F401
from keras_recu.app.recipes import LR_SCHEDULES, OPTIMIZERS, RECIPES  # noqa: F401
from keras_recu.app.rundir import RECORD, atomic_write  # noqa: F401

__all__ = [
    "ConfigError",
    "RECIPES",
    "RESUMABLE",
    "RunError",
    "STRATEGIES",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "learning_rate_schedule",
    "resume_run",
    "run",
]


def run(config: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue), then evaluate, convert, verify and report; return the metrics.

    With `resume=True` the run in `config.out` continues with its saved
    configuration; `config` must agree with it except for `RESUMABLE`
    (RunError lists each conflict). A session that ends at `stop_after`
    before the last epoch returns `{"complete": False, "epochs_done": k, ...}`
    and leaves the final stage to the session that finishes the run.

    Raises:
        ConfigError: a setting is invalid (the message names it).
        RunError: the run directory or the flags do not allow the run.
        TrainingDiverged: the loss or a weight became non-finite; the last
            good checkpoint is kept.
    """
    if resume:
        return resume_run(config.out, **dataclasses.asdict(config))
    return _run(config, resume=False)


def resume_run(run_dir: Any, **given: Any) -> dict:
    """Continue the run in `run_dir` with its saved settings and this session's `given` ones (`--resume`).

    The run's lock is taken first, before its config.json is read;
    `TrainConfig.resumed` merges the settings, refusing what a resumed run
    may not change; then as `run`.
    """
    out = Path(run_dir)
    lock = rundir.RunLock(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory.")
    if is_chief() and (out / rundir.CONFIG).exists():
        lock.acquire()
    try:
        return _run(TrainConfig.resumed(run_dir, **given), resume=True, lock=lock)
    finally:
        lock.release()


def _run(config: TrainConfig, resume: bool, lock: Optional[rundir.RunLock] = None) -> dict:
    """One session, holding the run's lock (RunLock) from before its first write to its end (the chief)."""
    lock = lock or rundir.RunLock(Path(config.out))
    try:
        files = _prepare(config, resume, lock)
        try:
            return _session(config, files, resume)
        finally:
            if not files.chief:
                shutil.rmtree(files.target, ignore_errors=True)
    finally:
        lock.release()


def _prepare(config: TrainConfig, resume: bool, lock: rundir.RunLock) -> RunFiles:
    """Check the run directory and the settings, take the run's lock (the chief); return the session's files."""
    out = Path(config.out)
    chief = is_chief()
    target = out if chief else Path(tempfile.mkdtemp(prefix="keras_recu_worker_"))
    files = RunFiles(out, target, model_name=config.model)
    if chief and not lock.held and rundir.holder(out) is not None:
        lock.acquire()  # refused, naming the writer (RunInUse), before any other check
    if not resume and files.holds_run():
        raise RunError(f"{out} already holds a run; pass --resume to continue it, or choose another --out.")
    config.validate()
    if chief:
        # Creates the directory: the first write of the session, and nothing is written before it.
        lock.acquire()
        if not resume and files.holds_run():  # finished by a writer that let go a moment ago
            raise RunError(f"{out} already holds a run; pass --resume to continue it, or choose another --out.")
    return files


def _session(config: TrainConfig, files: RunFiles, resume: bool) -> dict:
    """One session: restore, load the data, build, train to `stop_after` or the end, and finish a complete run."""
    import keras

    # First of all TensorFlow work: see keras_recu.app.distribution.distribution.
    strategy = distribution(config.strategy)
    epochs_done, history, trained_on = _restore(config, files) if resume else (0, [], None)
    keras.utils.set_random_seed(config.seed)
    train, test, info = _load_data(config)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model, student = build_model(config, info, len(train))
        carried = carry_stage1(config.stage1, student) if config.stage1 and not epochs_done else None
        if epochs_done:
            _load_checkpoint(model, files, epochs_done, len(train))
    # Written once the data and the model are there: a run that cannot start leaves no files.
    if files.chief:
        _write_start(config, files, carried, (epochs_done, history, trained_on))
    _prepare_target(config, files.target, student, epochs_done)

    start = time.perf_counter()
    if epochs_done < (config.stop_after or config.epochs):
        epochs_done = _fit(config, model, files, (train, test), history, epochs_done)
    train_seconds = time.perf_counter() - start
    if epochs_done < config.epochs:
        return {
            "complete": False,
            "epochs_done": epochs_done,
            "config": dataclasses.asdict(config),
            "history": rundir.history_columns(history),
            "train_seconds_this_session": round(train_seconds, 1),
        }
    return finish(config, model, student, test, info, files, history, train_seconds,
                  input_wait=_input_wait(train, train_seconds))


def _restore(config: TrainConfig, files: RunFiles) -> Tuple[int, List[dict], Optional[str]]:
    """The resumed run's (epochs done, history, backend it trained on), refusing a --stop-after already passed."""
    epochs_done, history, trained_on = files.restore()
    if config.stop_after is not None and config.stop_after <= epochs_done < config.epochs:
        raise RunError(
            f"the run in {files.source} has done {epochs_done} of {config.epochs} epochs, so --stop-after "
            f"{config.stop_after} leaves nothing to train: pass a later epoch, or omit it to finish the run."
        )
    if trained_on is not None and trained_on != backend():
        print(
            f"note: this run trained on the {trained_on} backend and continues on {backend()}; "
            "it will not be bit-identical to an uninterrupted run on one backend."
        )
    return epochs_done, history, trained_on


def _load_data(config: TrainConfig):
    """(train, test, info) of the run's data set, checked against a data-parallel strategy."""
    from keras_recu.app import data

    train, test, info = data.load(
        config.dataset,
        config.batch_size,
        data_dir=config.data_dir,
        augment=config.augment,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        seed=config.seed,
        download=config.download,
        **config.data_arguments(),
    )
    if config.strategy == "data-parallel":
        check_batches_divide(config, info)
    return train, test, info


def _load_checkpoint(model, files: RunFiles, epochs_done: int, steps_per_epoch: int) -> None:
    """Load the checkpoint's weights and optimizer state into the freshly built, compiled `model`.

    Rebuilt and compiled as in the first session, then the state:
    load_model would compile from the saved config, where a default
    (jit_compile="auto") can differ from this run's.
    """
    import keras

    import warnings

    saved_from = files.checkpoint_model()
    if saved_from is not None and files.model_name is not None and saved_from != files.model_name:
        raise _checkpoint_mismatch(files, model, None)
    model.optimizer.build(model.trainable_variables)
    try:
        with warnings.catch_warnings():
            # Keras warns once per variable it cannot match, then raises: the one line below says it all.
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(files.checkpoint)
    except Exception as error:
        raise _checkpoint_mismatch(files, model, error) from None
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if steps != epochs_done * steps_per_epoch:
        raise RunError(
            f"{files.checkpoint} holds {steps} optimizer steps, but {epochs_done} epoch(s) of "
            f"{steps_per_epoch} steps were recorded: the data set changed since the run began "
            "(another --data-dir or version of the files?). Restore the data, or start a new run."
        )


def _checkpoint_mismatch(files: RunFiles, model, error: Optional[Exception]) -> CheckpointMismatch:
    """The one line for a checkpoint that does not fit the model this run builds (another model's, or another shape)."""
    saved_from = files.checkpoint_model()
    asked = files.model_name or model.name
    if saved_from is not None and saved_from != asked:
        what = f"was saved from the model {saved_from!r}, but this run builds {asked!r} (config.json's model)"
    else:
        reason = first_line(error, 160) if error is not None else ""
        what = f"does not fit the model this run builds ({asked!r}: {type(error).__name__}: {reason})"
    return CheckpointMismatch(
        f"{files.checkpoint} {what}, so it is not this run's checkpoint. Restore the run's own "
        f"{rundir.CHECKPOINTS}/{rundir.CHECKPOINT} (or its config.json), or start a new run with another --out."
    )


def _write_start(config: TrainConfig, files: RunFiles, carried: Optional[dict], restored: tuple) -> None:
    """The chief's files at a session's start: config.json, stage1.json, and the record a kill may have cut."""
    out = files.source
    epochs_done, history, trained_on = restored
    for directory in (out, out / rundir.CHECKPOINTS):
        if directory.exists():
            rundir.remove_temporaries(directory)
    rundir.write_json(out / rundir.CONFIG, dataclasses.asdict(config))
    if carried is not None:
        rundir.write_json(out / rundir.STAGE1, carried)
    if epochs_done:
        files.rewrite_state(epochs_done, history, trained_on)


def _prepare_target(config: TrainConfig, target: Path, student, epochs_done: int) -> None:
    """The initial kernels of a new run, and diagnostics.jsonl trimmed to the checkpointed epochs."""
    if not epochs_done:
        kernels = binary_kernels(student)
        rundir.atomic_write(target / rundir.INITIAL_KERNELS, lambda temporary: np.savez(temporary, **kernels))
    if config.diagnostics:
        trim_diagnostics(target / rundir.DIAGNOSTICS, epochs_done)


def _fit(config: TrainConfig, model, files: RunFiles, data: tuple, history: List[dict], epochs_done: int) -> int:
    """Train from `epochs_done` to `stop_after` (or the end), checkpointing each epoch; the epochs done after."""
    from keras_recu.callbacks import TauScheduler

    train, test = data
    last_epoch = config.stop_after or config.epochs
    session = checkpoint_callback(files, history)
    # Stage 1's kernels are float: no clamp, so no tau to schedule.
    callbacks = [] if config.stage == 1 else [TauScheduler(config.tau_min, config.tau_max, epochs=config.epochs)]
    if config.diagnostics:
        callbacks += diagnostics_callbacks(config, files.target)
    model.fit(
        epoch_stream(train, epochs_done, last_epoch),
        steps_per_epoch=len(train),
        validation_data=test,
        epochs=last_epoch,
        initial_epoch=epochs_done,
        # The stream orders the data; Keras' own shuffle would use Python's global RNG.
        shuffle=False,
        # After the others: the checkpoint's history row gets their logs (tau, diagnostics).
        callbacks=[*callbacks, session],
        verbose=config.verbose,
    )
    if session.diverged:
        good = len(history)
        kept = (
            f"the last good checkpoint ({good} epoch(s)) is kept in {files.checkpoint}"
            if good
            else "no epoch finished, so there is no checkpoint"
        )
        raise TrainingDiverged(
            f"{session.diverged}; training stopped and {kept}. --resume would replay the same steps: "
            "check the data for NaN or infinite values, or start a new run (another --out) with a lower "
            "--learning-rate."
        )
    return len(history)


def _input_wait(train, train_seconds: float) -> Optional[dict]:
    """How long this session's training steps waited for the input pipeline (the streaming sets record it)."""
    waited = getattr(train, "wait_seconds", None)
    if waited is None:
        return None
    return {"seconds": round(float(waited), 2), "batches": int(getattr(train, "batches_served", 0)),
            "share_of_training": round(float(waited) / train_seconds, 4) if train_seconds > 0 else None}
