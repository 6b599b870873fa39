"""Tests of the ImageNet data path (`keras_recu.app.data.imagenet` through `data.load`), offline.

Synthetic JPEG trees in tmp_path, small sizes (the transform's sizes are
parameters). References are written here independently: torchvision's
RandomResizedCrop.get_params, Resize/CenterCrop and the ReCU authors'
Lighting, transcribed as scalar Python. The PIL decoder runs on every
backend; the tf.data decoder is `tf_only`; the JAX pass, where TensorFlow
cannot be imported, checks that the pipeline falls back to PIL.
"""

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_recu.app import data
from keras_recu.app.data import imagenet
from tests.run_utils import environment

ON_TENSORFLOW = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
SMALL = imagenet.ImageNetTransform(image_size=16, resize_size=20)
MEAN32 = np.asarray(imagenet.IMAGENET_MEAN, np.float32)
STD32 = np.asarray(imagenet.IMAGENET_STD, np.float32)
# Portrait, landscape and square, odd and even.
SIZES = [(50, 40), (37, 61), (45, 45), (64, 30)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """3 classes x 5 train and 2 val JPEGs of several sizes."""
    root = tmp_path_factory.mktemp("imagenet_tree")
    return data.write_synthetic_jpeg_tree(root, classes=3, per_class=5, size=SIZES, val_per_class=2, seed=1)


def load(tree, batch_size=4, **kwargs):
    arguments = {"data_dir": tree, "transform": SMALL, "decoder": "pil", "seed": 5, **kwargs}
    return data.load("image_folder", batch_size, **arguments)


def epoch_batches(batches):
    return [batches[i] for i in range(len(batches))]


def normalize(pixels):
    """torchvision's ToTensor + Normalize, in numpy float32."""
    return (pixels.astype(np.float32) / np.float32(255) - MEAN32) / STD32


# --------------------------------------------------------------------------- references


def torchvision_crop_params(height, width, scale_u, ratio_u, top_u, left_u, scale, ratio):
    """torchvision RandomResizedCrop.get_params, scalar, with its random draws given."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(len(scale_u)):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * float(scale_u[attempt]))
        aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(ratio_u[attempt]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = min(int(float(top_u) * (height - h + 1)), height - h)
            j = min(int(float(left_u) * (width - w + 1)), width - w)
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class AuthorsLighting:
    """The ReCU reference's Lighting (imagenet/dataset/imagenet.py), its randn given."""

    def __init__(self, alphastd, eigval, eigvec):
        self.alphastd, self.eigval, self.eigvec = alphastd, np.asarray(eigval), np.asarray(eigvec)

    def __call__(self, img, randn):
        if self.alphastd == 0.0:
            return img
        rnd = randn * self.alphastd
        rnd = rnd.astype("float32")
        v = rnd
        old_dtype = np.asarray(img).dtype
        v = v * self.eigval
        v = v.reshape((3, 1))
        inc = np.dot(self.eigvec, v).reshape((3,))
        img = np.add(img, inc)
        if old_dtype == np.uint8:
            img = np.clip(img, 0, 255)
        return Image.fromarray(img.astype(old_dtype), "RGB")


def reference_eval(path, resize, crop):
    """Resize(resize) of the shorter side + CenterCrop(crop), as torchvision computes them, on PIL."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return np.asarray(image)[top : top + crop, left : left + crop]


def reference_train(path, row, transform):
    """The authors' train transform of one file, from its row of EpochDraws."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    i, j, h, w = torchvision_crop_params(
        height, width, row["scale_u"], row["ratio_u"], row["top_u"], row["left_u"], transform.scale, transform.ratio
    )
    size = transform.image_size
    image = image.crop((j, i, j + w, i + h)).resize((size, size), Image.BILINEAR)
    return np.asarray(image)


# --------------------------------------------------------------------------- the folder


