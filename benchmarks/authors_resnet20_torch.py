"""The ReCU authors' PyTorch ResNet-20 1w1a, for side-by-side timing.

A transcription, in this project's words, of github z-hXu/ReCU
`cifar/models_cifar/resnet.py` (`resnet20_1w1a`) and
`cifar/modules/binarized_modules.py` (`BinarizeConv2d` and its two sign
functions), with their behaviour kept, including what costs time:

* Kernel path, per forward: per-output-channel centering and scaling by the
  UNBIASED standard deviation to std 2*sqrt(2); `EW = mean|w1|` over the
  whole kernel; the threshold `Q = -EW * ln(2 - 2*tau)` is read to the host
  with `.item()` (a device synchronization in every binary conv, every
  forward, as in the original); `clamp(w1, -Q, Q)`; sign with an identity
  gradient.
* Activation path: in training mode divide by the per-sample unbiased
  standard deviation over (C, H, W) (not detached), sign forward and
  `grad * max(0, 2 - 2|a0|)` backward; in eval mode no division.
* Output times a learnable per-channel `alpha`, initialized U[0, 1).
* Network: float stem conv 3x3/16 -> BN -> hardtanh; 3 stages x 3 blocks of
  16/32/64 channels, each binary conv followed by BN and its own residual
  and hardtanh; option-A shortcut (2x2 average pool, zero channels
  `planes // 4` before and after); global average pool, BatchNorm1d, Linear.
  Every conv (the binary ones too, which are Conv2d subclasses) gets
  `kaiming_normal_`; Linear keeps PyTorch's default initialization.
* `tau` is a buffer set from outside (the authors' training loop assigns it
  every epoch; its constructor value 1.0 would make Q infinite). `build`
  sets it to `tau`.

Left out, as not part of the computation: the `LambdaLayer` wrapper (the
shortcut is a method here) and `args`-driven imports. `sign(0) = 0`, as in
PyTorch.

>>> import torch
>>> model = build(tau=0.85)
>>> model(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
>>> sum(p.numel() for p in model.parameters() if p.requires_grad)  # as resnet20_1w1a trainable
270522
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _WeightSign(torch.autograd.Function):
    """sign forward, gradient passed unchanged."""

    @staticmethod
    def forward(ctx, w):
        return torch.sign(w)

    @staticmethod
    def backward(ctx, grad):
        return grad.clone()


class _ActivationSign(torch.autograd.Function):
    """sign forward; backward `grad * max(0, 2 - 2|a|)`."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return torch.sign(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return (2 - torch.abs(2 * a)).clamp(min=0) * grad.clone()


class BinarizeConv2d(nn.Conv2d):
    """The authors' binary conv: ReCU kernel, normalized-sign activations, alpha."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(torch.rand(self.weight.size(0), 1, 1), requires_grad=True)
        self.register_buffer("tau", torch.tensor(1.0))

    def forward(self, inputs):
        w = self.weight
        centered = w - w.mean([1, 2, 3], keepdim=True)
        w1 = centered / (torch.sqrt(centered.var([1, 2, 3], keepdim=True) + 1e-5) / 2 / math.sqrt(2))
        mean_abs = torch.mean(torch.abs(w1))
        threshold = (-mean_abs * torch.log(2 - 2 * self.tau)).detach().cpu().item()
        w2 = torch.clamp(w1, -threshold, threshold)
        a = inputs / torch.sqrt(inputs.var([1, 2, 3], keepdim=True) + 1e-5) if self.training else inputs
        out = F.conv2d(_ActivationSign.apply(a), _WeightSign.apply(w2), self.bias,
                       self.stride, self.padding, self.dilation, self.groups)
        return out * self.alpha


class BasicBlock1w1a(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = BinarizeConv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = BinarizeConv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.pad = 0 if planes == in_planes else planes // 4

    def shortcut(self, x):
        if not self.downsample:
            return x
        return F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, self.pad, self.pad), "constant", 0)

    def forward(self, x):
        # In place, as the original (it saves memory traffic, hence time).
        out = self.bn1(self.conv1(x))
        out += self.shortcut(x)
        out = F.hardtanh(out, inplace=True)
        residual = out
        out = self.bn2(self.conv2(out))
        out += residual
        return F.hardtanh(out, inplace=True)


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for s in (stride, 1, 1):
                blocks.append(BasicBlock1w1a(planes_in, planes, s))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn2 = nn.BatchNorm1d(64)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x):
        out = F.hardtanh(self.bn1(self.conv1(x)), inplace=True)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3)).flatten(1)
        return self.linear(self.bn2(out))


def build(num_classes: int = 10, in_channels: int = 3, tau: float = 0.85) -> ResNet20:
    """ResNet-20 1w1a with every binary conv's tau buffer set to `tau`."""
    model = ResNet20(num_classes, in_channels)
    for module in model.modules():
        if isinstance(module, BinarizeConv2d):
            module.tau.fill_(tau)
    return model
