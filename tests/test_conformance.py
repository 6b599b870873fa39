"""Conformance: Keras' own layer test on the binary layers, mixed precision, and larq's own test on the larq front.

`keras.src.testing.TestCase.run_layer_test` checks a layer the way Keras
checks its own: config and serialization round trips, weight counts, build,
symbolic and eager calls, a compiled training step and, except on torch
without a GPU, the mixed-precision contract (outputs in the policy's compute
dtype, variables in float32). The layers run with ReCU quantizers and the
ReCUClamp constraint. Backend-neutral, except the larq front's tests
(`tf_only`), which run larq's `testing_utils.layer_test` and `fit`.
"""

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras.src import testing

from keras_recu import ops as recu_ops
from keras_recu.constraints import ReCUClamp
from keras_recu.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D, ReCUConv2D
from keras_recu.quantizers import ReCUSign
from tests.gradients import to_numpy


def recu_sign(**config):
    # A config, not an object: run_layer_test builds several layers from one
    # set of arguments, and each should get its own quantizer.
    return {"class_name": "ReCUSign", "config": config}


LAYER_CASES = [
    dict(
        testcase_name="QuantConv2D",
        layer_cls=QuantConv2D,
        init_kwargs=dict(filters=4, kernel_size=3, padding="same", input_quantizer="recu_input_sign",
                         kernel_quantizer=recu_sign(tau=0.9), kernel_constraint=ReCUClamp(tau=0.9)),
        input_shape=(2, 6, 6, 3),
        expected_output_shape=(2, 6, 6, 4),
        expected_num_trainable_weights=2,  # kernel, bias
    ),
    dict(
        testcase_name="QuantConv2D_one_padding_no_clamp",
        layer_cls=QuantConv2D,
        init_kwargs=dict(filters=4, kernel_size=3, strides=2, padding="same", pad_values=1.0,
                         use_bias=False, input_quantizer="recu_input_sign",
                         kernel_quantizer=recu_sign(clamp=False, output_scale="mean_abs")),
        input_shape=(2, 7, 7, 3),
        expected_output_shape=(2, 4, 4, 4),
        expected_num_trainable_weights=1,
    ),
    dict(
        testcase_name="QuantDense",
        layer_cls=QuantDense,
        init_kwargs=dict(units=5, input_quantizer="recu_input_sign",
                         kernel_quantizer=recu_sign(per_channel_threshold=True),
                         kernel_constraint=ReCUClamp(per_channel_threshold=True)),
        input_shape=(3, 8),
        expected_output_shape=(3, 5),
        expected_num_trainable_weights=2,
    ),
    dict(
        testcase_name="QuantDepthwiseConv2D",
        layer_cls=QuantDepthwiseConv2D,
        init_kwargs=dict(kernel_size=3, depth_multiplier=2, input_quantizer="recu_input_sign",
                         depthwise_quantizer="recu_sign", depthwise_constraint=ReCUClamp()),
        input_shape=(2, 6, 6, 3),
        expected_output_shape=(2, 4, 4, 6),
        expected_num_trainable_weights=2,
    ),
    dict(
        testcase_name="ReCUConv2D",
        layer_cls=ReCUConv2D,
        init_kwargs=dict(filters=4, kernel_size=3, padding="same", tau=0.9, kernel_constraint=ReCUClamp(tau=0.9)),
        input_shape=(2, 6, 6, 3),
        expected_output_shape=(2, 6, 6, 4),
        expected_num_trainable_weights=2,  # kernel, alpha
    ),
]


class TestKerasLayerConformance(testing.TestCase):
    @parameterized.named_parameters(*LAYER_CASES)
    def test_run_layer_test(self, layer_cls, init_kwargs, input_shape, expected_output_shape,
                            expected_num_trainable_weights):
        self.run_layer_test(
            layer_cls,
            init_kwargs,
            input_shape=input_shape,
            expected_output_shape=expected_output_shape,
            expected_output_dtype="float32",
            expected_num_trainable_weights=expected_num_trainable_weights,
            # tau of the kernel quantizer: state, saved with the layer.
            expected_num_non_trainable_weights=1,
            expected_num_non_trainable_variables=1,
            expected_num_seed_generators=0,
            run_training_check=True,
            run_mixed_precision_check=True,
        )


