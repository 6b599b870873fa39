"""The two ImageNet ResNet-18s of `imagenet_train.py`, built and compiled as the app's recipes build them.

* `vanilla_model`: `imagenet_resnet18_1w1a` with the imagenet recipe's
  optimizer (`keras_recu.app.build.optimizer`), cross-entropy, jitted;
* `two_stage_model`: stage 2 of the two-stage recipe by the app's own
  `keras_recu.app.build.build_model` (the student in a `Distiller` with the
  recipe's teacher, the DistributionLoss, L2Adam, the accuracy metric), the
  teacher with random weights (`random_teacher`).

Each is built under the dtype policy given (the global policy, as
`keras-recu train` sets it).
"""

from __future__ import annotations

from benchmarks.imagenet_rows import IMAGENET_TRAIN, VANILLA_MODEL

TWO_STAGE_MODEL = "imagenet_resnet18_two_stage"
#: `--teacher tiny`: a one-layer teacher (the smoke run's), so that the CPU check of the two-stage rows takes seconds.
TINY_TEACHER = "tiny"


def vanilla_model(args, policy: str):
    """imagenet_resnet18_1w1a compiled as the imagenet recipe compiles it, under `policy`."""
    import keras

    from keras_recu import models
    from keras_recu.app.build import optimizer
    from keras_recu.app.config import TrainConfig

    keras.config.set_dtype_policy(policy)
    config = TrainConfig.for_recipe("imagenet", batch_size=args.batch)
    model = models.get(VANILLA_MODEL)(input_shape=(args.size, args.size, 3), num_classes=args.classes,
                                      tau=config.tau_min)
    model.compile(optimizer=optimizer(config, steps_per_epoch=IMAGENET_TRAIN // args.batch),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    return model


def two_stage_classes(args) -> int:
    """A keras.applications teacher gives ImageNet's 1000 classes; the tiny one the run's."""
    from keras_recu.app.distill import IMAGENET_CLASSES

    return args.classes if args.teacher == TINY_TEACHER or args.teacher.endswith(".keras") else IMAGENET_CLASSES


def random_teacher(load_teacher, spec: str, input_shape, mean, std, **options):
    """The app's `load_teacher` with random weights: the GPU machine cannot fetch ImageNet's, and speed does not need them.

    `--teacher tiny` gives a one-layer teacher of the student's classes instead
    (the smoke run's, so that the CPU check takes seconds).
    """
    import keras

    if spec == TINY_TEACHER:
        return keras.Sequential([keras.Input(input_shape), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(options["num_classes"])], name="tiny_teacher")
    return load_teacher(spec, input_shape, mean, std, **{**options, "weights": None})


def two_stage_model(args, policy: str):
    """Stage 2 of the two-stage recipe with its teacher, built and compiled by the app's `build_model`.

    Under `policy`, as `keras-recu train --recipe two-stage --stage 2` builds
    it; only the teacher's weights differ (`random_teacher`, put in place of
    the app's `load_teacher` for this call; a .keras teacher is loaded as is).
    """
    import contextlib
    import functools
    from unittest import mock

    import keras

    from keras_recu.app import distill
    from keras_recu.app.build import build_model
    from keras_recu.app.config import TrainConfig
    from keras_recu.app.data import DatasetInfo, ImageNetTransform

    keras.config.set_dtype_policy(policy)
    transform = ImageNetTransform()
    info = DatasetInfo(name="imagenet2012", input_shape=(args.size, args.size, 3),
                       num_classes=two_stage_classes(args), train_examples=IMAGENET_TRAIN, test_examples=50_000,
                       source="synthetic", mean=tuple(255.0 * m for m in transform.mean),
                       std=tuple(255.0 * s for s in transform.std))
    # As `--dtype-policy`: build_model builds the student and the teacher under it.
    config = TrainConfig.for_recipe("two-stage", stage=2, batch_size=args.batch, teacher=args.teacher,
                                    dtype_policy=policy)
    random_weights = not args.teacher.endswith(".keras")
    teacher = functools.partial(random_teacher, distill.load_teacher)
    with mock.patch.object(distill, "load_teacher", teacher) if random_weights else contextlib.nullcontext():
        model, _ = build_model(config, info, steps_per_epoch=IMAGENET_TRAIN // args.batch)
    return model
