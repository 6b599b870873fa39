"""keras_recu.models: the paper's architectures, their counts, shortcut, saving and deployment."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import torch

from keras_recu import models
from keras_recu.layers import ChannelZeroPad, QuantConv2D, QuantDense, ReCUConv2D
from tests.model_utils import randomize_batch_norm

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(32, 32, 3), (28, 28, 1)]
BINARY_CONVS = {"resnet20_1w1a": 18, "resnet18_1w1a": 16, "resnet34_1w1a": 32, "vgg_small_1w1a": 5}
IMAGENET_BINARY_CONVS = {
    "imagenet_resnet18_1w1a": 16, "imagenet_resnet34_1w1a": 32, "imagenet_resnet18_two_stage": 16,
}
# The ImageNet models' exactness lives in test_imagenet_models.py; these
# tests hold the CIFAR networks to the authors' CIFAR code.
CIFAR_MODELS = sorted(BINARY_CONVS)


@functools.lru_cache(maxsize=None)
def built(name, input_shape):
    """One model per (name, shape), shared by the read-only tests below."""
    return models.get(name)(input_shape=input_shape, num_classes=10)


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def consumers(model, layer):
    """The layers of `model` that take `layer`'s output as an input."""

    def inputs_of(other):
        inputs = other.input
        return inputs if isinstance(inputs, (list, tuple)) else [inputs]

    return [
        other for other in model.layers
        if not isinstance(other, keras.layers.InputLayer)
        and any(tensor is layer.output for tensor in inputs_of(other))
    ]


