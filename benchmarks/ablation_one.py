"""One ablation run, in a process of its own (`python -m benchmarks.ablation _one ...`).

`run_one` trains one (variant, seed[, learning rate]) of a budget on
Fashion-MNIST and appends its rows to the budget's CSVs (`stores`): the
epochs and histograms first, the run's row last, so a run counts as done only
once its curves are stored. It gives up (exit status `GAVE_UP`) when
`Recorder` projects that it would end after the deadline. `build_variant`
builds a variant's model, the same initial weights for every variant.

Keras is imported inside the functions: on another backend than TensorFlow
the run first hides TensorFlow (`harness.hide_tensorflow`), as on the GPU
machine, and `recorder.py` imports Keras.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import List

from benchmarks import harness
from benchmarks.ablation_design import (BUDGETS, HIST_BINS, HIST_RANGE, REFERENCE_TAU, TAU_MAX, TAU_MIN,
                                        VARIANTS, policy_conflict, stores)
from benchmarks.campaign import GAVE_UP, POLICY_REFUSED


def build_variant(name: str, input_shape, num_classes: int, epochs: int):
    """The model of variant `name` (not compiled), the callbacks its method needs, its binary layers' names.

    The names are those of the 18 binary convs of `resnet20_1w1a`; in the
    float twin they are the float convs in the same places.
    """
    import keras

    from keras_recu import models
    from keras_recu.callbacks import TauScheduler
    from keras_recu.constraints import ReCUClamp
    from keras_recu.layers import ReCUConv2D
    from keras_recu.quantizers import ReCUSign, SteSign

    from benchmarks.recorder import binary_layer_names

    variant = VARIANTS[name]
    tau = TAU_MIN if variant.tau is None else variant.tau

    def binary_conv(*, filters, kernel_size, strides, tau, name, kernel_initializer):
        # A new quantizer (and constraint) per layer: each holds its own tau.
        quantizer = SteSign(clip_value=None) if variant.kernel == "ste" else ReCUSign(
            tau=tau, clamp=variant.kernel != "recu_noclamp")
        return ReCUConv2D(filters, kernel_size, strides=strides, padding="same", kernel_quantizer=quantizer,
                          kernel_constraint=ReCUClamp(tau=tau) if variant.constraint else None,
                          kernel_initializer=kernel_initializer, name=name)

    model = models.resnet20_1w1a(input_shape=input_shape, num_classes=num_classes, tau=tau,
                                 binary_conv=binary_conv)
    names = binary_layer_names(model)
    if variant.kernel == "float":
        model = models.float_twin(model)
    callbacks: List[keras.callbacks.Callback] = []
    if variant.schedule:  # with a constraint it sets the clamp's tau (and the unused quantizer's)
        callbacks.append(TauScheduler(TAU_MIN, TAU_MAX, epochs=epochs))
    return model, callbacks, names


def _sweep_split(train, info, validation: int, batch_size: int, seed: int):
    """Fit on all but the last `validation` training images, score on those (the full split's normalization)."""
    from keras_recu.app.data import ImageBatches

    n = len(train.images) - validation
    common = dict(mean=info.mean, std=info.std)
    fit = ImageBatches(train.images[:n], train.labels[:n], batch_size, shuffle=True,
                       augmentation=info.augmentation, seed=seed, **common)
    return fit, ImageBatches(train.images[n:], train.labels[n:], batch_size, **common), n


def run_one(args: argparse.Namespace) -> int:
    """Train one (variant, seed[, learning rate]) and append its rows; GAVE_UP if it would miss the deadline."""
    refusal = policy_conflict(Path(args.out), args.budget, args.dtype_policy)
    if refusal:
        print(refusal, flush=True)
        return POLICY_REFUSED
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        harness.hide_tensorflow()  # as on the GPU machine; see harness.hide_tensorflow
    import keras

    from keras_recu.app import data
    from keras_recu.app.build import learning_rate_schedule
    from keras_recu.app.config import TrainConfig
    from keras_recu.optimizers import L2SGD

    from benchmarks.recorder import Recorder

    budget, started = BUDGETS[args.budget], time.time()
    keras.utils.set_random_seed(args.seed)
    # Before the model is built: its layers take their compute and variable dtypes from the global policy.
    keras.config.set_dtype_policy(args.dtype_policy)
    train, test, info = data.load("fashion_mnist", budget.batch_size, data_dir=args.data_dir, augment=True,
                                  limit_train=budget.train, limit_test=budget.test, seed=args.seed,
                                  download=False)
    train_examples, evaluated_on = info.train_examples, "test"
    if budget.validation:
        train, test, train_examples = _sweep_split(train, info, budget.validation, budget.batch_size, args.seed)
        evaluated_on = "validation"
    model, callbacks, names = build_variant(args.variant, info.input_shape, info.num_classes, budget.epochs)
    config = TrainConfig(epochs=budget.epochs, warmup_epochs=budget.warmup_epochs,
                         learning_rate=args.learning_rate, batch_size=budget.batch_size)
    model.compile(optimizer=L2SGD(learning_rate_schedule(config, len(train)), momentum=0.9, l2=args.weight_decay),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    recorder = Recorder(VARIANTS[args.variant], REFERENCE_TAU, budget.epochs, args.deadline_at, HIST_RANGE,
                        HIST_BINS, names, label=f"{args.variant} seed {args.seed} lr {args.learning_rate:g}")
    history = model.fit(train, epochs=budget.epochs, validation_data=test, verbose=0, shuffle=False,
                        callbacks=[recorder.timer(), *callbacks, *recorder.callbacks()])
    if recorder.gave_up:
        print(f"[{harness.now()}] gave up {recorder.label}: it would not finish by the deadline", flush=True)
        return GAVE_UP
    run_id = f"{args.variant}-s{args.seed}-lr{args.learning_rate:g}-{int(started)}-{os.getpid()}"
    common = {"run_id": run_id, "variant": args.variant, "seed": args.seed}
    epochs = recorder.epoch_rows(history.history)
    run = {
        **common, **recorder.final(epochs), "budget": args.budget, "epochs": budget.epochs,
        "train_examples": train_examples, "test_examples": len(test.images), "evaluated_on": evaluated_on,
        "batch_size": budget.batch_size, "learning_rate": args.learning_rate, "weight_decay": args.weight_decay,
        "tau": "0.85->0.99" if VARIANTS[args.variant].schedule else VARIANTS[args.variant].tau,
        "backend": keras.backend.backend(), "device": harness.device_description(keras.backend.backend()),
        "test_accuracy": epochs[-1]["val_accuracy"], "test_loss": epochs[-1]["val_loss"],
        "seconds": round(time.time() - started, 1), "date": harness.environment()["date"],
        "host": os.uname().nodename, "versions": recorder.versions(), "dtype_policy": args.dtype_policy,
    }
    out = stores(Path(args.out), args.budget)
    refusal = policy_conflict(Path(args.out), args.budget, args.dtype_policy)  # another writer since the start
    if refusal:
        print(refusal, flush=True)
        return POLICY_REFUSED
    out["epochs"].append({**common, **row} for row in epochs)
    out["histograms"].append({**common, **row} for row in recorder.histograms)
    out["runs"].append([run])  # last: the run counts as done only once its curves are stored
    print(f"[{harness.now()}] done {recorder.label} ({args.dtype_policy}): {evaluated_on} accuracy "
          f"{100 * run['test_accuracy']:.2f}% in {run['seconds']:.0f} s", flush=True)
    return 0
