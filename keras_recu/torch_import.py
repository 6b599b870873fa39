"""The authors' PyTorch checkpoints in Keras: a `state_dict` mapped onto the matching builder.

The ReCU authors (github z-hXu/ReCU) release trained weights for the models
of their tables. `import_torch_checkpoint` reads such a file (`.pth` or
`.pth.tar`, the bare `state_dict` or their `{"state_dict": ..., "epoch": ...}`,
with or without the "module." prefix of a multi-GPU run) and returns the
Keras model of `keras_recu.models` that computes what their PyTorch model
computes, ready for `keras_recu.deploy.convert`. `load_torch_state_dict` does
the mapping for a model already built; it works on numpy arrays (torch
tensors are accepted and converted), so only reading a file needs torch.

What goes where (PyTorch -> Keras):

==============================  ==========================================
conv `weight` (out, in, kh, kw)  `kernel` (kh, kw, in, out)
BinarizeConv2d `alpha` (out,1,1)  `ReCUConv2D.alpha` (out,)
BinarizeConv2d `tau` buffer       `ReCUConv2D.tau` (its kernel quantizer's)
BatchNorm weight, bias,          gamma, beta, moving_mean, moving_variance
running_mean, running_var        (`num_batches_tracked` is not used)
Linear weight (out, in), bias    Dense kernel (in, out), bias; after a
                                 Flatten of an (H, W, C) map the kernel rows
                                 go from PyTorch's (C, H, W) order to (H, W, C)
LearnableBias `bias` (1,C,1,1)    `LearnableBias.bias` (C,)
PReLU `weight` (C,)              `PReLU.alpha` (1, 1, C)
==============================  ==========================================

Names: the ImageNet builders' layer names are the authors' module paths with
"." -> "_" (`layer1.0.conv1` -> `layer1_0_conv1`); the CIFAR ResNets' own names
(`stem_conv`, `stage1_block1_conv1`) are mapped explicitly; VGG-small's are theirs.

Every key is accounted for: a key that no layer takes, a weight that no key
gives, a shape that does not fit or a non-finite value fails the whole load
with `TorchImportError`, listing them, before any variable is changed.

The builders are called with `padding="torch"`: on a stride-2 conv of an
even size the authors' padding is not Keras' "same" (see `keras_recu.layers`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_recu import models
from keras_recu.tau import HasTau
from keras_recu.layers import LearnableBias

__all__ = [
    "TorchImportError",
    "UntrainedTauError",
    "guess_model_name",
    "import_torch_checkpoint",
    "keras_model_for",
    "load_torch_state_dict",
    "read_torch_checkpoint",
    "torch_name",
]

#: The prefix `nn.DataParallel` gives every key of a multi-GPU run's state_dict.
DATA_PARALLEL_PREFIX = "module."
#: PyTorch bookkeeping that has no counterpart in a Keras model.
IGNORED_SUFFIXES = (".num_batches_tracked",)

_CIFAR_RESNETS = ("resnet20_1w1a", "resnet18_1w1a", "resnet34_1w1a")
_IMAGENET_INPUT = (224, 224)
_CIFAR_INPUT = (32, 32)
# How many names an error lists before "and N more".
_LISTED = 12


class TorchImportError(ValueError):
    """A checkpoint does not fit the Keras model; the message lists what is wrong and what to do."""


class UntrainedTauError(TorchImportError):
    """All else fits, but the checkpoint's `tau` buffers (`keys`) hold 1, an untrained model's value."""
    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        super().__init__(
            f"{len(self.keys)} tau buffers ({self.keys[0]} first) hold 1, the value the authors' constructor "
            "leaves in an untrained model, and ReCU needs tau in (0.5, 1): pass tau= (0.85 to train it from "
            "the start, or the tau it was trained to)."
        )


# --------------------------------------------------------------------------- names


_CIFAR_BLOCK = re.compile(r"stage(\d+)_block(\d+)_((?:conv|bn)\d+)")
_CIFAR_FIXED = {"stem_conv": "conv1", "stem_bn": "bn1", "head_bn": "bn2", "head_dense": "linear"}


def _cifar_resnet_name(layer_name: str) -> Optional[str]:
    """resnet.py / resnet2.py module path of a CIFAR ResNet builder's layer."""
    if layer_name in _CIFAR_FIXED:
        return _CIFAR_FIXED[layer_name]
    match = _CIFAR_BLOCK.fullmatch(layer_name)
    if match is None:
        return None
    stage, block, part = match.groups()
    return f"layer{stage}.{int(block) - 1}.{part}"