MIXED_LAYERS = {case["testcase_name"]: case for case in LAYER_CASES}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", MIXED_LAYERS)
def test_mixed_precision_output_follows_the_policy_on_exact_binary_operands(name, policy, rng):
    case = MIXED_LAYERS[name]
    keras.config.set_dtype_policy(policy)
    layer = case["layer_cls"](**case["init_kwargs"])
    x = rng.normal(size=case["input_shape"]).astype("float32")
    out = layer(x, training=True)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(out.dtype) == compute
    assert all(v.dtype == "float32" for v in layer.weights)

    kernel_quantizer = getattr(layer, "kernel_quantizer", None) or layer.depthwise_quantizer
    binary_input = layer.input_quantizer(keras.ops.cast(x, compute), training=True)
    latent = keras.ops.cast(layer.kernel, compute)
    if name == "QuantDepthwiseConv2D":  # per-filter statistics, as the layer reshapes
        kh, kw, cin, mult = layer.kernel.shape
        latent = keras.ops.reshape(latent, (kh, kw, 1, cin * mult))
    binary_kernel = kernel_quantizer(latent, training=True)
    for operand in (binary_input, binary_kernel):
        assert keras.backend.standardize_dtype(operand.dtype) == compute
    assert set(np.unique(to_numpy(binary_input).astype("float32"))) == {-1.0, 1.0}
    signs = np.sign(to_numpy(binary_kernel).astype("float32"))
    np.testing.assert_array_equal(np.abs(signs), 1.0)


@pytest.mark.parametrize("compute", ["float16", "bfloat16"])
def test_recu_statistics_run_in_float32_inside_a_reduced_precision_quantizer(compute, rng):
    """A kernel whose float16 variance would overflow (|w| ~ 300) still standardizes."""
    kernel = keras.ops.cast(300.0 * rng.laplace(size=(3, 3, 8, 4)).astype("float32"), compute)
    if compute == "float16":  # the control: float16 math would overflow
        assert not np.isfinite(to_numpy(keras.ops.sum(keras.ops.square(kernel)))).all()
    quantizer = ReCUSign(tau=0.9, output_scale="mean_abs")
    reduced = quantizer(kernel)
    in_float32 = quantizer(keras.ops.cast(kernel, "float32"))
    assert keras.backend.standardize_dtype(reduced.dtype) == compute
    np.testing.assert_array_equal(
        to_numpy(reduced).astype("float32"),
        to_numpy(keras.ops.cast(keras.ops.cast(in_float32, compute), "float32")),
    )
    assert set(np.unique(np.sign(to_numpy(reduced).astype("float32")))) == {-1.0, 1.0}


def test_quantizers_keep_the_dtype_of_their_input_in_a_model():
    keras.config.set_dtype_policy("mixed_float16")
    inputs = keras.Input((4, 4, 3), dtype="float16")
    outputs = ReCUSign()(inputs)
    assert outputs.dtype == "float16"
    model = keras.Model(inputs, outputs)
    assert keras.backend.standardize_dtype(model(np.ones((1, 4, 4, 3), "float16")).dtype) == "float16"


# The larq front: larq's own layer test, metrics=["flip_ratio"], NaN in training.


def larq_front():
    import larq
    import larq.testing_utils  # noqa: F401  (a submodule; ships in the wheel)
    import tensorflow as tf

    import keras_recu.larq as recu_larq

    return larq, tf, recu_larq


LARQ_KERNEL_QUANTIZER = {"class_name": "ReCUSign", "config": {"tau": 0.9, "metrics": ["flip_ratio"]}}


@pytest.mark.tf_only
@pytest.mark.parametrize("layer_name, kwargs, input_shape", [
    ("QuantConv2D", dict(filters=4, kernel_size=3, padding="same"), (2, 6, 6, 3)),
    ("QuantDense", dict(units=5), (3, 8)),
])
def test_larq_front_passes_larqs_layer_test(layer_name, kwargs, input_shape):
    larq, tf, recu_larq = larq_front()
    kwargs = dict(
        kwargs,
        # flip_ratio needs a static shape: a kernel's, not a batch's (larq's own alike).
        input_quantizer="ReCUInputSign",
        kernel_quantizer=LARQ_KERNEL_QUANTIZER,
        kernel_constraint=recu_larq.ReCUClamp(tau=0.9),
    )
    output = larq.testing_utils.layer_test(getattr(larq.layers, layer_name), kwargs=kwargs, input_shape=input_shape)
    assert np.isfinite(output).all()
    layer = getattr(larq.layers, layer_name)(**kwargs)
    assert isinstance(layer.kernel_quantizer, recu_larq.ReCUSign)
    assert layer.kernel_quantizer.get_config()["metrics"] == ["flip_ratio"]


