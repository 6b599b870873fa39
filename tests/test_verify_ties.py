"""Verification that tells a sign tie from a fault: in process, and `keras-recu convert/evaluate` as a user runs them.

A sign tie is a pre-sign activation within float32 rounding of zero, which
LCE's fused arithmetic may binarize the other way (`keras_recu.deploy.ties`).
The in-process tests make both kinds of disagreement on purpose: a tie by
flipping one near-zero input's sign, a fault by changing the model after its
conversion. The subprocess tests share one tiny run (synthetic data, offline).
"""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_recu.deploy import (
    TIE_ULPS,
    VerificationReport,
    classify,
    confirm_tie,
    convert,
    pre_sign_activations,
    tie_threshold,
    verify,
)
from keras_recu.layers import ReCUConv2D
from tests.model_utils import randomize_batch_norm
from tests.run_utils import CLI_WITH_TINY_MODEL, ROOT, TINY_FLAGS, cli_with_tiny_model, no_traceback, python

pytestmark = pytest.mark.tf_only


def binary_first(seed=0):
    """A model whose first layer binarizes the image itself: its pre-sign activations are the pixels."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = ReCUConv2D(8, 3, padding="same", name="bconv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = ReCUConv2D(8, 3, padding="same", name="bconv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_the_tie_threshold_is_a_few_float32_ulps_of_the_layers_scale():
    values = np.array([3.0, -1.0, 2e-6, 0.0], "float32")
    assert tie_threshold(values) == TIE_ULPS * 2.0 ** -23 * 3.0
    # 7.6e-6 relative: above the measured tie (13 ulps of max|a| = 1), below 1e-5.
    assert 1e-7 < tie_threshold(np.ones(1)) < 1e-5


def test_a_flipped_near_zero_sign_is_a_confirmed_tie_and_a_changed_logit_is_unexplained(rng):
    model = binary_first()
    randomize_batch_norm(model, rng)
    images = rng.normal(size=(3, 6, 6, 2)).astype("float32")
    images[0, 2, 3, 1] = 1e-7  # within 64 ulps of the largest |pixel|: a tie at bconv1
    expected = np.asarray(model.predict(images, verbose=0))
    flipped = images.copy()
    flipped[0, 2, 3, 1] = -1e-7  # what an engine that breaks the tie the other way computes
    got = np.asarray(model.predict(flipped, verbose=0))
    assert np.abs(got[0] - expected[0]).max() > 1e-3 * np.abs(expected).max(), "the flip must show"
    got[1, 0] += 1.0  # image 1: a fault, no tie anywhere

    pre_sign = pre_sign_activations(model, images)
    assert list(pre_sign) == ["bconv1", "bconv2"]
    np.testing.assert_array_equal(pre_sign["bconv1"], images)
    found = classify(expected, got, pre_sign)
    assert [(d.index, d.kind) for d in found] == [(0, "tie"), (1, "unexplained")]
    tie = found[0]
    assert tie.layer == "bconv1" and tie.activation == pytest.approx(1e-7) and tie.near_ties >= 1
    assert tie.threshold == pytest.approx(tie_threshold(images[0]))
    # Flipping that sign in Keras gives the engine's output back: the tie is confirmed.
    image = {name: values[0] for name, values in pre_sign.items()}
    assert confirm_tie(model, images[0], image, got[0], 1e-5)
    assert not confirm_tie(model, images[0], image, expected[0] + 1.0, 1e-5)
    # The model is left as it was.
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-6)


def test_a_wrong_conversion_is_unexplained_and_fails_verification(rng):
    model = binary_first()
    randomize_batch_norm(model, rng)
    flatbuffer = convert(model)
    images = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    good = verify(model, flatbuffer, images)
    assert good.verified and good.unexplained == 0
    assert good.agreeing + good.ties == 16

    # The Keras model changes after the conversion: what a wrong conversion looks like from the outside.
    gamma, beta, mean, var = model.get_layer("bn2").get_weights()
    model.get_layer("bn2").set_weights([gamma, beta + 1.5, mean, var])
    bad = verify(model, flatbuffer, images)
    assert not bad.verified and bad.unexplained >= 8
    assert bad.unexplained + bad.ties + bad.agreeing == 16
    text = str(bad)
    assert f"unexplained {bad.unexplained}" in text and "unexplained (no pre-sign activation" in text
    assert bad.verdict.startswith(f"argmax agreement {bad.argmax_agreeing}/16; ")

    # The report round-trips through JSON, disagreements included (what the TensorFlow subprocess sends back).
    again = VerificationReport(**json.loads(json.dumps(bad.as_dict())))
    assert again == bad and again.disagreements[0].index == bad.disagreements[0].index


def test_verify_refuses_non_finite_inputs(rng):
    model = binary_first()
    flatbuffer = convert(model)
    images = np.full((2, 6, 6, 2), np.nan, "float32")
    with pytest.raises(ValueError, match="144 non-finite values"):
        verify(model, flatbuffer, images)


# --------------------------------------------------------------------------- as a user runs it


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "run"
    result = cli_with_tiny_model(["train", "--model", "tiny_recu", *TINY_FLAGS, "--epochs", "1", "--out", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_run_records_how_many_disagreements_were_ties(run):
    deployment = json.loads((run / "metrics.json").read_text())["deployment"]
    assert deployment["verify_samples"] == 8
    assert deployment["agreeing"] + deployment["sign_ties"] + deployment["unexplained"] == 8
    assert deployment["unexplained"] == 0 and deployment["verified"] is True
    assert len(deployment["disagreements"]) == deployment["sign_ties"]
    assert deployment["verification"].startswith("argmax agreement ")
    assert deployment["verification"] in (run / "report.md").read_text()


def test_convert_verifies_on_the_runs_own_test_images(run):
    result = cli_with_tiny_model(["convert", str(run), "--verify", "-o", str(run.parent / "own.tflite")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Verifying on the first 8 test images of synthetic (the run's own, as in training)." in result.stdout
    assert "samples: 8;" in result.stdout and "verdict: argmax agreement " in result.stdout
    assert no_traceback(result) == []


def test_convert_of_a_bare_model_says_it_falls_back_to_random_inputs(run, tmp_path):
    bare = tmp_path / "bare.keras"
    shutil.copy(run / "model.keras", bare)
    result = cli_with_tiny_model(["convert", str(bare), "--verify", "--samples", "4"])
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("Verifying on"))
    assert line.startswith("Verifying on 4 random normal inputs of shape (16, 16, 1), not on test images (")
    assert str(bare) in line and line.endswith("--inputs FILE.npy verifies on your own.")


def test_convert_refuses_non_finite_inputs_in_one_line(run, tmp_path):
    inputs = tmp_path / "nan.npy"
    np.save(inputs, np.full((3, 16, 16, 1), np.nan, "float32"))
    result = cli_with_tiny_model(["convert", str(run), "--verify", "--inputs", str(inputs),
                                  "-o", str(tmp_path / "m.tflite")])
    assert result.returncode == 2
    assert no_traceback(result) == [
        f"keras-recu convert: --inputs {inputs} holds 768 non-finite values (NaN or inf); a NaN compares with "
        "nothing: pass finite images."
    ]


def test_evaluate_names_a_truncated_model_file(run, tmp_path):
    truncated = tmp_path / "model.keras"
    data = (run / "model.keras").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = cli_with_tiny_model(["evaluate", str(truncated), "--dataset", "synthetic"])
    assert result.returncode == 2
    [line] = no_traceback(result)
    assert line.startswith(f"keras-recu evaluate: cannot load {truncated} as a Keras model: it is not a readable "
                           "Keras file (a .keras file is a zip archive")
    assert "not found" not in line.lower()


#: `keras-recu convert` whose converter gets a changed copy of the model: a wrong conversion, as a user would see it.
WRONG_CONVERSION = """
import sys
sys.argv[0] = "keras-recu"  # starts up as the command does (see keras_recu/__init__.py)
sys.path.insert(0, {root!r})
from keras_recu.app import quiet_imports
quiet_imports.quiet_environment()
with quiet_imports.captured():  # the driver's own imports, kept off stderr as the command keeps its own
    import keras
    import keras_recu.deploy

