"""`verify`: a flatbuffer run in LCE's interpreter next to its Keras model, and what that measured."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from typing import Any, Dict, List, Optional

import numpy as np

from keras_recu import inspection, precision
from keras_recu.deploy.checks import float32_graph
from keras_recu.deploy.operators import census, float_binary_layers
from keras_recu.deploy.ties import LOGIT_TOLERANCE, TIE_ULPS, Disagreement, classify, summarize, tie_threshold
from keras_recu.inspection import binary_layers


@dataclasses.dataclass
class VerificationReport:
    """What `verify` measured; `str(report)` is a readable summary."""

    census: Dict[str, int]
    binary_layers: List[str]
    float_binary_layers: List[str]
    samples: int
    max_abs_error: float
    max_rel_error: float
    matching_samples: float  # share of samples whose outputs all agree within 1e-3 relative
    argmax_agreement: Optional[float]
    flatbuffer_bytes: int
    float32_bytes: int
    #: The classification of the disagreements (`keras_recu.deploy.ties`): images that agree within
    #: `tolerance` with the same argmax, sign ties, unexplained disagreements, and each disagreement.
    agreeing: int = 0
    ties: int = 0
    unexplained: int = 0
    disagreements: List[Disagreement] = dataclasses.field(default_factory=list)
    tolerance: float = LOGIT_TOLERANCE
    tie_ulps: float = TIE_ULPS
    #: The largest |flatbuffer - Keras| over the images that agree: the float32 difference without a flip.
    agreeing_max_abs_error: float = 0.0
    #: The mixed policy the model was given in ("mixed_bfloat16"), or None: such a model is
    #: converted and verified as its float32 twin, the same weights (`keras_recu.precision`).
    trained_policy: Optional[str] = None

    def __post_init__(self) -> None:
        # as_dict() writes each disagreement as a dict; rebuild them.
        self.disagreements = [d if isinstance(d, Disagreement) else Disagreement(**d) for d in self.disagreements]

    @property
    def verified(self) -> bool:
        """Whether every disagreement is a sign tie (none unexplained)."""
        return self.unexplained == 0

    @property
    def argmax_agreeing(self) -> Optional[int]:
        """The images with the same argmax, a count (None for outputs without classes)."""
        return None if self.argmax_agreement is None else int(round(self.argmax_agreement * self.samples))

    @property
    def verdict(self) -> str:
        """One sentence: the argmax agreement and what each disagreement was (`ties.summarize`)."""
        return summarize(self.samples, self.argmax_agreeing, self.disagreements, self.tolerance)

    @property
    def size_ratio(self) -> float:
        """float32 parameter bytes / flatbuffer bytes (the compression)."""
        return self.float32_bytes / self.flatbuffer_bytes

    @property
    def is_binary(self) -> bool:
        """Whether the model has binary layers and LCE executes every one of them as a binary op."""
        return bool(self.binary_layers) and not self.float_binary_layers

    def as_dict(self) -> Dict[str, Any]:
        """The fields as plain, JSON-ready values; `VerificationReport(**d)` rebuilds it."""
        return {**dataclasses.asdict(self), "census": dict(self.census)}

    def __str__(self) -> str:
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.census.items()))
        agreement = "n/a" if self.argmax_agreement is None else f"{self.argmax_agreement:.2%}"
        left = ", ".join(self.float_binary_layers) or "none"
        shown = [f"  {disagreement}" for disagreement in self.disagreements[:_LISTED]]
        if len(self.disagreements) > _LISTED:
            shown.append(f"  ... and {len(self.disagreements) - _LISTED} more (as_dict() lists them all)")
        return "\n".join(
            [
                f"operators: {ops}",
                f"binary layers: {len(self.binary_layers)}; left in float by LCE: {left}",
                f"samples: {self.samples}; max |error| {self.max_abs_error:.3g}; "
                f"max relative error {self.max_rel_error:.3g}; samples matching within 1e-3: "
                f"{self.matching_samples:.2%}; argmax agreement {agreement}",
                f"flatbuffer {self.flatbuffer_bytes / 1024:.1f} KiB vs float32 parameters "
                f"{self.float32_bytes / 1024:.1f} KiB ({self.size_ratio:.1f}x smaller)",
                f"verdict: {self.verdict}; agreeing {self.agreeing} (max |error| {self.agreeing_max_abs_error:.2g}), "
                f"sign ties {self.ties}, unexplained {self.unexplained}",
                *shown,
                *self._policy_line(),
            ]
        )

    def _policy_line(self) -> List[str]:
        if self.trained_policy is None:
            return []
        return [f"the model computes under {self.trained_policy}: converted and verified as its float32 twin "
                "(the same weights, every layer in float32)"]


#: How many disagreements `str(report)` lists.
_LISTED = 10


def _float32_parameter_bytes(model: Any) -> int:
    state = {id(variable) for variable in inspection.tau_variables(model)}
    return 4 * sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in state)


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def pre_sign_activations(model: Any, images: np.ndarray) -> Optional[Dict[str, np.ndarray]]:
    """The input of each binary-input layer of `model` on `images`, before its sign, by layer name in order.

    Computed by a Keras sub-model of `model` that exposes those inputs; None
    where the layers are not reachable from the model's own inputs (a binary
    layer inside a nested model, or one called more than once).
    """
    import keras

    layers = [found.layer for found in binary_layers(model) if found.binary_input]
    if not layers:
        return {}
    try:
        if type(model).__module__.startswith("tf_keras"):  # a larq / tf-keras model: its own Model class
            import tf_keras as keras
        probe = keras.Model(model.inputs, [layer.input for layer in layers])
    except (ValueError, AttributeError, RuntimeError, TypeError, ImportError):
        return None
    values = probe.predict(np.asarray(images, dtype="float32"), verbose=0)
    values = values if isinstance(values, (list, tuple)) else [values]
    return {layer.name: np.asarray(value) for layer, value in zip(layers, values)}


#: At most this many near-tie activations of one image are flipped, in every combination, to confirm a tie.
MAX_FLIPS = 4


@contextlib.contextmanager
def _flipped_signs(model: Any, flips: Dict[str, np.ndarray]):
    """Within the block, each named binary layer sees its input with the sign flipped where its mask is set.

    Only the layer's own input changes (its convolution binarizes it), not
    the tensor its shortcut carries on; the masks are for one image.
    """
    import keras

    layers = {found.layer.name: found.layer for found in binary_layers(model)}
    patched = []
    try:
        for name, mask in flips.items():
            layer, mask = layers[name], np.asarray(mask)[None]
            own = "call" in vars(layer)
            original = layer.call

            def call(inputs, *args, _original=original, _mask=mask, **kwargs):
                flipped = keras.ops.where(inputs >= 0, -1.0, 1.0) * keras.ops.maximum(keras.ops.abs(inputs), 1e-30)
                return _original(keras.ops.where(_mask, keras.ops.cast(flipped, inputs.dtype), inputs), *args, **kwargs)

            setattr(layer, "call", call)
            patched.append((layer, own, original))
        yield
    finally:
        for layer, own, original in reversed(patched):
            if own:
                setattr(layer, "call", original)
            else:
                delattr(layer, "call")


def confirm_tie(model: Any, image: np.ndarray, pre_sign: Dict[str, np.ndarray], got: np.ndarray,
                threshold: float, ulps: float = TIE_ULPS) -> bool:
    """Whether flipping some of the image's near-tie signs in Keras reproduces the flatbuffer's output `got`.

    `pre_sign` holds the image's pre-sign activations by layer (one image,
    no batch axis). Tries each combination of up to `MAX_FLIPS` near-ties,
    fewest first, and compares with `threshold` (absolute).
    """
    near = []
    for name, values in pre_sign.items():
        values = np.abs(np.asarray(values, dtype="float64"))
        close = values < tie_threshold(values, ulps)
        near.extend((name, position) for position in zip(*np.nonzero(close)))
    near = sorted(near, key=lambda item: abs(float(pre_sign[item[0]][item[1]])))[:MAX_FLIPS]
    for size in range(1, len(near) + 1):
        for chosen in itertools.combinations(near, size):
            masks = {name: np.zeros(pre_sign[name].shape, bool) for name, _ in chosen}
            for name, position in chosen:
                masks[name][position] = True
            with _flipped_signs(model, masks):
                output = np.asarray(model(np.asarray(image, "float32")[None], training=False), "float32")
            if np.abs(output.reshape(got.shape) - got).max() <= threshold:
                return True
    return False


def _confirm(model: Any, seen: np.ndarray, got: np.ndarray, found: List[Disagreement], pre_sign,
             threshold: float, ulps: float) -> List[Disagreement]:
    """The ties of `found`, each with `confirmed` set (see `confirm_tie`); the others as they are."""
    confirmed = []
    for row, disagreement in enumerate(found):
        if disagreement.is_tie and pre_sign:
            image = {name: values[row] for name, values in pre_sign.items()}
            try:
                check = confirm_tie(model, seen[disagreement.index], image, got[disagreement.index], threshold, ulps)
            except (ValueError, TypeError, RuntimeError, AttributeError):  # a layer that cannot be patched
                check = None  # the confirmation is advisory: the tie stands on its near-zero activation
            disagreement = dataclasses.replace(disagreement, confirmed=check)
        confirmed.append(disagreement)
    return confirmed


def _run_flatbuffer(flatbuffer: bytes, inputs: np.ndarray, num_threads: int):
    """The flatbuffer's outputs on `inputs`, the inputs as the flatbuffer saw them, and one output step."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    feed, seen = inputs, inputs
    if interpreter.input_types[0] == np.int8:
        scale, zero_point = interpreter.input_scales[0], interpreter.input_zero_points[0]
        feed = _quantize(inputs, scale, zero_point, np.int8)
        seen = ((feed.astype("float32") - zero_point) * scale).astype("float32")
    got = np.asarray(interpreter.predict(feed), dtype="float32")
    step = 0.0
    if interpreter.output_types[0] == np.int8:
        step = float(interpreter.output_scales[0])
        got = (got - interpreter.output_zero_points[0]) * step
    return got, seen, step


