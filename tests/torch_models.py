"""The authors' PyTorch models, transcribed: the independent reference for the Keras builders.

Written from the authors' code (github z-hXu/ReCU), not from keras_recu:

* `resnet20_1w1a`: cifar/models_cifar/resnet.py;
* `cifar_resnet18_1w1a`: cifar/models_cifar/resnet2.py (`resnet18_1w1a` there);
* `vgg_small_1w1a`: cifar/models_cifar/vgg.py;
* `imagenet_resnet18_1w1a`, `imagenet_resnet34_1w1a`: imagenet/models_imagenet/resnet.py;
* `imagenet_resnet18_two_stage`: imagenet_two-stage/models_imagenet/resnet.py
  (`resnet18_1w1a` there, blocks [4, 4, 4, 4]).

Module names are the authors', so `state_dict()` has the keys of their
released checkpoints (`layer1.0.conv1.weight`, `layer1.0.conv1.alpha`,
`layer1.0.conv1.tau`, ...). Each model takes `in_channels` (3 in the authors'
code; other values only let tests feed one-channel data sets) and
`num_classes`.

`BinarizeConv2d` is the authors' layer (*/modules/binarized_modules.py): an
`nn.Conv2d` with a learnable `alpha` (out, 1, 1) and a `tau` buffer (1.0 until
training sets it), computing through `tests/torch_reference.py`'s ReCU
transcription. Two deliberate differences from the authors' forward, neither
of which changes an output this project compares:

* sign(0) is +1 (torch_reference, RECU_SPEC step 10), where `torch.sign`
  gives 0; a standardized weight or an eval-mode activation is exactly zero
  with probability zero for the random values of the tests (the conv's
  zero padding is applied after the sign, as in the authors' code);
* at tau = 1 (an untrained model's buffer) the authors' threshold is
  -EW * log(0) = inf, i.e. no clamp; here tau is capped just below 1, which
  clamps nothing either (and the clamp never changes a sign).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init

from tests.torch_reference import binarize_activation, recu_weight

__all__ = [
    "BinarizeConv2d",
    "LearnableBias",
    "TORCH_MODELS",
    "cifar_resnet18_1w1a",
    "imagenet_resnet18_1w1a",
    "imagenet_resnet18_two_stage",
    "imagenet_resnet34_1w1a",
    "nchw",
    "pool_globally_",
    "randomize_",
    "reference_logits",
    "relative_difference",
    "resnet20_1w1a",
    "save_checkpoint",
    "trainable_parameter_count",
    "vgg_small_1w1a",
]

_TAU_BELOW_ONE = 1.0 - 1e-12


class BinarizeConv2d(nn.Conv2d):
    """The authors' binary conv: ReCU weights, sign activations, `alpha` (out, 1, 1), `tau` buffer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.rand(self.weight.size(0), 1, 1), requires_grad=True)
        self.register_buffer("tau", torch.tensor(1.0))

    def forward(self, input):
        # The authors' main.py replaces the buffer by a (1,) tensor each epoch.
        tau = min(float(self.tau.reshape(-1)[0]), _TAU_BELOW_ONE)
        bw = recu_weight(self.weight, tau)
        ba = binarize_activation(input, self.training)
        output = F.conv2d(ba, bw, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return output * self.alpha


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


def _option_a_shortcut(in_planes, planes, stride):
    """CIFAR ResNets' shortcut: 2x2 average pool, then planes // 4 zero channels on each side."""
    pad = 0 if planes == in_planes else planes // 4
    if stride != 1 or in_planes != planes:
        return nn.Sequential(
            nn.AvgPool2d((2, 2)),
            LambdaLayer(lambda x: F.pad(x, (0, 0, 0, 0, pad, pad), "constant", 0)),
        )
    return nn.Sequential()


def _kaiming_init(module):
    if isinstance(module, nn.Conv2d):  # BinarizeConv2d included
        init.kaiming_normal_(module.weight)


# --------------------------------------------------------------------------- CIFAR ResNet-20 (resnet.py)


class _BiRealBlock(nn.Module):
    """resnet.py's BasicBlock_1w1a: a residual around each binary conv."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = BinarizeConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = BinarizeConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _option_a_shortcut(in_planes, planes, stride)

    def forward(self, x):
        out = self.bn1(self.conv1(x))
        out = out + self.shortcut(x)
        out = F.hardtanh(out)
        x1 = out
        out = self.bn2(self.conv2(out))
        out = out + x1
        return F.hardtanh(out)


class CifarResNet20(nn.Module):
    def __init__(self, num_blocks=(3, 3, 3), num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.bn2 = nn.BatchNorm1d(64)
        self.linear = nn.Linear(64, num_classes)
        self.apply(_kaiming_init)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for stride in [stride] + [1] * (num_blocks - 1):
            layers.append(_BiRealBlock(self.in_planes, planes, stride))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(self.bn2(out))


def resnet20_1w1a(num_classes=10, in_channels=3):
    return CifarResNet20((3, 3, 3), num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------- CIFAR ResNet-18 (resnet2.py)


class _CifarBasicBlock(nn.Module):
    """resnet2.py's BasicBlock_1w1a: one residual per block."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = BinarizeConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = BinarizeConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _option_a_shortcut(in_planes, planes, stride)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.hardtanh(out)


class CifarResNet(nn.Module):
    def __init__(self, num_blocks, num_channel, num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = num_channel[0]
        self.conv1 = nn.Conv2d(in_channels, num_channel[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_channel[0])
        self.layer1 = self._make_layer(num_channel[0], num_blocks[0], stride=1)
        self.layer2 = self._make_layer(num_channel[1], num_blocks[1], stride=2)
        self.layer3 = self._make_layer(num_channel[2], num_blocks[2], stride=2)
        self.layer4 = self._make_layer(num_channel[3], num_blocks[3], stride=2)
        self.linear = nn.Linear(num_channel[3], num_classes)
        self.bn2 = nn.BatchNorm1d(num_channel[3])
        self.apply(_kaiming_init)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for stride in [stride] + [1] * (num_blocks - 1):
            layers.append(_CifarBasicBlock(self.in_planes, planes, stride))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.bn1(self.conv1(x))  # no hardtanh after the stem in resnet2.py
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)  # global on 32x32 inputs only, as the authors'
        out = out.view(out.size(0), -1)
        return self.linear(self.bn2(out))


def cifar_resnet18_1w1a(num_classes=10, in_channels=3):
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes=num_classes, in_channels=in_channels)


def cifar_resnet34_1w1a(num_classes=10, in_channels=3):
    return CifarResNet([3, 4, 6, 3], [64, 128, 256, 512], num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------- VGG-small (vgg.py)


class VGGSmall(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, 128, kernel_size=3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(128)
        self.nonlinear0 = nn.Hardtanh(inplace=True)
        self.conv1 = BinarizeConv2d(128, 128, kernel_size=3, padding=1, bias=False)
        self.pooling = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bn1 = nn.BatchNorm2d(128)
        self.nonlinear1 = nn.Hardtanh(inplace=True)
        self.conv2 = BinarizeConv2d(128, 256, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(256)
        self.nonlinear2 = nn.Hardtanh(inplace=True)
        self.conv3 = BinarizeConv2d(256, 256, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(256)
        self.nonlinear3 = nn.Hardtanh(inplace=True)
        self.conv4 = BinarizeConv2d(256, 512, kernel_size=3, padding=1, bias=False)
        self.bn4 = nn.BatchNorm2d(512)
        self.nonlinear4 = nn.Hardtanh(inplace=True)
        self.conv5 = BinarizeConv2d(512, 512, kernel_size=3, padding=1, bias=False)
        self.bn5 = nn.BatchNorm2d(512)
        self.nonlinear5 = nn.Hardtanh(inplace=True)
        self.fc = nn.Linear(512 * 4 * 4, num_classes)
        self._initialize_weights()

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # BinarizeConv2d included
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()

    def forward(self, x):
        x = self.nonlinear0(self.bn0(self.conv0(x)))
        x = self.nonlinear1(self.bn1(self.pooling(self.conv1(x))))
        x = self.nonlinear2(self.bn2(self.conv2(x)))
        x = self.nonlinear3(self.bn3(self.pooling(self.conv3(x))))
        x = self.nonlinear4(self.bn4(self.conv4(x)))
        x = self.nonlinear5(self.bn5(self.pooling(self.conv5(x))))
        x = x.view(x.size(0), -1)  # (C, H, W) order
        return self.fc(x)


def vgg_small_1w1a(num_classes=10, in_channels=3):
    return VGGSmall(num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------- ImageNet ResNet-18/34 (imagenet/)


def _conv3x3_binary(in_planes, out_planes, stride=1):
    return BinarizeConv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class _ImageNetBasicBlock(nn.Module):
    """imagenet/models_imagenet/resnet.py's BasicBlock: a residual around each binary conv."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3_binary(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.nonlinear1 = nn.Hardtanh(inplace=True)
        self.conv2 = _conv3x3_binary(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.nonlinear2 = nn.Hardtanh(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.bn1(self.conv1(x))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = self.nonlinear1(out + residual)
        residual = out
        out = self.bn2(self.conv2(out))
        return self.nonlinear2(out + residual)


class ImageNetResNet(nn.Module):
    """The vanilla ImageNet ResNet (avg_down=False, as the authors' builders call it)."""

    def __init__(self, layers, num_classes=1000, in_channels=3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.nonlinear = nn.Hardtanh(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.bn2 = nn.BatchNorm1d(512)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1e-8)
                m.bias.data.zero_()

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [_ImageNetBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [_ImageNetBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.nonlinear(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)  # global on 224x224 inputs (a 7x7 map), as the authors'
        x = x.view(x.size(0), -1)
        return self.fc(self.bn2(x))


def imagenet_resnet18_1w1a(num_classes=1000, in_channels=3):
    return ImageNetResNet([2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels)


def imagenet_resnet34_1w1a(num_classes=1000, in_channels=3):
    return ImageNetResNet([3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels)


# --------------------------------------------------------------------------- two-stage ResNet-18 (imagenet_two-stage/)


class LearnableBias(nn.Module):
    def __init__(self, out_chn):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, out_chn, 1, 1), requires_grad=True)

    def forward(self, x):
        return x + self.bias.expand_as(x)


class _TwoStageBlock(nn.Module):
    """imagenet_two-stage's BasicBlock: move0, binary conv, BN, add, move1, PReLU, move2."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.move0 = LearnableBias(inplanes)
        self.conv = _conv3x3_binary(inplanes, planes, stride=stride)
        self.bn = nn.BatchNorm2d(planes)
        self.move1 = LearnableBias(planes)
        self.nonlinear = nn.PReLU(planes)
        self.move2 = LearnableBias(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.bn(self.conv(self.move0(x)))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = out + residual
        return self.move2(self.nonlinear(self.move1(out)))


class TwoStageResNet(nn.Module):
    def __init__(self, layers, num_classes=1000, in_channels=3):
        super().__init__()
        self.inplanes = 64
        self.conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride),
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=1, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [_TwoStageBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [_TwoStageBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.bn(self.conv(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def imagenet_resnet18_two_stage(num_classes=1000, in_channels=3):
    return TwoStageResNet([4, 4, 4, 4], num_classes=num_classes, in_channels=in_channels)


#: Keras builder name (keras_recu.models.MODELS) -> the transcription of the authors' model.
TORCH_MODELS = {
    "resnet20_1w1a": resnet20_1w1a,
    "resnet18_1w1a": cifar_resnet18_1w1a,
    "resnet34_1w1a": cifar_resnet34_1w1a,
    "vgg_small_1w1a": vgg_small_1w1a,
    "imagenet_resnet18_1w1a": imagenet_resnet18_1w1a,
    "imagenet_resnet34_1w1a": imagenet_resnet34_1w1a,
    "imagenet_resnet18_two_stage": imagenet_resnet18_two_stage,
}


# --------------------------------------------------------------------------- helpers


def pool_globally_(model: nn.Module) -> nn.Module:
    """Replace the vanilla ImageNet head's AvgPool2d(7) by a global average pool.

    The two are the same on 224x224 inputs (a 7x7 map), where the authors use
    them; the Keras builders pool globally, so this lets a test compare at a
    smaller, cheaper size.
    """
    if isinstance(getattr(model, "avgpool", None), nn.AvgPool2d):
        model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    return model


def trainable_parameter_count(model: nn.Module) -> int:
    """What the authors' `test(net)` prints: the sizes of the parameters that require grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and buffer a random value that a trained model could hold.

    BatchNorm: weight U(0.5, 1.5), bias N(0, 0.2), running_mean N(0, 0.5),
    running_var U(0.5, 2); alpha U(0.1, 1); tau U(0.85, 0.99); LearnableBias
    N(0, 0.2); PReLU U(0, 0.5); Linear bias N(0, 0.1). Latent conv weights are
    kept where the model's init put them, but moved away from each filter's
    mean by a margin of 0.2 standard deviations, so that the signs of the
    standardized weights do not hinge on rounding: two frameworks computing
    the mean in a different order agree on every sign.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype))

    def normal(tensor, std):
        tensor.copy_(std * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))

    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            uniform(module.weight, 0.5, 1.5)
            normal(module.bias, 0.2)
            normal(module.running_mean, 0.5)
            uniform(module.running_var, 0.5, 2.0)
            module.num_batches_tracked.fill_(1000)
        elif isinstance(module, BinarizeConv2d):
            w = module.weight
            centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
            scale = centred.std(dim=(1, 2, 3), keepdim=True)
            moved = centred + 0.2 * scale * torch.sign(centred)
            w.copy_(w.mean(dim=(1, 2, 3), keepdim=True) + moved - moved.mean(dim=(1, 2, 3), keepdim=True))
            uniform(module.alpha, 0.1, 1.0)
            module.tau = torch.empty((1,), dtype=w.dtype)  # (1,), as the authors' main.py leaves it
            uniform(module.tau, 0.85, 0.99)
        elif isinstance(module, LearnableBias):
            normal(module.bias, 0.2)
        elif isinstance(module, nn.PReLU):
            uniform(module.weight, 0.0, 0.5)
        elif isinstance(module, nn.Linear):
            normal(module.bias, 0.1)
    return model


def nchw(images) -> torch.Tensor:
    """A contiguous float64 NCHW tensor of channels-last `images` (the authors' `.view` needs contiguity)."""
    return torch.tensor(np.ascontiguousarray(np.transpose(np.asarray(images, np.float64), (0, 3, 1, 2))))


@torch.no_grad()
def reference_logits(model: nn.Module, images, dtype=torch.float32) -> np.ndarray:
    """The model's eval-mode outputs for channels-last `images`, computed in `dtype` on a copy.

    float32 by default, the authors' precision (and 2-4x faster than float64
    on CPU); float32 and float64 references differ by about 3e-7 of the
    logits' scale on the ImageNet ResNets.
    """
    return copy.deepcopy(model).to(dtype).eval()(nchw(images).to(dtype)).numpy()


def relative_difference(outputs, reference) -> float:
    """max |outputs - reference| over max |reference|: the error on the scale of the logits."""
    reference = np.asarray(reference, np.float64)
    return float(np.max(np.abs(np.asarray(outputs, np.float64) - reference)) / np.max(np.abs(reference)))


def save_checkpoint(model: nn.Module, path, form: str = "raw") -> None:
    """torch.save the model's state_dict as "raw", or "wrapped" as the authors' multi-GPU main.py does.

    "wrapped": {"epoch", "model", "state_dict" with "module."-prefixed keys, "best_prec1"}.
    """
    state = model.state_dict()
    if form == "raw":
        torch.save(state, path)
    elif form == "wrapped":
        torch.save(
            {"epoch": 3, "model": type(model).__name__, "best_prec1": 12.5,
             "state_dict": {f"module.{key}": value for key, value in state.items()}},
            path,
        )
    else:
        raise ValueError(f"form must be 'raw' or 'wrapped', got {form!r}")