def test_class_ids_are_the_sorted_folder_names_and_files_are_walked_like_imagefolder(tmp_path):
    for name, files in {"n02": ["b.JPEG", "a.jpg", "sub/c.PNG", "notes.txt"], "B": ["x.jpeg"], "n01": ["z.JPEG"]}.items():
        for filename in files:
            path = tmp_path / "train" / name / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            if filename.endswith("txt"):
                path.write_text("not an image")
            else:
                Image.new("RGB", (8, 6), (10, 20, 30)).save(path, format="PNG" if filename.endswith("PNG") else "JPEG")
    for name in ("n01", "n02", "B"):
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(tmp_path / "val" / name / "v.JPEG")
    source = imagenet.FolderSource(tmp_path / "train")
    assert source.classes == ("B", "n01", "n02")  # Python's sort, as torchvision's find_classes
    names = [os.path.relpath(os.fsdecode(p), tmp_path / "train") for p in source.paths]
    assert names == ["B/x.jpeg", "n01/z.JPEG", "n02/a.jpg", "n02/b.JPEG", "n02/sub/c.PNG"]
    assert source.labels.tolist() == [0, 1, 2, 2, 2] and source.labels.dtype == np.int32
    # The val split takes the train split's ids.
    val = imagenet.FolderSource(tmp_path / "val", classes=source.classes)
    assert val.labels.tolist() == [0, 1, 2]
    _, test, info = data.load("image_folder", 3, data_dir=tmp_path, transform=SMALL, decoder="pil")
    assert info.num_classes == 3 and info.test_examples == 3 and test[0][1].tolist() == [0, 1, 2]


def test_limit_keeps_an_evenly_strided_subset_of_every_class(tree):
    source = imagenet.FolderSource(Path(tree) / "train", limit=6)
    assert len(source) == 6 and sorted(set(source.labels.tolist())) == [0, 1, 2]
    train, test, info = load(tree, limit_train=6, limit_test=3)
    assert (info.train_examples, info.test_examples, len(train), len(test)) == (6, 3, 2, 1)


@pytest.mark.parametrize(
    "layout, message",
    [
        (None, "needs --data-dir"),
        ("missing", "has no train/ folder"),
        ("no_val", "has no val/ folder"),
        ("no_classes", "holds no class folders"),
        ("no_images", "holds no images"),
        ("empty_class", "train has class folder(s) without images: {root}/train/n1. Add the images"),
        ("extra_val_class", "class folder(s) that the train split lacks: zzz"),
        ("empty_val_class", "val has class folder(s) without images: {root}/val/n1. train/ and val/ must hold "
                            "the same classes"),
        ("missing_val_class", "val lacks the class folder(s) {root}/val/n1. train/ and val/ must hold"),
    ],
)
def test_missing_or_empty_trees_fail_at_once_with_what_to_do(tmp_path, layout, message):
    def image(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)

    if layout not in (None, "missing"):
        (tmp_path / "train").mkdir()
        if layout != "no_val":
            (tmp_path / "val").mkdir()
    if layout == "no_images":
        (tmp_path / "train" / "n0").mkdir()
        (tmp_path / "train" / "n0" / "readme.txt").write_text("x")
    if layout in ("empty_class", "extra_val_class", "empty_val_class", "missing_val_class"):
        image(tmp_path / "train" / "n0" / "a.JPEG")
        (tmp_path / "train" / "n1").mkdir()
        if layout != "empty_class":
            image(tmp_path / "train" / "n1" / "b.JPEG")
            image(tmp_path / "val" / "n0" / "c.JPEG")
        if layout == "extra_val_class":
            image(tmp_path / "val" / "zzz" / "c.JPEG")
        if layout == "empty_val_class":
            (tmp_path / "val" / "n1").mkdir()
    data_dir = None if layout is None else tmp_path
    with pytest.raises(data.DataUnavailableError, match=re.escape(message.format(root=tmp_path))):
        data.load("image_folder", 2, data_dir=data_dir, decoder="pil")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"decoder": "opencv"}, "decoder must be one of auto, tf, pil"),
        ({"transform": {"image_size": 16}}, "transform must be an imagenet.ImageNetTransform"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"manual_dir": "/tmp"}, "manual_dir .* is for imagenet2012 only"),
    ],
)
def test_bad_imagenet_arguments_are_refused(tree, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load("image_folder", 2, data_dir=tree, **kwargs)


def test_imagenet_arguments_are_refused_for_other_sets_unless_at_their_defaults():
    data.load("synthetic", 8, limit_train=8, limit_test=8, transform=None, decoder="auto", workers=None)
    with pytest.raises(ValueError, match="decoder, workers apply to the ImageNet-style sets"):
        data.load("synthetic", 8, decoder="pil", workers=2)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"resize_size": 200}, "resize_size .* must be at least image_size"),
        ({"scale": (0.5, 0.1)}, "scale must be two finite numbers 0 < min <= max"),
        ({"ratio": (0, 1)}, "ratio must be"),
        ({"lighting_std": -0.1}, "lighting_std must be a finite number >= 0"),
        ({"eigvec": ((1, 0), (0, 1))}, "eigvec 3x3"),
        ({"std": (0.2, 0.0, 0.2)}, "std > 0"),
    ],
)
def test_transform_validates_its_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        imagenet.ImageNetTransform(**fields)


