"""What ReCU does to the weights: dead share, quantization error, entropy, flip ratio.

The diagnostics answer the questions of RECU_SPEC.md section 4 with numbers,
per binary layer and per epoch: how many latent weights lie beyond ReCU's
clamp, how well the binary kernel approximates what it binarizes, how spread
out (in the information-theoretic sense) the latent weights are, how balanced
the binary weights are, and how many binary weights flip from one epoch to
the next.

* `kernel_diagnostics(kernel, tau, options, recu=True)`: the four static
  diagnostics of one latent kernel (output channels on the last axis);
* `model_diagnostics(model, reference_tau)`: the same for every binary
  conv / dense layer of a model (every layer whose kernel quantizer has
  `precision == 1`), keyed by layer name;
* `DiagnosticsCallback`: all of them, plus the flip ratio, once per epoch
  during `fit`, into the epoch logs (and so into `History`, `CSVLogger` and
  `TensorBoard` placed after it) and into its own `history`.

The ReCU math is that of `keras_recu.ops` (`standardize`, `recu_threshold`,
`rectified_clamp`, `sign`, `mean_abs_scale`); nothing here re-derives it.
Everything is computed eagerly, outside the train step, once per epoch:
a handful of reductions per layer.

Which weights each diagnostic looks at
--------------------------------------

For a layer whose kernel quantizer is a ReCU quantizer (it has `.options`, a
`ClampOptions`, and `.tau`, as `ReCUSign` does), with the layer's own options
and tau:

* `v = w1`: the kernel as ReCU sees it: standardized per output channel
  (`ops.standardize`, std `laplace_scale * sqrt(2)`) when
  `options.standardize`, the raw latent kernel otherwise;
* `Q = ops.recu_threshold(w1, tau)`: the layer's clamp threshold, one per
  layer (or per output channel with `options.per_channel_threshold`);
* `w2 = clip(w1, -Q, Q)`: what the layer binarizes; its binary weights are
  `sign(w2)` (sign(0) = +1).

A ReCU quantizer without the clamp (`options.clamp` False, the "no clamp"
ablation) binarizes `w2 = w1`; its tau is unused, so, as below, `Q` is
taken at `reference_tau` and the dead share says how many weights a clamp
WOULD cut.

For any other binary layer (a `SteSign` kernel, the "plain STE" ablation),
`recu=False`: the layer binarizes its raw latent kernel, so `v = w2 =` the
raw kernel and the binary weights are `sign(kernel)`. Only the dead share
uses ReCU's view of it: `w1` = the kernel standardized with `options`
(default `ClampOptions()`) and `Q` at `reference_tau`, so that the dead share
says how many weights WOULD lie beyond ReCU's clamp.

The diagnostics
---------------

* `dead_share`: share of the latent weights with `|w1| > Q`, i.e. beyond the
  clamp: ReCU's "dead weights", which get no task gradient (only weight
  decay). In [0, 1].
* `quant_error`: relative squared L2 error of binarizing `w2` with
  XNOR-Net's per-output-channel scale `alpha_c = mean|w2_c|`
  (`ops.mean_abs_scale`), the L2-optimal scale for the signs `sign(w2)`:
  `sum((w2 - alpha * sign(w2))^2) / sum(w2^2)`, sums over the whole kernel:
  the relative error of the layer's binary kernel, in which each output
  channel weighs in proportion to its energy `sum(w2_c^2)` (about equally
  for standardized kernels). Scale-free: the same for `w` and `c * w`, so
  raw and standardized kernels compare (a per-channel rescaling changes
  only the channels' weights in the sums). In [0, 1 - 1/fan_in]; 0 for
  channels of equal magnitudes and, by convention, for an all-zero `w2`.
* `entropy`: differential entropy, in nats, of the distribution of the
  values of `v` (all channels pooled), by a histogram estimate:
  `bins = max(16, round(sqrt(n)))` equal-width bins over `[min(v), max(v)]`,
  `p_i` the share of the n weights in bin i, `width = (max - min) / bins`,
  `H = -sum_i p_i ln(p_i / width)` (empty bins contribute 0). A kernel of one
  repeated value has `H = -inf`. `v` is deliberately NOT divided by its
  standard deviation: differential entropy is not scale-free
  (`H(c * v) = H(v) + ln c`, which the estimator reproduces exactly), and the
  paper's argument is about exactly that: for Laplace(0, b),
  `H = 1 + ln(2b)`, so the standardization to b = 2 (H = 1 + ln 4 = 2.386)
  raises the entropy of latent weights whose raw scale is far smaller (a He
  initialized 3x3x64 kernel has b = 0.04, H = -1.8). Read it with that in
  mind: the sign, and so the binary network, does not change when a kernel
  is scaled; `binary_entropy` is the entropy of what is deployed.
  The entropy is taken before the clamp: a clamped distribution has atoms at
  +-Q, whose differential entropy is -inf; the clamp's effect is what
  `dead_share` measures.
  Bias of the estimator: finite samples bias it down by about
  `(bins - 1) / (2n)` (Miller-Madow; -0.01 for a 3x3x16x16 kernel, -0.002 at
  n = 100k), the binning up by O(width^2); the range set by the extremes
  widens the bins for heavy tails. Within ~0.02 of the true value from 10^4
  weights on for uniform, normal and Laplace samples; compare values at
  equal kernel sizes.
* `binary_entropy`: entropy, in nats, of the binary weights' sign
  distribution, `-p ln p - (1 - p) ln(1 - p)` with p the share of +1 in
  `sign(w2)`; ln 2 = 0.693 at most (balanced signs), 0 when all agree.
* `flip_ratio` (`DiagnosticsCallback` only): share of the binary weights
  `sign(w2)` whose sign changed since the previous epoch end (for the first
  epoch of a `fit`: since the start of that `fit`, so after a resume it
  compares with the weights at resume time). Per layer, and pooled over the
  weights of all binary layers for the model.

A kernel with a NaN or infinite value (a diverged run) has every diagnostic
NaN, its flip ratio and the model's pooled one included: a binarization
would turn the NaN into -1 and the numbers into plausible, wrong ones.

Example:

>>> import math, numpy as np
>>> from keras_recu.ops import ClampOptions
>>> kernel = np.array([[-3.0], [-1.0], [1.0], [3.0]])  # 4 inputs, 1 output channel
>>> tau = 1 - math.exp(-1) / 2  # Q = -mean|w| * ln(2 - 2 tau) = 2 * 1
>>> result = kernel_diagnostics(kernel, tau, ClampOptions(standardize=False))
>>> {name: round(value, 4) for name, value in result.items()}
{'dead_share': 0.5, 'quant_error': 0.1, 'entropy': 0.4055, 'binary_entropy': 0.6931}
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from keras_recu import inspection
from keras_recu import ops as recu_ops
from keras_recu.ops import ClampOptions

__all__ = [
    "METRICS",
    "KERNEL_METRICS",
    "LOG_PREFIX",
    "DiagnosticsCallback",
    "histogram_entropy",
    "kernel_diagnostics",
    "model_diagnostics",
]

#: The per-kernel diagnostics, in the order `kernel_diagnostics` returns them.
KERNEL_METRICS = ("dead_share", "quant_error", "entropy", "binary_entropy")
#: Everything `DiagnosticsCallback` records per epoch.
METRICS = KERNEL_METRICS + ("flip_ratio",)
#: Prefix of the keys that `DiagnosticsCallback` adds to the epoch logs.
LOG_PREFIX = "diagnostics/"


def _numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def histogram_entropy(values, bins: Optional[int] = None) -> float:
    """Differential entropy (nats) of `values` by an equal-width histogram.

    `bins` defaults to `max(16, round(sqrt(n)))`, spread over
    `[min, max]`; `H = -sum_i p_i ln(p_i / width)`. `-inf` when all values
    are equal, NaN when one is not finite. See the module docstring for its
    bias.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        raise ValueError("histogram_entropy needs at least one value.")
    if not np.all(np.isfinite(values)):
        return float("nan")
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return float("-inf")
    bins = max(16, int(round(math.sqrt(n)))) if bins is None else int(bins)
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    width = (high - low) / bins
    p = counts[counts > 0] / n
    return float(-np.sum(p * np.log(p / width)))


