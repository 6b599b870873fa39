"""What every data set of the application shares: its errors, its `DatasetInfo`, its epochs.

The bottom of `keras_recu.app.data`: the in-memory sets (`arrays`) and the
streamed ImageNet-style sets (`imagenet`) both build on it, and it imports
neither. It owns

* the names of the data sets (`DATASETS` and its families), which the
  sources' messages and `load` read;
* the two errors a source raises (`DataUnavailableError`, `CorruptDataError`)
  and what `load` returns besides the batches (`DatasetInfo`);
* the randomness of an epoch (`epoch_generator`) and the epoch bookkeeping
  of a `keras.utils.PyDataset` (`EpochBatches`), so that batch `i` of epoch
  `e` is a pure function of `(seed, e, i)` in both families;
* the argument checks that `load` and the batches share.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
import os
import threading
from typing import Optional, Union

import keras
import numpy as np

from keras_recu.app.dataset_names import DATASETS, IMAGENET_DATASETS, TFDS_DATASETS

__all__ = [
    "CorruptDataError",
    "DATASETS",
    "DataUnavailableError",
    "DatasetInfo",
    "EpochBatches",
    "IMAGENET_DATASETS",
    "PathLike",
    "TFDS_DATASETS",
    "TFDS_EXTRAS_HELP",
    "data_error_behind",
    "epoch_generator",
    "non_negative_integer",
    "positive_integer",
    "remember_data_error",
]

PathLike = Union[str, os.PathLike]

# The names (DATASETS, TFDS_DATASETS, IMAGENET_DATASETS) are defined in
# keras_recu.app.dataset_names, which `keras-recu --help` reads without Keras.

TFDS_EXTRAS_HELP = (
    'pip install "keras-recu[tensorflow,train]" (TensorFlow and tensorflow-datasets)'
)

# Tags the spawn key of the per-epoch generators, so that their streams are
# apart from any other use of the run's seed (`synthetic_images(seed)`, say).
# A plain `default_rng([seed, epoch])` would not be: numpy's SeedSequence
# ignores trailing zeros, so `[seed, 0]` is the same stream as `seed`.
_EPOCH_STREAM = 0xDA7A


class DataUnavailableError(RuntimeError):
    """A data set is neither on this machine nor downloadable; the message says what provides it."""


class CorruptDataError(ValueError):
    """A local data file cannot be read: truncated, damaged, not what its name says, or in a format the decoder lacks.

    The message names the file and says what to do.
    """


# The data errors that batches raised while a framework read them. TensorFlow
# runs a Keras `PyDataset` inside tf.data (`Dataset.from_generator`), which
# turns whatever `__getitem__` raises into one of its own errors, the Python
# traceback pasted into the message; `data_error_behind` finds the original.
_RAISED: collections.deque = collections.deque(maxlen=8)
_RAISED_LOCK = threading.Lock()


def remember_data_error(error: Exception) -> Exception:
    """Records `error`, raised by a batch, for `data_error_behind`; returns it (`raise remember_data_error(e)`)."""
    with _RAISED_LOCK:
        _RAISED.append(error)
    return error


def data_error_behind(error: BaseException) -> Optional[Exception]:
    """The `DataUnavailableError` or `CorruptDataError` that caused `error`, or None.

    `error` itself, one in its chain of causes, or a remembered one
    (`remember_data_error`) whose message `error`'s message contains: what a
    framework that wraps the batches' errors (TensorFlow's tf.data) raises
    instead. The command line prints it as its one line.

    >>> original = remember_data_error(CorruptDataError("/data/train/n0/a.JPEG cannot be decoded"))
    >>> wrapped = RuntimeError("InvalidArgumentError: CorruptDataError: /data/train/n0/a.JPEG cannot be decoded")
    >>> data_error_behind(wrapped) is original, data_error_behind(RuntimeError("other"))
    (True, None)
    """
    seen = set()
    link: Optional[BaseException] = error
    while link is not None and id(link) not in seen:
        if isinstance(link, (DataUnavailableError, CorruptDataError)):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    text = str(error)
    with _RAISED_LOCK:
        remembered = list(_RAISED)
    for candidate in reversed(remembered):
        if str(candidate) and str(candidate) in text:
            return candidate
    return None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What `load` loaded.

    `mean`/`std` are the per-channel normalization constants in raw image
    units (0..255 for the image sets): the pipelines yield `(x - mean) / std`.
    `augmentation` is what the training pipeline applies, () when none.
    """

    name: str
    input_shape: tuple
    num_classes: int
    train_examples: int
    test_examples: int
    source: str  # "debian" (local IDX files), "tfds", "synthetic", or "folder" (an image folder)
    mean: tuple = ()
    std: tuple = ()
    augmentation: tuple = ()


