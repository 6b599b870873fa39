"""Data pipelines of the training job: `load(name, batch_size, ...)`.

`load` returns `(train, test, info)`: two `ImageBatches`, which are
`keras.utils.PyDataset`s of `(images float32 (batch, H, W, C), labels int32
(batch,))` numpy batches, and a `DatasetInfo`. They need numpy and Keras only,
so `model.fit(train, validation_data=test)` works on the TensorFlow, JAX and
torch backends, also where TensorFlow is not installed. Runs offline on
"synthetic" (a learnable toy set) and on "fashion_mnist" when Debian's package
dataset-fashion-mnist is installed:

>>> from keras_recu.app import data
>>> train, test, info = data.load("synthetic", 64, limit_train=200, limit_test=100)
>>> info.name, info.input_shape, info.num_classes, info.train_examples, info.source
('synthetic', (16, 16, 1), 10, 200, 'synthetic')
>>> images, labels = train[0]  # batch 0 of the current epoch
>>> images.shape, images.dtype.name, labels.shape, labels.dtype.name
((64, 16, 16, 1), 'float32', (64,), 'int32')
>>> len(train), [len(labels) for _, labels in test]  # the last partial batch is kept
(4, [64, 36])

Sources
    * "fashion_mnist": the four gzip-compressed IDX files of Debian's
      dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or the same
      four files in `data_dir`; with no `data_dir` and no Debian files,
      tensorflow-datasets. An explicit `data_dir` that holds neither the IDX
      files nor a prepared tensorflow-datasets copy (a `fashion_mnist/`
      folder) fails at once: it is a wrong directory, not a download target.
    * "cifar10", "cifar100", "mnist", "svhn_cropped": tensorflow-datasets
      (`data_dir` is then a tensorflow_datasets directory). Only this path
      imports TensorFlow; it needs the `tensorflow` and `train` extras.
    * "synthetic": `synthetic_images`, computed here.
    * "image_folder", "imagenet2012", "imagenette" (`IMAGENET_DATASETS`):
      ImageNet-scale sets of encoded images, never held in memory. They are
      streamed, decoded and transformed with the ReCU authors' ImageNet
      transforms by `keras_recu.app.imagenet` (which documents them), from a
      class-per-folder tree of JPEGs (`data_dir` with train/ and val/) or
      from tensorflow-datasets (imagenet2012 from the user's manual download
      of the ILSVRC2012 tars). What follows on normalization, augmentation
      and speed is about the other sets; randomness works the same way.

Each of the other sources is read into numpy once; `limit_train`/`limit_test`
keep the first N examples of a split.

Normalization
    Per-channel standardization, `(x - mean) / std` in float32, per batch:
    CIFAR-10 uses the usual constants mean (0.4914, 0.4822, 0.4465),
    std (0.2470, 0.2435, 0.2616) on [0, 1]-scaled pixels, as the ReCU
    reference does; every other set uses the per-channel mean and (population)
    std of its training split, after `limit_train`, so that split comes out
    with mean ~0 and std ~1. `DatasetInfo.mean`/`std` hold the constants in the
    units the raw images come in (0..255 for the image sets), for whoever must
    repeat the normalization at inference time.

Augmentation (`augment=True`, training split only)
    The ReCU reference's CIFAR recipe, torchvision's
    `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`: pad 4 pixels of
    zeros (black, in raw pixel units, before normalization, like torchvision)
    on each side, crop a random H x W window back (a shift of at most 4 pixels)
    and flip left-right with probability 1/2. `AUGMENTATION` says what each
    set gets:

    * cifar10, cifar100, fashion_mnist: crop + flip (clothes and CIFAR's
      objects are left-right symmetric classes; 4 px on 28x28 is still mild);
    * mnist, svhn_cropped: crop only, since a mirrored digit is no digit;
    * synthetic: nothing, since its class *is* an exact random pixel pattern:
      a shifted or mirrored template is another pattern, not the same class.

    `augment_batch` does it for a whole batch in a few vectorized numpy
    operations.

Randomness
    Seeded per epoch, with no hidden state: batch `i` of epoch `e` is a pure
    function of `(seed, e, i)`. Epoch `e` draws from its own generator,
    `epoch_generator(seed, e)`, a permutation of the whole training split and,
    for each position in that order, a crop offset and a flip. So a run
    stopped after epoch k and resumed with `train.set_epoch(k)` sees exactly
    the batches of the uninterrupted run, in any process, on any backend, and
    no global seed (`keras.utils.set_random_seed`) enters. `fit` advances the
    epoch itself (`ImageBatches.on_epoch_end`); see `ImageBatches` for how a
    training job pins it, and why it calls `fit(train, shuffle=False)`.

Speed
    One batch of 256 Fashion-MNIST images with crop, flip and normalization
    takes ~0.25 ms on one core of a recent server CPU (~10^6 images/s; a
    CIFAR-sized RGB batch ~0.7 ms), so the single-threaded `PyDataset` does
    not hold back a GPU step of a few ms, and JAX's asynchronous dispatch
    overlaps it with the device's work. Hence no worker threads or processes.

Offline use
    With no network, pass `download=False`: a missing tensorflow-datasets set
    then fails within a fraction of a second, whereas `download=True` lets
    tensorflow-datasets retry its downloads for minutes before it gives up.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import operator
import os
import zlib
from pathlib import Path
from typing import Optional, Sequence, Union

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from keras_recu.app.messages import first_line

__all__ = [
    "AUGMENTATION",
    "CorruptDataError",
    "DATASETS",
    "DataUnavailableError",
    "DatasetInfo",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "EpochBatches",
    "IMAGENET_DATASETS",
    "ImageBatches",
    "augment_batch",
    "epoch_generator",
    "load",
    "read_fashion_mnist",
    "read_idx",
    "synthetic_images",
]

PathLike = Union[str, os.PathLike]

DATASETS = (
    "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped", "synthetic",
    "imagenet2012", "imagenette", "image_folder",
)
TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped")
# Streamed from JPEGs with the ReCU authors' ImageNet transforms (keras_recu.app.imagenet).
IMAGENET_DATASETS = ("imagenet2012", "imagenette", "image_folder")

# What augment=True applies to each set (see the module docstring for why).
AUGMENTATION = {
    "cifar10": ("crop", "flip"),
    "cifar100": ("crop", "flip"),
    "fashion_mnist": ("crop", "flip"),
    "mnist": ("crop",),
    "svhn_cropped": ("crop",),
    "synthetic": (),
    # The authors' ImageNet train transform, with the default ImageNetTransform.
    "imagenet2012": ("random_resized_crop", "lighting", "flip"),
    "imagenette": ("random_resized_crop", "lighting", "flip"),
    "image_folder": ("random_resized_crop", "lighting", "flip"),
}
AUGMENTATION_STEPS = ("crop", "flip")
PAD = 4  # pixels of zeros on each side before the random crop

# The CIFAR-10 constants on [0, 1]-scaled pixels (the ReCU reference's).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# Debian's dataset-fashion-mnist installs these four files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_HELP = (
    "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
    "or pass --data-dir DIR with the four IDX files, "
    "or run where tensorflow-datasets can download it"
)
TFDS_EXTRAS_HELP = (
    'pip install "keras-recu[tensorflow,train]" (TensorFlow and tensorflow-datasets)'
)

# The synthetic set's shape and default sizes.
SYNTHETIC_SIZE = 16
SYNTHETIC_CLASSES = 10
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500

# IDX magic numbers: 0x0000 0x08 (unsigned byte) 0x0N (N dimensions).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

# Tags the spawn key of the per-epoch generators, so that their streams are
# apart from any other use of the run's seed (`synthetic_images(seed)`, say).
# A plain `default_rng([seed, epoch])` would not be: numpy's SeedSequence
# ignores trailing zeros, so `[seed, 0]` is the same stream as `seed`.
_EPOCH_STREAM = 0xDA7A


class DataUnavailableError(RuntimeError):
    """A data set is neither on this machine nor downloadable; the message says what provides it."""


class CorruptDataError(ValueError):
    """A local data file is truncated or is not what its name says."""


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


@dataclasses.dataclass(frozen=True)
class _Splits:
    """Both splits as numpy arrays (images NHWC, labels int32), before normalization."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str


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