def test_transform_defaults_are_the_authors_and_round_trip_through_a_dict():
    t = imagenet.ImageNetTransform()
    assert (t.image_size, t.resize_size, t.scale, t.attempts, t.lighting_std, t.flip) == (
        224, 256, (0.08, 1.25), 10, 0.1, True
    )
    assert t.ratio == (3 / 4, 4 / 3) and t.eigval == (0.2175, 0.0188, 0.0045)
    assert (t.mean, t.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert imagenet.ImageNetTransform.from_dict(t.to_dict()) == t
    assert imagenet.ImageNetTransform.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="Unknown ImageNetTransform field"):
        imagenet.ImageNetTransform.from_dict({"crop": 3})


# --------------------------------------------------------------------------- the transforms


def test_crop_box_is_torchvisions_get_params():
    rng = np.random.default_rng(0)
    t = imagenet.ImageNetTransform()
    heights = rng.integers(1, 700, 3000)
    widths = np.where(rng.random(3000) < 0.2, heights * 4, rng.integers(1, 700, 3000))  # some far from the ratios
    scale_u, ratio_u = rng.random((2, 3000, t.attempts), dtype=np.float32)
    top_u, left_u = rng.random((2, 3000), dtype=np.float32)
    boxes = np.stack(imagenet.crop_box(heights, widths, scale_u, ratio_u, top_u, left_u, t), axis=-1)
    expected = [
        torchvision_crop_params(h, w, s, r, tu, lu, t.scale, t.ratio)
        for h, w, s, r, tu, lu in zip(heights, widths, scale_u, ratio_u, top_u, left_u)
    ]
    assert np.array_equal(boxes.astype(int), np.array(expected))


def test_random_resized_crop_bounds_and_statistics():
    t = imagenet.ImageNetTransform()
    count, height, width = 4000, 375, 500
    draws = imagenet.EpochDraws.draw(seed=3, epoch=0, count=count, transform=t)
    top, left, h, w = (
        v.astype(int)
        for v in imagenet.crop_box(
            np.full(count, height), np.full(count, width), draws.scale_u, draws.ratio_u, draws.top_u, draws.left_u, t
        )
    )
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    fraction = h * w / (height * width)
    fallback = (h == height) & (w == width)  # 500/375 is within the ratios: the whole image
    tried = ~fallback
    assert (fraction[tried] >= 0.08 * 0.95).all() and (fraction <= 1).all()
    assert ((w / h)[tried] >= 0.75 * 0.97).all() and ((w / h)[tried] <= 4 / 3 * 1.03).all()
    # Scale up to 1.25 rejects ~1 try in 4 on this image, so running out of 10 tries is rare.
    assert fallback.mean() < 0.001
    # The kept area fraction: above the uniform mean of (0.08, 1.25) over what fits, roughly.
    assert 0.35 < fraction[tried].mean() < 0.6
    assert abs(draws.flip.mean() - 0.5) < 0.05
    centres = (left + w / 2) / width
    assert abs(centres.mean() - 0.5) < 0.02


def test_random_resized_crop_falls_back_to_the_largest_central_crop_within_the_ratios():
    t = imagenet.ImageNetTransform(scale=(1.1, 1.25))  # every try is larger than the image
    u = np.full((3, t.attempts), 0.5)
    boxes = imagenet.crop_box(np.array([375, 300, 400]), np.array([500, 1000, 100]), u, u, u[:, 0], u[:, 0], t)
    # 500x375 is within 3/4..4/3: the whole image; 1000x300 too wide: 400 wide; 100x400 too tall: 133 high.
    assert np.array_equal(np.stack(boxes, -1), [[0, 0, 375, 500], [0, 300, 300, 400], [133, 0, 133, 100]])