# --------------------------------------------------------------------------- arguments


def positive_integer(value: object, argument: str, optional: bool = False) -> Optional[int]:
    """`value` as an int >= 1 (None passes when `optional`); a ValueError naming `argument` otherwise.

    >>> positive_integer(3, "batch_size"), positive_integer(None, "limit", optional=True)
    (3, None)
    """
    if value is None and optional:
        return None
    number = _integer(value)
    if number is None or number < 1:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{argument} must be {expected}, got {value!r}")
    return number


def non_negative_integer(value: object, argument: str) -> int:
    """`value` as an int >= 0; a ValueError naming `argument` otherwise (bools are refused)."""
    number = _integer(value)
    if number is None or number < 0:
        raise ValueError(f"{argument} must be a non-negative integer, got {value!r}")
    return number


def _integer(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


# --------------------------------------------------------------------------- randomness


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """The random generator of epoch `epoch` of a run seeded with `seed`.

    The same `(seed, epoch)` gives the same stream in any process; epochs
    and seeds give independent streams.

    >>> a, b = epoch_generator(0, 3).integers(100, size=4), epoch_generator(0, 3).integers(100, size=4)
    >>> bool((a == b).all()), bool((a == epoch_generator(0, 4).integers(100, size=4)).all())
    (True, False)
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_EPOCH_STREAM, epoch)))


# --------------------------------------------------------------------------- the PyDataset


class EpochBatches(keras.utils.PyDataset):
    """The epoch bookkeeping that `ImageBatches` and the ImageNet `StreamBatches` share.

    `epoch` is the epoch whose batches `self[i]` returns. Each complete pass of
    `fit` (every batch served between its `on_epoch_begin` and
    `on_epoch_end`) advances it by one; `set_epoch` pins it. Subclasses call
    `note_served(index)` for each batch they serve and draw their
    randomness from `epoch_generator(self.seed, self.epoch)`.
    """

    def __init__(self, *, seed: int = 0):
        super().__init__()
        self.seed = non_negative_integer(seed, "seed")
        self._epoch = 0
        self._in_pass = False  # between on_epoch_begin and on_epoch_end
        self._served = set()  # batch indices served in this pass

    @property
    def epoch(self) -> int:
        """The epoch whose batches `self[i]` returns."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Makes `self[i]` batch `i` of epoch `epoch`, also for the pass of `fit` that comes next."""
        self._epoch = non_negative_integer(epoch, "epoch")

    def on_epoch_begin(self) -> None:
        self._in_pass, self._served = True, set()

    def on_epoch_end(self) -> None:
        # Keras also ends partial reads this way: on JAX and torch it draws one
        # batch to build the model before the first epoch. Counting the batches
        # served, not the calls, keeps epoch 0 the first one `fit` trains on
        # (unless the split is a single batch, when that read is a full pass).
        if self._in_pass and len(self._served) == len(self):
            self._epoch += 1
        self._in_pass, self._served = False, set()

    def note_served(self, index: int) -> None:
        """Counts batch `index` as served in the current pass of `fit` (subclasses' `__getitem__` calls it)."""
        if self._in_pass:
            self._served.add(index)
