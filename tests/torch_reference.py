"""An independent reference: the authors' ReCU computation, transcribed in PyTorch.

Written from RECU_SPEC.md section 2 (the reference implementation's exact
behaviour), not from keras_recu: PyTorch's own unbiased `var`, `clamp`,
autograd and conv2d, in PyTorch's (out, in, kh, kw) / NCHW layouts. The tests
compare keras_recu against it, forward and backward. It computes in float64
(the layout helpers make float64 tensors) and leaves torch's default dtype
alone, which the torch backend of Keras shares.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1 (spec step 10); identity gradient (step 6)."""

    @staticmethod
    def forward(ctx, x):
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        return grad


class _ApproxSign(torch.autograd.Function):
    """sign forward; grad * max(0, 2 - 2|x|) backward (spec step 7)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 - torch.abs(2 * x)).clamp(min=0)


def recu_clamped(w, tau, standardize=True, laplace_scale=2.0, per_channel=False, eps=1e-5):
    """Latent `w` laid out (out, ...) after standardization and clamp (before the sign)."""
    rest = tuple(range(1, w.dim()))
    if standardize:
        w0 = w - w.mean(dim=rest, keepdim=True)
        # torch.var is unbiased by default, as in the reference.
        w1 = w0 / (torch.sqrt(w0.var(dim=rest, keepdim=True) + eps) / (laplace_scale * math.sqrt(2)))
    else:
        w1 = w
    ew = w1.abs().mean(dim=rest, keepdim=True) if per_channel else w1.abs().mean()
    q = (-ew * math.log(2 - 2 * tau)).detach()
    return torch.clamp(w1, -q, q)


def recu_weight(w, tau, output_scale=None, **clamp_options):
    """Binarized weight from latent `w`, as the reference's BinarizeConv2d computes it."""
    w2 = recu_clamped(w, tau, **clamp_options)
    binary = _SignSTE.apply(w2)
    if output_scale == "mean_abs":
        binary = binary * w2.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return binary


def binarize_activation(a, training, eps=1e-5):
    """The reference's activation binarization of `a` (batch first)."""
    if training:
        rest = tuple(range(1, a.dim()))
        a = a / torch.sqrt(a.var(dim=rest, keepdim=True) + eps)
    return _ApproxSign.apply(a)


def tf_same_padding(size, kernel, stride):
    """(before, after) padding of TensorFlow's "SAME" for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def recu_conv2d(x, w, alpha, tau, stride, padding, training):
    """The reference BinarizeConv2d: x NCHW, w (out, in, kh, kw), alpha (out,).

    `padding`: "same" (TensorFlow's), "valid", or an int, PyTorch's own
    symmetric padding (the authors' models use padding=1).
    """
    ba = binarize_activation(x, training)
    bw = recu_weight(w, tau)
    if padding == "same":
        (top, bottom) = tf_same_padding(x.shape[2], w.shape[2], stride)
        (left, right) = tf_same_padding(x.shape[3], w.shape[3], stride)
        ba = F.pad(ba, (left, right, top, bottom))
    out = F.conv2d(ba, bw, stride=stride, padding=padding if isinstance(padding, int) else 0)
    return out * alpha.view(1, -1, 1, 1)


# Layout helpers: Keras kernels put the output channels last.


def keras_kernel_to_torch(kernel):
    kernel = np.asarray(kernel, dtype=np.float64)
    axes = (kernel.ndim - 1,) + tuple(range(kernel.ndim - 1))
    # (kh, kw, in, out) -> (out, kh, kw, in) -> (out, in, kh, kw)
    moved = np.transpose(kernel, axes)
    if kernel.ndim == 4:
        moved = np.transpose(moved, (0, 3, 1, 2))
    return torch.tensor(moved, dtype=torch.float64, requires_grad=True)


def torch_kernel_to_keras(tensor):
    array = tensor.detach().numpy()
    if array.ndim == 4:
        array = np.transpose(array, (0, 2, 3, 1))
    return np.transpose(array, tuple(range(1, array.ndim)) + (0,))


def nhwc_to_torch(x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4:
        x = np.transpose(x, (0, 3, 1, 2))
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def torch_to_nhwc(tensor):
    array = tensor.detach().numpy()
    if array.ndim == 4:
        array = np.transpose(array, (0, 2, 3, 1))
    return array