def test_eval_geometry_is_torchvisions_resize_and_center_crop():
    t = imagenet.ImageNetTransform()
    for height, width in [(375, 500), (500, 375), (256, 256), (333, 1000), (1001, 257)]:
        short, long = (width, height) if width <= height else (height, width)
        long_new = int(256 * long / short)
        new_w, new_h = (256, long_new) if width <= height else (long_new, 256)
        expected = (new_h, new_w, int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0)))
        assert tuple(int(v) for v in imagenet.eval_geometry(height, width, t)) == expected


def test_lighting_is_the_authors_including_its_truncation():
    rng = np.random.default_rng(1)
    t = imagenet.ImageNetTransform()
    authors = AuthorsLighting(t.lighting_std, t.eigval, t.eigvec)
    image = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    image[0, 0], image[0, 1] = 0, 255
    changes = []
    for _ in range(50):
        randn = rng.standard_normal(3)
        ours = imagenet.apply_lighting(image, imagenet.lighting_increment(randn[None], t)[0])
        theirs = np.asarray(authors(Image.fromarray(image), randn))
        assert np.array_equal(ours, theirs)
        changes.append(ours.astype(int) - image)
    changes = np.array(changes)
    # Nearly a no-op with a downward bias: a level lost where the offset is negative.
    assert set(np.unique(changes)) <= {-1, 0}
    assert 0.3 < (changes == -1).mean() < 0.7


def test_eval_batches_match_resize_and_center_crop_computed_independently(tree):
    _, test, info = load(tree)
    assert info.input_shape == (16, 16, 3) and info.source == "folder"
    assert np.allclose(info.mean, np.array(imagenet.IMAGENET_MEAN) * 255)
    images, labels = np.concatenate([b[0] for b in epoch_batches(test)]), np.concatenate([b[1] for b in epoch_batches(test)])
    source = test.source
    expected = np.stack([normalize(reference_eval(p, 20, 16)) for p in source.paths])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert np.array_equal(images, expected)
    assert labels.tolist() == source.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_train_batches_are_the_authors_transform_with_the_epochs_draws(tree):
    train, _, info = load(tree, batch_size=4)
    assert info.augmentation == ("random_resized_crop", "lighting", "flip")
    train.set_epoch(2)
    draws = train.epoch_draws(2)
    batches = epoch_batches(train)
    assert [len(b[1]) for b in batches] == [4, 4, 4, 3]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    source = train.source
    assert sorted(draws.order.tolist()) == list(range(15))
    assert labels.tolist() == source.labels[draws.order].tolist()
    for p, row in enumerate(draws.order):
        draw = draws.rows(p)
        pixels = reference_train(source.paths[row], draw, SMALL)
        pixels = imagenet.apply_lighting(pixels, draw["increment"])
        if draw["flip"]:
            pixels = pixels[:, ::-1]
        assert np.array_equal(images[p], normalize(pixels)), p
    assert -2.2 < images.min() and images.max() < 2.7


def test_no_augmentation_gives_the_eval_transform_in_shuffled_order(tree):
    train, test, info = load(tree, augment=False, limit_train=6)
    assert info.augmentation == ()
    images = np.concatenate([b[0] for b in epoch_batches(train)])
    order = train.epoch_draws(0).order
    expected = np.stack([normalize(reference_eval(train.source.paths[row], 20, 16)) for row in order])
    assert np.array_equal(images, expected)


# --------------------------------------------------------------------------- determinism


def test_batches_are_a_pure_function_of_seed_epoch_and_step(tree):
    first, _, _ = load(tree, seed=9)
    first.set_epoch(3)
    run = epoch_batches(first)
    again, _, _ = load(tree, seed=9)
    again.set_epoch(3)
    # Out of order, and a fresh object: the same batches.
    for index in (2, 0, 3, 1):
        assert np.array_equal(again[index][0], run[index][0])
        assert np.array_equal(again[index][1], run[index][1])
    again.set_epoch(4)
    assert not np.array_equal(again[0][0], run[0][0])
    other_seed, _, _ = load(tree, seed=10)
    other_seed.set_epoch(3)
    assert not np.array_equal(other_seed[0][0], run[0][0])