right = keras_recu.deploy.convert

def wrong(model, **options):
    changed = keras.models.clone_model(model)
    changed.set_weights(model.get_weights())
    gamma, beta, mean, var = changed.get_layer("binary_bn").get_weights()
    changed.get_layer("binary_bn").set_weights([gamma, beta + 3.0, mean, var])
    return right(changed, **options)

keras_recu.deploy.convert = wrong
""" + CLI_WITH_TINY_MODEL


def test_convert_fails_on_unexplained_disagreement_in_one_line(run, tmp_path):
    output = tmp_path / "wrong.tflite"
    result = python(["-c", WRONG_CONVERSION.format(root=str(ROOT)), "convert", str(run), "--verify", "-o", str(output)])
    assert result.returncode == 1, result.stderr[-3000:]
    [line] = no_traceback(result)
    assert line.startswith("keras-recu convert: verification failed: ")
    assert "of 8 images disagree with Keras with no sign tie to explain it (images " in line
    assert line.endswith(f"{output} may be converted wrong.")
    assert "unexplained (no pre-sign activation within 64 ulps of 0)" in result.stdout


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs Debian's fashion-mnist files")
def test_evaluate_on_a_data_set_of_another_shape_names_both(run):
    result = cli_with_tiny_model(["evaluate", str(run), "--dataset", "fashion_mnist"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert no_traceback(result) == [
        f"keras-recu evaluate: {run / 'model.keras'} takes images of shape (16, 16, 1), but fashion_mnist's are "
        "(28, 28, 1): evaluate on the data set the model was trained on, or on one with images of its shape "
        "(--dataset)."
    ]
