"""Tests of `keras_recu.app.data`: offline (synthetic, tiny IDX files, Debian's Fashion-MNIST).

Backend-neutral: they run under KERAS_BACKEND=tensorflow, jax and torch; the
tensorflow-datasets path is `tf_only`.
"""

import gzip
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_recu.app import data
from keras_recu.app.data import arrays, synthetic
from tests.run_utils import environment

DEBIAN = data.FASHION_MNIST_DIR
HAVE_DEBIAN = all((DEBIAN / f).is_file() for f in data.FASHION_MNIST_FILES.values())
ROOT = Path(__file__).resolve().parents[1]


def test_debian_fashion_mnist_is_installed():
    assert HAVE_DEBIAN, (
        f"{DEBIAN} lacks the Fashion-MNIST IDX files: run `make test` (it installs Debian's "
        "dataset-fashion-mnist) or apt-get install dataset-fashion-mnist"
    )


def collect(batches):
    """All batches of the current epoch as two numpy arrays, plus the batch sizes."""
    images, labels, sizes = [], [], []
    for x, y in batches:
        images.append(x)
        labels.append(y)
        sizes.append(len(y))
    return np.concatenate(images), np.concatenate(labels), sizes


def fit_pass(batches):
    """One epoch as `fit` reads it: on_epoch_begin, every batch, on_epoch_end."""
    batches.on_epoch_begin()
    result = collect(batches)
    batches.on_epoch_end()
    return result


def write_idx(path, array, magic):
    header = int(magic).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.asarray(array, np.uint8).tobytes())


@pytest.fixture
def tiny_idx(tmp_path):
    """Four small valid Fashion-MNIST-style IDX files: 12 train and 5 test images."""
    rng = np.random.default_rng(7)
    arrays = {
        "train_images": rng.integers(0, 256, (12, 28, 28)),
        "train_labels": np.arange(12) % 10,
        "test_images": rng.integers(0, 256, (5, 28, 28)),
        "test_labels": np.array([9, 2, 1, 1, 6]),
    }
    for key, array in arrays.items():
        magic = data.IDX_IMAGES_MAGIC if key.endswith("images") else data.IDX_LABELS_MAGIC
        write_idx(tmp_path / data.FASHION_MNIST_FILES[key], array, magic)
    return tmp_path, arrays


