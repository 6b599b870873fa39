"""Where Fashion-MNIST comes from: its IDX files, else tensorflow-datasets.

`fashion_mnist_splits` reads the IDX files of `data_dir` (or of Debian's
`FASHION_MNIST_DIR` when none is given); only without a `data_dir` and
without Debian's files does it turn to tensorflow-datasets. An explicit
`data_dir` that holds neither the IDX files nor a prepared tensorflow-datasets
copy fails at once: it is a wrong directory, not a download target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from keras_recu.app.data.arrays import ArraySplits
from keras_recu.app.data.base import DataUnavailableError, PathLike
from keras_recu.app.data.idx import FASHION_MNIST_DIR, FASHION_MNIST_FILES, fashion_mnist_files, read_fashion_mnist
from keras_recu.app.data.tfds_arrays import tfds_splits
from keras_recu.app.messages import first_line

__all__ = ["FASHION_MNIST_HELP", "fashion_mnist_splits"]

FASHION_MNIST_HELP = (
    "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
    "or pass --data-dir DIR with the four IDX files, "
    "or run where tensorflow-datasets can download it"
)


def fashion_mnist_splits(
    data_dir: Optional[PathLike], download: bool, limit_train: Optional[int], limit_test: Optional[int]
) -> ArraySplits:
    """Both Fashion-MNIST splits, from its IDX files or tensorflow-datasets (see the module docstring)."""
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    missing = [p.name for p in fashion_mnist_files(directory).values() if not p.is_file()]
    if not missing:
        # Corrupt files raise here rather than fall back: the user should know.
        return ArraySplits(*read_fashion_mnist(directory), num_classes=10, source="debian")
    if data_dir is not None and not (directory / "fashion_mnist").is_dir():
        # An explicit directory is where the user says the data is: if it holds
        # neither the IDX files nor a tensorflow-datasets copy, it is the wrong
        # one, and tensorflow-datasets downloads there would only retry for
        # minutes where there is no network.
        state = "does not exist" if not directory.exists() else (
            "is not a directory" if not directory.is_dir() else f"lacks {', '.join(missing)}"
        )
        raise DataUnavailableError(
            f"Fashion-MNIST is not in --data-dir {directory}: it {state}. The directory must hold "
            f"the four IDX files {', '.join(FASHION_MNIST_FILES.values())} (Debian's "
            f"dataset-fashion-mnist installs them in {FASHION_MNIST_DIR}), or be a "
            "tensorflow_datasets directory that holds fashion_mnist/. Copy the files there, "
            f"or leave out --data-dir to use {FASHION_MNIST_DIR} or tensorflow-datasets."
        )
    try:
        return tfds_splits("fashion_mnist", data_dir, download, limit_train, limit_test)
    except DataUnavailableError as error:
        raise DataUnavailableError(
            f"Fashion-MNIST is not available: {directory} lacks IDX files ({', '.join(missing)}) "
            f"and tensorflow-datasets could not provide it either "
            f"({first_line(error.__cause__ or error) or type(error.__cause__ or error).__name__}). "
            f"To get it, {FASHION_MNIST_HELP}."
        ) from (error.__cause__ or error)

