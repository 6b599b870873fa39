"""Backend-neutral gradients for the tests: TensorFlow, JAX and PyTorch alike.

`function_gradients(fn, inputs, upstream)` differentiates a function of
tensors; `layer_gradients(layer, x, upstream)` a built Keras layer with
respect to its input and its trainable variables. Both return numpy arrays
and compute the vector-Jacobian product `d sum(fn(...) * upstream)`, the
gradient an upstream layer would pass back.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import keras
import numpy as np

BACKEND = keras.backend.backend()


# Gradients in float32 against the float64 reference of tests/torch_reference.py.
# Forward values are signs (or exact sums of signs), so they must agree
# exactly; gradients pass through means and variances over the whole kernel
# or sample, where float32 sums of n terms carry a relative rounding error of
# about sqrt(n) * 6e-8. Measured worst case over the parity tests: see
# assert_gradients_close.
GRADIENT_RTOL = 1e-5


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def gradient_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: the error relative to the gradient's scale.

    Elementwise relative error is meaningless where the reference is near 0
    (a clamped weight receives only the tiny indirect part of the gradient),
    so the error is measured against the largest reference entry.
    """
    want = np.asarray(want, "float64")
    scale = np.abs(want).max()
    return float(np.abs(np.asarray(got, "float64") - want).max() / (scale if scale > 0 else 1.0))


def assert_gradients_close(got: np.ndarray, want: np.ndarray, rtol: float = GRADIENT_RTOL) -> None:
    """Assert `gradient_error(got, want) <= rtol`, shapes equal."""
    assert np.shape(got) == np.shape(want), (np.shape(got), np.shape(want))
    error = gradient_error(got, want)
    assert error <= rtol, f"gradient error {error:.3g} exceeds {rtol:.3g} of the largest reference entry"


def function_gradients(
    fn: Callable, inputs: Sequence[np.ndarray], upstream: np.ndarray
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """`(fn(*inputs), [d sum(fn * upstream) / d input for each input])` as numpy."""
    inputs = [np.asarray(x, "float32") for x in inputs]
    upstream = np.asarray(upstream, "float32")
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = fn(*tensors)
        grads = tape.gradient(out, tensors, output_gradients=tf.constant(upstream, out.dtype))
    elif BACKEND == "jax":
        import jax

        out, vjp = jax.vjp(fn, *inputs)
        grads = vjp(jax.numpy.asarray(upstream, out.dtype))
    elif BACKEND == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
        out = fn(*tensors)
        grads = torch.autograd.grad(
            out, tensors, grad_outputs=torch.tensor(upstream, dtype=out.dtype), allow_unused=True
        )
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors)]
    else:  # pragma: no cover
        raise NotImplementedError(BACKEND)
    return to_numpy(out), [to_numpy(g) for g in grads]


def layer_gradients(
    layer: keras.layers.Layer, x: np.ndarray, upstream: np.ndarray, training: bool = True
) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """`(output, d/d input, {variable path: d/d variable})` of a built layer, as numpy."""
    x = np.asarray(x, "float32")
    upstream = np.asarray(upstream, "float32")
    if not layer.built:
        layer(x)
    trainable = list(layer.trainable_variables)
    names = [v.path for v in trainable]
    if BACKEND == "jax":
        import jax

        def fn(inputs, values):
            # Through __call__ (not stateless_call) so that `training` reaches
            # nested layers such as the input quantizer.
            with keras.StatelessScope(state_mapping=list(zip(trainable, values))):
                return layer(inputs, training=training)

        out, vjp = jax.vjp(fn, x, [v.value for v in trainable])
        grad_x, grad_vars = vjp(jax.numpy.asarray(upstream, out.dtype))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = layer(inputs, training=training)
        grad_x, grad_vars = tape.gradient(
            out, (inputs, [v.value for v in trainable]), output_gradients=tf.constant(upstream, out.dtype)
        )
    elif BACKEND == "torch":
        import torch

        inputs = torch.tensor(x, requires_grad=True)
        out = layer(inputs, training=training)
        grads = torch.autograd.grad(
            out, [inputs, *[v.value for v in trainable]],
            grad_outputs=torch.tensor(upstream, dtype=out.dtype),
        )
        grad_x, grad_vars = grads[0], grads[1:]
    else:  # pragma: no cover
        raise NotImplementedError(BACKEND)
    return (
        to_numpy(out),
        to_numpy(grad_x),
        {name: to_numpy(g) for name, g in zip(names, grad_vars)},
    )
