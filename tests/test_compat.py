"""keras_recu._compat: the private Keras attributes the package reads, and what it gets from them."""

import textwrap

import keras
import pytest

from keras_recu._compat import keras_internals
from keras_recu.layers import QuantConv2D, ReCUConv2D
from tests.run_utils import environment, python


class _Block(keras.layers.Layer):
    """A layer holding a sublayer in a private attribute and two in a list: public
    attributes and `Model.layers` would not find the first."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._conv = ReCUConv2D(4, 3, padding="same", name="private_conv")
        self.extras = [keras.layers.ReLU(name="relu_a"), keras.layers.ReLU(name="relu_b")]

    def call(self, x):
        return self.extras[1](self.extras[0](self._conv(x)))


def _nested_model():
    inner = keras.Sequential(
        [keras.Input((8, 8, 4)), QuantConv2D(4, 3, padding="same", input_quantizer="ste_sign",
                                             kernel_quantizer="recu_sign", name="qconv")],
        name="inner",
    )
    inputs = keras.Input((8, 8, 4), name="image")
    x = inner(inputs)
    x = _Block(name="block")(x)
    return keras.Model(inputs, x, name="outer")


def test_the_private_attributes_read_exist_in_this_keras():
    # If an upgrade of Keras removes one of these, _compat is what changes.
    model = _nested_model()
    assert callable(getattr(model, "_flatten_layers"))
    assert isinstance(getattr(model, "_nodes_by_depth"), dict)
    assert isinstance(getattr(model.get_layer("inner"), "_functional"), keras.Model)
    assert all(isinstance(getattr(layer, "_inbound_nodes"), list) for layer in model.layers)


def test_flatten_layers_finds_every_nested_layer_once():
    model = _nested_model()
    names = [layer.name for layer in keras_internals.flatten_layers(model)]
    assert names[0] == "outer"
    for name in ("inner", "qconv", "block", "private_conv", "relu_a", "relu_b"):
        assert names.count(name) == 1, name
    # Quantizers are layers too: qconv's two, private_conv's two.
    quantizers = [layer for layer in keras_internals.flatten_layers(model) if hasattr(layer, "precision")]
    assert len(quantizers) == 4
    assert len({id(layer) for layer in quantizers}) == 4
    assert keras_internals.flatten_layers(model, include_self=False)[0] is not model
    assert len(keras_internals.flatten_layers(model, include_self=False)) == len(names) - 1


def test_flatten_layers_explains_a_keras_without_the_walk():
    class NoWalk:
        pass

    with pytest.raises(NotImplementedError, match="_flatten_layers"):
        keras_internals.flatten_layers(NoWalk())


def test_graph_calls_counts_the_calls_of_this_graph_only():
    shared = keras.layers.Dense(3, name="shared")
    inputs = keras.Input((4,), name="x")
    a, b = shared(inputs), shared(keras.layers.Dense(4, name="pre")(inputs))
    model = keras.Model(inputs, keras.layers.Concatenate(name="cat")([a, b]))
    # The same layer in another model adds nodes of another graph.
    other = keras.Input((4,))
    keras.Model(other, shared(other))

    calls = keras_internals.graph_calls(model)
    assert calls[id(shared)] == [((None, 3),), ((None, 3),)]
    assert calls[id(model.get_layer("cat"))] == [((None, 6),)]
    assert calls[id(model.get_layer("x"))] == [((None, 4),)]


def test_graph_calls_of_a_sequential_and_of_a_subclassed_model():
    sequential = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, name="d")])
    assert keras_internals.graph_calls(sequential)[id(sequential.get_layer("d"))] == [((None, 2),)]

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(keras.ops.zeros((1, 3)))
    assert keras_internals.graph_calls(net) is None


@pytest.mark.tf_only
def test_flatten_layers_on_a_tf_keras_larq_model():
    import larq
    import tensorflow as tf

    import keras_recu.larq as recu_larq

    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 4)),
            larq.layers.QuantConv2D(4, 3, input_quantizer=recu_larq.ReCUInputSign(),
                                    kernel_quantizer=recu_larq.ReCUSign(), name="lq"),
        ]
    )
    layers = keras_internals.flatten_layers(model)
    assert [layer.name for layer in layers].count("lq") == 1
    assert sum(isinstance(layer, recu_larq.ReCUSign) for layer in layers) == 1


@pytest.mark.tf_only
def test_multi_worker_strategy_reduces_a_tuple_and_a_scalar_with_an_axis():
    # In a fresh process: a tf.distribute strategy configures TensorFlow's
    # runtime for the rest of the process, which the other tests share.
    code = textwrap.dedent("""
        import tensorflow as tf
        from keras_recu._compat import distribute

        # A single worker: no TF_CONFIG, the strategy runs on this process's devices.
        strategy = distribute.multi_worker_strategy()
        assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        batch = (tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([5.0, 6.0]))
        features, labels = strategy.reduce(tf.distribute.ReduceOp.SUM, batch, axis=0)
        assert features.numpy().tolist() == [4.0, 6.0] and float(labels.numpy()) == 11.0
        # Keras reduces a step's scalar metrics with axis=0, which the strategy itself refuses.
        scalar = strategy.run(lambda: tf.constant(2.5))
        assert float(strategy.reduce(tf.distribute.ReduceOp.MEAN, scalar, axis=0).numpy()) == 2.5
        print("ok")
    """)
    result = python(["-c", code], env=environment(KERAS_BACKEND="tensorflow"))
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
