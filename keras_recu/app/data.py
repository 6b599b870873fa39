"""Data pipelines of the training job: `load(name, batch_size, ...)`.

`load` returns `(train, test, info)`: two `tf.data.Dataset`s of
`(images float32 (batch, H, W, C), labels int32 (batch,))` and a
`DatasetInfo`. Runs offline on "synthetic" (a learnable toy set) and on
"fashion_mnist" when Debian's package dataset-fashion-mnist is installed:

>>> from keras_recu.app import data
>>> train, test, info = data.load("synthetic", 64, limit_train=200, limit_test=100)
>>> info.name, info.input_shape, info.num_classes, info.train_examples, info.source
('synthetic', (16, 16, 1), 10, 200, 'synthetic')
>>> images, labels = next(iter(train))
>>> images.shape, images.dtype.name, labels.shape, labels.dtype.name
(TensorShape([64, 16, 16, 1]), 'float32', TensorShape([64]), 'int32')
>>> [int(labels.shape[0]) for _, labels in test]  # the last partial batch is kept
[64, 36]

Sources
    * "fashion_mnist": the four gzip-compressed IDX files of Debian's
      dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), or the same
      four files in `data_dir`; else tensorflow-datasets.
    * "cifar10", "cifar100", "mnist", "svhn_cropped": tensorflow-datasets
      (`data_dir` is then a tensorflow_datasets directory).
    * "synthetic": `synthetic_images`, computed here.

Each source is read into numpy once; `limit_train`/`limit_test` keep the
first N examples of a split.

Normalization
    Per-channel standardization, `(x - mean) / std`, computed on the host
    once: CIFAR-10 uses the usual constants mean (0.4914, 0.4822, 0.4465),
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

Randomness
    `seed` seeds the shuffle and the augmentation. Both are stateless per
    example, drawn from `tf.data.Dataset.random(seed)` streams that change at
    every new iteration (each epoch), so each epoch sees a new order and new
    crops, and the same seed gives the same sequence of epochs. As with any
    TensorFlow op seed, TensorFlow's global seed (`keras.utils.set_random_seed`)
    enters too; leave it unset or set it to a fixed value for reproducible runs.

Offline use
    With no network, pass `download=False`: a missing tensorflow-datasets set
    then fails within a fraction of a second, whereas `download=True` lets
    tensorflow-datasets retry its downloads for minutes before it gives up.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import operator
import os
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np
import tensorflow as tf

__all__ = [
    "AUGMENTATION",
    "CorruptDataError",
    "DATASETS",
    "DataUnavailableError",
    "DatasetInfo",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "augment_image",
    "load",
    "read_fashion_mnist",
    "read_idx",
    "synthetic_images",
]

PathLike = Union[str, os.PathLike]

DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped", "synthetic")

# What augment=True applies to each set (see the module docstring for why).
AUGMENTATION = {
    "cifar10": ("crop", "flip"),
    "cifar100": ("crop", "flip"),
    "fashion_mnist": ("crop", "flip"),
    "mnist": ("crop",),
    "svhn_cropped": ("crop",),
    "synthetic": (),
}
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

# The synthetic set's shape and default sizes.
SYNTHETIC_SIZE = 16
SYNTHETIC_CLASSES = 10
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500

# IDX magic numbers: 0x0000 0x08 (unsigned byte) 0x0N (N dimensions).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


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
    source: str  # "debian" (local IDX files), "tfds", or "synthetic"
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
    try:
        return _tfds_splits("fashion_mnist", data_dir, download, limit_train, limit_test)
    except DataUnavailableError as error:
        raise DataUnavailableError(
            f"Fashion-MNIST is not available: {directory} lacks IDX files ({', '.join(missing)}) "
            f"and tensorflow-datasets could not provide it either "
            f"({_first_line(error.__cause__)}). "
            f"To get it, {FASHION_MNIST_HELP}."
        ) from error.__cause__


# --------------------------------------------------------------------------- tfds


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _tfds_splits(
    name: str,
    data_dir: Optional[PathLike],
    download: bool,
    limit_train: Optional[int],
    limit_test: Optional[int],
) -> _Splits:
    # "train[:N]": tensorflow-datasets reads only the first N examples.
    split = [
        f"train[:{limit_train}]" if limit_train else "train",
        f"test[:{limit_test}]" if limit_test else "test",
    ]
    try:
        import tensorflow_datasets as tfds

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
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error
    return _Splits(
        train[0], train[1].astype(np.int32), test[0], test[1].astype(np.int32), num_classes, "tfds"
    )


# --------------------------------------------------------------------------- pipelines


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


def augment_image(
    image: tf.Tensor, seed: tf.Tensor, *, crop: bool = True, flip: bool = True, pad: int = PAD
) -> tf.Tensor:
    """Pads `pad` zeros on each side, crops back a random window, flips left-right at random.

    One image (H, W, C) with a statically known shape; `seed` is a stateless
    seed of shape (2,), so the same seed gives the same result.
    """
    height, width, channels = image.shape
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if crop:
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, [height, width, channels], seed=seeds[0])
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    return image


def _pipelines(name: str, splits: _Splits, batch_size: int, augment: bool, seed: int):
    mean, std = _normalization(name, splits.x_train)
    mean32, std32 = tf.constant(mean, tf.float32), tf.constant(std, tf.float32)

    def normalize(image, label):
        return (tf.cast(image, tf.float32) - mean32) / std32, label

    test = tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test))
    # Cached after normalization: the test split is the same every epoch.
    test = test.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
    test = test.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    n = len(splits.x_train)
    train = tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train)).cache()
    # A full-size buffer: a true uniform shuffle, new every epoch, seeded.
    train = train.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    steps = AUGMENTATION[name] if augment else ()
    if steps:
        # One int64 per example from a seeded stream that is redrawn at each
        # iteration: stateless augmentation that differs per epoch yet is
        # reproducible, also with parallel map calls.
        randoms = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)
        train = tf.data.Dataset.zip((train, randoms))

        def augment_example(example, random):
            image, label = example
            stateless_seed = tf.stack([random, tf.constant(seed, tf.int64)])
            image = augment_image(image, stateless_seed, crop="crop" in steps, flip="flip" in steps)
            return normalize(image, label)

        train = train.map(augment_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        train = train.map(normalize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    train = train.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)

    info = DatasetInfo(
        name=name,
        input_shape=tuple(int(d) for d in splits.x_train.shape[1:]),
        num_classes=splits.num_classes,
        train_examples=n,
        test_examples=len(splits.x_test),
        source=splits.source,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augmentation=steps,
    )
    return train, test, info


def _positive(value, argument: str, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        expected = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(f"{argument} must be {expected}, got {value!r}")
    return number


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
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """The training and test pipelines of data set `name` (one of `DATASETS`) and its `DatasetInfo`.

    Train: cached, shuffled (anew each epoch, seeded), augmented when
    `augment` (see `AUGMENTATION`), normalized, batched (the last partial
    batch kept), prefetched. Test: normalized, cached, batched, prefetched.
    `limit_train`/`limit_test` keep the first N examples of each split.
    `data_dir`: for "fashion_mnist" a directory with the four IDX files (else
    it is passed on to tensorflow-datasets), for the tfds sets a
    tensorflow_datasets directory. Raises `ValueError` for an unknown name or
    bad argument, `DataUnavailableError` when the data cannot be found or
    downloaded, `CorruptDataError` for a damaged local file.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; known: {', '.join(DATASETS)}")
    batch_size = _positive(batch_size, "batch_size")
    limit_train = _positive(limit_train, "limit_train", optional=True)
    limit_test = _positive(limit_test, "limit_test", optional=True)

    if key == "synthetic":
        splits = _synthetic_splits(limit_train, limit_test, seed)
    else:
        if key == "fashion_mnist":
            splits = _fashion_mnist_splits(data_dir, download, limit_train, limit_test)
        else:
            splits = _tfds_splits(key, data_dir, download, limit_train, limit_test)
        # Slicing numpy arrays: views, no copy before from_tensor_slices.
        splits = dataclasses.replace(
            splits,
            x_train=splits.x_train[:limit_train],
            y_train=splits.y_train[:limit_train],
            x_test=splits.x_test[:limit_test],
            y_test=splits.y_test[:limit_test],
        )
    return _pipelines(key, splits, batch_size, augment, seed)
