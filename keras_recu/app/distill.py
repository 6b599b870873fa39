"""Knowledge distillation through `fit`, on any backend: a student trained on a frozen teacher's softmax.

The authors' two-stage ImageNet recipe trains each stage on the
`keras_recu.losses.DistributionLoss` between the student's logits and a
pretrained float teacher's, and validates with the ordinary cross-entropy.
`Distiller` does exactly that inside Keras' own training loop: its `call`
is the student's, so `predict`, `evaluate` and the accuracy metric see the
student; its `compute_loss`, which every backend's `train_step` calls, runs
the teacher (inference mode, no gradient) in training only. Nothing here
is backend-specific: it runs on TensorFlow, JAX and torch alike.

`load_teacher` builds the teacher from a `keras.applications` name (with
ImageNet weights) or a `.keras` file, as a model that takes the student's
input: the images the student sees are normalized with the data set's
mean and std, so a `keras.applications` teacher gets them un-normalized back
to 0..255 RGB, resized to its input size when that differs, and passed
through its own `preprocess_input` (`TeacherInput`).
"""

from __future__ import annotations

import contextlib
import urllib.request
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_recu.app.messages import first_line
from keras_recu.losses import DistributionLoss

__all__ = ["Distiller", "IMAGENET_CLASSES", "TeacherInput", "load_teacher"]

#: The classes of a keras.applications model with ImageNet weights.
IMAGENET_CLASSES = 1000


