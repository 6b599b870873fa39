"""`verify`: a flatbuffer run in LCE's interpreter next to its Keras model, and what that measured."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from keras_recu import inspection
from keras_recu.deploy.operators import census, float_binary_layers
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
        return "\n".join(
            [
                f"operators: {ops}",
                f"binary layers: {len(self.binary_layers)}; left in float by LCE: {left}",
                f"samples: {self.samples}; max |error| {self.max_abs_error:.3g}; "
                f"max relative error {self.max_rel_error:.3g}; samples matching within 1e-3: "
                f"{self.matching_samples:.2%}; argmax agreement {agreement}",
                f"flatbuffer {self.flatbuffer_bytes / 1024:.1f} KiB vs float32 parameters "
                f"{self.float32_bytes / 1024:.1f} KiB ({self.size_ratio:.1f}x smaller)",
            ]
        )


def _float32_parameter_bytes(model: Any) -> int:
    state = {id(variable) for variable in inspection.tau_variables(model)}
    return 4 * sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in state)


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def verify(model: Any, flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> VerificationReport:
    """Run `flatbuffer` in LCE's interpreter and `model` on the same inputs; compare.

    Errors are measured on the model's (single) output: the maximum absolute
    difference and that maximum over the largest |Keras output|. For outputs
    of shape (batch, classes) the argmax agreement is reported too. int8
    flatbuffer inputs and outputs are (de)quantized with their own scales.

    A note on ties: a binary network's next sign amplifies any difference in
    a value that is (nearly) zero. An untrained model whose BatchNormalization
    still has its initial statistics maps some integer bconv outputs to
    exactly 0, where LCE's fused sign may break the tie the other way; in any
    model, a value within float rounding of 0 can flip. Such flips are rare
    and show as a few samples outside 1e-3 (`matching_samples` < 1) with the
    argmax unchanged; a conversion error shows in every sample.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    inputs = np.asarray(inputs, dtype="float32")
    expected = np.asarray(model.predict(inputs, verbose=0), dtype="float32")
    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    feed = inputs
    if interpreter.input_types[0] == np.int8:
        feed = _quantize(inputs, interpreter.input_scales[0], interpreter.input_zero_points[0], np.int8)
    got = np.asarray(interpreter.predict(feed), dtype="float32")
    if interpreter.output_types[0] == np.int8:
        got = (got - interpreter.output_zero_points[0]) * interpreter.output_scales[0]
    got = got.reshape(expected.shape)

    errors = np.abs(got - expected)
    abs_error = float(errors.max())
    scale = float(np.abs(expected).max()) or 1.0
    matching = float(np.mean(errors.reshape(len(errors), -1).max(axis=1) <= 1e-3 * scale))
    agreement = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
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
    )