@pytest.mark.tf_only
def test_larq_front_accepts_what_larqs_quantizers_accept():
    larq, tf, recu_larq = larq_front()
    for quantizer in (recu_larq.ReCUSign(tau=0.85, metrics=["flip_ratio"]),
                      recu_larq.ReCUInputSign(metrics=["flip_ratio"]),
                      recu_larq.ReCUSign(metrics=None, clamp=False)):
        revived = larq.quantizers.deserialize(larq.quantizers.serialize(quantizer))
        assert type(revived) is type(quantizer) and revived.get_config() == quantizer.get_config()
    with pytest.raises(ValueError, match=r"Unknown quantizer metric\(s\) \['flips'\].*\['flip_ratio'\]"):
        recu_larq.ReCUSign(metrics=["flips"])
    with pytest.raises(TypeError, match="`metrics` must be None or a list of metric names"):
        recu_larq.ReCUInputSign(metrics="flip_ratio")
    with pytest.raises(TypeError, match="`standardize` must be True or False, got 'no'"):
        recu_larq.ReCUSign(standardize="no")
    with pytest.raises(TypeError, match="`per_channel_threshold` must be True or False"):
        recu_larq.ReCUClamp(per_channel_threshold="yes")
    with pytest.raises(ValueError, match="`laplace_scale` must be a finite number > 0, got inf"):
        recu_larq.ReCUClamp(laplace_scale=float("inf"))
    with pytest.raises(ValueError, match="`epsilon` must be a finite number > 0, got nan"):
        recu_larq.ReCUInputSign(epsilon=float("nan"))
    assert "clamp" not in recu_larq.ReCUClamp().get_config()


@pytest.mark.tf_only
def test_larq_front_records_flips_during_fit(rng):
    larq, tf, recu_larq = larq_front()
    quantizer = recu_larq.ReCUSign(tau=0.85, metrics=["flip_ratio"])
    model = tf.keras.Sequential([
        larq.layers.QuantDense(6, kernel_quantizer=quantizer, kernel_constraint=recu_larq.ReCUClamp(),
                               use_bias=False, input_shape=(10,)),
    ])
    model.compile(tf.keras.optimizers.SGD(2.0), "mse")
    binary_kernels = []
    recorder = tf.keras.callbacks.LambdaCallback(  # what each step's forward binarizes
        on_train_batch_begin=lambda batch, logs: binary_kernels.append(
            recu_ops.binarize_kernel(model.layers[0].kernel.latent_variable.numpy(), 0.85).numpy()
        )
    )
    x, y = rng.normal(size=(16, 10)), rng.normal(size=(16, 6))
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    recorded = history.history[f"flip_ratio/{quantizer.name}"]
    # larq's FlipRatio: per epoch, the mean share of values changed between consecutive steps.
    for epoch, value in enumerate(recorded):
        steps = binary_kernels[4 * epoch: 4 * epoch + 4]
        want = np.mean([np.mean(a != b) for a, b in zip(steps, steps[1:])])
        assert value == pytest.approx(want, abs=1e-6)
    assert max(recorded) > 0


@pytest.mark.tf_only
def test_larq_front_makes_a_nan_latent_weight_a_nan_loss(rng):
    larq, tf, recu_larq = larq_front()
    model = tf.keras.Sequential([
        larq.layers.QuantDense(6, input_quantizer=recu_larq.ReCUInputSign(),
                               kernel_quantizer=recu_larq.ReCUSign(), use_bias=False, input_shape=(10,)),
    ])
    kernel = model.layers[0].kernel.latent_variable
    x = rng.normal(size=(8, 10)).astype("float32")
    assert np.isfinite(model(x, training=True).numpy()).all()
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[0, 0]], [np.nan]))
    assert np.isfinite(model.predict(x, verbose=0)).all()  # inference: the pure sign select
    model.compile(tf.keras.optimizers.SGD(0.01), "mse")
    history = model.fit(x, rng.normal(size=(8, 6)), epochs=3, verbose=0,
                        callbacks=[tf.keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