@keras.saving.register_keras_serializable(package="keras_recu")
class TeacherInput(keras.layers.Layer):
    """Normalized images back to 0..255 RGB, resized, then a `keras.applications` family's `preprocess_input`.

    Args:
        mean, std: the per-channel constants the images were normalized with,
            in 0..255 units (`DatasetInfo.mean`, `DatasetInfo.std`).
        application: the `keras.applications` module whose `preprocess_input`
            to apply ("resnet", "efficientnet", ...), or None for none.
        size: (height, width) to resize to (bilinear), or None to keep the size.

    Example:

    >>> import numpy as np
    >>> layer = TeacherInput(mean=(124.0, 116.0, 104.0), std=(58.0, 57.0, 57.0))
    >>> keras.ops.convert_to_numpy(layer(np.zeros((1, 2, 2, 3), "float32")))[0, 0, 0]
    array([124., 116., 104.], dtype=float32)
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        application: Optional[str] = None,
        size: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if application is not None and not hasattr(getattr(keras.applications, application, None), "preprocess_input"):
            raise ValueError(
                f"`application` must name a keras.applications module with a preprocess_input "
                f"(e.g. 'resnet', 'efficientnet'), got {application!r}."
            )
        self.application = application
        self.size = None if size is None else [int(size[0]), int(size[1])]

    def call(self, images):
        images = ops.add(ops.multiply(images, ops.convert_to_tensor(self.std, images.dtype)),
                         ops.convert_to_tensor(self.mean, images.dtype))
        if self.size is not None:
            images = ops.image.resize(images, self.size, interpolation="bilinear")
        if self.application is not None:
            images = getattr(keras.applications, self.application).preprocess_input(images)
        return images

    def compute_output_shape(self, input_shape):
        if self.size is None:
            return input_shape
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std, "application": self.application,
                "size": self.size}


@keras.saving.register_keras_serializable(package="keras_recu")
class Distiller(keras.Model):
    """A student trained on a frozen teacher's softmax; in all else the student itself.

    `call` is the student's. In training, the loss is `distillation_loss(
    teacher(x, training=False), student(x))` (plus the model's own losses,
    such as regularizers); the teacher gets no gradient and no update (its
    BatchNorm statistics included). In evaluation, the loss is the one given
    to `compile`, against the labels, as the authors validate.

    Args:
        student: the model to train.
        teacher: a model with the student's input and output shapes, giving logits.
        distillation_loss: defaults to `DistributionLoss()`, the authors' loss.

    Save the student (`distiller.student.save(...)`) to deploy it; a saved
    `Distiller` holds the teacher too (it is what a checkpoint needs).

    Example:

    >>> import numpy as np
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = Distiller(student, teacher)
    >>> distiller.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> _ = distiller.fit(np.ones((8, 4)), np.zeros(8), verbose=0)
    >>> len(distiller.trainable_variables), len(teacher.trainable_variables)
    (2, 0)
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, distillation_loss: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        teacher.trainable = False
        self.distillation_loss = keras.losses.get(distillation_loss) if distillation_loss is not None else DistributionLoss()
        _check_pair(student, teacher)
        # Both halves are built: a checkpoint loads into a fresh Distiller before any call.
        self.built = True

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not training:
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        teacher_logits = ops.stop_gradient(self.teacher(x, training=False))
        loss = self.distillation_loss(teacher_logits, y_pred, sample_weight=sample_weight)
        if self.losses:
            loss = ops.add(loss, ops.sum(ops.stack([ops.cast(extra, loss.dtype) for extra in self.losses])))
        return loss

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "distillation_loss": keras.saving.serialize_keras_object(self.distillation_loss),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Distiller":
        config = dict(config)
        for key in ("student", "teacher", "distillation_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)


def _check_pair(student, teacher) -> None:
    student_in, teacher_in = tuple(student.inputs[0].shape[1:]), tuple(teacher.inputs[0].shape[1:])
    student_out, teacher_out = student.outputs[0].shape[-1], teacher.outputs[0].shape[-1]
    if student_in != teacher_in:
        raise ValueError(
            f"the teacher takes inputs of shape {teacher_in} and the student {student_in}: give the teacher the "
            "student's input (load_teacher does, for keras.applications teachers)."
        )
    if student_out != teacher_out:
        raise ValueError(
            f"the teacher has {teacher_out} outputs and the student {student_out}: distillation needs the same "
            "classes, in the same order (an ImageNet teacher has 1000; a data set with other classes needs a "
            "teacher trained on them, passed as a .keras file)."
        )


def load_teacher(
    spec: str,
    input_shape: Tuple[int, ...],
    mean: Sequence[float],
    std: Sequence[float],
    weights: Optional[str] = "imagenet",
    *,
    num_classes: Optional[int] = None,
    download: bool = True,
) -> keras.Model:
    """The frozen teacher named by `spec`, taking the student's (normalized) input and giving logits.

    `spec` is either the path of a `.keras` file, a model that already takes
    the student's input as it is (normalized images) and gives logits, or
    the name of a `keras.applications` model ("ResNet50", "EfficientNetB0",
    ...), built with its ImageNet weights (downloaded on first use to
    ~/.keras/models; `weights=None` for random ones, in tests), its
    classifier giving logits, and a `TeacherInput` in front that turns the
    student's images into that model's input.

    `num_classes`, when given, is the student's: an ImageNet teacher (1000
    classes) of another number is refused before its weights are fetched.
    `download=False` (--no-download) fetches nothing: the weights must be
    in Keras' cache already (`keras.utils.get_file`'s, ~/.keras/models or
    $KERAS_HOME/models), else OSError at once.

    Raises:
        ValueError: `spec` names neither an existing file nor a keras.applications model,
            or an ImageNet teacher for a student of another number of classes.
        OSError: the ImageNet weights cannot be downloaded (offline), or are not cached and `download` is False.
    """
    path = Path(spec)
    if spec.endswith(".keras") or path.exists():
        if not path.is_file():
            raise ValueError(f"--teacher {spec}: no such file; pass a .keras model or a keras.applications name.")
        teacher = keras.models.load_model(path, compile=False)
    else:
        if weights == "imagenet" and num_classes is not None and num_classes != IMAGENET_CLASSES:
            raise ValueError(
                f"a keras.applications teacher with ImageNet weights gives {IMAGENET_CLASSES} classes and the "
                f"student has {num_classes}: distillation needs the same classes (train on an ImageNet set, or "
                "pass a teacher trained on this data set as a .keras file)."
            )
        teacher = _application_teacher(spec, tuple(input_shape), mean, std, weights, download)
    teacher.trainable = False
    return teacher


class _NoDownloads(contextlib.AbstractContextManager):
    """Within it, `urllib.request.urlopen` (which Keras' `get_file` downloads through) refuses: nothing is fetched.

    Keras has no offline switch: `keras.applications` fetches its weights
    with `keras.utils.get_file`, which uses a cached file when there is one
    and otherwise `urllib.request.urlretrieve`, that is `urlopen`.
    """

    def __enter__(self):
        self._saved = urllib.request.urlopen

        def refuse(url, *args, **kwargs):
            raise OSError(f"downloads are off (--no-download); not fetching {getattr(url, 'full_url', url)}")

        urllib.request.urlopen = refuse
        return self

    def __exit__(self, *exc_info):
        urllib.request.urlopen = self._saved
        return False


def _application_teacher(name: str, input_shape: Tuple[int, ...], mean, std, weights: Optional[str],
                         download: bool = True) -> keras.Model:
    builder = getattr(keras.applications, name, None)
    if not callable(builder) or not name[:1].isupper():
        known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
        raise ValueError(
            f"--teacher {name!r} is neither a .keras file nor a keras.applications model. "
            f"Known models: {', '.join(known)}."
        )
    application = builder.__module__.rsplit(".", 1)[-1]
    try:
        with contextlib.nullcontext() if download else _NoDownloads():
            network = builder(weights=weights, classifier_activation=None)
    except Exception as error:  # a download failure surfaces as several exception types
        if not download:
            raise OSError(
                f"--teacher {name}: its ImageNet weights are not in Keras' cache (~/.keras/models, or "
                "$KERAS_HOME/models) and downloads are off (--no-download). Run once without --no-download "
                "where the network is reachable, or pass --teacher PATH.keras."
            ) from None
        raise OSError(
            f"cannot get the ImageNet weights of keras.applications.{name} ({type(error).__name__}: "
            f"{first_line(error, 200)}). Connect to the internet "
            "once (Keras caches them in ~/.keras/models), or pass --teacher PATH.keras."
        ) from None
    size = tuple(network.inputs[0].shape[1:3])
    # A network of any input size takes the student's as it is.
    resize = None if None in size or size == tuple(input_shape[:2]) else size
    inputs = keras.Input(input_shape)
    adapted = TeacherInput(mean, std, application=application, size=resize, name="teacher_input")(inputs)
    return keras.Model(inputs, network(adapted), name=f"teacher_{network.name}")
