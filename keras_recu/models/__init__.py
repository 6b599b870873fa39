"""The ReCU paper's binary networks in Keras 3: CIFAR ResNet-20/18/34 and VGG-small, ImageNet ResNet-18/34.

CIFAR: `resnet20_1w1a`, `resnet18_1w1a`, `resnet34_1w1a`, `vgg_small_1w1a`
(below). ImageNet: `imagenet_resnet18_1w1a` and `imagenet_resnet34_1w1a`
(the vanilla recipe) and `imagenet_resnet18_two_stage` (the ReActNet-like
model of the two-stage recipe), each described in its docstring, with
layer names that are the authors' PyTorch module paths.

Each builder returns a functional `keras.Model` in which the first
convolution and the last dense layer are full precision and every other
convolution is a `ReCUConv2D` (binary input, ReCU-binarized kernel, no bias,
learned per-channel scale `alpha`) followed by `BatchNormalization`. The
architectures are those of the authors' PyTorch code (github z-hXu/ReCU,
`models_cifar/resnet.py`, `resnet2.py`, `vgg.py`; RECU_SPEC.md section 2):

* **ResNet-20 1w1a** (`resnet.py`): stem conv 3x3/16 -> BN -> hardtanh; three
  stages of 16, 32, 64 filters with three blocks each; each binary conv has
  its own residual (Bi-Real style, ``block="bireal"``)::

      out = hardtanh(BN(conv1(x)) + shortcut(x))
      out = hardtanh(BN(conv2(out)) + out)

  then global average pool -> BN (the reference's BatchNorm1d) -> dense.
* **ResNet-18 / ResNet-34 1w1a** (`resnet2.py`, CIFAR variants): stem conv
  3x3/64 -> BN (no hardtanh); four stages of 64, 128, 256, 512 filters with
  [2, 2, 2, 2] / [3, 4, 6, 3] blocks; the reference's basic block has ONE
  residual per block (``block="basic"``)::

      out = hardtanh(BN(conv1(x)))
      out = hardtanh(BN(conv2(out)) + shortcut(x))

  then global average pool -> BN -> dense. ``block="bireal"`` gives them the
  ResNet-20 design instead (a residual per binary conv, hardtanh after the
  stem), as RECU_SPEC.md's "same block design" reads.
* **VGG-small 1w1a** (`vgg.py`): conv 128 (float) -> BN -> hardtanh, then
  bconv 128 -> maxpool, bconv 256, bconv 256 -> maxpool, bconv 512,
  bconv 512 -> maxpool, each followed by BN -> hardtanh (the pool comes
  between the conv and its BN, as in the reference), flatten, dense.

The down-sampling shortcut of the ResNets is "option A": a 2x2 average pool
(`padding="same"`, so that it matches the stride-2 conv on odd sizes too),
then zero channels split evenly before and after the input's channels, as
the reference's `F.pad(x, (0, 0, 0, 0, planes // 4, planes // 4))` does
(`ChannelZeroPad`, a registered layer that saves with the model and lowers
to TFLite's PAD op).

Faithful to the reference beyond the layer graph:

* BatchNormalization with PyTorch's defaults, `momentum=0.9` (PyTorch's
  momentum 0.1) and `epsilon=1e-5`; `sync_batch_norm=True` gives statistics
  over all replicas: `synchronized` layers on TensorFlow, plain ones on JAX,
  whose data-parallel step already normalizes over the global batch (see
  the builders' arguments).
* Initializers: ResNet convs (float and binary) `kaiming_normal_`, i.e.
  untruncated normal with std sqrt(2 / fan_in); the ResNet dense keeps
  PyTorch's default Linear initialization, U(+-1/sqrt(fan_in)) for kernel
  and bias (the authors' final `_weights_init` touches `nn.Conv2d` only).
  VGG-small convs normal with std sqrt(2 / (k * k * out_channels)) (fan_out),
  its dense normal(0, 0.01) with zero bias. `alpha` is U[0, 1), as in
  `ReCUConv2D`.

Padding: the CIFAR builders use Keras' `padding="same"` by default, which on
even sizes at stride 2 pads (0, 1) where PyTorch's `padding=1` effectively
pads (1, 0), a one-pixel offset of the sampling grid. `padding="torch"`
reproduces PyTorch's exactly (zeros in the binarized input; see
`QuantConv2D`'s `torch_padding`), for weights trained in PyTorch; the
ImageNet builders default to it. VGG-small flattens (H, W, C) where PyTorch
flattens (C, H, W); `keras_recu.torch_import` permutes the dense kernel.

Any input size and channel count works: ResNet heads pool globally, and
VGG-small's flatten sizes its dense layer from the input (4 * 4 * 512 for
32x32 inputs, 3 * 3 * 512 for 28x28).

Deployment: `keras_recu.deploy.convert` turns each of these into a
flatbuffer with every binary conv as `LceBconv2d` (ResNet-20 1w1a: 18) and
one float CONV_2D. It exports binary kernels already binarized, since the
converter would not constant-fold a quantizer over a kernel larger than
1 MiB (3x3x128x256 and up).

Parameters (`count_params()`, 32x32x3 inputs, 10 classes; this counts the BN
moving statistics and one tau state variable per `ReCUConv2D` as Keras does;
the trainable count is what PyTorch reports):

==================  ============  ==========  ===============
model               count_params  trainable   binary convs
==================  ============  ==========  ===============
resnet20_1w1a          272,044      270,522         18
resnet18_1w1a       11,013,850   11,005,002         16
resnet34_1w1a       21,133,162   21,116,874         32
vgg_small_1w1a       4,665,359    4,661,770          5
==================  ============  ==========  ===============

The package, one concept a module: `keras_recu.models.blocks` (the pieces
every builder shares: initializers, batch norm, the binary-conv factory,
the option-A shortcut), `keras_recu.models.cifar` and
`keras_recu.models.imagenet` (the builders), `keras_recu.models.registry`
(`MODELS`, `get`, `float_twin`). The builders' padding vocabulary
(`PADDINGS`, `check_padding`) and the padding layers are
`keras_recu.layers.padding`'s, re-exported here.

Example (Fashion-MNIST-sized input):

>>> from keras_recu import models
>>> from keras_recu.layers import ReCUConv2D
>>> model = models.resnet20_1w1a(input_shape=(28, 28, 1), num_classes=10)
>>> model.name, model.output_shape
('resnet20_1w1a', (None, 10))
>>> sum(isinstance(layer, ReCUConv2D) for layer in model.layers)
18
>>> sorted(name for name in models.MODELS if name.startswith("imagenet"))
['imagenet_resnet18_1w1a', 'imagenet_resnet18_two_stage', 'imagenet_resnet34_1w1a']
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_recu import quantizers
from keras_recu.layers import ChannelZeroPad, ConstantPadding2D, LearnableBias, QuantConv2D, ReCUConv2D


from keras_recu.layers import ChannelZeroPad, ConstantPadding2D
from keras_recu.layers.padding import PADDINGS, check_padding
from keras_recu.models.blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
    BinaryConvFactory,
    float_kernel_conv2d,
    recu_conv2d,
)
from keras_recu.models.cifar import resnet18_1w1a, resnet20_1w1a, resnet34_1w1a, vgg_small_1w1a
from keras_recu.models.imagenet import (
    imagenet_resnet18_1w1a,
    imagenet_resnet18_two_stage,
    imagenet_resnet34_1w1a,
)
from keras_recu.models.registry import MODELS, float_twin, get

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "BinaryConvFactory",
    "ChannelZeroPad",
    "ConstantPadding2D",
    "MODELS",
    "PADDINGS",
    "check_padding",
    "float_kernel_conv2d",
    "float_twin",
    "get",
    "imagenet_resnet18_1w1a",
    "imagenet_resnet18_two_stage",
    "imagenet_resnet34_1w1a",
    "recu_conv2d",
    "resnet18_1w1a",
    "resnet20_1w1a",
    "resnet34_1w1a",
    "vgg_small_1w1a",
]