def torch_name(model: keras.Model, layer_name: str) -> Optional[str]:
    """The authors' module path of the layer `layer_name` of `model` (None if it has none).

    >>> model = models.resnet20_1w1a(input_shape=(8, 8, 3))
    >>> torch_name(model, "stage2_block1_conv1"), torch_name(model, "head_dense")
    ('layer2.0.conv1', 'linear')
    """
    if _is_cifar_resnet(model):
        return _cifar_resnet_name(layer_name)
    return layer_name.replace("_", ".")


def _is_cifar_resnet(model: keras.Model) -> bool:
    return any(layer.name == "stem_conv" for layer in model.layers)


def guess_model_name(state_dict: Mapping[str, Any]) -> Optional[str]:
    """Which builder of `keras_recu.models` a state_dict of the authors' models belongs to.

    Read from the keys alone (the module names and the number of blocks per
    stage); None when they match none of the authors' models.

    >>> guess_model_name({"conv0.weight": 0, "fc.weight": 0})
    'vgg_small_1w1a'
    """
    keys = {_strip_prefix(key) for key in state_dict}
    blocks: Dict[int, set] = {}
    for key in keys:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    counts = tuple(len(blocks[stage]) for stage in sorted(blocks))
    if "conv0.weight" in keys and "fc.weight" in keys:
        return "vgg_small_1w1a"
    if "linear.weight" in keys:
        return {(3, 3, 3): "resnet20_1w1a", (2, 2, 2, 2): "resnet18_1w1a", (3, 4, 6, 3): "resnet34_1w1a"}.get(counts)
    if "conv.weight" in keys and "layer1.0.move0.bias" in keys:
        return "imagenet_resnet18_two_stage" if counts == (4, 4, 4, 4) else None
    if "conv1.weight" in keys and "fc.weight" in keys:
        return {(2, 2, 2, 2): "imagenet_resnet18_1w1a", (3, 4, 6, 3): "imagenet_resnet34_1w1a"}.get(counts)
    return None


# --------------------------------------------------------------------------- arrays


def _strip_prefix(key: str) -> str:
    return key[len(DATA_PARALLEL_PREFIX):] if key.startswith(DATA_PARALLEL_PREFIX) else key


def _to_numpy(value: Any) -> np.ndarray:
    """A numpy array of a torch tensor (on any device, any float dtype) or of an array-like."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor; torch is not imported here
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.double()  # bfloat16 has no numpy dtype; float64 holds every float exactly
        return value.numpy()
    return np.asarray(value)


def _unwrap(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state_dict of a checkpoint: the authors' main.py saves {'state_dict': ..., 'epoch': ...}."""
    inner = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    return inner if isinstance(inner, Mapping) else checkpoint


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


# --------------------------------------------------------------------------- the mapping


class _Plan:
    """What a load will assign, and everything wrong with it, gathered before anything changes."""

    def __init__(self, state_dict: Mapping[str, np.ndarray]):
        self.state_dict = state_dict
        self.used: set = set()
        self.assignments: List[Tuple[Any, np.ndarray]] = []
        self.taus: List[Tuple[str, HasTau, float]] = []
        self.missing: List[str] = []
        self.mismatched: List[str] = []
        self.non_finite: List[str] = []
        self.untrained: List[str] = []  # tau buffers holding 1

    def take(self, key: str) -> Optional[np.ndarray]:
        if key not in self.state_dict:
            self.missing.append(key)
            return None
        self.used.add(key)
        value = self.state_dict[key]
        if np.issubdtype(value.dtype, np.number) and not np.all(np.isfinite(value)):
            self.non_finite.append(key)
            return None
        return value

    def assign(self, variable, key: str, convert: "_Layout") -> None:
        value = self.take(key)
        if value is None:
            return
        expected = tuple(variable.shape)
        try:
            converted = convert.to_keras(value, expected)
        except ValueError:  # a reshape that the sizes do not allow
            converted = None
        if converted is None or tuple(converted.shape) != expected:
            self.mismatched.append(
                f"{key} has shape {tuple(value.shape)}, {variable.path} needs {convert.torch_shape(expected)}"
            )
            return
        self.assignments.append((variable, converted.astype(variable.dtype)))