# --------------------------------------------------------------------------- augmentation


def augment_batch(
    images: np.ndarray,
    shifts: Optional[np.ndarray] = None,
    flips: Optional[np.ndarray] = None,
    *,
    pad: int = PAD,
) -> np.ndarray:
    """Pads, crops and flips a batch of images (N, H, W, C) as `shifts` and `flips` say.

    `shifts` (N, 2) of integers in [0, 2 * pad]: image n is padded with `pad`
    zeros on each side and the H x W window at row `shifts[n, 0]`, column
    `shifts[n, 1]` of the padded image is kept, so `(pad, pad)` leaves it in
    place. `flips` (N,) of bools: which images are then mirrored left-right.
    None skips that step. Returns a new C-contiguous array of `images`' dtype.

    >>> x = np.arange(4, dtype=np.uint8).reshape(1, 2, 2, 1) + 1
    >>> augment_batch(x, np.array([[1, 2]]), pad=1)[0, ..., 0]  # one pixel up and left
    array([[2, 0],
           [4, 0]], dtype=uint8)
    >>> augment_batch(x, flips=np.array([True]))[0, ..., 0]
    array([[2, 1],
           [4, 3]], dtype=uint8)
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"augment_batch takes images of shape (N, H, W, C), got shape {images.shape}")
    count, height, width, channels = images.shape
    if shifts is None:
        pad, shifts = 0, np.zeros((count, 2), np.intp)
    shifts = np.asarray(shifts)
    if (
        shifts.shape != (count, 2)
        or not np.issubdtype(shifts.dtype, np.integer)
        or shifts.size and not (shifts.min() >= 0 and shifts.max() <= 2 * pad)
    ):
        raise ValueError(
            f"shifts must be integers in [0, {2 * pad}] (2 * pad) of shape ({count}, 2), got "
            f"{shifts.dtype} of shape {shifts.shape}"
            + (f" in [{shifts.min()}, {shifts.max()}]" if shifts.size else "")
        )
    flips = np.zeros(count, bool) if flips is None else np.asarray(flips)
    if flips.shape != (count,) or flips.dtype != bool:
        raise ValueError(f"flips must be bools of shape ({count},), got {flips.dtype} of shape {flips.shape}")

    padded = np.zeros((count, height + 2 * pad, width + 2 * pad, channels), images.dtype)
    padded[:, pad : pad + height, pad : pad + width] = images
    # Each pixel, all its channels, as one opaque item: a mirrored copy then
    # moves whole pixels, many times faster than channel by channel.
    pixel = np.dtype((np.void, channels * images.itemsize))
    pixels = padded.view(pixel)[..., 0]
    out = np.empty((count, height, width), pixel)
    for mirrored, source in ((False, pixels), (True, pixels[:, :, ::-1])):
        rows = np.flatnonzero(flips == mirrored)
        if rows.size:
            # A view of every H x W window, (N, rows, columns, H, W): one fancy
            # index copies each image's window. The window of the mirrored image at column
            # 2 * pad - x is the mirror of the window at column x.
            columns = 2 * pad - shifts[rows, 1] if mirrored else shifts[rows, 1]
            windows = sliding_window_view(source, (height, width), axis=(1, 2))
            out[rows] = windows[rows, shifts[rows, 0], columns]
    return out.view(images.dtype).reshape(images.shape)


# --------------------------------------------------------------------------- the PyDataset


class EpochBatches(keras.utils.PyDataset):
    """The epoch bookkeeping that `ImageBatches` and the ImageNet `StreamBatches` share.

    `epoch` is the epoch whose batches `self[i]` returns. Each complete pass of
    `fit` (every batch served between its `on_epoch_begin` and
    `on_epoch_end`) advances it by one; `set_epoch` pins it. Subclasses call
    `_note_served(index)` for each batch they serve and draw their
    randomness from `epoch_generator(self.seed, self.epoch)`.
    """

    def __init__(self, *, seed: int = 0):
        super().__init__()
        self.seed = _non_negative(seed, "seed")
        self._epoch = 0
        self._in_pass = False  # between on_epoch_begin and on_epoch_end
        self._served = set()  # batch indices served in this pass

    @property
    def epoch(self) -> int:
        """The epoch whose batches `self[i]` returns."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Makes `self[i]` batch `i` of epoch `epoch`, also for the pass of `fit` that comes next."""
        self._epoch = _non_negative(epoch, "epoch")

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

    def _note_served(self, index: int) -> None:
        if self._in_pass:
            self._served.add(index)


