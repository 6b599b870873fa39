"""Sign ties: telling a binary network's harmless disagreements from a wrong conversion.

A binary layer takes the sign of its input. Keras and LCE compute that
input (the *pre-sign activation*: a batch normalization of an integer
binary convolution, plus a shortcut) with different float32 arithmetic: LCE
folds the normalization into one multiply-add on the popcount and fuses the
sign into the convolution's output, Keras rounds after each of its steps. The
two results differ by a few units in the last place (ulps) of the terms they
sum. An activation that close to zero has no well-defined sign: the two
programs may binarize it differently, and a network of signs carries that
single flip to the logits, sometimes far enough to change the argmax. That is
a *sign tie*, not a conversion error; a wrong conversion (a wrong weight, a
missing bias, a shifted padding) changes values far from zero and shows in
many images.

What counts as "equal"
    An image *agrees* when its argmax is the same and every output is within
    `LOGIT_TOLERANCE` (1e-3) of Keras', relative to the largest |Keras output|
    of the batch (plus one quantization step for an int8 output). Without a
    flip the two programs measure ~1e-6 relative, three orders below; one
    flipped sign moves the logits by far more than 1e-3. An image that does
    not agree is a *disagreement*.

What counts as a tie
    A disagreement is a *sign tie* when one of its pre-sign activations, at
    the input of a binary layer, lies within `tie_threshold` of zero:
    `TIE_ULPS` (64) float32 ulps of that image's largest |activation| at that
    layer, `64 * 2**-23 * max|a|` (7.6e-6 for ResNet's hardtanh-clipped
    activations, max|a| = 1). Why so many ulps: the two programs round the
    terms they sum (the normalization's product and shift, the shortcut) three
    to five times each, at half an ulp *of each term*, and those terms are
    larger than the activation the sign sees: hardtanh clips it to [-1, 1],
    while the integer convolution output times its scale can reach several
    times that. The largest |activation| therefore understates the scale of
    the rounding; 64 ulps (6 bits) leaves a margin over the measured case
    (benchmarks/results/verify-ties-resnet20-fashion-mnist.json: a tie at 13
    ulps of max|a|, whose flip in Keras reproduces the flatbuffer) while
    staying 10^5 times below the activation scale. The tie reported is the
    first binary layer, in the model's order, that holds one: a flip there
    changes everything after it. Any other disagreement is *unexplained*, and
    fails a verification.

    `keras_recu.deploy.verify` also *confirms* each tie where it can: it
    flips the near-zero signs in Keras, one and then several at a time, and
    checks that Keras then gives the flatbuffer's output within the
    tolerance (`Disagreement.confirmed`).

The functions here work on numpy arrays alone; `keras_recu.deploy.verify`
gathers the arrays (the Keras and flatbuffer outputs, and the pre-sign
activations of the disagreeing images from a Keras sub-model) and stores the
outcome in its report.

>>> import numpy as np
>>> expected = np.array([[2.0, 1.0], [0.5, 1.5], [3.0, 0.0]], "float32")
>>> got = expected.copy()
>>> got[1] = [1.6, 0.4]                   # image 1's argmax flipped
>>> got[2, 0] += 0.5                      # image 2: same argmax, logits off
>>> disagreeing(expected, got).tolist()
[1, 2]
>>> pre_sign = {"conv1": np.array([[[4.0, -3.0]], [[4.0, 2e-6]], [[1.0, -2.0]]], "float32")}
>>> found = classify(expected, got, pre_sign)
>>> [(d.index, d.kind, d.layer) for d in found]
[(1, 'tie', 'conv1'), (2, 'unexplained', None)]
>>> print(found[0])
image 1: argmax 1 -> 0, max |error| 1.1: sign tie at conv1 (|a| = 2e-06 < 3.1e-05, 1 near-tie)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "FLOAT32_EPS",
    "LOGIT_TOLERANCE",
    "TIE_ULPS",
    "Disagreement",
    "classify",
    "disagreeing",
    "summarize",
    "tie_threshold",
]

#: The spacing of float32 numbers at 1 (2**-23): one ulp, relative.
FLOAT32_EPS = float(np.finfo(np.float32).eps)
#: A pre-sign activation within this many float32 ulps of its layer's largest |activation| is a tie.
TIE_ULPS = 64
#: An image agrees when every output is within this share of the batch's largest |Keras output|.
LOGIT_TOLERANCE = 1e-3

#: The pre-sign activations of the binary layers, by layer name in the model's order, one row per image;
#: or a function that computes them for the given image indices.
PreSign = Union[Mapping[str, np.ndarray], Callable[[np.ndarray], Optional[Mapping[str, np.ndarray]]]]


def tie_threshold(activations: np.ndarray, ulps: float = TIE_ULPS) -> float:
    """How close to 0 an activation of this set may lie and still be a tie: `ulps` float32 ulps of max |a|.

    >>> tie_threshold(np.array([4.0, -2.0, 1e-7]))  # 64 * 2**-23 * 4
    3.0517578125e-05
    >>> tie_threshold(np.zeros(3))
    0.0
    """
    values = np.abs(np.asarray(activations, dtype="float64"))
    return float(ulps * FLOAT32_EPS * values.max()) if values.size else 0.0


def disagreeing(expected: np.ndarray, got: np.ndarray, tolerance: float = LOGIT_TOLERANCE,
                absolute: float = 0.0) -> np.ndarray:
    """Indices of the images whose argmax differs, or whose outputs differ by more than the tolerance.

    The tolerance is `tolerance` times the largest |expected| of the batch,
    plus `absolute` (e.g. one step of an int8 output's quantization). The
    argmax is compared for outputs of shape (batch, classes > 1).

    >>> disagreeing(np.array([[1.0, 0.0]]), np.array([[1.0005, 0.0]])).tolist()
    []
    >>> disagreeing(np.array([[1.0, 0.0]]), np.array([[1.002, 0.0]])).tolist()
    [0]
    """
    expected = np.asarray(expected, dtype="float64")
    got = np.asarray(got, dtype="float64").reshape(expected.shape)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    errors = np.abs(got - expected).reshape(len(expected), -1).max(axis=1)
    bad = errors > tolerance * (scale or 1.0) + absolute
    if expected.ndim == 2 and expected.shape[1] > 1:
        bad |= got.argmax(axis=1) != expected.argmax(axis=1)
    return np.flatnonzero(bad)


@dataclasses.dataclass(frozen=True)
class Disagreement:
    """One image on which the flatbuffer and Keras disagree, and why.

    Attributes:
        index: the image's position in the verified batch.
        kind: "tie" (a sign tie explains it) or "unexplained".
        max_abs_error: the largest |flatbuffer - Keras| of its outputs.
        keras_class, flatbuffer_class: the two argmaxes (None for outputs
            without classes).
        layer: the first binary layer whose input holds a tie (ties only).
        activation: the smallest |pre-sign activation| at that layer.
        threshold: that layer's tie threshold for this image (`tie_threshold`).
        near_ties: the activations within their layer's threshold, over all
            binary layers.
        confirmed: for a tie, whether flipping the sign of some of those
            near-ties in Keras reproduces the flatbuffer's output within the
            tolerance (`keras_recu.deploy.verification.confirm_tie`); None
            where that was not tried.
    """

    index: int
    kind: str
    max_abs_error: float
    keras_class: Optional[int] = None
    flatbuffer_class: Optional[int] = None
    layer: Optional[str] = None
    activation: Optional[float] = None
    threshold: Optional[float] = None
    near_ties: int = 0
    confirmed: Optional[bool] = None

    @property
    def is_tie(self) -> bool:
        return self.kind == "tie"

    def __str__(self) -> str:
        argmax = ""
        if self.keras_class is not None:
            argmax = (f"argmax {self.keras_class} -> {self.flatbuffer_class}, " if self.keras_class !=
                      self.flatbuffer_class else f"argmax {self.keras_class} kept, ")
        head = f"image {self.index}: {argmax}max |error| {self.max_abs_error:.2g}"
        if self.is_tie:
            plural = "" if self.near_ties == 1 else "s"
            check = {True: "; flipping it in Keras reproduces the flatbuffer", False: "; flips in Keras do not "
                     "reproduce the flatbuffer", None: ""}[self.confirmed]
            return (f"{head}: sign tie at {self.layer} (|a| = {self.activation:.2g} < {self.threshold:.2g}, "
                    f"{self.near_ties} near-tie{plural}{check})")
        return f"{head}: unexplained (no pre-sign activation within {TIE_ULPS} ulps of 0)"


def _near_ties(pre_sign: Mapping[str, np.ndarray], row: int, ulps: float):
    """(first layer with a tie, its smallest |a|, its threshold, near-ties over all layers) for one image."""
    first, count = None, 0
    for name, values in pre_sign.items():
        values = np.abs(np.asarray(values[row], dtype="float64"))
        threshold = tie_threshold(values, ulps)
        close = values < threshold
        count += int(close.sum())
        if first is None and close.any():
            first = (name, float(values[close].min()), threshold)
    return first, count


def classify(expected: np.ndarray, got: np.ndarray, pre_sign: Optional[PreSign] = None,
             tolerance: float = LOGIT_TOLERANCE, absolute: float = 0.0,
             ulps: float = TIE_ULPS) -> List[Disagreement]:
    """Each disagreeing image (`disagreeing`) as a sign tie or unexplained (see the module's docstring).

    `pre_sign` maps each binary layer's name, in the model's order, to its
    input (the activations before the sign) with one row per image of
    `expected`, or is a function that returns that mapping for the image
    indices it is given (so that only the disagreeing images are computed).
    Without it, or when it returns None, every disagreement is unexplained.
    """
    expected = np.asarray(expected, dtype="float64")
    got = np.asarray(got, dtype="float64").reshape(expected.shape)
    indices = disagreeing(expected, got, tolerance, absolute)
    if not len(indices):
        return []
    activations, rows = None, indices
    if callable(pre_sign):
        activations, rows = pre_sign(indices), np.arange(len(indices))
    elif pre_sign is not None:
        activations = pre_sign
    classes = expected.ndim == 2 and expected.shape[1] > 1
    found = []
    for index, row in zip(indices, rows):
        error = float(np.abs(got[index] - expected[index]).max())
        argmaxes = (int(expected[index].argmax()), int(got[index].argmax())) if classes else (None, None)
        tie, count = _near_ties(activations, row, ulps) if activations else (None, 0)
        if tie is None:
            found.append(Disagreement(int(index), "unexplained", error, *argmaxes, near_ties=count))
        else:
            found.append(Disagreement(int(index), "tie", error, *argmaxes, *tie, near_ties=count))
    return found


def summarize(samples: int, argmax_agreeing: Optional[int], found: Sequence[Disagreement],
              tolerance: float = LOGIT_TOLERANCE) -> str:
    """One sentence: the argmax agreement and what the disagreements were.

    >>> tie = Disagreement(3, "tie", 0.33, 4, 6, "stage2_block1_conv2", 8.0e-7, 7.6e-6, 1)
    >>> summarize(64, 63, [tie])
    'argmax agreement 63/64; 1 disagreement, a sign tie at stage2_block1_conv2 (|a| = 8e-07)'
    >>> summarize(64, 64, [])
    'argmax agreement 64/64; every output within 0.001 of Keras'
    >>> summarize(4, 2, [tie, Disagreement(5, "unexplained", 2.0, 1, 0)])
    'argmax agreement 2/4; 2 disagreements: 1 sign tie (stage2_block1_conv2), 1 unexplained (image 5)'
    """
    head = f"argmax agreement {argmax_agreeing}/{samples}" if argmax_agreeing is not None else f"{samples} samples"
    if not found:
        return f"{head}; every output within {tolerance:g} of Keras"
    ties = [d for d in found if d.is_tie]
    unexplained = [d for d in found if not d.is_tie]
    if len(found) == 1:
        only = found[0]
        what = (f"a sign tie at {only.layer} (|a| = {only.activation:.2g})" if only.is_tie
                else f"unexplained (image {only.index})")
        return f"{head}; 1 disagreement, {what}"
    parts = []
    if ties:
        layers: Dict[str, int] = {}
        for tie in ties:
            layers[tie.layer] = layers.get(tie.layer, 0) + 1
        where = ", ".join(name if n == 1 else f"{name} x{n}" for name, n in layers.items())
        parts.append(f"{len(ties)} sign tie{'s' if len(ties) > 1 else ''} ({where})")
    if unexplained:
        images = ", ".join(str(d.index) for d in unexplained[:10]) + (", ..." if len(unexplained) > 10 else "")
        parts.append(f"{len(unexplained)} unexplained (image{'s' if len(unexplained) > 1 else ''} {images})")
    return f"{head}; {len(found)} disagreements: {', '.join(parts)}"