class _Layout:
    """How a PyTorch array becomes a Keras variable, and the PyTorch shape a Keras shape asks for."""

    def __init__(self, to_keras: Callable[[np.ndarray, tuple], np.ndarray], torch_shape: Callable[[tuple], tuple]):
        self.to_keras = to_keras
        self.torch_shape = torch_shape


def _conv_kernel(weight: np.ndarray, keras_shape: tuple) -> np.ndarray:
    if weight.ndim != 4:
        raise ValueError
    return np.transpose(weight, (2, 3, 1, 0))


#: Conv2d weight (out, in, kh, kw) -> Keras kernel (kh, kw, in, out).
CONV_KERNEL = _Layout(_conv_kernel, lambda shape: (shape[3], shape[2], shape[0], shape[1]))


def _same_values(value: np.ndarray, keras_shape: tuple) -> np.ndarray:
    # Per-channel vectors differ only by axes of size 1: alpha (C, 1, 1),
    # LearnableBias (1, C, 1, 1), PReLU (C,) against Keras' (C,) and (1, 1, C).
    if [n for n in value.shape if n != 1] != [n for n in keras_shape if n != 1]:
        raise ValueError
    return value.reshape(keras_shape)


def _vector(torch_shape: Callable[[int], tuple]) -> _Layout:
    return _Layout(_same_values, lambda shape: torch_shape(int(np.prod(shape))))


#: BatchNorm's four vectors, Linear's bias, PReLU's weight: (C,).
CHANNELS = _vector(lambda c: (c,))
#: BinarizeConv2d's alpha: (C, 1, 1).
ALPHA = _vector(lambda c: (c, 1, 1))
#: LearnableBias' bias: (1, C, 1, 1).
MOVE = _vector(lambda c: (1, c, 1, 1))


def _dense_kernel(flattened_map: Optional[Tuple[int, int, int]]) -> _Layout:
    """Linear (out, in) -> Dense (in, out); after a Flatten, PyTorch's (C, H, W) rows -> (H, W, C)."""

    def convert(weight: np.ndarray, keras_shape: tuple) -> np.ndarray:
        if weight.ndim != 2:
            raise ValueError
        if flattened_map is None:
            return weight.T
        height, width, channels = flattened_map
        out = weight.shape[0]
        chw = weight.reshape(out, channels, height, width)
        return np.transpose(chw, (2, 3, 1, 0)).reshape(height * width * channels, out)

    return _Layout(convert, lambda shape: (shape[1], shape[0]))


def _flattened_maps(model: keras.Model) -> Dict[int, Tuple[int, int, int]]:
    """id(Flatten output) -> the (H, W, C) map it flattens, for maps bigger than one pixel."""
    maps = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Flatten):
            shape = tuple(layer.input.shape[1:])
            if len(shape) == 3 and shape[0] * shape[1] > 1:
                maps[id(layer.output)] = shape
    return maps


