"""L2SGD against PyTorch's SGD with weight decay and momentum."""

import keras
import numpy as np
import pytest
import torch

from keras_recu.optimizers import L2SGD
from tests.gradients import to_numpy


def test_matches_torch_sgd_with_weight_decay(rng):
    w0 = rng.normal(size=(5, 3)).astype("float32")
    grads = [rng.normal(size=(5, 3)).astype("float32") for _ in range(4)]

    variable = keras.Variable(w0)
    optimizer = L2SGD(learning_rate=0.1, momentum=0.9, l2=5e-2)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])

    wt = torch.nn.Parameter(torch.tensor(w0))
    reference = torch.optim.SGD([wt], lr=0.1, momentum=0.9, weight_decay=5e-2)
    for g in grads:
        wt.grad = torch.tensor(g)
        reference.step()
    np.testing.assert_allclose(to_numpy(variable), wt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_refuses_decoupled_decay_and_round_trips():
    with pytest.raises(ValueError, match="Pass l2"):
        L2SGD(weight_decay=1e-4)
    with pytest.raises(ValueError, match="`l2` must be >= 0"):
        L2SGD(l2=-1.0)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(L2SGD(0.1, 0.9, l2=1e-4)))
    assert isinstance(clone, L2SGD) and clone.l2 == 1e-4
