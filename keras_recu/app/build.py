"""What a session trains: the compiled model, its optimizer and learning-rate schedule, and the data stream.

The model is rebuilt and compiled the same way in every session of a run,
so that a resumed run continues exactly where the checkpoint left it.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

import numpy as np

from keras_recu.app.config import TrainConfig
from keras_recu.app.distribution import TF_STRATEGIES, backend
from keras_recu.app.errors import ConfigError, RunError

__all__ = ["binary_kernels", "build_model", "check_batches_divide", "epoch_stream", "learning_rate_schedule",
           "optimizer"]


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """The learning rate of `config.lr_schedule`.

    "step": a linear warm-up from 0 to the learning rate, then cosine decay
    to 0, updated every step. "epoch": the authors' schedule, constant within
    each epoch (`keras_recu.optimizers.EpochWarmupCosine`).
    """
    import keras

    if config.lr_schedule == "epoch":
        from keras_recu.optimizers import EpochWarmupCosine

        return EpochWarmupCosine(config.learning_rate, config.epochs, steps_per_epoch, config.warmup_epochs)
    warmup_steps = config.warmup_epochs * steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def optimizer(config: TrainConfig, steps_per_epoch: int):
    """L2SGD or L2Adam with PyTorch's coupled weight decay on the variables `weight_decay_paths` picks."""
    from keras_recu.optimizers import L2Adam, L2SGD

    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        return L2Adam(schedule, l2=config.weight_decay, l2_paths=config.weight_decay_paths)
    return L2SGD(schedule, momentum=config.momentum, l2=config.weight_decay, l2_paths=config.weight_decay_paths)


def build_model(config: TrainConfig, info, steps_per_epoch: int):
    """(the model to fit, the student): the same model, or a `Distiller` around it when a teacher is given.

    `info` is the data set's `DatasetInfo` (input shape, classes, the
    normalization a teacher needs). The model comes back compiled.
    """
    import keras

    from keras_recu import precision

    # Layers take the global dtype policy when they are created (keras_recu.precision says where each dtype
    # lives). Under mixed_float16, compile wraps the optimizer in Keras' LossScaleOptimizer.
    with precision.policy_scope(config.dtype_policy):
        student = _student(config, info)
        model = student if config.teacher is None else _distiller(config, info, student)
        model.compile(
            optimizer=optimizer(config, steps_per_epoch),
            # Validation (and training without a teacher): cross-entropy on the labels.
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            # --jit-compile is TensorFlow's XLA switch. On JAX, jit_compile=False
            # would run every step eagerly; on torch, True would mean torch.compile.
            jit_compile={"tensorflow": config.jit_compile, "jax": True}.get(backend(), False),
        )
    return model, student


def _student(config: TrainConfig, info):
    """The model `config` trains, as its builder makes it for the data set `info`."""
    from keras_recu import models

    options = {} if config.stage is None else {"binary_weights": config.stage == 2}
    if config.padding is not None:
        options["padding"] = config.padding
    return models.get(config.model)(
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        tau=config.tau_min,
        # JAX's data-parallel step computes the batch statistics over the
        # global batch by itself; tf.distribute needs synchronized BatchNorm.
        sync_batch_norm=config.strategy in TF_STRATEGIES,
        **options,
    )


def _distiller(config: TrainConfig, info, student):
    """`student` inside a `Distiller` with the teacher `config.teacher`."""
    from keras_recu.app.distill import Distiller, load_teacher

    try:
        teacher = load_teacher(config.teacher, info.input_shape, info.mean, info.std,
                               num_classes=info.num_classes, download=config.download)
        return Distiller(student, teacher, name="distiller")
    except ValueError as error:
        raise ConfigError(f"--teacher {config.teacher}: {error}") from None


def binary_kernels(model, count: int = 3) -> Dict[str, np.ndarray]:
    """Latent kernels of up to `count` binary layers: the first, a middle one, the last."""
    import keras

    from keras_recu.inspection import binary_layers

    convs = [found for found in binary_layers(model) if found.kind == "conv"]
    if len(convs) > count:
        convs = [convs[i] for i in sorted({0, len(convs) // 2, len(convs) - 1})]
    return {found.name: keras.ops.convert_to_numpy(found.layer.kernel) for found in convs}


def epoch_stream(train, first_epoch: int, last_epoch: int):
    """Epochs [first_epoch, last_epoch) of `train` as one sequence for a single `fit`.

    Item j is batch j % n of epoch first_epoch + j // n, a pure function of
    j. Setting the epoch from a callback's on_epoch_begin would race: Keras
    creates the next epoch's iterator at the end of the previous epoch,
    before any epoch callback, and on TensorFlow tf.data starts prefetching
    from it at once.
    """
    import keras

    class EpochStream(keras.utils.PyDataset):
        def __init__(self):
            # One worker, no multiprocessing: Keras reads items in order.
            super().__init__()
            self._steps = len(train)
            self._epoch: Optional[int] = None
            self._lock = threading.Lock()

        def __len__(self):
            return (last_epoch - first_epoch) * self._steps

        def __getitem__(self, index):
            epoch, step = divmod(int(index), self._steps)
            with self._lock:  # set_epoch and the read belong together
                if self._epoch != first_epoch + epoch:
                    self._epoch = first_epoch + epoch
                    train.set_epoch(self._epoch)
                return train[step]

    return EpochStream()


def check_batches_divide(config: TrainConfig, info) -> None:
    """DataParallel splits every batch evenly over the devices, the last partial ones too: RunError if one does not."""
    import keras

    devices = len(keras.distribution.list_devices())
    sizes = {
        "--batch-size": config.batch_size,
        "the last training batch": info.train_examples % config.batch_size,
        "the last test batch": info.test_examples % config.batch_size,
    }
    uneven = [f"{what} ({size})" for what, size in sizes.items() if size % devices]
    if uneven:
        raise RunError(
            f"--strategy data-parallel splits each batch over {devices} devices, and "
            f"{', '.join(uneven)} does not divide by {devices} ({info.train_examples} training and "
            f"{info.test_examples} test examples). Choose --batch-size, --limit-train and --limit-test so "
            f"that every batch does."
        )