def _binary_entropy(signs: np.ndarray) -> float:
    p = float(np.mean(signs > 0))
    return float(-sum(q * math.log(q) for q in (p, 1.0 - p) if q > 0.0))


def _analyse(
    kernel, tau: float, options: ClampOptions, recu: bool
) -> Tuple[Dict[str, float], Optional[np.ndarray]]:
    """The four diagnostics of one kernel and its binary weights `sign(w2)` (bool, True = +1).

    A kernel that is not finite, or whose standardization, threshold or
    scale is not, has NaN diagnostics and no binary weights (None): its
    signs mean nothing (sign(NaN) selects -1), and zeros would hide it.
    """
    tau = recu_ops.validate_tau(tau)
    raw = keras.ops.convert_to_tensor(_numpy(kernel), dtype="float32")
    recu_ops.validate_kernel_shape(raw.shape, "kernel_diagnostics", options.standardize)
    checked = [raw]
    w1 = raw
    if options.standardize:
        w1 = recu_ops.standardize(raw, options.laplace_scale, options.epsilon)
        # An overflowing variance standardizes a finite kernel to zeros.
        checked.extend(recu_ops.standardization_moments(raw, options.laplace_scale, options.epsilon))
    threshold = recu_ops.recu_threshold(w1, tau, options.per_channel_threshold)
    if recu and options.clamp:
        latent, w2 = w1, recu_ops.rectified_clamp(w1, threshold)
    elif recu:  # standardized, not clamped: Q only says what a clamp would cut
        latent = w2 = w1
    else:
        latent = w2 = raw
    binary = recu_ops.sign(w2)
    alpha = recu_ops.mean_abs_scale(w2)
    w1, threshold, w2, binary, alpha = (_numpy(t).astype(np.float64) for t in (w1, threshold, w2, binary, alpha))
    if not all(np.all(np.isfinite(_numpy(t))) for t in (*checked, w1, threshold, w2, alpha)):
        return {metric: float("nan") for metric in KERNEL_METRICS}, None
    energy = float(np.sum(np.square(w2)))
    error = float(np.sum(np.square(w2 - alpha * binary)))
    result = {
        "dead_share": float(np.mean(np.abs(w1) > threshold)),
        "quant_error": error / energy if energy > 0.0 else 0.0,
        "entropy": histogram_entropy(_numpy(latent)),
        "binary_entropy": _binary_entropy(binary),
    }
    return result, binary > 0