def test_epochs_advance_like_image_batches_under_fit_style_reads(tree):
    train, _, _ = load(tree, limit_train=8)
    seen = []
    for _ in range(2):
        train.on_epoch_begin()
        seen.append(np.concatenate([b[0] for b in epoch_batches(train)]))
        train.on_epoch_end()
    assert train.epoch == 2 and not np.array_equal(*seen)
    assert train.batches_served == 4 and train.wait_seconds > 0
    train.set_epoch(1)
    assert np.array_equal(np.concatenate([b[0] for b in epoch_batches(train)]), seen[1])
    with pytest.raises(IndexError, match="out of range"):
        train[len(train)]


# --------------------------------------------------------------------------- tensorflow-datasets and backends


@pytest.mark.tf_only
def test_imagenet2012_without_tars_names_the_tars_and_folders(tmp_path):
    with pytest.raises(data.DataUnavailableError, match="ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"):
        data.load("imagenet2012", 8, data_dir=tmp_path, download=False)
    with pytest.raises(data.DataUnavailableError, match=f"{tmp_path / 'manual'}"):
        data.load("imagenet2012", 8, data_dir=tmp_path, manual_dir=tmp_path / "manual")


@pytest.mark.tf_only
def test_imagenette_not_prepared_and_no_download_fails_fast(tmp_path):
    with pytest.raises(data.DataUnavailableError, match=r"not prepared .* downloads are off \(download=False, --no-download\)"):
        data.load("imagenette", 8, data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="only the tf decoder reads"):
        data.load("imagenette", 8, data_dir=tmp_path, decoder="pil")


@pytest.mark.tf_only
def test_tf_decoder_refuses_files_tensorflow_cannot_decode(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "n0").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "n0" / "a.webp")
    with pytest.raises(data.CorruptDataError, match=re.escape(f"{tmp_path / 'train' / 'n0' / 'a.webp'} (and 1 more "
                                                            ".webp files): the tf decoder (--decoder tf) reads")):
        data.load("image_folder", 2, data_dir=tmp_path, decoder="tf")
    train, _, _ = data.load("image_folder", 1, data_dir=tmp_path, decoder="pil", transform=SMALL)
    assert train[0][0].shape == (1, 16, 16, 3)


@pytest.mark.tf_only
def test_crop_box_in_tensorflow_equals_numpy():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    t = imagenet.ImageNetTransform()
    heights, widths = rng.integers(1, 700, (2, 500))
    scale_u, ratio_u = rng.random((2, 500, t.attempts), dtype=np.float32)
    top_u, left_u = rng.random((2, 500), dtype=np.float32)
    ours = imagenet.crop_box(heights, widths, scale_u, ratio_u, top_u, left_u, t)
    in_tf = imagenet.crop_box(
        tf.constant(heights), tf.constant(widths), tf.constant(scale_u), tf.constant(ratio_u),
        tf.constant(top_u), tf.constant(left_u), t, imagenet.tf_math(tf),
    )
    for a, b in zip(ours, in_tf):
        assert np.array_equal(a, b.numpy())
    geometry = imagenet.eval_geometry(tf.constant(heights), tf.constant(widths), t, imagenet.tf_math(tf))
    for a, b in zip(imagenet.eval_geometry(heights, widths, t), geometry):
        assert np.array_equal(a, b.numpy())


@pytest.mark.tf_only
def test_tf_decoder_gives_the_pil_decoders_batches_within_a_level(tree):
    for augment in (True, False):
        pil_train, pil_test, _ = load(tree, augment=augment)
        tf_train, tf_test, info = load(tree, augment=augment, decoder="tf")
        for pil_batches, tf_batches in ((pil_train, tf_train), (pil_test, tf_test)):
            for index in range(len(pil_batches)):
                (x_pil, y_pil), (x_tf, y_tf) = pil_batches[index], tf_batches[index]
                assert np.array_equal(y_pil, y_tf) and x_tf.dtype == np.float32
                # Same crops, flips and lighting; the bilinear resamplers round apart by at most a level.
                levels = np.abs(x_tf - x_pil) * STD32 * 255
                assert levels.max() < 1.01 and levels.mean() < 0.3
    # Restarted mid-epoch (out of order): the same batch.
    tf_train.set_epoch(1)
    later = tf_train[2]
    fresh, _, _ = load(tree, augment=False, decoder="tf")
    fresh.set_epoch(1)
    assert np.array_equal(fresh[2][0], later[0])


