"""Where the streamed sets' images come from: a folder tree, or tensorflow-datasets.

* `FolderSource`: one split of a class-per-folder tree of image files,
  torchvision's `ImageFolder` layout (`folder_sources` opens both splits of
  `DIR/train/` and `DIR/val/`).
* `TFDSSource`: one split of a prepared tensorflow-datasets set, its images
  left encoded (`tfds_sources` opens both, preparing imagenet2012 from the
  user's ILSVRC2012 tars or downloading imagenette when needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from keras_recu.app.data.base import CorruptDataError, DataUnavailableError, PathLike, TFDS_EXTRAS_HELP
from keras_recu.app.data.imagenet.decode import import_tensorflow
from keras_recu.app.messages import first_line

__all__ = [
    "FolderSource",
    "IMAGENET_TARS",
    "IMAGE_EXTENSIONS",
    "TFDSSource",
    "TFDS_NAMES",
    "TFDS_SHUFFLE_BUFFER",
    "TFDS_TEST_SPLIT",
    "TF_IMAGE_EXTENSIONS",
    "folder_sources",
    "tf_unreadable",
    "tfds_sources",
]

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
        if empty:
            # torchvision's ImageFolder refuses a class without images; a val
            # split without one of the train split's classes is no test of it.
            missing = [name for name in empty if not (directory / name).is_dir()]
            what = "lacks the class folder(s)" if missing == empty else "has class folder(s) without images:"
            shown = ", ".join(str(directory / name) for name in empty[:3])
            more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
            fix = (
                "Add the images, or remove the folder." if own_classes else
                f"train/ and val/ must hold the same classes, each with images: add this class's images to "
                f"{directory}, or remove the class from both splits."
            )
            raise DataUnavailableError(f"{directory} {what} {shown}{more}. {fix}")
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

    def not_decodable_by_tf(self) -> list:
        """The files (str) whose suffix is not one of `TF_IMAGE_EXTENSIONS`: TensorFlow cannot decode them."""
        return [os.fsdecode(p) for p in self.paths if not os.fsdecode(p).lower().endswith(TF_IMAGE_EXTENSIONS)]


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


def tfds_sources(
    key: str,
    data_dir: Optional[PathLike],
    download: bool,
    manual_dir: Optional[PathLike],
    limit_train: Optional[int],
    limit_test: Optional[int],
) -> tuple[TFDSSource, TFDSSource, int]:
    """The train and test `TFDSSource` of set `key` and its number of classes, prepared if need be."""
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
                f"Data set {key!r} ({name}) is not prepared {where} and downloads are off (download=False, "
                "--no-download): run once without --no-download where the network is reachable (it downloads "
                "~325 MB), or pass --data-dir of a tensorflow_datasets directory that holds it."
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


def tf_unreadable(paths: Sequence[str]) -> CorruptDataError:
    """The error for image files the tf decoder cannot read: the first, how many more, what each decoder reads."""
    suffixes = "/".join(sorted({os.path.splitext(p)[1].lower() for p in paths}))
    more = f" (and {len(paths) - 1} more {suffixes} files)" if len(paths) > 1 else ""
    return CorruptDataError(
        f"{paths[0]}{more}: the tf decoder (--decoder tf) reads {', '.join(TF_IMAGE_EXTENSIONS)} files only; the "
        f"pil decoder reads {', '.join(IMAGE_EXTENSIONS)}. Use --decoder pil (or auto), or convert these files "
        "to JPEG."
    )


def folder_sources(
    data_dir: Optional[PathLike], limit_train: Optional[int], limit_test: Optional[int]
) -> tuple[FolderSource, FolderSource, int]:
    """The train and val `FolderSource` of the tree `data_dir` and its number of classes."""
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