def kernel_diagnostics(
    kernel: np.ndarray, tau: float, options: ClampOptions = ClampOptions(), *, recu: bool = True
) -> Dict[str, float]:
    """`dead_share`, `quant_error`, `entropy` and `binary_entropy` of one latent kernel.

    Args:
        kernel: the latent kernel, output channels on the last axis (Dense
            `(in, out)`, Conv2D `(kh, kw, in, out)`); any array-like.
        tau: the clamp quantile in (0.5, 1): the layer's own for a ReCU
            layer, the reference tau otherwise.
        options: how ReCU standardizes and thresholds (the layer's
            `ClampOptions`; the defaults for a non-ReCU layer).
        recu: True for a layer that binarizes `clip(w1, -Q, Q)` (ReCU; `w1`
            itself when `options.clamp` is False);
            False for one that binarizes its raw kernel (plain sign / STE),
            whose dead share is then the share ReCU WOULD clamp.

    Returns:
        A dict of floats; the definitions are in the module docstring. All
        are NaN for a kernel with a NaN or infinite value.
    """
    return _analyse(kernel, tau, options, recu)[0]


def _is_recu(quantizer) -> bool:
    return hasattr(quantizer, "options") and hasattr(quantizer, "tau")


def _latent_kernel(layer) -> np.ndarray:
    """The kernel as the layer's kernel (or depthwise) quantizer receives it."""
    if not layer.built:
        raise ValueError(f"Layer {layer.name!r} is not built: build the model before diagnosing it.")
    quantizer = inspection.kernel_quantizer(layer)
    (kernel,) = [k for k in inspection.quantized_kernels(layer) if k.quantizer is quantizer]
    values = _numpy(kernel.variable)
    if kernel.attribute == "depthwise_quantizer":
        # QuantDepthwiseConv2D's quantizer sees one output channel per filter.
        return values.reshape(values.shape[0], values.shape[1], 1, -1)
    return values


