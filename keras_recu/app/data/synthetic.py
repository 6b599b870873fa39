"""Synthetic data, computed here: the learnable toy set and JPEG trees for tests.

* `synthetic_images`: noisy copies of one random binary template per class,
  the "synthetic" set of `load` (`synthetic_splits`), learnable and offline.
* `write_synthetic_jpeg_tree`: a small class-per-folder tree of random JPEGs,
  the layout of the "image_folder" set, for tests, benchmarks and examples
  of the streamed ImageNet-style pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from keras_recu.app.data.arrays import ArraySplits
from keras_recu.app.data.base import PathLike
from keras_recu.app.data.imagenet.decode import import_pil

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SIZE",
    "SYNTHETIC_TEST",
    "SYNTHETIC_TRAIN",
    "synthetic_images",
    "synthetic_splits",
    "synthetic_test_seed",
    "write_synthetic_jpeg_tree",
]

# The synthetic set's shape and default sizes.
SYNTHETIC_SIZE = 16
SYNTHETIC_CLASSES = 10
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500


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


def synthetic_splits(limit_train: Optional[int], limit_test: Optional[int], seed: int) -> ArraySplits:
    """The "synthetic" set of `load`: train and test samples of the same class templates."""
    # A limit sets the size, also above the default; below it, it keeps the
    # first N examples of the default set, as for the real sets.
    n_train = limit_train or SYNTHETIC_TRAIN
    n_test = limit_test or SYNTHETIC_TEST
    size, classes = SYNTHETIC_SIZE, SYNTHETIC_CLASSES
    x_train, y_train = synthetic_images(max(n_train, SYNTHETIC_TRAIN), size, classes, seed)
    # Test samples of their own seed, with the train set's class templates.
    x_test, y_test = synthetic_images(
        max(n_test, SYNTHETIC_TEST), size, classes, synthetic_test_seed(seed), template_seed=seed
    )
    return ArraySplits(
        x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test], classes, "synthetic"
    )


def synthetic_test_seed(seed: int) -> int:
    """A seed for the synthetic test split, distinct from every train seed."""
    return int(np.random.SeedSequence((seed, 0x7E57)).generate_state(1)[0])



def write_synthetic_jpeg_tree(
    root: PathLike,
    classes: int = 3,
    per_class: int = 4,
    size: tuple = (50, 40),
    val_per_class: int = 2,
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Writes `root/train/<class>/*.JPEG` and `root/val/<class>/*.JPEG` of random images.

    `size` is (width, height) of every image, or a list of sizes used in
    turn. Class folders are named like ImageNet's synsets (n0000000, n0000001,
    ...). Each class has its own mean colour, so the set is learnable.
    Returns `root`.
    """
    Image = import_pil()
    root = Path(root)
    rng = np.random.default_rng(seed)
    sizes = [size] if isinstance(size[0], (int, np.integer)) else list(size)
    colours = rng.integers(40, 216, size=(classes, 3))
    n = 0
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:07d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                width, height = sizes[n % len(sizes)]
                n += 1
                noise = rng.normal(0, 30, size=(height, width, 3))
                pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{split}_{c}_{k}.JPEG", quality=quality)
    return root