def identity_batches(images, batch_size, **kwargs):
    """ImageBatches whose label is each image's index and whose normalization is the identity."""
    channels = images.shape[-1]
    return data.ImageBatches(
        images, np.arange(len(images)), batch_size, mean=[0.0] * channels, std=[1.0] * channels, **kwargs
    )


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtypes_and_batches():
    train, test, info = data.load("synthetic", 64, limit_train=150, limit_test=70)
    assert info == data.DatasetInfo(
        "synthetic", (16, 16, 1), 10, 150, 70, "synthetic", info.mean, info.std, augmentation=()
    )
    assert isinstance(train, keras.utils.PyDataset) and isinstance(test, keras.utils.PyDataset)
    assert (len(train), len(test)) == (3, 2)
    x, y, sizes = collect(train)
    assert sizes == [64, 64, 22]  # the last partial batch is kept
    assert x.shape == (150, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.flags.c_contiguous
    assert y.min() >= 0 and y.max() < 10
    x_test, y_test, test_sizes = collect(test)
    assert test_sizes == [64, 6] and x_test.dtype == np.float32 and y_test.dtype == np.int32
    images, labels = test[1]  # how the app pulls verification images
    assert images.shape == (6, 16, 16, 1) and np.array_equal(labels, y_test[64:])


def test_synthetic_default_sizes_and_limits_take_the_first_examples():
    _, _, info = data.load("synthetic", 32)
    assert (info.train_examples, info.test_examples) == (2000, 500)
    _, test_all, _ = data.load("synthetic", 500)
    _, test_10, _ = data.load("synthetic", 500, limit_test=10)
    assert np.array_equal(collect(test_10)[1], collect(test_all)[1][:10])
    _, _, info = data.load("synthetic", 32, limit_train=3000)  # a limit above the default sets the size
    assert info.train_examples == 3000


def cli_synthetic_images(samples, size=16, classes=10, seed=0):
    """The CLI's original `synthetic_images`, which the one in `data` must reproduce."""
    rng = np.random.default_rng(seed)
    templates = np.sign(rng.normal(size=(classes, size, size, 1)))
    labels = rng.integers(0, classes, size=samples)
    noise = rng.normal(0.0, 1.5, size=(samples, size, size, 1))
    return (templates[labels] + noise).astype("float32"), labels.astype("int32")


def test_synthetic_images_matches_the_cli_version_and_shares_templates():
    x, y = data.synthetic_images(50, seed=3)
    assert x.shape == (50, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int32
    x_cli, y_cli = cli_synthetic_images(50, seed=3)
    assert np.array_equal(x, x_cli) and np.array_equal(y, y_cli)
    x_same, y_same = data.synthetic_images(50, seed=3, template_seed=3)
    assert np.array_equal(x, x_same) and np.array_equal(y, y_same)

    # load("synthetic"): test samples differ from train samples, the class templates do not.
    train, test, _ = data.load("synthetic", 500, augment=False, seed=5)
    x_train, y_train, _ = collect(train)
    x_test, y_test, _ = collect(test)
    assert not set(x_train[:, 0, 0, 0]) & set(x_test[:, 0, 0, 0])  # no test sample is a train sample
    for label in range(10):
        assert np.array_equal(
            np.sign(x_train[y_train == label].mean(0)), np.sign(x_test[y_test == label].mean(0))
        )


def test_synthetic_is_not_augmented_and_test_is_not_shuffled():
    train, test, info = data.load("synthetic", 8, limit_train=24, limit_test=60, augment=True)
    assert info.augmentation == () and train.augmentation == ()
    first, second = fit_pass(train), fit_pass(train)
    assert not np.array_equal(first[1], second[1])  # a new order...
    assert sorted(x.tobytes() for x in first[0]) == sorted(x.tobytes() for x in second[0])  # same images
    test_a, test_b = fit_pass(test), fit_pass(test)
    _, y_expected = data.synthetic_images(60, seed=synthetic.synthetic_test_seed(0), template_seed=0)
    assert np.array_equal(test_a[1], test_b[1]) and np.array_equal(test_a[0], test_b[0])
    assert np.array_equal(test_a[1], y_expected)  # the generated order, unshuffled


# --------------------------------------------------------------------------- per-epoch seeding


def test_batches_are_a_pure_function_of_seed_epoch_and_index(tiny_idx):
    directory, _ = tiny_idx

    def load(seed=3):
        return data.load("fashion_mnist", 5, data_dir=directory, seed=seed)[0]

    train = load()
    assert train.epoch == 0
    epochs = [fit_pass(train) for _ in range(3)]
    assert train.epoch == 3  # each complete pass advances the epoch
    # Each epoch is a new order and new augmentation, of the whole split.
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    assert not np.array_equal(epochs[1][1], epochs[2][1]) or not np.array_equal(epochs[1][0], epochs[2][0])
    for _, labels, sizes in epochs:
        assert sizes == [5, 5, 2] and sorted(labels) == sorted(np.arange(12) % 10)

    # set_epoch(k) on a fresh dataset gives epoch k, whatever the order of reading.
    fresh = load()
    fresh.set_epoch(2)
    backwards = [fresh[i] for i in reversed(range(len(fresh)))][::-1]
    assert np.array_equal(np.concatenate([x for x, _ in backwards]), epochs[2][0])
    assert np.array_equal(np.concatenate([y for _, y in backwards]), epochs[2][1])
    fresh.set_epoch(0)
    assert all(np.array_equal(a, b) for a, b in zip(collect(fresh), epochs[0]))
    # Reading outside a pass of `fit` does not advance the epoch.
    collect(fresh)
    assert fresh.epoch == 0

    # Another seed: other batches.
    other = load(seed=4)
    assert not np.array_equal(collect(other)[0], epochs[0][0])


def test_a_partial_read_does_not_advance_the_epoch():
    train, _, _ = data.load("synthetic", 10, limit_train=30)
    train.on_epoch_begin()
    first = train[1]
    train.on_epoch_end()  # what JAX and torch do after drawing a batch to build the model
    assert train.epoch == 0
    train.on_epoch_end()  # Keras' reset before the first epoch, with no pass begun
    assert train.epoch == 0 and np.array_equal(train[1][0], first[0])


def test_epoch_streams_are_apart_from_the_seed_stream():
    # numpy's SeedSequence pads with zeros: default_rng([seed, 0]) is default_rng(seed).
    # The epoch generators must not replay the stream synthetic_images(seed) draws from.
    seed = 5
    plain = np.random.default_rng(seed).integers(1 << 30, size=8)
    assert not np.array_equal(data.epoch_generator(seed, 0).integers(1 << 30, size=8), plain)
    assert not np.array_equal(
        data.epoch_generator(seed, 0).integers(1 << 30, size=8),
        data.epoch_generator(seed, 1).integers(1 << 30, size=8),
    )


# --------------------------------------------------------------------------- fit


class LoggedBatches(data.ImageBatches):
    """Records the epoch and the labels of every batch served."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def __getitem__(self, index):
        images, labels = super().__getitem__(index)
        self.log.append((self.epoch, index, labels.tolist()))
        return images, labels


class SetEpoch(keras.callbacks.Callback):
    """What the training job does: pin the data's epoch at each epoch's start."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


def test_fit_sees_epochs_in_order_and_resume_replays_them_exactly():
    train, test, info = data.load("synthetic", 16, limit_train=40, limit_test=16, seed=2)

    def logged():
        return LoggedBatches(train.images, train.labels, 16, mean=train.mean, std=train.std,
                             shuffle=True, augmentation=train.augmentation, seed=2)

    def model():
        net = keras.Sequential([keras.Input(info.input_shape), keras.layers.Flatten(), keras.layers.Dense(10)])
        net.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return net

    plain = logged()
    history = model().fit(plain, validation_data=test, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and "val_loss" in history.history
    assert plain.epoch == 2
    passes = plain.log[-6:]  # before them: Keras' model-building or signature reads
    assert [(e, i) for e, i, _ in passes] == [(e, i) for e in range(2) for i in range(3)]
    for e in range(2):
        expected = data.epoch_generator(2, e).permutation(40)
        assert sum((labels for _, _, labels in passes[3 * e : 3 * e + 3]), []) == train.labels[expected].tolist()

    # Resumed at epoch 1 in a "new process": a fresh dataset, the callback pins the epoch.
    resumed = logged()
    model().fit(resumed, epochs=2, initial_epoch=1, shuffle=False, verbose=0, callbacks=[SetEpoch(resumed)])
    assert resumed.log[-3:] == passes[3:]


# --------------------------------------------------------------------------- normalization


def assert_standardized(x):
    mean = x.reshape(-1, x.shape[-1]).mean(0)
    std = x.reshape(-1, x.shape[-1]).std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(std, 1.0, atol=1e-4)


def test_synthetic_training_split_is_standardized():
    train, _, info = data.load("synthetic", 128, augment=False, limit_train=300)
    assert_standardized(collect(train)[0])
    assert len(info.mean) == len(info.std) == 1


def test_fashion_mnist_training_split_is_standardized():
    train, _, info = data.load("fashion_mnist", 500, augment=False, limit_train=2000, limit_test=10)
    assert_standardized(collect(train)[0])
    assert 0 < info.mean[0] < 255 and info.std[0] > 0


def test_cifar10_uses_the_standard_constants():
    mean, std = arrays.normalization("cifar10", np.zeros((1, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(mean / 255, (0.4914, 0.4822, 0.4465))
    np.testing.assert_allclose(std / 255, (0.2470, 0.2435, 0.2616))


def test_channel_stats_of_uint8_images_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (20, 5, 5, 3)).astype(np.uint8)
    mean, std = arrays.channel_stats(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(std, x.reshape(-1, 3).std(0))


def test_rgb_normalization_is_per_channel_in_float32():
    x = np.random.default_rng(1).integers(0, 256, (7, 4, 5, 3)).astype(np.uint8)
    mean, std = [125.3, 122.9, 113.8], [62.99, 62.09, 66.70]
    batches = data.ImageBatches(x, np.zeros(7), 4, mean=mean, std=std)
    expected = (x.astype(np.float32) - np.float32(mean)) / np.float32(std)
    assert np.array_equal(collect(batches)[0], expected)  # bit for bit


# --------------------------------------------------------------------------- Fashion-MNIST


def test_debian_files_hold_the_standard_set():
    train_labels = data.read_idx(DEBIAN / data.FASHION_MNIST_FILES["train_labels"], 2049)
    test_labels = data.read_idx(DEBIAN / data.FASHION_MNIST_FILES["test_labels"], 2049)
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    # Known facts of the standard set: both splits start with an ankle boot (9).
    assert train_labels[0] == 9 and test_labels[0] == 9
    assert set(np.unique(train_labels)) == set(range(10))


def test_fashion_mnist_loads_from_debian():
    train, test, info = data.load("fashion_mnist", 1000, augment=False)
    assert info.name == "fashion_mnist" and info.source == "debian"
    assert info.input_shape == (28, 28, 1) and info.num_classes == 10
    assert (info.train_examples, info.test_examples) == (60000, 10000)
    assert info.augmentation == () and train.augmentation == ()  # augment=False
    assert (len(train), len(test)) == (60, 10)
    x, y = test[0]
    assert x.shape == (1000, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert int(y[0]) == 9  # the test split keeps its order


def test_fashion_mnist_from_a_data_dir_copy(tmp_path):
    for filename in data.FASHION_MNIST_FILES.values():
        shutil.copy(DEBIAN / filename, tmp_path / filename)
    _, test, info = data.load("fashion_mnist", 16, data_dir=tmp_path, limit_train=64, limit_test=16)
    assert info.source == "debian" and (info.train_examples, info.test_examples) == (64, 16)
    assert int(test[0][1][0]) == 9


def test_truncated_copy_of_the_debian_file_is_reported(tmp_path):
    for filename in data.FASHION_MNIST_FILES.values():
        shutil.copy(DEBIAN / filename, tmp_path / filename)
    labels = tmp_path / data.FASHION_MNIST_FILES["train_labels"]
    labels.write_bytes(labels.read_bytes()[:10000])
    with pytest.raises(data.CorruptDataError, match="corrupt or truncated gzip file") as caught:
        data.load("fashion_mnist", 16, data_dir=tmp_path)
    assert str(labels) in str(caught.value)


def test_tiny_idx_files_load_through_data_dir(tiny_idx):
    directory, arrays = tiny_idx
    train, test, info = data.load("fashion_mnist", 5, data_dir=directory, augment=False)
    assert info == data.DatasetInfo(
        "fashion_mnist", (28, 28, 1), 10, 12, 5, "debian", info.mean, info.std, augmentation=()
    )
    x_test, y_test, sizes = collect(test)
    assert sizes == [5] and np.array_equal(y_test, arrays["test_labels"])
    expected = (arrays["test_images"][..., None] - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(x_test, expected, rtol=1e-5, atol=1e-5)
    x_train, y_train, sizes = collect(train)
    assert sizes == [5, 5, 2] and sorted(y_train) == sorted(arrays["train_labels"])
    assert_standardized(x_train)


def test_idx_data_shorter_than_its_header_says(tiny_idx):
    directory, _ = tiny_idx
    path = directory / data.FASHION_MNIST_FILES["test_labels"]
    with gzip.open(path, "wb") as f:  # says 10 labels, holds 3
        f.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes([1, 2, 3]))
    with pytest.raises(data.CorruptDataError, match="header says 10 = 10 bytes of data, the file holds 3"):
        data.load("fashion_mnist", 4, data_dir=directory)


def test_idx_wrong_magic_number(tiny_idx):
    directory, _ = tiny_idx
    labels = directory / data.FASHION_MNIST_FILES["train_labels"]
    shutil.copy(directory / data.FASHION_MNIST_FILES["train_images"], labels)
    with pytest.raises(data.CorruptDataError, match="magic number 2051, expected 2049"):
        data.load("fashion_mnist", 4, data_dir=directory)


def test_idx_image_and_label_counts_must_agree(tiny_idx):
    directory, _ = tiny_idx
    write_idx(directory / data.FASHION_MNIST_FILES["test_labels"], np.zeros(4), data.IDX_LABELS_MAGIC)
    with pytest.raises(data.CorruptDataError, match="5 images but 4 labels"):
        data.load("fashion_mnist", 4, data_dir=directory)


# --------------------------------------------------------------------------- fail fast


@pytest.mark.parametrize("download", [True, False])
@pytest.mark.parametrize("kind", ["empty", "missing", "partial", "file"])
def test_a_data_dir_without_fashion_mnist_fails_at_once(tmp_path, tiny_idx, kind, download):
    directory, _ = tiny_idx
    if kind == "empty":
        data_dir = tmp_path / "empty"
        data_dir.mkdir()
        state = "lacks train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"
    elif kind == "missing":
        data_dir, state = tmp_path / "nowhere", "does not exist"
    elif kind == "partial":
        data_dir = directory
        (directory / data.FASHION_MNIST_FILES["test_labels"]).unlink()
        state = "lacks t10k-labels-idx1-ubyte.gz. "
    else:
        data_dir, state = directory / data.FASHION_MNIST_FILES["test_labels"], "is not a directory"
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("fashion_mnist", 32, data_dir=data_dir, download=download)
    assert time.perf_counter() - start < 2  # no tensorflow-datasets, no network
    message = str(caught.value)
    assert f"--data-dir {data_dir}: it {state}" in message
    for filename in data.FASHION_MNIST_FILES.values():
        assert filename in message
    assert str(DEBIAN) in message and "fashion_mnist/" in message


def test_tfds_sets_without_tensorflow_name_the_extras(monkeypatch):
    # As on a machine without TensorFlow: importing it (or tensorflow-datasets) fails.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("cifar10", 32)
    assert time.perf_counter() - start < 2
    message = str(caught.value)
    assert 'pip install "keras-recu[tensorflow,train]"' in message
    assert "--dataset synthetic" in message and isinstance(caught.value.__cause__, ImportError)


@pytest.mark.tf_only
def test_tfds_set_not_available_offline(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("cifar10", 32, data_dir=tmp_path, download=False)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert f"Data set 'cifar10' is not in {tmp_path} and downloads are off (--no-download)" in message
    assert "network is reachable" in message and "--data-dir" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.tf_only
def test_a_tensorflow_datasets_dir_for_fashion_mnist_goes_to_tfds(tmp_path):
    (tmp_path / "fashion_mnist").mkdir()  # looks prepared, holds nothing
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("fashion_mnist", 32, data_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "tensorflow-datasets could not provide it either" in message
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path) in message


def test_no_tensorflow_on_the_numpy_paths(tiny_idx):
    # A fresh JAX-backend process where TensorFlow cannot be imported, as on
    # the GPU machines: the IDX and synthetic sets load, batch and fit.
    directory, _ = tiny_idx
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys, time

        class NoTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
                    raise ImportError("no TensorFlow here")

        sys.meta_path.insert(0, NoTensorFlow())
        import keras
        from keras_recu.app import data

        assert keras.backend.backend() == "jax"
        train, test, info = data.load("fashion_mnist", 5, data_dir={str(directory)!r})
        assert info.source == "debian" and train[2][0].shape == (2, 28, 28, 1)
        train, test, info = data.load("fashion_mnist", 256, limit_train=512, limit_test=8)
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train, epochs=1, shuffle=False, verbose=0)
        assert train.epoch == 1
        train, test, info = data.load("synthetic", 8, limit_train=16, limit_test=8)
        assert test[0][0].dtype.name == "float32"
        start = time.perf_counter()
        try:
            data.load("fashion_mnist", 8, data_dir={str(directory / "empty")!r})
        except data.DataUnavailableError:
            assert time.perf_counter() - start < 2
        else:
            raise AssertionError("an empty --data-dir loaded")
        try:
            data.load("mnist", 8)
        except data.DataUnavailableError as error:
            assert "keras-recu[tensorflow,train]" in str(error)
        else:
            raise AssertionError("mnist loaded without TensorFlow")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets"))
        assert not loaded, loaded
        print("ok")
        """
    )
    env = environment(KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# --------------------------------------------------------------------------- augmentation


def reference_augment(image, shift, flip, pad=data.PAD):
    """torchvision's RandomCrop(padding=pad) then RandomHorizontalFlip, for one image."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    crop = padded[shift[0] : shift[0] + height, shift[1] : shift[1] + width]
    return crop[:, ::-1] if flip else crop


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.float32, 1), (np.float64, 2)])
def test_augment_batch_matches_pad_crop_flip(dtype, channels):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (40, 9, 7, channels)).astype(dtype)
    shifts, flips = rng.integers(0, 9, (40, 2)), rng.random(40) < 0.5
    out = data.augment_batch(images, shifts, flips)
    assert out.dtype == images.dtype and out.shape == images.shape and out.flags.c_contiguous
    expected = np.stack([reference_augment(*args) for args in zip(images, shifts, flips)])
    assert np.array_equal(out, expected)
    assert np.array_equal(data.augment_batch(images, shifts), np.stack(
        [reference_augment(image, shift, False) for image, shift in zip(images, shifts)]))
    assert np.array_equal(data.augment_batch(images, flips=flips), np.stack(
        [image[:, ::-1] if flip else image for image, flip in zip(images, flips)]))
    assert np.array_equal(data.augment_batch(images, np.full((40, 2), 4)), images)  # (pad, pad): in place


def test_augment_batch_rejects_bad_parameters():
    images = np.zeros((3, 5, 5, 1), np.uint8)
    with pytest.raises(ValueError, match=r"shifts must be integers in \[0, 8\]"):
        data.augment_batch(images, np.full((3, 2), 9))
    with pytest.raises(ValueError, match=r"of shape \(3, 2\)"):
        data.augment_batch(images, np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="flips must be bools"):
        data.augment_batch(images, flips=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        data.augment_batch(images[0])


def shifts_and_flips(outputs, sources, flips_allowed):
    """For each augmented output, the one (shift, flip) that makes it from its source."""
    found = []
    for out, image in zip(outputs, sources):
        matches = [
            ((dy - data.PAD, dx - data.PAD), flip)
            for dy in range(2 * data.PAD + 1)
            for dx in range(2 * data.PAD + 1)
            for flip in ((False, True) if flips_allowed else (False,))
            if np.array_equal(out, reference_augment(image, (dy, dx), flip))
        ]
        assert len(matches) == 1, "not a pad-crop(-flip) of its source image"
        found.append(matches[0])
    return found


@pytest.mark.parametrize("augmentation", [("crop", "flip"), ("crop",)])
def test_pipeline_augmentation_is_crop_and_flip_in_raw_pixels(augmentation):
    # Distinct positive pixels, so each output tells its shift and flip, and
    # the zero padding shows as exactly 0 in raw units.
    images = np.random.default_rng(3).permutation(40 * 6 * 5).reshape(40, 6, 5, 1) + 1.0
    batches = identity_batches(images, 16, shuffle=True, augmentation=augmentation, seed=1)
    seen = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        outputs, labels, _ = collect(batches)
        seen += shifts_and_flips(outputs, images[labels], "flip" in augmentation)
    shifts = {shift for shift, _ in seen}
    assert all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in shifts) and len(shifts) > 40
    flips = [flip for _, flip in seen]
    if "flip" in augmentation:
        assert 0.35 < np.mean(flips) < 0.65  # p = 1/2
    else:
        assert not any(flips)  # mnist, svhn_cropped: a mirrored digit is no digit


def test_padding_is_black_before_normalization(tiny_idx):
    directory, _ = tiny_idx
    train, _, info = data.load("fashion_mnist", 12, data_dir=directory, seed=5)
    black = np.float32(-info.mean[0]) / np.float32(info.std[0])
    images = train[0][0]
    # Some image was shifted: a whole border row or column is the normalized 0.
    borders = [images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]]
    assert any((border == black).all(axis=(1, 2)).any() for border in borders)


def test_augmentation_policy():
    assert set(data.AUGMENTATION) == set(data.DATASETS)
    for name in ("mnist", "svhn_cropped"):  # a mirrored digit is no digit
        assert data.AUGMENTATION[name] == ("crop",)
    for name in ("cifar10", "cifar100", "fashion_mnist"):
        assert data.AUGMENTATION[name] == ("crop", "flip")
    assert data.AUGMENTATION["synthetic"] == ()


def test_the_same_image_differs_across_epochs_and_repeats_for_a_seed(tiny_idx):
    directory, _ = tiny_idx
    train, _, info = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, seed=3)
    assert info.augmentation == ("crop", "flip")
    epochs = [fit_pass(train)[0][0] for _ in range(4)]
    assert all(e.shape == (28, 28, 1) for e in epochs)
    assert len({e.tobytes() for e in epochs}) > 1
    again, _, _ = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, seed=3)
    assert all(np.array_equal(a, fit_pass(again)[0][0]) for a in epochs)
    plain, _, _ = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, augment=False)
    assert np.array_equal(fit_pass(plain)[0], fit_pass(plain)[0])


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError) as caught:
        data.load("imagenet", 32)
    for name in data.DATASETS:
        assert name in str(caught.value)
    assert "imagenet" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"limit_train": 0}, "limit_train"),
        ({"limit_test": -1}, "limit_test"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    arguments = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=argument):
        data.load("synthetic", arguments.pop("batch_size"), **arguments)


def test_image_batches_reject_bad_input():
    images = np.zeros((5, 4, 4, 3), np.uint8)
    batches = data.ImageBatches(images, np.zeros(5), 2, mean=[0, 0, 0], std=[1, 1, 1])
    with pytest.raises(IndexError, match="batch index 3 out of range: this split has 3 batches"):
        batches[3]
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        batches.set_epoch(-1)
    with pytest.raises(ValueError, match=r"one value per channel \(3\)"):
        data.ImageBatches(images, np.zeros(5), 2, mean=[0], std=[1])
    with pytest.raises(ValueError, match="std finite and positive"):
        data.ImageBatches(images, np.zeros(5), 2, mean=[0, 0, 0], std=[1, 0, 1])
    with pytest.raises(ValueError, match=r"Unknown augmentation step\(s\) \['rotate'\]"):
        data.ImageBatches(images, np.zeros(5), 2, mean=[0] * 3, std=[1] * 3, augmentation=("rotate",))
    with pytest.raises(ValueError, match=r"labels \(N,\)"):
        data.ImageBatches(images, np.zeros(4), 2, mean=[0] * 3, std=[1] * 3)
