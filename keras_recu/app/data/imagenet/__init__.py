"""ImageNet-scale data: JPEG sources, the ReCU authors' transforms, streaming batches.

`data.load` calls `load_splits` here for the sets of `data.IMAGENET_DATASETS`:

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

The modules, each importing only those before it: `transform` (the
numbers: `ImageNetTransform`, `EpochDraws`, the crop geometry, Lighting),
`decode` (the PIL and tf decoders), `sources` (`FolderSource`,
`TFDSSource`), `stream` (`StreamBatches`); this face builds the splits.
"""

from __future__ import annotations

from typing import Optional

from keras_recu.app.data.base import DatasetInfo
from keras_recu.app.data.imagenet.decode import (
    DECODERS,
    import_tensorflow,
    pil_eval_image,
    pil_train_image,
    resolve_decoder,
    tensorflow_available,
    tf_math,
)
from keras_recu.app.data.imagenet.sources import (
    IMAGE_EXTENSIONS,
    FolderSource,
    TFDSSource,
    folder_sources,
    tf_unreadable,
    tfds_sources,
)
from keras_recu.app.data.imagenet.stream import StreamBatches
from keras_recu.app.data.imagenet.transform import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpochDraws,
    ImageNetTransform,
    apply_lighting,
    crop_box,
    eval_geometry,
    lighting_increment,
    normalize_pixels,
)

__all__ = [
    "DECODERS",
    "EpochDraws",
    "FolderSource",
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageNetTransform",
    "StreamBatches",
    "TFDSSource",
    "apply_lighting",
    "crop_box",
    "eval_geometry",
    "import_tensorflow",
    "lighting_increment",
    "load_splits",
    "normalize_pixels",
    "pil_eval_image",
    "pil_train_image",
    "resolve_decoder",
    "tensorflow_available",
    "tf_math",
]


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
) -> tuple[StreamBatches, StreamBatches, DatasetInfo]:
    """`data.load` for the sets of `data.IMAGENET_DATASETS`; arguments checked there."""
    transform = transform or ImageNetTransform()
    if key == "image_folder":
        train_source, test_source, classes = folder_sources(data_dir, limit_train, limit_test)
        chosen = _folder_decoder(decoder, train_source, test_source)
        source_name = "folder"
    else:
        if decoder == "pil":
            raise ValueError(f"--dataset {key} comes from tensorflow-datasets, which only the tf decoder reads; "
                             "use decoder 'auto' or 'tf'")
        chosen = "tf"
        train_source, test_source, classes = tfds_sources(key, data_dir, download, manual_dir, limit_train, limit_test)
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


def _folder_decoder(decoder: str, *sources: FolderSource) -> str:
    """"tf" or "pil" for an image folder: "auto" takes pil where the folder holds files TensorFlow cannot decode."""
    chosen = resolve_decoder(decoder)
    if chosen == "tf":
        odd = [path for source in sources for path in source.not_decodable_by_tf()]
        if odd and decoder == "auto":
            # The same tree makes the same choice in every session, so a resumed run decodes alike.
            more = f" and {len(odd) - 1} other file(s)" if len(odd) > 1 else ""
            print(f"note: {odd[0]}{more} {'are' if more else 'is'} in a format TensorFlow cannot decode: the "
                  "image folder is decoded with PIL (--decoder pil).")
            return "pil"
        if odd:
            raise tf_unreadable(odd)
    return chosen