@pytest.mark.tf_only
def test_jax_backend_uses_tf_data_on_the_cpu_when_tensorflow_imports(tree):
    code = textwrap.dedent(
        """
        import sys, numpy as np
        from keras_recu.app import data
        from keras_recu.app.data import imagenet
        train, _, _ = data.load("image_folder", 4, data_dir=sys.argv[1], decoder="auto", seed=5,
                                transform=imagenet.ImageNetTransform(image_size=16, resize_size=20))
        import tensorflow as tf
        assert train.decoder == "tf", train.decoder
        assert tf.config.get_visible_devices("GPU") == []
        np.save(sys.argv[2], train[1][0])
        """
    )
    out = Path(tree).parent / "jax_batch.npy"
    env = environment(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code, str(tree), str(out)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    train, _, _ = load(tree, decoder="tf")
    assert np.array_equal(np.load(out), train[1][0])


@pytest.mark.jax_only
def test_without_tensorflow_the_pipeline_decodes_with_pil(tree):
    # The JAX pass hides TensorFlow, as on a machine without it.
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401
    train, test, info = data.load("image_folder", 4, data_dir=tree, transform=SMALL, seed=5)
    assert train.decoder == test.decoder == "pil"
    assert train[0][0].shape == (4, 16, 16, 3) and info.num_classes == 3
    with pytest.raises(data.DataUnavailableError, match="needs TensorFlow"):
        data.load("image_folder", 4, data_dir=tree, decoder="tf")
    with pytest.raises(data.DataUnavailableError, match="needs TensorFlow"):
        data.load("imagenet2012", 4)


@pytest.mark.tf_only
def test_a_tensorflow_datasets_builder_streams_through_the_same_transforms(tree, tmp_path):
    import shutil

    import tensorflow_datasets as tfds

    # tfds.ImageFolder, a builder over a folder tree, stands in for a prepared
    # imagenet2012: the same as_dataset, SkipDecoding and split metadata.
    shutil.copytree(Path(tree) / "train", tmp_path / "train")
    shutil.copytree(Path(tree) / "val", tmp_path / "validation")
    builder = tfds.ImageFolder(str(tmp_path))
    assert builder.info.features["label"].names == ["n0000000", "n0000001", "n0000002"]
    source = imagenet.TFDSSource(builder, "validation", builder.info.splits["validation"].num_examples)
    batches = imagenet.StreamBatches(source, 6, SMALL, augment=False, shuffle=False, decoder="tf")
    images, labels = batches[0]
    assert images.shape == (6, 16, 16, 3) and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    folder = imagenet.StreamBatches(imagenet.FolderSource(Path(tree) / "val"), 6, SMALL, augment=False,
                                    shuffle=False, decoder="tf")
    # The same images with the same labels, in the builder's own order.
    for x, y in zip(images, labels):
        assert any(np.array_equal(x, other) for other, label in zip(*folder[0]) if label == y)
    # The train transform on the tfds stream: draws by position, restartable mid-epoch.
    train = imagenet.StreamBatches(source, 2, SMALL, augment=True, shuffle=False, seed=4, decoder="tf")
    first = [train[i][0] for i in range(len(train))]
    again = imagenet.StreamBatches(source, 2, SMALL, augment=True, shuffle=False, seed=4, decoder="tf")
    assert np.array_equal(again[2][0], first[2]) and np.array_equal(again[0][0], first[0])


@pytest.mark.parametrize("decoder", ["pil", pytest.param("tf", marks=pytest.mark.tf_only)])
def test_fit_and_evaluate_read_the_streamed_batches(tree, decoder):
    import keras

    train, test, info = load(tree, decoder=decoder, limit_train=8)
    model = keras.Sequential([
        keras.Input(info.input_shape),
        keras.layers.Conv2D(4, 3, strides=2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(info.num_classes),
    ])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(train, validation_data=test, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert train.epoch == 2
    loss, _ = model.evaluate(test, verbose=0)
    assert np.isfinite(loss)
