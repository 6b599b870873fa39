"""Deployment: convert to a larq-compute-engine flatbuffer and prove it is binary and faithful.

`convert` turns a Keras 3 model (exported to a SavedModel first) or a tf-keras
/ larq model (LCE's Keras converter) into a TFLite flatbuffer for LCE's ARM
runtime, and refuses, naming the layers, when LCE would leave a binary layer
in float. `verify` runs the flatbuffer in LCE's interpreter next to the Keras
model and reports the operator census, the binary layers that did not become
`LceBconv2d`, the output errors, argmax agreement and the sizes, and tells
each disagreeing image as a sign tie (a pre-sign activation within float32
rounding of zero, which LCE's fused arithmetic may binarize the other way)
or as unexplained (`ties`; `VerificationReport.verified`).

LCE converts TensorFlow graphs, so `convert` runs where Keras runs on
TensorFlow. A model trained on JAX or PyTorch is saved as `.keras` and
converted by `convert_saved`, which loads it in a TensorFlow-backend
subprocess, converts and verifies it there (or, by hand:
`keras-recu convert MODEL.keras` on a machine with TensorFlow).
`conversion_available()` says whether this environment can convert at all.

LCE's Python interpreter runs on x86-64 with reference kernels: correct but
not fast. Its optimized kernels are for 64-bit ARM.

The package's modules, from the bottom up: `checks` (what `convert` refuses,
and why), `operators` (what a flatbuffer executes: `census`,
`float_binary_layers`), `rewrites` (what the export changes so that LCE 0.16
converts right), `conversion` (`convert`), `ties` (what "equal" means for a
binary network: `classify`, `Disagreement`), `verification` (`verify`) and
`saved` (`convert_saved` and the TensorFlow process it starts, `python -m
keras_recu.deploy JOB`).

Example:

>>> import keras, numpy as np
>>> from keras_recu.layers import ReCUConv2D
>>> from keras_recu.deploy import convert, verify
>>> model = keras.Sequential([keras.Input((8, 8, 4)), ReCUConv2D(8, 3, padding="same")])
>>> flatbuffer = convert(model)
>>> report = verify(model, flatbuffer, np.random.default_rng(0).normal(size=(4, 8, 8, 4)))
>>> report.census["LceBconv2d"], report.float_binary_layers, report.max_abs_error < 1e-4
(1, [], True)
>>> report.verified, report.agreeing + report.ties + report.unexplained
(True, 4)
"""

from keras_recu.deploy.checks import ConversionError
from keras_recu.deploy.conversion import convert
from keras_recu.deploy.operators import census, float_binary_layers
from keras_recu.deploy.saved import SavedModelConversion, conversion_available, convert_saved
from keras_recu.deploy.ties import LOGIT_TOLERANCE, TIE_ULPS, Disagreement, classify, tie_threshold
from keras_recu.deploy.verification import VerificationReport, confirm_tie, pre_sign_activations, verify
from keras_recu.inspection import BinaryLayer, binary_layers

__all__ = [
    "BinaryLayer",
    "ConversionError",
    "Disagreement",
    "LOGIT_TOLERANCE",
    "SavedModelConversion",
    "VerificationReport",
    "TIE_ULPS",
    "binary_layers",
    "census",
    "classify",
    "confirm_tie",
    "conversion_available",
    "convert",
    "convert_saved",
    "pre_sign_activations",
    "tie_threshold",
    "verify",
]