def _layer_analyses(
    model, reference_tau: float
) -> Dict[str, Tuple[Dict[str, float], Optional[np.ndarray]]]:
    found = {}
    for binary in inspection.binary_layers(model):
        if not binary.binary_kernel:
            continue
        layer = binary.layer
        quantizer = inspection.kernel_quantizer(layer)
        if _is_recu(quantizer):
            tau = quantizer.tau if quantizer.options.clamp else reference_tau
            found[layer.name] = _analyse(_latent_kernel(layer), tau, quantizer.options, True)
        else:
            found[layer.name] = _analyse(_latent_kernel(layer), reference_tau, ClampOptions(), False)
    return found


def model_diagnostics(model, reference_tau: float = recu_ops.TAU_MIN) -> Dict[str, Dict[str, float]]:
    """`kernel_diagnostics` of every binary conv / dense layer of `model`, by layer name.

    A binary layer is one whose kernel (or depthwise) quantizer has
    `precision == 1` (`keras_recu.inspection.binary_layers`), nested layers
    included; layers with only a binary input are left out. A ReCU kernel
    quantizer (with `.options` and `.tau`) is diagnosed at its own tau and
    options (at `reference_tau` if it does not clamp); any other at
    `reference_tau` with `recu=False`.

    Example:

    >>> import keras
    >>> from keras_recu.layers import ReCUConv2D
    >>> model = keras.Sequential([keras.Input((8, 8, 4)), ReCUConv2D(8, 3, name="bconv")])
    >>> sorted(model_diagnostics(model)["bconv"])
    ['binary_entropy', 'dead_share', 'entropy', 'quant_error']
    """
    reference_tau = recu_ops.validate_tau(reference_tau, "reference_tau")
    return {name: result for name, (result, _) in _layer_analyses(model, reference_tau).items()}


