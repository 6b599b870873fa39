"""Conversion across backends (a `.keras` file converted in a TensorFlow-backend subprocess) and refusal reasons."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_recu.deploy import ConversionError, census, convert, convert_saved, saved
from keras_recu.layers import QuantConv2D, QuantDense, ReCUConv2D
from tests.run_utils import environment

pytestmark = pytest.mark.tf_only

# Built, saved and tried with `convert` by Keras on JAX, in a subprocess.
_JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from keras_recu.deploy import ConversionError, convert, convert_saved
    from keras_recu.layers import ReCUConv2D

    out = sys.argv[1]
    rng = np.random.default_rng(5)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        ReCUConv2D(8, 3, padding="same", name="bconv1"),
        keras.layers.BatchNormalization(),
        ReCUConv2D(16, 3, strides=2, padding="same", name="bconv2"),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4),
    ])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # trained-looking statistics
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.5, 1.5, n)])
    model.save(out + "/model.keras")
    inputs = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    np.save(out + "/inputs.npy", inputs)
    np.save(out + "/jax_outputs.npy", keras.ops.convert_to_numpy(model(inputs)))
    try:
        convert(model)
    except ConversionError as error:
        print("REFUSED:", error)
    # What an application does after a JAX run: convert in a TensorFlow process.
    flatbuffer, report = convert_saved(out + "/model.keras", out + "/model.tflite", inputs=inputs)
    print("REPORT:", json.dumps({**report.as_dict(), "flatbuffer": len(flatbuffer)}))
    print("BACKEND:", keras.backend.backend())
""")


def test_a_model_trained_on_jax_converts_in_a_tensorflow_process_to_binary_ops(tmp_path):
    """A JAX process saves its model and calls convert_saved, which converts in a TensorFlow process."""
    env = environment(KERAS_BACKEND="jax")
    built = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "BACKEND: jax" in built.stdout
    # On JAX, convert() refuses and says what to do instead.
    assert "REFUSED: convert() needs Keras' TensorFlow backend" in built.stdout
    assert "keras-recu convert model.keras" in built.stdout and "convert_saved" in built.stdout

    report = json.loads(built.stdout.split("REPORT:")[1].splitlines()[0])
    flatbuffer = (tmp_path / "model.tflite").read_bytes()
    assert report["flatbuffer"] == report["flatbuffer_bytes"] == len(flatbuffer)
    assert census(flatbuffer)["LceBconv2d"] == 2 and census(flatbuffer)["CONV_2D"] == 1
    assert report["census"]["LceBconv2d"] == 2
    assert report["binary_layers"] == ["bconv1", "bconv2"] and report["float_binary_layers"] == []
    assert report["samples"] == 16 and report["max_rel_error"] < 1e-3

    # The flatbuffer computes what the model computed on JAX.
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    inputs = np.load(tmp_path / "inputs.npy")
    got = np.asarray(Interpreter(flatbuffer).predict(inputs)).reshape(16, 4)
    expected = np.load(tmp_path / "jax_outputs.npy")
    np.testing.assert_allclose(got, expected, atol=1e-3 * np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_convert_saved_passes_on_a_refusal(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        ReCUConv2D(8, 3),
        keras.layers.GlobalAveragePooling2D(),
        QuantDense(4, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign", name="binary_head"),
    ])
    model.save(tmp_path / "dense.keras")
    with pytest.raises(ConversionError, match="binary_head: LCE has no binary fully-connected"):
        convert_saved(tmp_path / "dense.keras")


def test_convert_saved_says_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert_saved(tmp_path / "absent.keras")
    (tmp_path / "model.keras").write_bytes(b"not used")
    # convert_saved reads conversion_available where it is defined: keras_recu.deploy.saved.
    monkeypatch.setattr(saved, "conversion_available", lambda: False)
    with pytest.raises(ImportError, match=r"keras-recu\[deploy\].*keras-recu convert model.keras"):
        convert_saved(tmp_path / "model.keras")


def test_a_file_that_does_not_load_is_named_in_one_line(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"broken.keras does not load as a Keras model.*model.save\(\)"):
        convert_saved(tmp_path / "broken.keras")


def _binary_conv_model(input_shape, **options):
    return keras.Sequential([
        keras.Input(input_shape),
        QuantConv2D(64, 3, input_quantizer="recu_input_sign", kernel_quantizer="recu_sign",
                    name="odd", **options),
    ])


def test_grouped_binary_conv_is_refused_for_its_groups_not_its_sign():
    # LCE runs grouped bconvs whose groups have a multiple of 32 input channels.
    with pytest.raises(ConversionError, match=r"odd: it has groups=2 with 24 input channels per group.*multiple of 32"):
        convert(_binary_conv_model((8, 8, 48), groups=2))
    assert census(convert(_binary_conv_model((8, 8, 64), groups=2)))["LceBconv2d"] == 1


def test_channels_first_binary_conv_is_refused_for_its_data_format():
    with pytest.raises(ConversionError, match=r"odd: it has data_format='channels_first'.*channels_last") as caught:
        convert(_binary_conv_model((4, 8, 8), data_format="channels_first"))
    assert "sign pattern" not in str(caught.value)