class ImageBatches(EpochBatches):
    """Batches `(images float32 (batch, H, W, C), labels int32 (batch,))` of an image split.

    Batch `i` of epoch `e` is a pure function of `(seed, e, i)`: with
    `shuffle`, epoch `e` visits the split in the order of a permutation drawn
    from `epoch_generator(seed, e)`, and `augmentation` (a subset of
    ("crop", "flip"), see `augment_batch`) uses crop offsets and flips drawn
    from the same generator; then each batch is normalized, `(x - mean) /
    std` per channel, to float32. Without shuffle the split keeps its order;
    the last partial batch is kept, so `len()` is `ceil(n / batch_size)`.

    `images` are raw (uint8 or float) NHWC, `mean`/`std` per channel in the
    same units. Batches are made in the thread that asks for them (Keras'
    default `workers=1`): at ~0.25 ms per batch of 256 there is nothing for
    worker threads to win, and none can then race the epoch bookkeeping.

    The epoch: each complete pass of `fit` (every batch served between its
    `on_epoch_begin` and `on_epoch_end`) advances `epoch` by one, so plain
    `model.fit(batches, epochs=N)` sees epochs 0..N-1; what Keras reads
    besides (the batch JAX and torch draw to build a model before the first
    epoch, the two TensorFlow samples for its signature) does not count. A
    training job that starts at `initial_epoch=k` calls `set_epoch(epoch)`
    from a callback's `on_epoch_begin` (Keras calls those before the data's);
    then each epoch's batches are those of epoch `epoch` whatever came
    before, which makes a resumed run exact.

    Pass `shuffle=False` to `fit`: the order is shuffled here already, and
    `fit`'s own shuffle would permute the batches of each epoch with Python's
    global `random`, which a resumed process does not replay.

    Reading the batches directly: `batches[i]` is batch `i` of the current
    epoch, and iterating yields the batches `0..len-1` in order; neither
    advances the epoch.

    >>> x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    >>> batches = ImageBatches(x, np.arange(10), 4, mean=[0.0], std=[1.0], shuffle=True, seed=7)
    >>> len(batches), batches.epoch
    (3, 0)
    >>> [labels.tolist() for _, labels in batches] == [labels.tolist() for _, labels in batches]
    True
    >>> batches.set_epoch(1)
    >>> again = ImageBatches(x, np.arange(10), 4, mean=[0.0], std=[1.0], shuffle=True, seed=7)
    >>> again.set_epoch(1)
    >>> bool((batches[2][1] == again[2][1]).all()), batches[2][1].shape
    (True, (2,))
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        augmentation: Sequence[str] = (),
        seed: int = 0,
        pad: int = PAD,
    ):
        super().__init__(seed=seed)
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"ImageBatches takes images (N, H, W, C) and labels (N,), got shapes "
                f"{images.shape} and {labels.shape}"
            )
        if not len(images):
            raise ValueError("ImageBatches needs at least one image, got an empty split")
        channels = images.shape[-1]
        mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if mean32.shape != (channels,) or std32.shape != (channels,):
            raise ValueError(
                f"mean and std need one value per channel ({channels}), got {list(mean)} and {list(std)}"
            )
        if not (np.isfinite(mean32).all() and np.isfinite(std32).all() and (std32 > 0).all()):
            raise ValueError(f"mean must be finite and std finite and positive, got {list(mean)}, {list(std)}")
        unknown = set(augmentation) - set(AUGMENTATION_STEPS)
        if unknown:
            raise ValueError(
                f"Unknown augmentation step(s) {sorted(unknown)}; allowed: {AUGMENTATION_STEPS}"
            )
        self.images = images
        self.labels = labels.astype(np.int32, copy=False)
        self.batch_size = _positive(batch_size, "batch_size")
        self.mean, self.std = mean32, std32
        pixels = int(np.prod(images.shape[1:3]))
        self._mean_tiled, self._std_tiled = np.tile(mean32, pixels), np.tile(std32, pixels)
        self.shuffle = bool(shuffle)
        self.augmentation = tuple(step for step in AUGMENTATION_STEPS if step in augmentation)
        self.pad = _non_negative(pad, "pad")
        self._drawn = None  # (epoch, order, shifts, flips) of the last epoch drawn

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        count = len(self)
        index = operator.index(index)
        if not 0 <= index < count:
            raise IndexError(f"batch index {index} out of range: this split has {count} batches")
        self._note_served(index)
        positions = slice(index * self.batch_size, (index + 1) * self.batch_size)
        shifts = flips = None
        if self.shuffle or self.augmentation:
            order, all_shifts, all_flips = self._draws()
            rows = order[positions]
            if "crop" in self.augmentation:
                shifts = all_shifts[positions]
            if "flip" in self.augmentation:
                flips = all_flips[positions]
            images, labels = self.images[rows], self.labels[rows]
        else:
            images, labels = self.images[positions], self.labels[positions]
        if shifts is not None or flips is not None:
            images = augment_batch(images, shifts, flips, pad=self.pad)
        return self._normalize(images), labels

    def _draws(self):
        """The current epoch's order, crop offsets and flips, drawn once per epoch."""
        epoch = self._epoch
        drawn = self._drawn
        if drawn is None or drawn[0] != epoch:
            count = len(self.images)
            rng = epoch_generator(self.seed, epoch)
            order = rng.permutation(count) if self.shuffle else np.arange(count)
            # Drawn whatever `augmentation` is, so the offsets do not depend on it.
            shifts = rng.integers(0, 2 * self.pad + 1, size=(count, 2))
            flips = rng.random(count) < 0.5
            drawn = self._drawn = (epoch, order, shifts, flips)
        return drawn[1:]

    def _normalize(self, images: np.ndarray) -> np.ndarray:
        # On rows of whole images, with the constants tiled to match: numpy's
        # inner loops then run over H*W*C values rather than C, ~10x faster
        # for RGB, and each value is still (x - mean[c]) / std[c] in float32.
        flat = images.reshape(len(images), -1)
        out = np.empty(flat.shape, np.float32)
        np.subtract(flat, self._mean_tiled, out=out, dtype=np.float32)
        np.divide(out, self._std_tiled, out=out)
        return out.reshape(images.shape)

    def __repr__(self) -> str:
        return (
            f"ImageBatches({len(self.images)} images {self.images.shape[1:]}, batch_size="
            f"{self.batch_size}, shuffle={self.shuffle}, augmentation={self.augmentation}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )


# --------------------------------------------------------------------------- synthetic


def synthetic_images(
    samples: int,
    size: int = 16,
    classes: int = 10,
    seed: int = 0,
    *,
    template_seed: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of one random binary template per class: learnable, offline.

    Returns `(x, y)`: x float32 of shape (samples, size, size, 1), y int32 in
    [0, classes). `template_seed`, when given, draws the class templates from
    that seed instead of `seed` (so two sets can share their classes but not
    their samples); `template_seed=seed` is the same as leaving it out.

    >>> x, y = synthetic_images(4, size=8, classes=3, seed=1)
    >>> x.shape, x.dtype.name, y.dtype.name, bool(y.max() < 3)
    ((4, 8, 8, 1), 'float32', 'int32', True)
    """
    shape = (classes, size, size, 1)
    rng = np.random.default_rng(seed)
    templates = np.sign(rng.normal(size=shape))
    if template_seed is not None:
        # `rng` has drawn its templates all the same, so the labels and the
        # noise below do not depend on template_seed.
        templates = np.sign(np.random.default_rng(template_seed).normal(size=shape))
    labels = rng.integers(0, classes, size=samples)
    noise = rng.normal(0.0, 1.5, size=(samples, size, size, 1))
    return (templates[labels] + noise).astype("float32"), labels.astype("int32")


def _synthetic_splits(limit_train: Optional[int], limit_test: Optional[int], seed: int) -> _Splits:
    # A limit sets the size, also above the default; below it, it keeps the
    # first N examples of the default set, as for the real sets.
    n_train = limit_train or SYNTHETIC_TRAIN
    n_test = limit_test or SYNTHETIC_TEST
    size, classes = SYNTHETIC_SIZE, SYNTHETIC_CLASSES
    x_train, y_train = synthetic_images(max(n_train, SYNTHETIC_TRAIN), size, classes, seed)
    # Test samples of their own seed, with the train set's class templates.
    x_test, y_test = synthetic_images(
        max(n_test, SYNTHETIC_TEST), size, classes, _synthetic_test_seed(seed), template_seed=seed
    )
    return _Splits(
        x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test], classes, "synthetic"
    )


def _synthetic_test_seed(seed: int) -> int:
    """A seed for the synthetic test split, distinct from every train seed."""
    return int(np.random.SeedSequence((seed, 0x7E57)).generate_state(1)[0])


# --------------------------------------------------------------------------- IDX files


def read_idx(path: PathLike, magic: int) -> np.ndarray:
    """Reads one gzip-compressed IDX file of unsigned bytes into a read-only numpy array.

    `magic` is 2051 for an image file (3 dimensions) or 2049 for a label file
    (1 dimension). Raises `CorruptDataError` for a truncated or damaged file,
    a wrong magic number or a size that disagrees with the header.
    """
    path = Path(path)
    st = path.stat()
    return _read_idx_cached(str(path), st.st_size, st.st_mtime_ns, magic)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, size: int, mtime_ns: int, magic: int) -> np.ndarray:
    # Keyed on size and mtime too, so a replaced file is read again.
    del size, mtime_ns
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptDataError(
            f"{path}: corrupt or truncated gzip file ({error}); "
            "reinstall dataset-fashion-mnist or copy the file again"
        ) from error
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(
            f"{path}: truncated IDX file: {len(raw)} bytes, shorter than its {header}-byte header"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise CorruptDataError(
            f"{path}: not an IDX {'image' if magic == IDX_IMAGES_MAGIC else 'label'} file: "
            f"magic number {found}, expected {magic}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise CorruptDataError(
            f"{path}: truncated or padded IDX file: its header says {'x'.join(map(str, dims))} "
            f"= {expected} bytes of data, the file holds {len(raw) - header}"
        )
    array = np.frombuffer(raw, np.uint8, offset=header).reshape(dims)
    array.flags.writeable = False  # cached and shared between calls
    return array


def _fashion_files(directory: Path) -> dict:
    return {key: directory / filename for key, filename in FASHION_MNIST_FILES.items()}


def read_fashion_mnist(directory: PathLike = FASHION_MNIST_DIR):
    """Reads the four Fashion-MNIST IDX files of `directory`.

    Returns `(x_train, y_train, x_test, y_test)`: uint8 images (N, 28, 28, 1)
    and int32 labels (N,). Raises `FileNotFoundError` when a file is missing
    and `CorruptDataError` when one is damaged or the files disagree.
    """
    files = _fashion_files(Path(directory))
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    arrays = []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], IDX_IMAGES_MAGIC)
        labels = read_idx(files[f"{split}_labels"], IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise CorruptDataError(
                f"{directory}: the {split} split has {len(images)} images but {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise CorruptDataError(f"{files[f'{split}_labels']}: label {labels.max()} outside 0..9")
        arrays += [images[..., np.newaxis], labels.astype(np.int32)]
    return tuple(arrays)


def _fashion_mnist_splits(
    data_dir: Optional[PathLike], download: bool, limit_train: Optional[int], limit_test: Optional[int]
) -> _Splits:
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    missing = [p.name for p in _fashion_files(directory).values() if not p.is_file()]
    if not missing:
        # Corrupt files raise here rather than fall back: the user should know.
        return _Splits(*read_fashion_mnist(directory), num_classes=10, source="debian")
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
        return _tfds_splits("fashion_mnist", data_dir, download, limit_train, limit_test)
    except DataUnavailableError as error:
        raise DataUnavailableError(
            f"Fashion-MNIST is not available: {directory} lacks IDX files ({', '.join(missing)}) "
            f"and tensorflow-datasets could not provide it either "
            f"({first_line(error.__cause__ or error) or type(error.__cause__ or error).__name__}). "
            f"To get it, {FASHION_MNIST_HELP}."
        ) from (error.__cause__ or error)


# --------------------------------------------------------------------------- tfds


def _import_tfds():
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


def _tfds_splits(
    name: str,
    data_dir: Optional[PathLike],
    download: bool,
    limit_train: Optional[int],
    limit_test: Optional[int],
) -> _Splits:
    tfds = _import_tfds()
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
    return _Splits(
        np.asarray(train[0]),
        np.asarray(train[1], np.int32),
        np.asarray(test[0]),
        np.asarray(test[1], np.int32),
        num_classes,
        "tfds",
    )


# --------------------------------------------------------------------------- loading


def _channel_stats(x: np.ndarray):
    """Per-channel mean and population std of NHWC images, in float64."""
    if x.dtype == np.uint8:
        # A 256-bin histogram per channel: exact, and no float copy of the split.
        mean, std = [], []
        values = np.arange(256, dtype=np.float64)
        for c in range(x.shape[-1]):
            counts = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
            m = counts @ values / counts.sum()
            mean.append(m)
            std.append(np.sqrt(counts @ (values - m) ** 2 / counts.sum()))
        return np.array(mean), np.array(std)
    x = x.astype(np.float64).reshape(-1, x.shape[-1])
    return x.mean(axis=0), x.std(axis=0)


def _normalization(name: str, x_train: np.ndarray):
    if name == "cifar10":
        return 255.0 * np.array(CIFAR10_MEAN), 255.0 * np.array(CIFAR10_STD)
    mean, std = _channel_stats(x_train)
    # A constant channel (e.g. one blank image) would divide by zero.
    return mean, np.where(std > 0, std, 1.0)


def _positive(value, argument: str, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    number = _integer(value)
    if number is None or number < 1:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{argument} must be {expected}, got {value!r}")
    return number


def _non_negative(value, argument: str) -> int:
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


def load(
    name: str,
    batch_size: int,
    *,
    data_dir: Optional[PathLike] = None,
    augment: bool = True,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
    seed: int = 0,
    download: bool = True,
    transform=None,
    decoder: str = "auto",
    workers: Optional[int] = None,
    manual_dir: Optional[PathLike] = None,
) -> tuple[EpochBatches, EpochBatches, DatasetInfo]:
    """The training and test batches of data set `name` (one of `DATASETS`) and its `DatasetInfo`.

    Train: shuffled anew each epoch, augmented when `augment` (see
    `AUGMENTATION`), normalized, batched (the last partial batch kept); batch
    `i` of epoch `e` depends only on `(seed, e, i)` (see `ImageBatches`).
    Test: normalized, batched, in the split's order; `test[i]` is batch `i`
    as numpy `(images, labels)`. `limit_train`/`limit_test` keep the first N
    examples of each split. `seed` is a non-negative integer.

    `data_dir`: for "fashion_mnist" a directory with the four IDX files (or a
    tensorflow_datasets directory holding fashion_mnist/; anything else fails
    at once), for the tfds sets (imagenet2012 and imagenette included) a
    tensorflow_datasets directory, for "image_folder" the folder holding
    train/<class>/ and val/<class>/ (required).

    The sets of `IMAGENET_DATASETS` stream from encoded images with the ReCU
    authors' transforms; they take four more arguments (see
    `keras_recu.app.imagenet`), whose defaults every set accepts:
    `transform`, an `imagenet.ImageNetTransform` (None: the authors');
    `decoder`, "auto" (tf where TensorFlow imports, else pil), "tf" or "pil";
    `workers`, the decoding threads (None: all cores); `manual_dir`, for
    imagenet2012, the folder with the ILSVRC2012 tars (None: the tars in
    `data_dir/downloads/manual` or in `data_dir`). Raises
    `ValueError` for an unknown name or bad argument, `DataUnavailableError`
    when the data cannot be found or downloaded (or TensorFlow is missing for
    a tfds set), `CorruptDataError` for a damaged local file.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; known: {', '.join(DATASETS)}")
    batch_size = _positive(batch_size, "batch_size")
    limit_train = _positive(limit_train, "limit_train", optional=True)
    limit_test = _positive(limit_test, "limit_test", optional=True)
    seed = _non_negative(seed, "seed")
    workers = _positive(workers, "workers", optional=True)
    if key in IMAGENET_DATASETS:
        from keras_recu.app import imagenet

        if transform is not None and not isinstance(transform, imagenet.ImageNetTransform):
            raise ValueError(f"transform must be an imagenet.ImageNetTransform or None, got {type(transform).__name__}")
        if decoder not in imagenet.DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(imagenet.DECODERS)}, got {decoder!r}")
        if manual_dir is not None and key != "imagenet2012":
            raise ValueError(f"manual_dir (--manual-dir) is for imagenet2012 only, not {key}")
        return imagenet.load_splits(
            key, batch_size, data_dir=data_dir, augment=augment, limit_train=limit_train,
            limit_test=limit_test, seed=seed, download=download, transform=transform,
            decoder=decoder, workers=workers, manual_dir=manual_dir,
        )
    ignored = {"transform": transform is not None, "decoder": decoder != "auto",
               "workers": workers is not None, "manual_dir": manual_dir is not None}
    passed = [argument for argument, given in ignored.items() if given]
    if passed:
        raise ValueError(
            f"{', '.join(passed)} apply to the ImageNet-style sets ({', '.join(IMAGENET_DATASETS)}) only, "
            f"not to {key}: leave them at their defaults"
        )

    if key == "synthetic":
        splits = _synthetic_splits(limit_train, limit_test, seed)
    else:
        if key == "fashion_mnist":
            splits = _fashion_mnist_splits(data_dir, download, limit_train, limit_test)
        else:
            splits = _tfds_splits(key, data_dir, download, limit_train, limit_test)
        # Slicing numpy arrays: views, no copy.
        splits = dataclasses.replace(
            splits,
            x_train=splits.x_train[:limit_train],
            y_train=splits.y_train[:limit_train],
            x_test=splits.x_test[:limit_test],
            y_test=splits.y_test[:limit_test],
        )

    mean, std = _normalization(key, splits.x_train)
    steps = AUGMENTATION[key] if augment else ()
    train = ImageBatches(
        splits.x_train, splits.y_train, batch_size,
        mean=mean, std=std, shuffle=True, augmentation=steps, seed=seed,
    )
    test = ImageBatches(splits.x_test, splits.y_test, batch_size, mean=mean, std=std)
    info = DatasetInfo(
        name=key,
        input_shape=tuple(int(d) for d in splits.x_train.shape[1:]),
        num_classes=splits.num_classes,
        train_examples=len(splits.x_train),
        test_examples=len(splits.x_test),
        source=splits.source,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augmentation=steps,
    )
    return train, test, info
