"""Tests of `keras_recu.app.data`: offline (synthetic, tiny IDX files, Debian's Fashion-MNIST)."""

import gzip
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_recu.app import data

DEBIAN = data.FASHION_MNIST_DIR
HAVE_DEBIAN = all((DEBIAN / f).is_file() for f in data.FASHION_MNIST_FILES.values())


def needs_debian(test):
    """Marks tests on the real files; `make test` installs them, so they never skip."""
    return test


def test_debian_fashion_mnist_is_installed():
    assert HAVE_DEBIAN, (
        f"{DEBIAN} lacks the Fashion-MNIST IDX files: run `make test` (it installs Debian's "
        "dataset-fashion-mnist) or apt-get install dataset-fashion-mnist"
    )


def epoch(dataset):
    """One pass over a (images, labels) dataset as two numpy arrays, plus the batch sizes."""
    images, labels, sizes = [], [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
        sizes.append(int(y.shape[0]))
    return np.concatenate(images), np.concatenate(labels), sizes


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


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtypes_and_batches():
    train, test, info = data.load("synthetic", 64, limit_train=150, limit_test=70)
    assert info == data.DatasetInfo(
        "synthetic", (16, 16, 1), 10, 150, 70, "synthetic", info.mean, info.std, augmentation=()
    )
    x, y, sizes = epoch(train)
    assert sizes == [64, 64, 22]  # the last partial batch is kept
    assert x.shape == (150, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.int32
    assert y.min() >= 0 and y.max() < 10
    x_test, y_test, test_sizes = epoch(test)
    assert test_sizes == [64, 6] and x_test.dtype == np.float32 and y_test.dtype == np.int32
    assert train.element_spec[0].shape.as_list() == [None, 16, 16, 1]
    assert train.element_spec[1].dtype == tf.int32


def test_synthetic_default_sizes_and_limits_take_the_first_examples():
    _, _, info = data.load("synthetic", 32)
    assert (info.train_examples, info.test_examples) == (2000, 500)
    _, test_all, _ = data.load("synthetic", 500)
    _, test_10, _ = data.load("synthetic", 500, limit_test=10)
    assert np.array_equal(epoch(test_10)[1], epoch(test_all)[1][:10])
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
    x_train, y_train, _ = epoch(train)
    x_test, y_test, _ = epoch(test)
    assert not set(x_train[:, 0, 0, 0]) & set(x_test[:, 0, 0, 0])  # no test sample is a train sample
    for label in range(10):
        assert np.array_equal(
            np.sign(x_train[y_train == label].mean(0)), np.sign(x_test[y_test == label].mean(0))
        )


def test_synthetic_is_deterministic_for_a_seed():
    a = epoch(data.load("synthetic", 32, limit_train=100, seed=11)[0])
    b = epoch(data.load("synthetic", 32, limit_train=100, seed=11)[0])
    c = epoch(data.load("synthetic", 32, limit_train=100, seed=12)[0])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_train_is_reshuffled_each_epoch_and_test_is_not_shuffled():
    train, test, _ = data.load("synthetic", 32, limit_train=100, limit_test=60)
    first, second = epoch(train), epoch(train)
    assert not np.array_equal(first[1], second[1])
    assert np.array_equal(np.sort(first[1]), np.sort(second[1]))  # the same examples
    assert np.allclose(np.sort(first[0].ravel()), np.sort(second[0].ravel()))
    test_a, test_b = epoch(test), epoch(test)
    _, y_expected = data.synthetic_images(60, seed=data._synthetic_test_seed(0), template_seed=0)
    assert np.array_equal(test_a[1], test_b[1]) and np.array_equal(test_a[0], test_b[0])
    assert np.array_equal(test_a[1], y_expected)  # the generated order, unshuffled


def test_synthetic_is_not_augmented():
    train, _, info = data.load("synthetic", 8, limit_train=8, augment=True)
    assert info.augmentation == ()
    assert np.array_equal(np.sort(epoch(train)[0].ravel()), np.sort(epoch(train)[0].ravel()))


# --------------------------------------------------------------------------- normalization


def assert_standardized(x):
    mean = x.reshape(-1, x.shape[-1]).mean(0)
    std = x.reshape(-1, x.shape[-1]).std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-4)
    np.testing.assert_allclose(std, 1.0, atol=1e-4)


def test_synthetic_training_split_is_standardized():
    train, _, info = data.load("synthetic", 128, augment=False, limit_train=300)
    assert_standardized(epoch(train)[0])
    assert len(info.mean) == len(info.std) == 1


@needs_debian
def test_fashion_mnist_training_split_is_standardized():
    train, _, info = data.load("fashion_mnist", 500, augment=False, limit_train=2000, limit_test=10)
    assert_standardized(epoch(train)[0])
    assert 0 < info.mean[0] < 255 and info.std[0] > 0


def test_cifar10_uses_the_standard_constants():
    mean, std = data._normalization("cifar10", np.zeros((1, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(mean / 255, (0.4914, 0.4822, 0.4465))
    np.testing.assert_allclose(std / 255, (0.2470, 0.2435, 0.2616))


def test_channel_stats_of_uint8_images_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (20, 5, 5, 3)).astype(np.uint8)
    mean, std = data._channel_stats(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(std, x.reshape(-1, 3).std(0))


# --------------------------------------------------------------------------- Fashion-MNIST


@needs_debian
def test_debian_files_hold_the_standard_set():
    train_labels = data.read_idx(DEBIAN / data.FASHION_MNIST_FILES["train_labels"], 2049)
    test_labels = data.read_idx(DEBIAN / data.FASHION_MNIST_FILES["test_labels"], 2049)
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    # Known facts of the standard set: both splits start with an ankle boot (9).
    assert train_labels[0] == 9 and test_labels[0] == 9
    assert set(np.unique(train_labels)) == set(range(10))


@needs_debian
def test_fashion_mnist_loads_from_debian():
    train, test, info = data.load("fashion_mnist", 1000, augment=False)
    assert info.name == "fashion_mnist" and info.source == "debian"
    assert info.input_shape == (28, 28, 1) and info.num_classes == 10
    assert (info.train_examples, info.test_examples) == (60000, 10000)
    assert info.augmentation == ()  # augment=False
    x, y = next(iter(test))
    assert x.shape == (1000, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert int(y[0]) == 9  # the test split keeps its order


@needs_debian
def test_fashion_mnist_from_a_data_dir_copy(tmp_path):
    for filename in data.FASHION_MNIST_FILES.values():
        shutil.copy(DEBIAN / filename, tmp_path / filename)
    _, test, info = data.load("fashion_mnist", 16, data_dir=tmp_path, limit_train=64, limit_test=16)
    assert info.source == "debian" and (info.train_examples, info.test_examples) == (64, 16)
    assert int(next(iter(test))[1][0]) == 9


@needs_debian
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
    x_test, y_test, sizes = epoch(test)
    assert sizes == [5] and np.array_equal(y_test, arrays["test_labels"])
    expected = (arrays["test_images"][..., None] - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(x_test, expected, rtol=1e-5, atol=1e-5)
    x_train, y_train, sizes = epoch(train)
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


def test_empty_data_dir_without_download_names_the_debian_package(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("fashion_mnist", 32, data_dir=tmp_path, download=False)
    assert time.perf_counter() - start < 10  # no network attempt
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "pass --data-dir DIR with the four IDX files" in message
    assert "tensorflow-datasets" in message and str(tmp_path) in message
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, RuntimeError)


def test_tfds_set_not_available_offline(tmp_path):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as caught:
        data.load("cifar10", 32, data_dir=tmp_path, download=False)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "'cifar10'" in message and "tensorflow-datasets could not find it" in message
    assert "network is reachable" in message and "data_dir" in message
    assert caught.value.__cause__ is not None


# --------------------------------------------------------------------------- augmentation


def test_pad_crop_shifts_by_at_most_four_pixels():
    # One lit pixel near the left edge: unflipped it stays in columns 0..8,
    # mirrored it lands in 19..27, so each output tells its shift and flip.
    image = np.zeros((28, 28, 1), np.float32)
    image[10, 4, 0] = 1.0
    shifts, flips = set(), set()
    for i in range(200):
        out = data.augment_image(tf.constant(image), tf.constant([i, 0], tf.int64)).numpy()
        assert out.shape == image.shape and out.sum() == 1.0  # never cropped away
        (row,), (col,) = np.nonzero(out[..., 0])
        flipped = col > 13
        flips.add(bool(flipped))
        shifts.add((row - 10, (27 - col if flipped else col) - 4))
    assert all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in shifts)
    assert len(shifts) > 40 and flips == {True, False}


def test_crop_pads_with_zeros_and_flip_only_mirrors():
    ones = tf.ones((16, 16, 3))
    for i in range(30):
        seed = tf.constant([i, 1], tf.int64)
        cropped = data.augment_image(ones, seed, flip=False).numpy()
        assert cropped.shape == (16, 16, 3)
        zero_rows = int((cropped.sum(axis=(1, 2)) == 0).sum())
        zero_cols = int((cropped.sum(axis=(0, 2)) == 0).sum())
        assert zero_rows <= 4 and zero_cols <= 4
        assert cropped.sum() == 3 * (16 - zero_rows) * (16 - zero_cols)  # a shifted block of ones
    ramp = tf.reshape(tf.range(16.0), (1, 16, 1)) * tf.ones((16, 16, 1))
    seen = {tuple(data.augment_image(ramp, tf.constant([i, 2], tf.int64), crop=False).numpy()[0, :, 0])
            for i in range(20)}
    assert seen == {tuple(np.arange(16.0)), tuple(np.arange(16.0)[::-1])}


def test_augmentation_policy():
    assert set(data.AUGMENTATION) == set(data.DATASETS)
    for name in ("mnist", "svhn_cropped"):  # a mirrored digit is no digit
        assert data.AUGMENTATION[name] == ("crop",)
    for name in ("cifar10", "cifar100", "fashion_mnist"):
        assert data.AUGMENTATION[name] == ("crop", "flip")


def test_the_same_image_differs_across_epochs_and_repeats_for_a_seed(tiny_idx):
    directory, _ = tiny_idx
    train, _, info = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, seed=3)
    assert info.augmentation == ("crop", "flip")
    epochs = [epoch(train)[0][0] for _ in range(4)]
    assert all(e.shape == (28, 28, 1) for e in epochs)
    assert len({e.tobytes() for e in epochs}) > 1
    again, _, _ = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, seed=3)
    assert all(np.array_equal(a, epoch(again)[0][0]) for a in epochs)
    plain, _, _ = data.load("fashion_mnist", 1, data_dir=directory, limit_train=1, augment=False)
    plain_epochs = [epoch(plain)[0][0] for _ in range(2)]
    assert np.array_equal(*plain_epochs)


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
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    arguments = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=argument):
        data.load("synthetic", arguments.pop("batch_size"), **arguments)
