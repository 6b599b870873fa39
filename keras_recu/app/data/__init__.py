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
      transforms by `keras_recu.app.data.imagenet` (which documents them), from a
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
    With no network, pass `download=False` (--no-download): a missing
    tensorflow-datasets set then fails at once, naming the set and the
    directory looked in, without asking tensorflow-datasets for more than
    whether it is there (nothing is fetched or written), whereas
    `download=True` lets tensorflow-datasets retry its downloads for minutes
    before it gives up.

Damaged data
    A file that cannot be decoded is a `CorruptDataError` naming it, raised
    by the batch that holds it: the PIL decoder wraps each file; the tf
    decoder, whose tf.data error names no file, decodes the failing batch's
    files again one by one to find it. A batch's errors are remembered
    (`remember_data_error`), since TensorFlow's Keras reads a `PyDataset`
    through tf.data and raises its own error instead; `data_error_behind`
    finds the original for the command line's one line.

Modules
    This face holds `load` and what each set gets (`AUGMENTATION`), and
    re-exports the public names of the modules below it; each module imports
    only those listed before it:

    * `base`: the set names (`DATASETS`, ...), the errors, `DatasetInfo`,
      `epoch_generator` and `EpochBatches`, shared by both families;
    * `arrays`: the in-memory sets, `ImageBatches`, `augment_batch`,
      normalization; `idx`, `tfds_arrays`, `fashion_mnist`: their sources;
    * `imagenet` (a package: `transform`, `decode`, `sources`, `stream`):
      the streamed ImageNet-style sets, `StreamBatches`;
    * `synthetic`: `synthetic_images` and `write_synthetic_jpeg_tree`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from keras_recu.app.data.arrays import (
    AUGMENTATION_STEPS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    PAD,
    ArraySplits,
    ImageBatches,
    augment_batch,
    normalization,
)
from keras_recu.app.data.base import (
    DATASETS,
    IMAGENET_DATASETS,
    TFDS_DATASETS,
    TFDS_EXTRAS_HELP,
    CorruptDataError,
    DatasetInfo,
    DataUnavailableError,
    EpochBatches,
    PathLike,
    data_error_behind,
    epoch_generator,
    non_negative_integer,
    positive_integer,
    remember_data_error,
)
from keras_recu.app.data.fashion_mnist import FASHION_MNIST_HELP, fashion_mnist_splits
from keras_recu.app.data.idx import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    read_fashion_mnist,
    read_idx,
)
from keras_recu.app.data.imagenet import (
    DECODERS,
    EpochDraws,
    FolderSource,
    ImageNetTransform,
    StreamBatches,
    TFDSSource,
    load_splits,
    resolve_decoder,
)
from keras_recu.app.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SIZE,
    SYNTHETIC_TEST,
    SYNTHETIC_TRAIN,
    synthetic_images,
    synthetic_splits,
    write_synthetic_jpeg_tree,
)
from keras_recu.app.data.tfds_arrays import tfds_splits

__all__ = [
    "AUGMENTATION",
    "AUGMENTATION_STEPS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CorruptDataError",
    "DATASETS",
    "DECODERS",
    "DataUnavailableError",
    "DatasetInfo",
    "EpochBatches",
    "EpochDraws",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_HELP",
    "FolderSource",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IMAGENET_DATASETS",
    "ImageBatches",
    "ImageNetTransform",
    "PAD",
    "PathLike",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SIZE",
    "SYNTHETIC_TEST",
    "SYNTHETIC_TRAIN",
    "StreamBatches",
    "TFDSSource",
    "TFDS_DATASETS",
    "TFDS_EXTRAS_HELP",
    "augment_batch",
    "data_error_behind",
    "epoch_generator",
    "load",
    "load_splits",
    "read_fashion_mnist",
    "read_idx",
    "remember_data_error",
    "resolve_decoder",
    "synthetic_images",
    "write_synthetic_jpeg_tree",
]

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
    `keras_recu.app.data.imagenet`), whose defaults every set accepts:
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
    batch_size = positive_integer(batch_size, "batch_size")
    limit_train = positive_integer(limit_train, "limit_train", optional=True)
    limit_test = positive_integer(limit_test, "limit_test", optional=True)
    seed = non_negative_integer(seed, "seed")
    workers = positive_integer(workers, "workers", optional=True)
    if key in IMAGENET_DATASETS:
        if transform is not None and not isinstance(transform, ImageNetTransform):
            raise ValueError(f"transform must be an imagenet.ImageNetTransform or None, got {type(transform).__name__}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if manual_dir is not None and key != "imagenet2012":
            raise ValueError(f"manual_dir (--manual-dir) is for imagenet2012 only, not {key}")
        return load_splits(
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
    splits = _array_splits(key, data_dir, download, limit_train, limit_test, seed)
    return _array_batches(key, splits, batch_size, augment, seed)


def _array_splits(
    key: str,
    data_dir: Optional[PathLike],
    download: bool,
    limit_train: Optional[int],
    limit_test: Optional[int],
    seed: int,
) -> ArraySplits:
    """Both splits of in-memory set `key`, cut to the limits."""
    if key == "synthetic":
        return synthetic_splits(limit_train, limit_test, seed)
    if key == "fashion_mnist":
        splits = fashion_mnist_splits(data_dir, download, limit_train, limit_test)
    else:
        splits = tfds_splits(key, data_dir, download, limit_train, limit_test)
    # Slicing numpy arrays: views, no copy.
    return dataclasses.replace(
        splits,
        x_train=splits.x_train[:limit_train],
        y_train=splits.y_train[:limit_train],
        x_test=splits.x_test[:limit_test],
        y_test=splits.y_test[:limit_test],
    )


def _array_batches(
    key: str, splits: ArraySplits, batch_size: int, augment: bool, seed: int
) -> tuple[ImageBatches, ImageBatches, DatasetInfo]:
    """The train and test `ImageBatches` of in-memory set `key`, normalized, and its `DatasetInfo`."""
    mean, std = normalization(key, splits.x_train)
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