def verify(model: Any, flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1,
           tolerance: float = LOGIT_TOLERANCE, tie_ulps: float = TIE_ULPS) -> VerificationReport:
    """Run `flatbuffer` in LCE's interpreter and `model` on the same inputs; compare and explain.

    Errors are measured on the model's (single) output: the maximum absolute
    difference and that maximum over the largest |Keras output|. For outputs
    of shape (batch, classes) the argmax agreement is reported too. An int8
    flatbuffer input is quantized with its own scale, and Keras gets the
    same quantized values; an int8 output is dequantized, and the tolerance
    grows by one of its steps.

    Each image whose argmax differs, or whose outputs differ by more than
    `tolerance` relative to the largest |Keras output|, is classified by
    `keras_recu.deploy.ties.classify`: a sign tie when one of its pre-sign
    activations at a binary layer lies within `tie_ulps` float32 ulps of zero
    (`pre_sign_activations`), else unexplained. `report.verified` is False
    when any is unexplained; `report.verdict` says it in one sentence. The
    module `keras_recu.deploy.ties` says why ties happen and where the
    thresholds come from.

    A Keras 3 model under a mixed policy is compared as its float32 twin,
    the model `convert` converts (`keras_recu.deploy.checks.float32_graph`);
    `report.trained_policy` names the policy.

    Raises `ValueError` for inputs that are not all finite: a NaN compares
    with nothing.
    """
    trained_policy = precision.mixed_policy(model)
    model = float32_graph(model)
    inputs = np.asarray(inputs, dtype="float32")
    if not np.isfinite(inputs).all():
        bad = int(np.size(inputs) - np.isfinite(inputs).sum())
        raise ValueError(f"the inputs hold {bad} non-finite values (NaN or inf); verify on finite images")
    got, seen, step = _run_flatbuffer(flatbuffer, inputs, num_threads)
    expected = np.asarray(model.predict(seen, verbose=0), dtype="float32")
    got = got.reshape(expected.shape)

    errors = np.abs(got - expected)
    abs_error = float(errors.max())
    scale = float(np.abs(expected).max()) or 1.0
    matching = float(np.mean(errors.reshape(len(errors), -1).max(axis=1) <= tolerance * scale + step))
    agreement = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    computed = {}

    def pre_sign(indices):
        computed["values"] = pre_sign_activations(model, seen[indices])
        return computed["values"]

    found = classify(expected, got, pre_sign, tolerance=tolerance, absolute=step, ulps=tie_ulps)
    found = _confirm(model, seen, got, found, computed.get("values"), tolerance * scale + step, tie_ulps)
    ties = sum(disagreement.is_tie for disagreement in found)
    agreeing = np.ones(len(inputs), bool)
    agreeing[[disagreement.index for disagreement in found]] = False
    per_image = errors.reshape(len(errors), -1).max(axis=1)
    return VerificationReport(
        census=census(flatbuffer),
        binary_layers=[layer.name for layer in binary_layers(model)],
        float_binary_layers=[layer.name for layer in float_binary_layers(model, flatbuffer)],
        samples=len(inputs),
        max_abs_error=abs_error,
        max_rel_error=abs_error / scale,
        matching_samples=matching,
        argmax_agreement=agreement,
        flatbuffer_bytes=len(flatbuffer),
        float32_bytes=_float32_parameter_bytes(model),
        agreeing=len(inputs) - len(found),
        ties=ties,
        unexplained=len(found) - ties,
        disagreements=found,
        tolerance=tolerance,
        tie_ulps=tie_ulps,
        agreeing_max_abs_error=float(per_image[agreeing].max()) if agreeing.any() else 0.0,
        trained_policy=trained_policy,
    )
