"""The names of the data sets the job reads (`DATASETS` and its families), known without Keras.

`keras_recu.app.data` (its `base`) holds the pipelines and re-exports these;
they live here, in a module that imports nothing, so that `keras-recu
--help` can offer them before (or without) loading Keras and TensorFlow.
"""

from __future__ import annotations

__all__ = ["DATASETS", "IMAGENET_DATASETS", "TFDS_DATASETS"]

DATASETS = (
    "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped", "synthetic",
    "imagenet2012", "imagenette", "image_folder",
)
TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped")
# Streamed from JPEGs with the ReCU authors' ImageNet transforms (keras_recu.app.data.imagenet).
IMAGENET_DATASETS = ("imagenet2012", "imagenette", "image_folder")
