"""ImageNet-scale data: JPEG sources, the ReCU authors' transforms, streaming batches.

`data.load` calls this module for the sets of `data.IMAGENET_DATASETS`:

* "image_folder": a class-per-folder tree of images, torchvision's
  `ImageFolder` layout as the authors use it, `DIR/train/<class>/...` and
  `DIR/val/<class>/...` (`FolderSource`). Class ids are the sorted names of
  the train folders, torchvision's order, so on ImageNet's synset folders
  they are the ids of the authors' checkpoints.
* "imagenet2012", "imagenette": tensorflow-datasets (`TFDSSource`); their
  label ids are also the sorted synsets.

The transforms are the authors' (`get_imagenet_iter_torch` in the ReCU
reference's `imagenet/dataset/imagenet.py`), every number a field of
`ImageNetTransform`:

* train: torchvision's `RandomResizedCrop(224, scale=(0.08, 1.25))`
  (bilinear; `crop_box` is its box, with the 10 rejected attempts and the
  center fallback), the authors' `Lighting(0.1)` (`lighting_increment`,
  `apply_lighting`), `RandomHorizontalFlip()`, `ToTensor()` and
  `Normalize` with ImageNet's mean and std;
* eval: `Resize(256)` of the shorter side (bilinear), `CenterCrop(224)`,
  `ToTensor()`, `Normalize`.

Batches are `StreamBatches`: `keras.utils.PyDataset`s that decode while the
model trains. Two decoders give the same crops, flips and lighting (their
random numbers are drawn here, in numpy) and pixels within a level or two of
each other (the resamplers differ in rounding):

* "tf": a `tf.data` pipeline (parallel decode and augmentation with AUTOTUNE,
  deterministic order, prefetch). On the JAX and torch backends it runs on
  the CPU and yields numpy; TensorFlow's GPUs are hidden from it.
* "pil": PIL in a thread pool (PIL releases the GIL while it decodes and
  resamples), for machines without TensorFlow.

Randomness: image `p` of epoch `e`'s order gets its crop, flip and lighting
from `EpochDraws(seed, e, ...)`, drawn from `data.epoch_generator`; so batch
`i` of epoch `e` is a pure function of `(seed, e, i)` and resuming is exact.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import threading
import time
import types
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from keras_recu.app.data import (
    DataUnavailableError,
    DatasetInfo,
    EpochBatches,
    TFDS_EXTRAS_HELP,
    epoch_generator,
)
from keras_recu.app.messages import first_line

__all__ = [
    "DECODERS",
    "EpochDraws",
    "FolderSource",
    "IMAGE_EXTENSIONS",
    "ImageNetTransform",
    "StreamBatches",
    "TFDSSource",
    "apply_lighting",
    "crop_box",
    "eval_geometry",
    "lighting_increment",
    "load_splits",
    "pil_eval_image",
    "pil_train_image",
    "write_synthetic_jpeg_tree",
]

PathLike = Union[str, os.PathLike]

DECODERS = ("auto", "tf", "pil")
# torchvision's IMG_EXTENSIONS, matched case-insensitively as ImageFolder does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# The subset that TensorFlow's decode_image reads.
TF_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The tensorflow-datasets names of the sets, and their test split.
TFDS_NAMES = {"imagenet2012": "imagenet2012", "imagenette": "imagenette/320px-v2"}
TFDS_TEST_SPLIT = "validation"
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
# Examples that tf.data's shuffle buffer holds for a tensorflow-datasets set,
# after TFDS shuffles the order of its files (~110 kB each for ImageNet).
TFDS_SHUFFLE_BUFFER = 8192
# Batches the PIL decoder works on ahead of the one asked for.
PIL_PREFETCH = 2
# Recently served batches kept, so that Keras' peek at batch 0 costs no restart.
RECENT_BATCHES = 2

# AlexNet's PCA of ImageNet's RGB pixels, the authors' `imagenet_pca`.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- the transform


@dataclasses.dataclass(frozen=True)
class ImageNetTransform:
    """The numbers of the authors' ImageNet transforms; the defaults are theirs.

    Train: RandomResizedCrop(`image_size`, `scale`, `ratio`, bilinear) with
    torchvision's `attempts` rejection tries, Lighting(`lighting_std`,
    `eigval`, `eigvec`), a horizontal flip with probability 1/2 when `flip`,
    then `(x / 255 - mean) / std`. Eval: the shorter side resized to
    `resize_size` (bilinear), the central `image_size` square, the same
    normalization. `mean`/`std` are on [0, 1] pixels.

    Note `scale` reaches 1.25, the authors' value: a target area above the
    image's is rejected, so large draws end in more retries and more
    center-crop fallbacks, exactly as in their torchvision run.

    >>> ImageNetTransform().image_size, ImageNetTransform(lighting_std=0).augmentation
    (224, ('random_resized_crop', 'flip'))
    """

    image_size: int = 224
    resize_size: int = 256
    scale: tuple = (0.08, 1.25)
    ratio: tuple = (3 / 4, 4 / 3)
    attempts: int = 10
    lighting_std: float = 0.1
    eigval: tuple = IMAGENET_EIGVAL
    eigvec: tuple = IMAGENET_EIGVEC
    flip: bool = True
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        def fix(name, value):
            object.__setattr__(self, name, value)

        for name in ("image_size", "resize_size", "attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ImageNetTransform.{name} must be a positive integer, got {value!r}")
            fix(name, int(value))
        if self.resize_size < self.image_size:
            raise ValueError(
                f"ImageNetTransform.resize_size ({self.resize_size}) must be at least image_size "
                f"({self.image_size}): the eval transform crops image_size out of the resized image"
            )
        for name, lowest in (("scale", 0.0), ("ratio", 0.0)):
            pair = tuple(float(v) for v in getattr(self, name))
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not lowest < pair[0] <= pair[1]:
                raise ValueError(
                    f"ImageNetTransform.{name} must be two finite numbers 0 < min <= max, got "
                    f"{getattr(self, name)!r}"
                )
            fix(name, pair)
        std = float(self.lighting_std)
        if not (math.isfinite(std) and std >= 0):
            raise ValueError(f"ImageNetTransform.lighting_std must be a finite number >= 0, got {self.lighting_std!r}")
        fix("lighting_std", std)
        eigval, eigvec = np.asarray(self.eigval, np.float64), np.asarray(self.eigvec, np.float64)
        if eigval.shape != (3,) or eigvec.shape != (3, 3) or not (np.isfinite(eigval).all() and np.isfinite(eigvec).all()):
            raise ValueError(
                f"ImageNetTransform.eigval must be 3 finite numbers and eigvec 3x3, got shapes "
                f"{eigval.shape} and {eigvec.shape}"
            )
        fix("eigval", tuple(eigval.tolist()))
        fix("eigvec", tuple(tuple(row) for row in eigvec.tolist()))
        mean, std3 = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        if mean.shape != (3,) or std3.shape != (3,) or not (np.isfinite(mean).all() and (std3 > 0).all()):
            raise ValueError(
                f"ImageNetTransform.mean and std must be 3 numbers each (std > 0), got {self.mean!r}, {self.std!r}"
            )
        fix("mean", tuple(mean.tolist()))
        fix("std", tuple(std3.tolist()))
        if not isinstance(self.flip, (bool, np.bool_)):
            raise ValueError(f"ImageNetTransform.flip must be True or False, got {self.flip!r}")
        fix("flip", bool(self.flip))

    @property
    def augmentation(self) -> tuple:
        """The train transform's random steps, as `DatasetInfo.augmentation` names them."""
        return ("random_resized_crop",) + ("lighting",) * (self.lighting_std > 0) + ("flip",) * self.flip

    def to_dict(self) -> dict:
        """The fields as JSON-ready lists and numbers; `from_dict` reads it back."""
        return {
            field.name: (
                [list(row) for row in value] if field.name == "eigvec"
                else list(value) if isinstance(value, tuple) else value
            )
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    @classmethod
    def from_dict(cls, config: dict) -> "ImageNetTransform":
        """The transform `to_dict` wrote; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"Unknown ImageNetTransform field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**config)


# --------------------------------------------------------------------------- randomness


@dataclasses.dataclass(frozen=True)
class EpochDraws:
    """The random numbers of every image of one epoch of a training split.

    Row `p` belongs to the p-th image of the epoch's order: `scale_u` and
    `ratio_u` (p, attempts), uniforms in [0, 1) of RandomResizedCrop's
    tries; `top_u`, `left_u` uniforms for the crop's position; `flip` bools;
    `increment` (p, 3) the Lighting increment in 0..255 pixel units. They come
    from `data.epoch_generator(seed, epoch)` after the epoch's permutation, so
    they are a pure function of `(seed, epoch, count, transform)`.
    """

    order: np.ndarray
    scale_u: np.ndarray
    ratio_u: np.ndarray
    top_u: np.ndarray
    left_u: np.ndarray
    flip: np.ndarray
    increment: np.ndarray

    @classmethod
    def draw(cls, seed: int, epoch: int, count: int, transform: ImageNetTransform, shuffle: bool = True) -> "EpochDraws":
        rng = epoch_generator(seed, epoch)
        order = rng.permutation(count) if shuffle else np.arange(count)
        # float32 uniforms, as torchvision draws them: 4 bytes x 2 x attempts per image.
        scale_u = rng.random((count, transform.attempts), dtype=np.float32)
        ratio_u = rng.random((count, transform.attempts), dtype=np.float32)
        top_u, left_u = rng.random((2, count), dtype=np.float32)
        flip = (rng.random(count) < 0.5) & transform.flip
        normals = rng.standard_normal((count, 3))
        return cls(order, scale_u, ratio_u, top_u, left_u, flip, lighting_increment(normals, transform))

    def rows(self, positions) -> dict:
        """The draws of the images at `positions` of the epoch's order, as arrays."""
        return {
            "scale_u": self.scale_u[positions],
            "ratio_u": self.ratio_u[positions],
            "top_u": self.top_u[positions],
            "left_u": self.left_u[positions],
            "flip": self.flip[positions],
            "increment": self.increment[positions],
        }


# --------------------------------------------------------------------------- the geometry

# Both decoders compute the boxes with this one function: on numpy arrays, or
# on TensorFlow tensors inside tf.data (`_tf_math`). Integers are carried as
# float64 (exact below 2**53) so the same operations serve both.
_np_math = types.SimpleNamespace(
    sqrt=np.sqrt, exp=np.exp, round=np.round, floor=np.floor, where=np.where,
    minimum=np.minimum, cumsum=np.cumsum, any=np.any, sum=np.sum,
    to_float=lambda x: np.asarray(x, np.float64),
)


def crop_box(height, width, scale_u, ratio_u, top_u, left_u, transform: ImageNetTransform, xp=_np_math):
    """torchvision's `RandomResizedCrop.get_params`, from pre-drawn uniforms.

    `height`, `width`: the image's size (arrays of shape S, or scalars);
    `scale_u`, `ratio_u`: uniforms in [0, 1) of shape S + (attempts,);
    `top_u`, `left_u`: uniforms of shape S. Returns `(top, left, h, w)` as
    float64 holding integers. As torchvision: try `attempts` times an area
    `scale` x the image's and a log-uniform aspect ratio in `ratio`, with
    `w = round(sqrt(area * ratio))`, `h = round(sqrt(area / ratio))` (Python's
    round, half to even); keep the first that fits in the image, at a
    uniformly random position; if none fits, the largest central crop whose
    aspect ratio is clamped into `ratio`.

    >>> t = ImageNetTransform(attempts=1)
    >>> [int(v) for v in crop_box(375, 500, np.array([0.5]), np.array([0.5]), 0.0, 0.99, t)]
    [0, 146, 353, 353]
    """
    height, width = xp.to_float(height), xp.to_float(width)
    scale_u, ratio_u = xp.to_float(scale_u), xp.to_float(ratio_u)
    (s0, s1), (r0, r1) = transform.scale, transform.ratio
    target = (height * width)[..., None] * (s0 + (s1 - s0) * scale_u)
    log_r0, log_r1 = math.log(r0), math.log(r1)
    aspect = xp.exp(log_r0 + (log_r1 - log_r0) * ratio_u)
    w = xp.round(xp.sqrt(target * aspect))
    h = xp.round(xp.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= width[..., None]) & (h <= height[..., None])
    fits = xp.to_float(fits)
    first = fits * xp.to_float(xp.cumsum(fits, axis=-1) == 1)  # 1 at the first try that fits
    found = xp.any(fits > 0, axis=-1)
    try_w, try_h = xp.sum(first * w, axis=-1), xp.sum(first * h, axis=-1)
    in_ratio = width / height
    fallback_w = xp.where(in_ratio > r1, xp.round(height * r1), width)
    fallback_h = xp.where(in_ratio < r0, xp.round(width / r0), height)
    w = xp.where(found, try_w, fallback_w)
    h = xp.where(found, try_h, fallback_h)
    top_u, left_u = xp.to_float(top_u), xp.to_float(left_u)
    # torch.randint(0, n + 1) from a uniform; the minimum guards u -> 1.
    top = xp.where(found, xp.minimum(xp.floor(top_u * (height - h + 1)), height - h), xp.floor((height - h) / 2))
    left = xp.where(found, xp.minimum(xp.floor(left_u * (width - w + 1)), width - w), xp.floor((width - w) / 2))
    return top, left, h, w


def eval_geometry(height, width, transform: ImageNetTransform, xp=_np_math):
    """torchvision's `Resize(resize_size)` size and `CenterCrop(image_size)` offsets.

    Returns `(new_height, new_width, top, left)` as float64 integers: the
    shorter side becomes `resize_size`, the longer `int(resize_size * long /
    short)` (truncated, as torchvision), and the crop starts at
    `round((new - image_size) / 2)` (half to even).

    >>> [int(v) for v in eval_geometry(375, 500, ImageNetTransform())]
    [256, 341, 16, 58]
    """
    height, width = xp.to_float(height), xp.to_float(width)
    size = xp.to_float(transform.resize_size)
    portrait = width <= height
    long_side = xp.floor(size * xp.where(portrait, height / width, width / height))
    new_h = xp.where(portrait, long_side, size)
    new_w = xp.where(portrait, size, long_side)
    crop = xp.to_float(transform.image_size)
    return new_h, new_w, xp.round((new_h - crop) / 2), xp.round((new_w - crop) / 2)


# --------------------------------------------------------------------------- lighting


def lighting_increment(normals: np.ndarray, transform: ImageNetTransform) -> np.ndarray:
    """The authors' Lighting increment per image, from standard normals (N, 3).

    Their `Lighting.__call__` draws `randn(3) * alphastd`, casts it to
    float32, multiplies by `eigval` and takes `eigvec @ v`: an RGB offset in
    float64. Their `eigval` is AlexNet's, computed on [0, 1] pixels, but they
    add the offset to the uint8 image in 0..255 units, so it is ~100 times
    smaller than AlexNet's lighting noise (|offset| ~ 0.01 of a level). That
    is reproduced as it is, not corrected: see `apply_lighting`.
    """
    normals = np.asarray(normals, np.float64)
    rnd = (normals * transform.lighting_std).astype(np.float32)
    # (rnd * eigval) @ eigvec.T is eigvec @ v for each row v.
    return (rnd.astype(np.float64) * np.asarray(transform.eigval)) @ np.asarray(transform.eigvec).T


def apply_lighting(image: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """The authors' Lighting on a uint8 RGB image: `clip(image + increment).astype(uint8)`.

    The float64 sum is clipped to [0, 255] and *truncated* back to uint8,
    as their `img.astype(old_dtype)`. With offsets of ~0.01 of a level this
    makes Lighting nearly a no-op with a downward bias: every channel whose
    offset is negative loses one level (a pixel at 0 stays 0), every
    channel whose offset is positive keeps its value (as below 255.5 it
    truncates back). The pipelines reproduce exactly that.

    >>> apply_lighting(np.array([[[10, 0, 255]]], np.uint8), np.array([-0.01, -0.01, 0.01]))
    array([[[  9,   0, 255]]], dtype=uint8)
    """
    image = np.asarray(image)
    return np.clip(image + np.asarray(increment, np.float64), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- PIL


def _pil():
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with Keras' image utilities
        raise DataUnavailableError(
            f"Decoding images without TensorFlow needs Pillow, which is not installed ({error}): "
            "pip install pillow"
        ) from error
    return Image


def _open_rgb(path):
    """torchvision's `pil_loader`: the file as an RGB PIL image."""
    Image = _pil()
    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")


def pil_train_image(path, draws: dict, transform: ImageNetTransform) -> np.ndarray:
    """The authors' train transform of one image file, up to the uint8 (S, S, 3) array.

    `draws`: one image's row of `EpochDraws.rows` (scalars / 1-D arrays).
    """
    Image = _pil()
    image = _open_rgb(path)
    width, height = image.size
    top, left, h, w = (
        int(v)
        for v in crop_box(height, width, draws["scale_u"], draws["ratio_u"], draws["top_u"], draws["left_u"], transform)
    )
    size = transform.image_size
    image = image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image)
    if transform.lighting_std > 0:
        pixels = apply_lighting(pixels, draws["increment"])
    if draws["flip"]:
        pixels = pixels[:, ::-1]
    return pixels


def pil_eval_image(path, transform: ImageNetTransform) -> np.ndarray:
    """The authors' eval transform of one image file: resize the shorter side, center crop; uint8."""
    Image = _pil()
    image = _open_rgb(path)
    width, height = image.size
    new_h, new_w, top, left = (int(v) for v in eval_geometry(height, width, transform))
    size = transform.image_size
    image = image.resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(image.crop((left, top, left + size, top + size)))


def _normalize(pixels: np.ndarray, transform: ImageNetTransform) -> np.ndarray:
    """ToTensor + Normalize in float32, the same operations as torchvision's."""
    x = pixels.astype(np.float32) / np.float32(255)
    return (x - np.asarray(transform.mean, np.float32)) / np.asarray(transform.std, np.float32)


# --------------------------------------------------------------------------- TensorFlow


def import_tensorflow(for_what: str = "the tf decoder"):
    """TensorFlow for a tf.data pipeline; on JAX or torch, with its GPUs hidden from it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            f"{for_what} needs TensorFlow, which cannot be imported ({error}). Install it with "
            f"{TFDS_EXTRAS_HELP}, or use decoder='pil' (--decoder pil) for an image folder."
        ) from error
    import keras

    if keras.backend.backend() != "tensorflow":
        try:
            # The data pipeline runs on the CPU; TensorFlow would otherwise
            # reserve the GPU memory that JAX or torch trains with.
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # TensorFlow is initialized already; its devices are as they are.
    return tf


def tensorflow_available() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def _tf_math(tf):
    return types.SimpleNamespace(
        sqrt=tf.sqrt, exp=tf.exp, round=tf.round, floor=tf.floor, where=tf.where,
        minimum=tf.minimum, cumsum=lambda x, axis: tf.cumsum(x, axis=axis),
        any=lambda x, axis: tf.reduce_any(x, axis=axis), sum=lambda x, axis: tf.reduce_sum(x, axis=axis),
        to_float=lambda x: tf.cast(x, tf.float64),
    )


def _tf_functions(tf, transform: ImageNetTransform):
    """The train and eval transforms as TensorFlow functions of an encoded image."""
    xp = _tf_math(tf)
    size = transform.image_size
    mean = tf.constant(transform.mean, tf.float32)
    std = tf.constant(transform.std, tf.float32)

    def to_uint8(x):
        # PIL's resamplers round to the nearest level and saturate.
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

    def decoded(encoded):
        # INTEGER_ACCURATE is libjpeg's islow IDCT, PIL's; TensorFlow's default is the fast one.
        image = tf.cond(
            tf.io.is_jpeg(encoded),
            lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
        )
        image.set_shape([None, None, 3])
        return image

    def normalize(pixels):
        return (tf.cast(pixels, tf.float32) / 255.0 - mean) / std

    def train(encoded, draws):
        def box(shape):
            top, left, h, w = crop_box(
                shape[0], shape[1], draws["scale_u"], draws["ratio_u"], draws["top_u"], draws["left_u"],
                transform, xp,
            )
            return tf.cast(tf.stack([top, left, h, w]), tf.int32)

        # The whole image is decoded, then cropped, as PIL does: libjpeg's
        # partial decode (decode_and_crop_jpeg) shifts the chroma at the crop's
        # edges by up to 16 levels and measured no faster (BENCHMARKS.md).
        image = decoded(encoded)
        top, left, h, w = tf.unstack(box(tf.shape(image)))
        crop = image[top : top + h, left : left + w]
        pixels = to_uint8(tf.image.resize(crop, [size, size], method="bilinear", antialias=True))
        if transform.lighting_std > 0:
            # apply_lighting, in float64 and truncated like the authors' astype.
            lit = tf.clip_by_value(tf.cast(pixels, tf.float64) + draws["increment"], 0.0, 255.0)
            pixels = tf.cast(lit, tf.uint8)
        pixels = tf.cond(draws["flip"], lambda: tf.reverse(pixels, axis=[1]), lambda: pixels)
        return normalize(pixels)

    def evaluate(encoded):
        image = decoded(encoded)
        shape = tf.shape(image)
        new_h, new_w, top, left = (tf.cast(v, tf.int32) for v in eval_geometry(shape[0], shape[1], transform, xp))
        resized = to_uint8(tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True))
        return normalize(resized[top : top + size, left : left + size])

    # Plain TensorFlow operations and Python conditions on fixed settings:
    # nothing for autograph to convert.
    return tf.autograph.experimental.do_not_convert(train), tf.autograph.experimental.do_not_convert(evaluate)


# --------------------------------------------------------------------------- sources


class FolderSource:
    """The image files of one split of a class-per-folder tree, and their labels.

    `paths` holds the file names as bytes (`os.fsencode`), `labels` int32.

    Lists `directory/<class>/**` as torchvision's `ImageFolder` does: the
    class folders sorted, then each one walked (following links) in sorted
    order, keeping the files with an `IMAGE_EXTENSIONS` suffix in any case.
    `classes` fixes the class ids (the train split's, for the val split);
    None takes the sorted folder names of `directory`.
    """

    def __init__(self, directory: PathLike, classes: Optional[Sequence[str]] = None, limit: Optional[int] = None):
        directory = Path(directory)
        if not directory.is_dir():
            state = "does not exist" if not directory.exists() else "is not a directory"
            raise DataUnavailableError(
                f"{directory} {state}: an image folder needs train/ and val/ folders with one "
                "sub-folder of images per class (DIR/train/<class>/*.JPEG, DIR/val/<class>/*.JPEG)."
            )
        found = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        own_classes = classes is None
        if own_classes:
            classes = found
            if not classes:
                raise DataUnavailableError(
                    f"{directory} holds no class folders: put each class's images in "
                    f"{directory}/<class>/ (e.g. {directory}/n01440764/*.JPEG)."
                )
        else:
            extra = sorted(set(found) - set(classes))
            if extra:
                raise DataUnavailableError(
                    f"{directory} has class folder(s) that the train split lacks: "
                    f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}. Both splits must use the "
                    "train split's class names."
                )
        paths, labels, empty = [], [], []
        for label, name in enumerate(classes):
            folder = directory / name
            before = len(paths)
            if folder.is_dir():
                for root, _, names in sorted(os.walk(folder, followlinks=True)):
                    for filename in sorted(names):
                        if filename.lower().endswith(IMAGE_EXTENSIONS):
                            paths.append(os.path.join(root, filename))
            if len(paths) == before:
                empty.append(name)
            labels += [label] * (len(paths) - before)
        if not paths:
            raise DataUnavailableError(
                f"{directory} holds no images: none of its class folders has a file ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}."
            )
        if own_classes and empty:
            # torchvision's ImageFolder refuses a class without images.
            raise DataUnavailableError(
                f"{directory}: class folder(s) without images: {', '.join(empty[:5])}"
                f"{' ...' if len(empty) > 5 else ''}. Remove them or add their images."
            )
        self.directory = directory
        self.classes = tuple(classes)
        # Bytes, not str: numpy's fixed-width str takes 4 bytes a character,
        # ~300 MB for ImageNet's 1.28M paths against ~80 MB.
        paths, labels = np.array([os.fsencode(p) for p in paths]), np.array(labels, np.int32)
        if limit is not None and limit < len(paths):
            # Evenly strided: all classes, in proportion; independent of the seed.
            keep = np.linspace(0, len(paths) - 1, limit).round().astype(np.intp)
            paths, labels = paths[keep], labels[keep]
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def check_decodable_by_tf(self) -> None:
        odd = sorted({os.path.splitext(os.fsdecode(p))[1].lower() for p in self.paths} - set(TF_IMAGE_EXTENSIONS))
        if odd:
            raise ValueError(
                f"{self.directory} holds {', '.join(odd)} files, which TensorFlow cannot decode; "
                f"use decoder='pil' (--decoder pil), or convert them to JPEG"
            )


class TFDSSource:
    """A split of a prepared tensorflow-datasets image set, its images left encoded."""

    def __init__(self, builder, split: str, count: int):
        self.builder, self.split, self.count = builder, split, count

    def __len__(self) -> int:
        return self.count

    def dataset(self, tf, seed: Optional[int]):
        """(encoded image, label) pairs; in a seeded shuffled order when `seed` is not None."""
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=16) if seed is not None else None
        dataset = self.builder.as_dataset(
            split=self.split,
            shuffle_files=seed is not None,
            read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        dataset = dataset.map(lambda example: (example["image"], tf.cast(example["label"], tf.int32)))
        if seed is not None:
            dataset = dataset.shuffle(TFDS_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)
        return dataset


# --------------------------------------------------------------------------- streaming batches


class StreamBatches(EpochBatches):
    """Batches of a `FolderSource` or `TFDSSource`, decoded and transformed as they stream.

    `batches[i]` is `(images float32 (B, S, S, 3), labels int32 (B,))`,
    batch `i` of the current epoch (the last one may be partial). The train
    split (`augment=True`) takes the authors' train transform with the
    current epoch's `EpochDraws`; otherwise the eval transform. Indices read
    in order stream from a pipeline that works ahead (tf.data prefetch, or the
    PIL thread pool); any other index is served too, from a pipeline started
    there (correct, only slower). The last few batches are kept, so Keras'
    look at batch 0 before an epoch costs no restart. After the last batch of
    a shuffled epoch the next epoch's pipeline starts at once.

    Epoch accounting (`set_epoch`, `on_epoch_begin`/`end`) is `ImageBatches`'.

    `wait_seconds` adds up the time `__getitem__` waited for the pipeline
    (restarts included) over `batches_served` batches: where it grows by
    more than a small fraction of the training time, decoding is the
    bottleneck and more cores (`workers`) are needed.
    """

    def __init__(
        self,
        source: Union[FolderSource, TFDSSource],
        batch_size: int,
        transform: ImageNetTransform,
        *,
        augment: bool,
        shuffle: bool,
        seed: int = 0,
        decoder: str = "tf",
        workers: Optional[int] = None,
    ):
        super().__init__(seed=seed)
        if decoder not in ("tf", "pil"):
            raise ValueError(f"decoder must be 'tf' or 'pil' here, got {decoder!r}")
        if decoder == "pil" and isinstance(source, TFDSSource):
            raise ValueError("a tensorflow-datasets set is read by the tf decoder only")
        self.source = source
        self.batch_size = int(batch_size)
        self.transform = transform
        self.augment = bool(augment)
        self.shuffle = bool(shuffle)
        self.decoder = decoder
        self.decode_workers = workers  # PyDataset's own `workers` are Keras' reader threads
        self._lock = threading.RLock()
        self._stream: Optional[Iterator] = None
        self._stream_at: Optional[tuple] = None  # (epoch, index) the stream yields next
        self._stream_close: Callable[[], None] = lambda: None
        self._recent: collections.OrderedDict = collections.OrderedDict()
        self._draws: Optional[tuple] = None  # (epoch, EpochDraws)
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._tf_transforms = None
        self.wait_seconds = 0.0
        self.batches_served = 0

    @property
    def _varies_by_epoch(self) -> bool:
        return self.shuffle or self.augment

    def __len__(self) -> int:
        return math.ceil(len(self.source) / self.batch_size)

    def __getitem__(self, index: int):
        count = len(self)
        index = int(index)
        if not 0 <= index < count:
            raise IndexError(f"batch index {index} out of range: this split has {count} batches")
        with self._lock:
            self._note_served(index)
            epoch = self.epoch if self._varies_by_epoch else 0
            key = (epoch, index)
            if key in self._recent:
                return self._recent[key]
            start = time.perf_counter()
            if self._stream_at != key:
                self._open(epoch, index)
            batch = next(self._stream)
            self.wait_seconds += time.perf_counter() - start
            self.batches_served += 1
            self._stream_at = (epoch, index + 1)
            self._recent[key] = batch
            while len(self._recent) > RECENT_BATCHES:
                self._recent.popitem(last=False)
            if index + 1 == count and self._varies_by_epoch:
                self._open(epoch + 1, 0)  # the next epoch works ahead from now
            return batch

    def close(self) -> None:
        """Stops the pipeline's work ahead and its threads."""
        with self._lock:
            self._stream_close()
            self._stream, self._stream_at = None, None
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # ---------------------------------------------------------------- internals

    def epoch_draws(self, epoch: int) -> Optional[EpochDraws]:
        """The random numbers of epoch `epoch`, None for an unshuffled eval split."""
        if not self._varies_by_epoch:
            return None
        if self._draws is None or self._draws[0] != epoch:
            shuffle = self.shuffle and not isinstance(self.source, TFDSSource)  # TFDS shuffles itself
            self._draws = (epoch, EpochDraws.draw(self.seed, epoch, len(self.source), self.transform, shuffle))
        return self._draws[1]

    def _open(self, epoch: int, index: int) -> None:
        self._stream_close()
        start = index * self.batch_size
        draws = self.epoch_draws(epoch)
        if self.decoder == "tf":
            self._stream, self._stream_close = self._tf_stream(epoch, start, draws)
        else:
            self._stream, self._stream_close = self._pil_stream(start, draws)
        self._stream_at = (epoch, index)

    def _tf_stream(self, epoch: int, start: int, draws: Optional[EpochDraws]):
        tf = import_tensorflow()
        if self._tf_transforms is None:
            self._tf_transforms = _tf_functions(tf, self.transform)
        train_fn, eval_fn = self._tf_transforms
        if isinstance(self.source, TFDSSource):
            seed = None
            if self.shuffle:
                seed = int(np.random.SeedSequence(self.seed, spawn_key=(0x7FD5, epoch)).generate_state(1)[0] >> 1)
            pairs = self.source.dataset(tf, seed)
        else:
            order = draws.order if draws is not None else np.arange(len(self.source))
            pairs = tf.data.Dataset.from_tensor_slices((self.source.paths[order], self.source.labels[order]))
            pairs = pairs.map(lambda path, label: (tf.io.read_file(path), label))
        # Skipped before decoding: a restart mid-epoch reads but decodes nothing it skips.
        pairs = pairs.skip(start)
        if self.augment:
            rows = draws.rows(slice(start, None))
            dataset = tf.data.Dataset.zip((pairs, tf.data.Dataset.from_tensor_slices(rows)))
            dataset = dataset.map(
                lambda pair, row: (train_fn(pair[0], row), pair[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        else:
            dataset = pairs.map(
                lambda encoded, label: (eval_fn(encoded), label),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        dataset = dataset.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        if self.decode_workers is not None:
            options.threading.private_threadpool_size = self.decode_workers
        dataset = dataset.with_options(options)
        iterator = iter(dataset.as_numpy_iterator())
        return iterator, lambda: None

    def _pil_stream(self, start: int, draws: Optional[EpochDraws]):
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.decode_workers or os.cpu_count() or 1, thread_name_prefix="keras_recu_decode"
            )
        executor, source, transform = self._executor, self.source, self.transform
        order = draws.order if draws is not None else None
        count = len(source)
        pending: collections.deque = collections.deque()

        def submit(first: int):
            positions = range(first, min(first + self.batch_size, count))
            rows = [order[p] if order is not None else p for p in positions]
            if self.augment:
                futures = [
                    executor.submit(pil_train_image, source.paths[row], draws.rows(p), transform)
                    for p, row in zip(positions, rows)
                ]
            else:
                futures = [executor.submit(pil_eval_image, source.paths[row], transform) for row in rows]
            pending.append((futures, source.labels[np.array(rows, np.intp)]))

        def batches():
            first = start
            while first < count or pending:
                while first < count and len(pending) <= PIL_PREFETCH:
                    submit(first)
                    first += self.batch_size
                futures, labels = pending.popleft()
                pixels = np.stack([future.result() for future in futures])
                yield _normalize(pixels, transform), labels

        def close():
            for futures, _ in pending:
                for future in futures:
                    future.cancel()
            pending.clear()

        return batches(), close

    def __repr__(self) -> str:
        return (
            f"StreamBatches({len(self.source)} images, batch_size={self.batch_size}, augment={self.augment}, "
            f"shuffle={self.shuffle}, decoder={self.decoder!r}, seed={self.seed}, epoch={self.epoch})"
        )


# --------------------------------------------------------------------------- loading


def _tfds_source(key: str, data_dir, download: bool, manual_dir, limit_train, limit_test):
    import_tensorflow(f"--dataset {key}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataUnavailableError(
            f"--dataset {key} needs tensorflow-datasets, which is not installed ({error}): {TFDS_EXTRAS_HELP}"
        ) from error
    name = TFDS_NAMES[key]
    directory = None if data_dir is None else os.fspath(data_dir)
    try:
        builder = tfds.builder(name, data_dir=directory)
    except Exception as error:  # an unreadable data_dir, a broken install
        raise DataUnavailableError(f"tensorflow-datasets cannot open {name!r}: {type(error).__name__}: {error}") from error
    where = f"in {builder.data_dir}"
    if not builder.is_prepared():
        if key == "imagenet2012":
            _prepare_imagenet(tfds, builder, data_dir, manual_dir)
        elif not download:
            raise DataUnavailableError(
                f"Data set {key!r} ({name}) is not prepared {where} and download=False: run once where the "
                "network is reachable (it downloads ~325 MB), or pass data_dir (--data-dir) of a "
                "tensorflow_datasets directory that holds it."
            )
        else:
            try:
                builder.download_and_prepare()
            except Exception as error:
                raise DataUnavailableError(
                    f"Data set {key!r} ({name}) could not be downloaded and prepared {where}: "
                    f"{type(error).__name__}: {first_line(error)}. "
                    "Run where the network is reachable, or pass --data-dir of a prepared copy."
                ) from error
    splits = builder.info.splits
    missing = [s for s in ("train", TFDS_TEST_SPLIT) if s not in splits]
    if missing:
        raise DataUnavailableError(f"{name} {where} lacks the split(s) {', '.join(missing)}; prepare it again.")
    train_n = splits["train"].num_examples
    test_n = splits[TFDS_TEST_SPLIT].num_examples
    train_n, test_n = min(train_n, limit_train or train_n), min(test_n, limit_test or test_n)
    classes = builder.info.features["label"].num_classes
    return (
        TFDSSource(builder, f"train[:{train_n}]", train_n),
        TFDSSource(builder, f"{TFDS_TEST_SPLIT}[:{test_n}]", test_n),
        int(classes),
    )


def _prepare_imagenet(tfds, builder, data_dir, manual_dir) -> None:
    candidates = []
    if manual_dir is not None:
        candidates.append(Path(manual_dir))
    else:
        root = Path(builder.data_dir_root)
        candidates += [root / "downloads" / "manual", root]
    for folder in candidates:
        if all((folder / tar).is_file() for tar in IMAGENET_TARS):
            print(
                f"note: preparing imagenet2012 in {builder.data_dir_root} from the tars in {folder}; "
                "this runs once and takes hours and ~150 GB of disk."
            )
            config = tfds.download.DownloadConfig(manual_dir=os.fspath(folder))
            try:
                builder.download_and_prepare(download_config=config)
            except Exception as error:
                raise DataUnavailableError(
                    f"imagenet2012 could not be prepared from {folder}: {type(error).__name__}: {error}"
                ) from error
            return
    raise DataUnavailableError(
        f"imagenet2012 is not prepared in {builder.data_dir_root} and its tars are not in "
        f"{' or '.join(map(str, candidates))}. Download {' and '.join(IMAGENET_TARS)} from "
        "https://image-net.org (registration needed) into one of them (or pass manual_dir, "
        "--manual-dir), or use --dataset image_folder with --data-dir of a class-per-folder tree."
    )


def _folder_sources(data_dir, limit_train, limit_test):
    if data_dir is None:
        raise DataUnavailableError(
            "--dataset image_folder needs --data-dir DIR, a folder with train/<class>/*.JPEG and "
            "val/<class>/*.JPEG (torchvision's ImageFolder layout)."
        )
    root = Path(data_dir)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataUnavailableError(
                f"--data-dir {root} has no {split}/ folder: an image folder holds train/<class>/*.JPEG "
                "and val/<class>/*.JPEG (torchvision's ImageFolder layout)."
            )
    train = FolderSource(root / "train", limit=limit_train)
    test = FolderSource(root / "val", classes=train.classes, limit=limit_test)
    return train, test, len(train.classes)


def resolve_decoder(decoder: str) -> str:
    """"tf" or "pil" for `decoder` ("auto" picks tf where TensorFlow can be imported)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "auto":
        return "tf" if tensorflow_available() else "pil"
    if decoder == "tf":
        import_tensorflow()
    return decoder


def load_splits(
    key: str,
    batch_size: int,
    *,
    data_dir=None,
    augment: bool = True,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
    seed: int = 0,
    download: bool = True,
    transform: Optional[ImageNetTransform] = None,
    decoder: str = "auto",
    workers: Optional[int] = None,
    manual_dir=None,
):
    """`data.load` for the sets of `data.IMAGENET_DATASETS`; arguments checked there."""
    transform = transform or ImageNetTransform()
    if key == "image_folder":
        chosen = resolve_decoder(decoder)
        train_source, test_source, classes = _folder_sources(data_dir, limit_train, limit_test)
        if chosen == "tf":
            train_source.check_decodable_by_tf()
            test_source.check_decodable_by_tf()
        source_name = "folder"
    else:
        if decoder == "pil":
            raise ValueError(f"--dataset {key} comes from tensorflow-datasets, which only the tf decoder reads; "
                             "use decoder 'auto' or 'tf'")
        chosen = "tf"
        train_source, test_source, classes = _tfds_source(key, data_dir, download, manual_dir, limit_train, limit_test)
        source_name = "tfds"
    common = dict(transform=transform, seed=seed, decoder=chosen, workers=workers)
    train = StreamBatches(train_source, batch_size, augment=augment, shuffle=True, **common)
    test = StreamBatches(test_source, batch_size, augment=False, shuffle=False, **common)
    size = transform.image_size
    info = DatasetInfo(
        name=key,
        input_shape=(size, size, 3),
        num_classes=classes,
        train_examples=len(train_source),
        test_examples=len(test_source),
        source=source_name,
        mean=tuple(255.0 * m for m in transform.mean),
        std=tuple(255.0 * s for s in transform.std),
        augmentation=transform.augmentation if augment else (),
    )
    return train, test, info


# --------------------------------------------------------------------------- synthetic trees


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
    Image = _pil()
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