@pytest.mark.parametrize("input_shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_builds_for_any_input_and_gives_finite_logits(name, input_shape, rng):
    model = built(name, input_shape)
    assert model.name == name
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    for training in (False, True):
        logits = keras.ops.convert_to_numpy(model(x, training=training))
        assert logits.shape == (3, 10) and np.isfinite(logits).all()


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_binary_convs_float_ends_and_bn_after_every_binary_conv(name):
    model = built(name, (32, 32, 3))
    binary = layers_of(model, ReCUConv2D)
    assert len(binary) == BINARY_CONVS[name]
    assert all(layer.use_bias is False and layer.kernel_size == (3, 3) for layer in binary)
    assert all(layer.alpha.shape == (layer.filters,) for layer in binary)
    convs = layers_of(model, keras.layers.Conv2D)
    first_conv, last = convs[0], model.layers[-1]
    # The first conv and the last dense are float: plain Keras layers, no quantizer.
    assert type(first_conv) is keras.layers.Conv2D and not isinstance(first_conv, QuantConv2D)
    assert type(last) is keras.layers.Dense and not isinstance(last, QuantDense)
    assert len(convs) == len(binary) + 1
    for layer in binary:
        (after,) = consumers(model, layer)
        if isinstance(after, keras.layers.MaxPooling2D):  # VGG-small: conv -> pool -> BN
            (after,) = consumers(model, after)
        assert isinstance(after, keras.layers.BatchNormalization), layer.name


def resnet20_counts(channels=3, classes=10):
    """ResNet-20 1w1a parameters by hand: (trainable, count_params()).

    Keras' count_params() also counts each BN's moving mean and variance and
    each ReCUConv2D's tau (a non-trainable state scalar).
    """
    stem = 3 * 3 * channels * 16 + 2 * 16  # float conv, no bias; BN gamma, beta
    # Stage: 6 binary 3x3 convs (the first from c_in), each with alpha (c_out) and a BN (2 * c_out).
    stage1 = 3 * 3 * 16 * 16 * 6 + 16 * 6 + 2 * 16 * 6  # 13824 + 96 + 192 = 14112
    stage2 = 3 * 3 * 16 * 32 + 3 * 3 * 32 * 32 * 5 + 32 * 6 + 2 * 32 * 6  # 4608 + 46080 + 192 + 384 = 51264
    stage3 = 3 * 3 * 32 * 64 + 3 * 3 * 64 * 64 * 5 + 64 * 6 + 2 * 64 * 6  # 18432 + 184320 + 384 + 768 = 203904
    head = 2 * 64 + 64 * classes + classes  # BatchNorm1d gamma, beta; dense kernel, bias
    trainable = stem + stage1 + stage2 + stage3 + head
    bn_channels = 16 + 6 * (16 + 32 + 64) + 64  # stem, 18 block BNs, head = 752
    return trainable, trainable + 2 * bn_channels + 18  # + moving mean/var, + 18 tau


def test_resnet20_parameter_count_by_hand():
    assert resnet20_counts() == (270_522, 272_044)  # the arithmetic above, evaluated
    for input_shape in SHAPES:
        model = built("resnet20_1w1a", input_shape)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert (trainable, model.count_params()) == resnet20_counts(channels=input_shape[-1])
    assert 0.265e6 < resnet20_counts()[0] < 0.275e6  # the paper's "0.27M"
    # the stand-in of benchmarks/convert.py had the same 272,044


def test_other_models_parameter_counts():
    """Trainable counts as PyTorch reports them for the reference architectures (32x32x3, 10 classes)."""
    def trainable(name):
        return sum(int(np.prod(w.shape)) for w in built(name, (32, 32, 3)).trainable_weights)

    # ResNet-18: 64*3*9 + 2*64 stem; 10,985,472 binary weights, 3,840 alphas, 7,680 BN, 1,024 + 5,130 head.
    assert trainable("resnet18_1w1a") == 1_856 + 10_985_472 + 3_840 + 7_680 + 1_024 + 5_130
    # VGG-small: conv0 3456 + BN 256; binary 4,571,136 + alphas 1,664; BNs 3,328; fc 8192*10 + 10.
    assert trainable("vgg_small_1w1a") == 3_456 + 256 + 4_571_136 + 1_664 + 3_328 + 81_930
    assert 21.0e6 < trainable("resnet34_1w1a") < 21.2e6


def sync_batch_norm_build(builder, **kwargs):
    """`builder(sync_batch_norm=True, ...)`; on torch, where it has no effect, it warns."""
    if keras.backend.backend() != "torch":
        return builder(sync_batch_norm=True, **kwargs)
    with pytest.warns(UserWarning, match="sync_batch_norm=True has no effect on the torch backend"):
        return builder(sync_batch_norm=True, **kwargs)


def test_sync_batch_norm_and_tau_reach_every_layer():
    # Synchronized layers exist on TensorFlow only; JAX's plain BatchNormalization
    # already reduces over the global batch under keras.distribution.
    synchronized = keras.backend.backend() == "tensorflow"
    model = sync_batch_norm_build(models.resnet20_1w1a, input_shape=(16, 16, 3), tau=0.9)
    bns = layers_of(model, keras.layers.BatchNormalization)
    assert len(bns) == 20 and all(bn.synchronized == synchronized for bn in bns)
    assert all(bn.momentum == 0.9 and bn.epsilon == 1e-5 for bn in bns)  # PyTorch's BN defaults
    assert all(layer.tau == pytest.approx(0.9) for layer in layers_of(model, ReCUConv2D))
    plain = built("resnet20_1w1a", (32, 32, 3))
    assert not any(bn.synchronized for bn in layers_of(plain, keras.layers.BatchNormalization))
    assert all(layer.tau == pytest.approx(0.85) for layer in layers_of(plain, ReCUConv2D))
    vgg = sync_batch_norm_build(models.vgg_small_1w1a, input_shape=(8, 8, 1), tau=0.95)
    assert all(bn.synchronized == synchronized for bn in layers_of(vgg, keras.layers.BatchNormalization))
    assert all(layer.tau == pytest.approx(0.95) for layer in layers_of(vgg, ReCUConv2D))


def test_option_a_shortcut_averages_then_pads_channels_on_both_sides():
    model = built("resnet20_1w1a", (32, 32, 3))
    shortcut = keras.Model(
        model.get_layer("stage2_block1_shortcut_pool").input,
        model.get_layer("stage2_block1_shortcut_pad").output,
    )
    x = np.arange(32 * 32 * 16, dtype="float32").reshape(1, 32, 32, 16)
    got = keras.ops.convert_to_numpy(shortcut(x))
    pooled = x.reshape(1, 16, 2, 16, 2, 16).mean(axis=(2, 4))
    want = np.concatenate([np.zeros((1, 16, 16, 8)), pooled, np.zeros((1, 16, 16, 8))], axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert model.get_layer("stage3_block1_shortcut_pad").padding == (16, 16)

    # Odd sizes: the pool pads "same" like the stride-2 conv (7 -> 4), averaging real pixels only.
    odd = built("resnet18_1w1a", (28, 28, 1))
    assert odd.get_layer("stage4_block1_conv1").output.shape[1:3] == (4, 4)
    pool = odd.get_layer("stage4_block1_shortcut_pool")
    assert pool.input.shape[1:3] == (7, 7) and pool.output.shape[1:3] == (4, 4)
    y = np.arange(49, dtype="float32").reshape(1, 7, 7, 1)
    pooled = keras.ops.convert_to_numpy(pool(y))[0, :, :, 0]
    assert pooled[0, 0] == np.mean([0, 1, 7, 8]) and pooled[3, 3] == 48 and pooled[0, 3] == np.mean([6, 13])


def test_channel_zero_pad_layer():
    layer = ChannelZeroPad((1, 2))
    got = keras.ops.convert_to_numpy(layer(np.full((2, 3, 3, 2), 5.0, "float32")))
    assert got.shape == (2, 3, 3, 5)
    np.testing.assert_array_equal(got[..., 1:3], 5.0)
    np.testing.assert_array_equal(got[..., [0, 3, 4]], 0.0)
    assert layer.compute_output_shape((None, 3, 3, 2)) == (None, 3, 3, 5)
    clone = ChannelZeroPad.from_config(layer.get_config())
    assert clone.padding == (1, 2) and ChannelZeroPad(3).padding == (3, 3)
    for bad in ((-1, 0), (1, 2, 3), 1.5):
        with pytest.raises(ValueError, match="padding"):
            ChannelZeroPad(bad)


def test_resnet20_saves_and_loads_as_keras_file(tmp_path, rng):
    model = models.resnet20_1w1a(input_shape=(28, 28, 1), tau=0.9)
    randomize_batch_norm(model, rng)
    model.save(tmp_path / "resnet20.keras")
    loaded = keras.models.load_model(tmp_path / "resnet20.keras")
    x = rng.normal(size=(4, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert len(layers_of(loaded, ChannelZeroPad)) == 2
    assert [layer.tau for layer in layers_of(loaded, ReCUConv2D)] == pytest.approx([0.9] * 18)
    assert loaded.get_layer("stage2_block1_shortcut_pad").padding == (8, 8)


@pytest.mark.tf_only
def test_resnet20_converts_with_every_binary_conv_as_lce_bconv2d(rng):
    from keras_recu.deploy import census, convert, verify

    model = models.resnet20_1w1a()
    randomize_batch_norm(model, rng)
    flatbuffer = convert(model)
    ops = census(flatbuffer)
    assert ops["LceBconv2d"] == 18 and ops["CONV_2D"] == 1
    assert ops["PAD"] == 2 and ops["AVERAGE_POOL_2D"] == 2  # the two option-A shortcuts
    report = verify(model, flatbuffer, rng.normal(size=(8, 32, 32, 3)))
    assert report.float_binary_layers == [] and report.max_rel_error < 1e-3
    assert report.argmax_agreement == 1.0


def test_block_variants():
    assert "stem_hardtanh" in [layer.name for layer in built("resnet20_1w1a", (32, 32, 3)).layers]
    basic = built("resnet18_1w1a", (32, 32, 3))
    names = {layer.name for layer in basic.layers}
    # The authors' CIFAR ResNet-18/34: no hardtanh after the stem, one residual per block.
    assert "stem_hardtanh" not in names and "stage1_block1_add1" not in names
    assert isinstance(consumers(basic, basic.get_layer("stage1_block1_bn1"))[0], keras.layers.Activation)
    bireal = models.resnet18_1w1a(input_shape=(16, 16, 3), block="bireal")
    names = {layer.name for layer in bireal.layers}
    assert {"stem_hardtanh", "stage1_block1_add1", "stage4_block2_add2"} <= names
    assert len(layers_of(bireal, ReCUConv2D)) == 16
    assert bireal.count_params() == models.resnet18_1w1a(input_shape=(16, 16, 3)).count_params()
    with pytest.raises(ValueError, match="block"):
        models.resnet34_1w1a(block="bottleneck")


def test_initializers_follow_the_reference():
    resnet = built("resnet18_1w1a", (32, 32, 3))
    kernel = keras.ops.convert_to_numpy(resnet.get_layer("stage4_block2_conv2").kernel)
    std = np.sqrt(2.0 / (3 * 3 * 512))  # kaiming_normal_: fan_in, untruncated
    assert kernel.std() == pytest.approx(std, rel=0.01)
    assert np.mean(np.abs(kernel) > 2 * std) == pytest.approx(0.0455, abs=0.003)  # truncated would give 0
    dense = resnet.get_layer("head_dense")  # PyTorch's default Linear: U(+-1/sqrt(512))
    kernel, bias = (np.abs(keras.ops.convert_to_numpy(w)) for w in (dense.kernel, dense.bias))
    bound = 1 / np.sqrt(512)
    assert kernel.max() <= bound and kernel.max() > 0.99 * bound and kernel.mean() == pytest.approx(bound / 2, rel=0.05)
    assert bias.max() <= bound and bias.any()
    vgg = built("vgg_small_1w1a", (32, 32, 3))
    kernel = keras.ops.convert_to_numpy(vgg.get_layer("conv5").kernel)
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / (3 * 3 * 512)), rel=0.01)  # fan_out
    config = vgg.get_layer("conv0").get_config()["kernel_initializer"]["config"]
    assert (config["mode"], config["distribution"], config["scale"]) == ("fan_out", "untruncated_normal", 2.0)
    fc = vgg.get_layer("fc")
    assert keras.ops.convert_to_numpy(fc.kernel).std() == pytest.approx(0.01, rel=0.02)
    assert not keras.ops.convert_to_numpy(fc.bias).any()
    alphas = keras.ops.convert_to_numpy(resnet.get_layer("stage4_block2_conv2").alpha)
    assert 0 <= alphas.min() and alphas.max() < 1


def test_get_and_argument_errors():
    assert set(models.MODELS) == set(BINARY_CONVS) | set(IMAGENET_BINARY_CONVS)
    for name, builder in models.MODELS.items():
        assert models.get(name) is builder and builder.__name__ == name
    with pytest.raises(ValueError, match="resnet18_1w1a, resnet20_1w1a, resnet34_1w1a, vgg_small_1w1a"):
        models.get("nope")
    assert models.resnet20_1w1a(input_shape=(8, 8, 3), name="mine").name == "mine"
    with pytest.raises(ValueError, match="input_shape"):
        models.resnet20_1w1a(input_shape=(32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        models.vgg_small_1w1a(num_classes=0)
    with pytest.raises(ValueError, match="tau"):
        models.resnet20_1w1a(input_shape=(8, 8, 3), tau=1.2)


@pytest.mark.tf_only
def test_larq_resnet20_example_runs_and_converts_to_18_bconvs():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "examples/larq_resnet20.py", "--epochs", "1", "--samples", "32"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "LceBconv2d x18" in out and "CONV_2D x1," in out and "left in float by LCE: none" in out
    assert "larq_resnet20_1w1a summary" in out and "tau per epoch: [0.85]" in out


@pytest.mark.tf_only
def test_vgg_small_converts_with_every_binary_conv_as_lce_bconv2d(rng):
    from keras_recu.deploy import census, convert

    model = models.vgg_small_1w1a(input_shape=(16, 16, 1))
    randomize_batch_norm(model, rng)
    assert census(convert(model))["LceBconv2d"] == 5


@pytest.mark.parametrize("name", CIFAR_MODELS + sorted(IMAGENET_BINARY_CONVS))
def test_torch_padding_reaches_every_binary_conv_and_keeps_the_variables(name):
    shape = (64, 64, 3) if name.startswith("imagenet") else (32, 32, 3)
    torch_padded = models.get(name)(input_shape=shape, num_classes=10, padding="torch")
    same = models.get(name)(input_shape=shape, num_classes=10, padding="same")
    binary = layers_of(torch_padded, ReCUConv2D)
    expected = {**BINARY_CONVS, **IMAGENET_BINARY_CONVS}[name]
    assert len(binary) == expected and all(layer.torch_padding for layer in binary)
    assert not any(layer.torch_padding for layer in layers_of(same, ReCUConv2D))
    # Same variables by name and shape: weights move between the two paddings.
    assert [(w.path, w.shape) for w in torch_padded.weights] == [(w.path, w.shape) for w in same.weights]
    same.set_weights(torch_padded.get_weights())
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    assert not np.array_equal(
        keras.ops.convert_to_numpy(same(x)), keras.ops.convert_to_numpy(torch_padded(x))
    ) or name == "vgg_small_1w1a"  # VGG-small has no stride-2 conv: both paddings agree


def test_imagenet_builders_argument_errors():
    with pytest.raises(ValueError, match="padding"):
        models.imagenet_resnet18_1w1a(padding="reflect")
    with pytest.raises(ValueError, match="at least"):
        models.imagenet_resnet18_1w1a(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="binary_weights=False"):
        models.imagenet_resnet18_two_stage(binary_weights=False, binary_conv=models.recu_conv2d)
    with pytest.raises(TypeError, match="binary_weights"):
        models.imagenet_resnet18_two_stage(binary_weights=1)

    def old_factory(filters, kernel_size, strides, tau, name, kernel_initializer):
        return models.recu_conv2d(filters, kernel_size, strides, tau, name, kernel_initializer)

    with pytest.raises(TypeError, match="torch_padding"):
        models.resnet20_1w1a(input_shape=(8, 8, 3), binary_conv=old_factory, padding="torch")
    assert models.resnet20_1w1a(input_shape=(8, 8, 3), binary_conv=old_factory).count_params()


def test_two_stage_stage1_has_float_kernels_and_stage2_variables():
    from keras_recu import inspection

    stage1 = models.imagenet_resnet18_two_stage(input_shape=(64, 64, 3), num_classes=10, binary_weights=False)
    stage2 = models.imagenet_resnet18_two_stage(input_shape=(64, 64, 3), num_classes=10)
    layers1 = inspection.binary_layers(stage1)
    assert len(layers1) == 16 and all(l.binary_input and not l.binary_kernel for l in layers1)
    assert all(l.fully_binary for l in inspection.binary_layers(stage2))
    assert not inspection.tau_holders(stage1) and len(inspection.tau_holders(stage2)) == 16
    trainable = lambda model: [(w.path, w.shape) for w in model.trainable_weights]  # noqa: E731
    assert trainable(stage1) == trainable(stage2)


def test_constant_padding_pads_max_pool_with_minus_infinity(rng):
    from keras_recu.layers import ConstantPadding2D

    x = -rng.uniform(1, 2, size=(1, 4, 4, 2)).astype("float32")  # all negative: zero padding would win
    padded = ConstantPadding2D(1, value=float("-inf"))(x)
    pooled = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(3, 2)(padded))
    expected = torch.nn.functional.max_pool2d(
        torch.tensor(x).permute(0, 3, 1, 2), 3, stride=2, padding=1
    ).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pooled, expected)
    with pytest.raises(ValueError, match="padding"):
        ConstantPadding2D(((1, 2),))


def test_every_conv_starts_from_its_own_draw_and_float_twin_keeps_torch_padding():
    model = models.imagenet_resnet18_two_stage(input_shape=(64, 64, 3), num_classes=10)
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in layers_of(model, ReCUConv2D)]
    same_shape = [k for k in kernels if k.shape == kernels[1].shape]
    assert len(same_shape) > 2 and not any(np.array_equal(same_shape[0], k) for k in same_shape[1:])
    twin = models.float_twin(model)
    flipped = [layer for layer in layers_of(twin, QuantConv2D) if layer.torch_padding]
    assert len(flipped) == 16 and all(layer.input_quantizer is None for layer in flipped)
    assert not layers_of(twin, ReCUConv2D)
