"""Fashion-MNIST's IDX files: where Debian installs them, and a checked reader.

Debian's package dataset-fashion-mnist installs the four gzip-compressed IDX
files in `FASHION_MNIST_DIR`; `read_fashion_mnist` reads them (or the same
four files in another folder) into numpy, and `read_idx` reads one file,
refusing a truncated or damaged one with `CorruptDataError`.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from keras_recu.app.data.base import CorruptDataError, PathLike

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "fashion_mnist_files",
    "read_fashion_mnist",
    "read_idx",
]

# Debian's dataset-fashion-mnist installs these four files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# IDX magic numbers: 0x0000 0x08 (unsigned byte) 0x0N (N dimensions).
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


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


def fashion_mnist_files(directory: Path) -> dict:
    """The paths of the four Fashion-MNIST IDX files in `directory`, by `FASHION_MNIST_FILES` key."""
    return {key: directory / filename for key, filename in FASHION_MNIST_FILES.items()}


def read_fashion_mnist(directory: PathLike = FASHION_MNIST_DIR):
    """Reads the four Fashion-MNIST IDX files of `directory`.

    Returns `(x_train, y_train, x_test, y_test)`: uint8 images (N, 28, 28, 1)
    and int32 labels (N,). Raises `FileNotFoundError` when a file is missing
    and `CorruptDataError` when one is damaged or the files disagree.
    """
    files = fashion_mnist_files(Path(directory))
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

