"""The in-memory image sets: numpy splits, augmentation and `ImageBatches`.

A source (`synthetic`, `fashion_mnist`, `tfds_arrays`) reads both splits into
numpy once, as `ArraySplits`; `load` normalizes them (`normalization`) and
serves them as `ImageBatches`, which shuffle and augment per epoch
(`augment_batch`, the ReCU reference's CIFAR crop and flip). The package's
docstring says why each set gets what it gets and how fast it runs.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Optional, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from keras_recu.app.data.base import EpochBatches, epoch_generator, non_negative_integer, positive_integer

__all__ = [
    "AUGMENTATION_STEPS",
    "ArraySplits",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ImageBatches",
    "PAD",
    "augment_batch",
    "channel_stats",
    "normalization",
]

AUGMENTATION_STEPS = ("crop", "flip")
PAD = 4  # pixels of zeros on each side before the random crop

# The CIFAR-10 constants on [0, 1]-scaled pixels (the ReCU reference's).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class ArraySplits:
    """Both splits as numpy arrays (images NHWC, labels int32), before normalization; what a source returns."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str



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
        self.batch_size = positive_integer(batch_size, "batch_size")
        self.mean, self.std = mean32, std32
        pixels = int(np.prod(images.shape[1:3]))
        self._mean_tiled, self._std_tiled = np.tile(mean32, pixels), np.tile(std32, pixels)
        self.shuffle = bool(shuffle)
        self.augmentation = tuple(step for step in AUGMENTATION_STEPS if step in augmentation)
        self.pad = non_negative_integer(pad, "pad")
        self._drawn = None  # (epoch, order, shifts, flips) of the last epoch drawn

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        count = len(self)
        index = operator.index(index)
        if not 0 <= index < count:
            raise IndexError(f"batch index {index} out of range: this split has {count} batches")
        self.note_served(index)
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
        epoch = self.epoch
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


# --------------------------------------------------------------------------- normalization


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def normalization(name: str, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel (mean, std) that normalize set `name`, in the raw units of `x_train`.

    CIFAR-10 takes the reference's constants (scaled to 0..255); every other set
    its training split's own statistics, a constant channel's std taken as 1.
    """
    if name == "cifar10":
        return 255.0 * np.array(CIFAR10_MEAN), 255.0 * np.array(CIFAR10_STD)
    mean, std = channel_stats(x_train)
    # A constant channel (e.g. one blank image) would divide by zero.
    return mean, np.where(std > 0, std, 1.0)