def _plan_layer(plan: _Plan, layer: keras.layers.Layer, prefix: str, flattened: Dict[int, tuple], tau: Optional[float]) -> bool:
    """Add one layer's variables to the plan; False for a layer type without a mapping."""
    if isinstance(layer, keras.layers.BatchNormalization):
        for attribute, torch_key in (("gamma", "weight"), ("beta", "bias"),
                                     ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
            variable = getattr(layer, attribute, None)
            if variable is not None:
                plan.assign(variable, f"{prefix}.{torch_key}", CHANNELS)
        return True
    if isinstance(layer, keras.layers.Conv2D):  # QuantConv2D and ReCUConv2D included
        plan.assign(layer.kernel, f"{prefix}.weight", CONV_KERNEL)
        if layer.use_bias:
            plan.assign(layer.bias, f"{prefix}.bias", CHANNELS)
        alpha = getattr(layer, "alpha", None)
        if alpha is not None:
            plan.assign(alpha, f"{prefix}.alpha", ALPHA)
        holder = getattr(layer, "kernel_quantizer", None)
        if isinstance(holder, HasTau):
            _plan_tau(plan, holder, f"{prefix}.tau", tau)
        elif holder is not None and f"{prefix}.tau" in plan.state_dict:
            # A quantized conv without a clamp (the two-stage model's stage 1,
            # binary_weights=False) has no tau to set: the buffer is accounted for.
            plan.used.add(f"{prefix}.tau")
        return True
    if isinstance(layer, keras.layers.Dense):
        flattened_map = flattened.get(id(layer.input))
        plan.assign(layer.kernel, f"{prefix}.weight", _dense_kernel(flattened_map))
        if layer.use_bias:
            plan.assign(layer.bias, f"{prefix}.bias", CHANNELS)
        return True
    if isinstance(layer, LearnableBias):
        plan.assign(layer.bias, f"{prefix}.bias", MOVE)
        return True
    if isinstance(layer, keras.layers.PReLU):
        plan.assign(layer.alpha, f"{prefix}.weight", CHANNELS)
        return True
    return False


def _plan_tau(plan: _Plan, holder: HasTau, key: str, tau: Optional[float]) -> None:
    value = plan.take(key)
    if tau is not None:
        plan.taus.append((key, holder, float(tau)))
        return
    if value is None:
        return
    if value.size != 1:
        plan.mismatched.append(f"{key} {tuple(value.shape)} (a scalar tau)")
        return
    found = float(value.reshape(-1)[0])
    if found == 1.0:
        plan.untrained.append(key)
    elif not 0.5 < found < 1.0:
        plan.mismatched.append(f"{key} = {found:g} (ReCU needs tau in (0.5, 1); pass tau= to set one)")
    else:
        plan.taus.append((key, holder, found))


def load_torch_state_dict(model: keras.Model, state_dict: Mapping[str, Any], *, tau: Optional[float] = None) -> None:
    """Load a PyTorch `state_dict` of the authors' model into `model`, a `keras_recu.models` builder's.

    Args:
        model: a model of `keras_recu.models` (its layer names say where each key goes).
        state_dict: key -> numpy array or torch tensor; the bare state_dict, or a
            checkpoint dict holding it under "state_dict"; "module." prefixes or not.
        tau: every ReCU kernel quantizer's tau, instead of the checkpoint's `tau`
            buffers (which then need not be valid).

    Raises:
        TorchImportError: some key has no layer, some weight no key, or a shape or
            value does not fit; the message lists them all; the model is unchanged.
            `UntrainedTauError` when the only problem is tau buffers at 1.

    Example (a one-conv model with the authors' names):

    >>> import numpy as np
    >>> from keras_recu.layers import ReCUConv2D
    >>> inputs = keras.Input((4, 4, 2))
    >>> outputs = ReCUConv2D(3, 3, padding="same", name="conv1")(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> state = {"module.conv1.weight": np.ones((3, 2, 3, 3), "float32"),
    ...          "module.conv1.alpha": np.full((3, 1, 1), 0.5, "float32"),
    ...          "module.conv1.tau": np.array([0.9], "float32")}
    >>> load_torch_state_dict(model, state)
    >>> round(model.get_layer("conv1").tau, 6)
    0.9
    """
    if tau is not None:
        from keras_recu.ops import validate_tau

        tau = validate_tau(tau)
    arrays = {_strip_prefix(str(key)): _to_numpy(value) for key, value in _unwrap(state_dict).items()}
    plan = _Plan(arrays)
    flattened = _flattened_maps(model)
    unmapped = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_name(model, layer.name)
        if prefix is None or not _plan_layer(plan, layer, prefix, flattened, tau):
            unmapped.append(f"{layer.name} ({type(layer).__name__})")
    unexpected = sorted(
        key for key in arrays if key not in plan.used and not key.endswith(IGNORED_SUFFIXES)
    )
    problems = []
    if unmapped:
        problems.append(f"Keras layers with weights but no PyTorch counterpart: {_listed(unmapped)}")
    if plan.missing:
        problems.append(f"missing from the checkpoint: {_listed(plan.missing)}")
    if unexpected:
        problems.append(f"in the checkpoint but not in the model: {_listed(unexpected)}")
    if plan.mismatched:
        problems.append(f"shapes or values that do not fit: {_listed(plan.mismatched)}")
    if plan.non_finite:
        problems.append(f"NaN or infinite values in: {_listed(plan.non_finite)}")
    if plan.untrained and not problems:
        raise UntrainedTauError(plan.untrained)
    if plan.untrained:
        problems.append(f"{len(plan.untrained)} tau buffers at 1, an untrained model's ({plan.untrained[0]} first)")
    if problems:
        guess = guess_model_name(arrays)
        hint = (
            f" The checkpoint looks like {guess}; pass that model."
            if guess is not None and guess != model.name
            else " Build the model the checkpoint was trained as (same builder, number of classes, input "
            "channels and size)."
        )
        raise TorchImportError(
            f"The checkpoint does not fit model {model.name!r}: " + "; ".join(problems) + "." + hint
        )
    for variable, value in plan.assignments:
        variable.assign(value)
    for _, holder, value in plan.taus:
        holder.tau = value


# --------------------------------------------------------------------------- files


def read_torch_checkpoint(path: os.PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The state_dict of a PyTorch checkpoint file as numpy arrays, and its other entries.

    Keys lose the "module." prefix of a multi-GPU run.

    Reads `.pth` / `.pth.tar` files with `torch.load(weights_only=True)`:
    tensors and plain containers only, never arbitrary pickled objects. The
    second value holds the checkpoint's scalar entries besides the state_dict
    (the authors save "epoch", "model", "best_prec1"...).

    Raises:
        OSError: the file does not exist or cannot be read.
        TorchImportError: torch is missing, or the file is not a PyTorch
            checkpoint holding a state_dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        import torch
    except ImportError:
        raise TorchImportError(
            "reading a PyTorch checkpoint needs torch (the CPU build is enough): pip install torch"
        ) from None
    _check_file_format(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling error, a zip error, a truncated file: one message
        raise TorchImportError(
            f"cannot read {path} as a PyTorch checkpoint of tensors ({_load_failure(error)}). Pass the "
            ".pth/.pth.tar file saved by torch.save; one that pickles other objects must be re-saved as a "
            "plain state_dict (torch.save(model.state_dict(), path)) where its source is trusted."
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise TorchImportError(
            f"{path} holds a {type(checkpoint).__name__}, not a state_dict or a checkpoint dict; "
            "save the model's state_dict (torch.save(model.state_dict(), path))."
        )
    state_dict = _unwrap(checkpoint)
    tensors = {key: value for key, value in state_dict.items() if hasattr(value, "detach")}
    if not tensors:
        raise TorchImportError(
            f"{path} holds no tensors (keys: {_listed(sorted(map(str, checkpoint)))}); pass a checkpoint "
            "with the model's state_dict."
        )
    info = {}
    if state_dict is not checkpoint:
        for key, value in checkpoint.items():
            if hasattr(value, "detach") and value.numel() == 1:  # a best_prec1 kept as a tensor
                value = value.item()
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, (int, float, str, bool)):
                info[str(key)] = value
    return {_strip_prefix(str(key)): _to_numpy(value) for key, value in tensors.items()}, info


def _check_file_format(path: str) -> None:
    """Refuse, naming the file, what is none of torch.save's formats: zip, pickle (before PyTorch 1.6), tar."""
    with open(path, "rb") as file:
        head = file.read(262)
    if head.startswith((b"PK\x03\x04", b"\x80")) or head[257:262] == b"ustar":
        return
    text = head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head)
    what = "is empty" if not head else "is a text file" if text else f"starts with {head[:8]!r}"
    raise TorchImportError(
        f"{path} is not a PyTorch checkpoint: torch.save writes a zip archive (a pickle before PyTorch 1.6), and "
        f"this file {what}. Pass the .pth/.pth.tar file that torch.save wrote."
    )


def _load_failure(error: Exception) -> str:
    """torch.load's reason in a few words: the object a weights-only load refused, or its first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch bolds part of its message
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it pickles {refused.group(1)}, which a weights-only load does not run"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__


def _numpy_scalar_globals() -> list:
    """What unpickling numpy scalars ("epoch" as np.int64) needs: a number from bytes and dtype, no more.

    Pickles name the constructor after the numpy that wrote them: numpy.core (1.x), numpy._core (2.x).
    """
    scalar = np.array(0.0)[()].__reduce__()[0]  # the constructor pickle uses for numpy scalars
    dtypes = {type(np.dtype(name)) for name in ("float64", "float32", "float16", "int64", "int32", "bool")}
    names = [(scalar, f"{package}.multiarray.scalar") for package in ("numpy.core", "numpy._core")]
    return [*names, np.dtype, *dtypes]


def _builder_arguments(model_name: str, state_dict: Mapping[str, np.ndarray], input_shape) -> Dict[str, Any]:
    """input_shape and num_classes of the Keras model the state_dict needs."""
    stem_key = {"vgg_small_1w1a": "conv0.weight", "imagenet_resnet18_two_stage": "conv.weight"}.get(model_name, "conv1.weight")
    head_key = "linear.weight" if model_name in _CIFAR_RESNETS else "fc.weight"
    stem, head = state_dict.get(stem_key), state_dict.get(head_key)
    if stem is None or stem.ndim != 4 or head is None or head.ndim != 2:
        guess = guess_model_name(state_dict)
        hint = (
            f"it looks like a checkpoint of {guess}: pass that model" if guess else
            "its keys match none of the authors' models (" + ", ".join(sorted(models.MODELS)) + ")"
        )
        raise TorchImportError(f"the checkpoint has no {stem_key} and {head_key}, which {model_name} needs: {hint}.")
    channels = int(stem.shape[1])
    if input_shape is None:
        size = _IMAGENET_INPUT if model_name.startswith("imagenet_") else _CIFAR_INPUT
        input_shape = (*size, channels)
    input_shape = tuple(int(n) for n in input_shape)
    if len(input_shape) == 2:
        input_shape = (*input_shape, channels)
    return {"input_shape": input_shape, "num_classes": int(head.shape[0])}


def keras_model_for(
    state_dict: Mapping[str, Any],
    model_name: str,
    *,
    input_shape: Optional[Sequence[int]] = None,
    tau: Optional[float] = None,
    padding: str = "torch",
    **builder_kwargs: Any,
) -> keras.Model:
    """Build `model_name` to fit `state_dict` (classes, input channels) and load it.

    The arguments are those of `import_torch_checkpoint`, with the
    state_dict (or checkpoint dict) in place of the file.
    """
    builder = models.get(model_name)
    arrays = {_strip_prefix(str(key)): _to_numpy(value) for key, value in _unwrap(state_dict).items()}
    arguments = _builder_arguments(model_name, arrays, input_shape)
    model = builder(**arguments, padding=padding, **builder_kwargs)
    load_torch_state_dict(model, arrays, tau=tau)
    return model


def import_torch_checkpoint(
    path: os.PathLike,
    model_name: str,
    *,
    input_shape: Optional[Sequence[int]] = None,
    tau: Optional[float] = None,
    padding: str = "torch",
    **builder_kwargs: Any,
) -> keras.Model:
    """The Keras model of `keras_recu.models` holding a PyTorch checkpoint's weights.

    Args:
        path: the authors' checkpoint (`.pth` / `.pth.tar`), see
            `read_torch_checkpoint`.
        model_name: the builder (a key of `keras_recu.models.MODELS`) the
            checkpoint was trained as (`guess_model_name` reads it from the keys).
        input_shape: (height, width) or (height, width, channels) of the
            Keras model; by default 32x32 (CIFAR) or 224x224 (ImageNet), with
            the checkpoint's input channels. The number of classes is the
            checkpoint's.
        tau: every binary conv's tau, instead of the checkpoint's buffers.
        padding: "torch" (the authors'; their outputs) or "same" (Keras':
            the stride-2 binary convs' grid shifts by a pixel: other outputs).
        **builder_kwargs: further arguments of the builder (e.g.
            `binary_weights=False` for a stage-1 two-stage checkpoint).

    Raises:
        OSError: `path` is not a readable file.
        TorchImportError: the file is not a checkpoint of `model_name`
            (the message lists each key and shape that does not fit).
        ValueError: an unknown `model_name` or a bad argument of the builder.
    """
    models.get(model_name)  # an unknown name fails before the file is read
    state_dict, _ = read_torch_checkpoint(path)
    return keras_model_for(
        state_dict, model_name, input_shape=input_shape, tau=tau, padding=padding, **builder_kwargs
    )
