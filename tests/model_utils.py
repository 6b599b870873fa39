"""Helpers shared by the deployment tests."""


def randomize_batch_norm(model, rng):
    """Give every BatchNormalization of `model` random, trained-looking statistics.

    Initial BN statistics map some integer bconv outputs to exactly 0.0, where
    LCE's fused sign may break the tie differently from sign(0) = +1; trained
    (here: random) statistics do not. Works for Keras 3 and tf-keras models.
    """
    for layer in _nested_layers(model):
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape),
            ])


def _nested_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model
            yield from _nested_layers(layer)