class DiagnosticsCallback(keras.callbacks.Callback):
    """Record ReCU's weight diagnostics at the end of every epoch.

    At each epoch end it computes `model_diagnostics` (at the layers' tau of
    that epoch, as set by a `TauScheduler` at the epoch's start) and the flip
    ratio, and adds to the epoch logs, for `History`, `CSVLogger`,
    `TensorBoard` and the progress bar placed AFTER it in `callbacks`:

    * `"diagnostics/<metric>"`: for `dead_share`, `quant_error`, `entropy`
      and `binary_entropy` the unweighted mean over the binary layers (each
      layer counts once, whatever its size); for `flip_ratio` the share of
      flipped binary weights pooled over all binary layers;
    * with `per_layer=True`, also `"diagnostics/<layer name>/<metric>"`.

    The definitions are in the module docstring. The flip ratio of the first
    epoch of a `fit` compares with the binary weights at the start of that
    `fit` (so, after a resume, with the weights at resume time).

    Args:
        reference_tau: tau at which the dead share of non-ReCU binary layers
            (plain STE) is measured.
        per_layer: add the per-layer keys to the logs (the attributes below
            hold them either way).

    Attributes:
        history: model values per epoch, `{metric: [float, ...]}` for every
            name in `METRICS`; it accumulates over `fit` calls.
        layer_history: `{layer name: {metric: [float, ...]}}`.
        epochs: the 0-based epoch index of each entry.

    Raises:
        ValueError: at the start of `fit`, if the model has no binary layer.

    Example:

    >>> import keras, numpy as np
    >>> from keras_recu.layers import ReCUConv2D
    >>> model = keras.Sequential([keras.Input((8, 8, 2)), ReCUConv2D(4, 3),
    ...                           keras.layers.GlobalAveragePooling2D()])
    >>> model.compile("sgd", "mse")
    >>> diagnostics = DiagnosticsCallback(per_layer=False)
    >>> history = model.fit(np.ones((4, 8, 8, 2)), np.zeros((4, 4)), epochs=2,
    ...                     verbose=0, callbacks=[diagnostics])
    >>> sorted(key for key in history.history if key.startswith("diagnostics/"))
    ['diagnostics/binary_entropy', 'diagnostics/dead_share', 'diagnostics/entropy', 'diagnostics/flip_ratio', 'diagnostics/quant_error']
    >>> len(diagnostics.history["flip_ratio"])
    2
    """

    def __init__(self, reference_tau: float = recu_ops.TAU_MIN, per_layer: bool = True) -> None:
        super().__init__()
        self.reference_tau = recu_ops.validate_tau(reference_tau, "reference_tau")
        self.per_layer = bool(per_layer)
        self.history: Dict[str, List[float]] = {metric: [] for metric in METRICS}
        self.layer_history: Dict[str, Dict[str, List[float]]] = {}
        self.epochs: List[int] = []
        self._signs: Dict[str, Optional[np.ndarray]] = {}

    def _measure(self):
        return _layer_analyses(self.model, self.reference_tau)

    def on_train_begin(self, logs=None):
        measured = self._measure()
        if not measured:
            raise ValueError(
                f"DiagnosticsCallback found no binary layer in model {self.model.name!r} "
                "(a layer whose kernel quantizer has precision 1); drop the callback."
            )
        self._signs = {name: signs for name, (_, signs) in measured.items()}

    def on_epoch_end(self, epoch, logs=None):
        measured = self._measure()
        per_layer: Dict[str, Dict[str, float]] = {}
        flipped = compared = 0
        # A kernel gone non-finite makes the pooled flip ratio NaN too.
        all_finite = True
        for name, (result, signs) in measured.items():
            values = dict(result)
            previous = self._signs.get(name)
            all_finite = all_finite and signs is not None
            if previous is not None and signs is not None and previous.shape == signs.shape:
                changed = int(np.count_nonzero(previous != signs))
                flipped += changed
                compared += signs.size
                values["flip_ratio"] = changed / signs.size
            else:
                values["flip_ratio"] = float("nan")
            self._signs[name] = signs
            per_layer[name] = values
        means = {
            metric: float(np.mean([values[metric] for values in per_layer.values()])) if per_layer else float("nan")
            for metric in KERNEL_METRICS
        }
        means["flip_ratio"] = flipped / compared if compared and all_finite else float("nan")

        self.epochs.append(int(epoch))
        for metric in METRICS:
            self.history[metric].append(means[metric])
        for name, values in per_layer.items():
            record = self.layer_history.setdefault(name, {metric: [] for metric in METRICS})
            for metric in METRICS:
                record[metric].append(values[metric])
        if logs is not None:
            for metric in METRICS:
                logs[LOG_PREFIX + metric] = means[metric]
            if self.per_layer:
                for name, values in per_layer.items():
                    for metric in METRICS:
                        logs[f"{LOG_PREFIX}{name}/{metric}"] = values[metric]
