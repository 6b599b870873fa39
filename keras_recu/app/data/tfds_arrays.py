"""The tensorflow-datasets image sets read whole into numpy (`TFDS_DATASETS`).

The only module of the in-memory family that imports TensorFlow, and only
when a tensorflow-datasets set is loaded: the other sources need neither
TensorFlow nor tensorflow-datasets.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from keras_recu.app.data.arrays import ArraySplits
from keras_recu.app.data.base import DataUnavailableError, PathLike, TFDS_DATASETS, TFDS_EXTRAS_HELP
from keras_recu.app.data.idx import FASHION_MNIST_DIR
from keras_recu.app.messages import first_line

__all__ = ["check_prepared", "import_tfds", "tfds_splits"]


def import_tfds():
    """tensorflow_datasets, imported here only: the other sources need no TensorFlow."""
    try:
        import tensorflow  # noqa: F401  (tensorflow-datasets needs it for batch_size=-1)
        import tensorflow_datasets
    except ImportError as error:
        raise DataUnavailableError(
            f"The tensorflow-datasets sets ({', '.join(TFDS_DATASETS)}) need TensorFlow and "
            f"tensorflow-datasets, which are not installed ({error}). Install them with "
            f"{TFDS_EXTRAS_HELP}, or use --dataset synthetic, or fashion_mnist from its IDX files "
            f"({FASHION_MNIST_DIR} or --data-dir), which need neither."
        ) from error
    return tensorflow_datasets


def tfds_splits(
    name: str,
    data_dir: Optional[PathLike],
    download: bool,
    limit_train: Optional[int],
    limit_test: Optional[int],
) -> ArraySplits:
    """Both splits of tensorflow-datasets set `name` as numpy arrays, the first `limit_*` examples of each."""
    tfds = import_tfds()
    if not download:
        check_prepared(tfds, name, data_dir)
    # "train[:N]": tensorflow-datasets reads only the first N examples.
    split = [
        f"train[:{limit_train}]" if limit_train else "train",
        f"test[:{limit_test}]" if limit_test else "test",
    ]
    try:
        # batch_size=-1: each split as one tensor, read into numpy once.
        (train, test), info = tfds.load(
            name,
            split=split,
            as_supervised=True,
            batch_size=-1,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            download=download,
            with_info=True,
        )
        train, test = tfds.as_numpy(train), tfds.as_numpy(test)
        num_classes = int(info.features["label"].num_classes)
    except Exception as error:  # tfds raises AssertionError, OSError, DatasetNotFoundError, ...
        where = f"in {data_dir}" if data_dir is not None else "in its default data directory"
        how = "or download it" if download else "and was not allowed to download it (download=False)"
        raise DataUnavailableError(
            f"Data set {name!r} is not available: tensorflow-datasets could not find it {where} "
            f"{how}. Run once where the network "
            f"is reachable (tensorflow-datasets then prepares it), or copy a prepared "
            f"tensorflow_datasets directory here and pass data_dir (--data-dir). Cause: "
            f"{type(error).__name__}: {first_line(error) or type(error).__name__}"
        ) from error
    return ArraySplits(
        np.asarray(train[0]),
        np.asarray(train[1], np.int32),
        np.asarray(test[0]),
        np.asarray(test[1], np.int32),
        num_classes,
        "tfds",
    )



def check_prepared(tfds, name: str, data_dir: Optional[PathLike]) -> None:
    """A `DataUnavailableError` naming the set and the directory, at once, unless `name` is prepared there.

    What `download=False` (--no-download) asks: no network, no retries, no
    files written; tensorflow-datasets is only asked whether the set is there.
    """
    absl = logging.getLogger("absl")
    level = absl.level
    # tensorflow-datasets logs a warning for each variant folder it finds unprepared: the error says it.
    absl.setLevel(logging.ERROR)
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
        prepared, directory = builder.is_prepared(), builder.data_dir_root
    except Exception as error:  # an unreadable data_dir, a broken install
        raise DataUnavailableError(
            f"tensorflow-datasets cannot open {name!r} in {data_dir or 'its default data directory'} "
            f"({type(error).__name__}: {first_line(error, 200)}); pass --data-dir of a tensorflow_datasets "
            "directory that holds it."
        ) from error
    finally:
        absl.setLevel(level)
    if not prepared:
        raise DataUnavailableError(
            f"Data set {name!r} is not in {directory} and downloads are off (--no-download): run once without "
            f"--no-download where the network is reachable, or pass --data-dir of a tensorflow_datasets "
            f"directory that holds {name}/."
        )
