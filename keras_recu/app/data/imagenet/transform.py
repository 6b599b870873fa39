"""The ReCU authors' ImageNet transforms as numbers: `ImageNetTransform` and its geometry.

Everything here is decoder-neutral: the transform's settings
(`ImageNetTransform`), the random numbers of an epoch (`EpochDraws`), the
train crop (`crop_box`, torchvision's RandomResizedCrop) and the eval
resize and crop (`eval_geometry`), the authors' Lighting
(`lighting_increment`, `apply_lighting`) and ToTensor + Normalize
(`normalize_pixels`). The decoders (`decode`) apply them to images.
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from keras_recu.app.data.base import epoch_generator

__all__ = [
    "EpochDraws",
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageNetTransform",
    "apply_lighting",
    "crop_box",
    "eval_geometry",
    "lighting_increment",
    "normalize_pixels",
]

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
    from `base.epoch_generator(seed, epoch)` after the epoch's permutation, so
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
# on TensorFlow tensors inside tf.data (`decode.tf_math`). Integers are carried as
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


def normalize_pixels(pixels: np.ndarray, transform: ImageNetTransform) -> np.ndarray:
    """ToTensor + Normalize in float32, the same operations as torchvision's."""
    x = pixels.astype(np.float32) / np.float32(255)
    return (x - np.asarray(transform.mean, np.float32)) / np.asarray(transform.std, np.float32)

