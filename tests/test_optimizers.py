"""L2SGD against PyTorch's SGD with weight decay and momentum."""

import keras
import numpy as np
import pytest
import torch

from keras_recu.optimizers import L2Adam, L2SGD
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


def _named_variables(rng):
    """Variables whose paths follow the ImageNet builders' names: decayed and not decayed by ("conv", "fc")."""
    names = ["layer1_0_conv1", "layer1_0_bn1", "fc", "layer1_0_downsample_0"]
    values = [rng.normal(size=(4, 3)).astype("float32") for _ in names]
    variables = []
    for name, value in zip(names, values):
        with keras.name_scope(name):
            variables.append(keras.Variable(value, name="kernel"))
    return names, values, variables


def _torch_groups(names, values, decay_names, weight_decay):
    decayed = [torch.nn.Parameter(torch.tensor(v)) for n, v in zip(names, values) if n in decay_names]
    kept = [torch.nn.Parameter(torch.tensor(v)) for n, v in zip(names, values) if n not in decay_names]
    groups = [{"params": decayed}, {"params": kept, "weight_decay": 0.0}]
    return groups, {**dict(zip([n for n in names if n in decay_names], decayed)),
                    **dict(zip([n for n in names if n not in decay_names], kept))}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_decays_only_matching_paths_like_the_authors_parameter_groups(rng, kind):
    """The authors' ImageNet rule: two torch parameter groups, weight decay only on names with "conv" or "fc"."""
    names, values, variables = _named_variables(rng)
    assert [v.path for v in variables] == [f"{n}/kernel" for n in names]
    grads = [[rng.normal(size=(4, 3)).astype("float32") for _ in names] for _ in range(5)]
    if kind == "sgd":
        optimizer = L2SGD(learning_rate=0.1, momentum=0.9, l2=0.05, l2_paths=("conv", "fc"))
    else:
        optimizer = L2Adam(learning_rate=0.01, l2=0.05, l2_paths=("conv", "fc"))
    for step in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), v) for g, v in zip(step, variables)])

    groups, parameters = _torch_groups(names, values, {"layer1_0_conv1", "fc"}, 0.05)
    if kind == "sgd":
        reference = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=0.05)
    else:
        reference = torch.optim.Adam(groups, lr=0.01, weight_decay=0.05)
    for step in grads:
        for name, g in zip(names, step):
            parameters[name].grad = torch.tensor(g)
        reference.step()
    for name, variable in zip(names, variables):
        np.testing.assert_allclose(to_numpy(variable), parameters[name].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert [optimizer.decays(v) for v in variables] == [True, False, True, False]


def test_adam_matches_torch_adam_with_coupled_decay(rng):
    w0 = rng.normal(size=(6,)).astype("float32")
    grads = [rng.normal(size=(6,)).astype("float32") for _ in range(6)]
    variable = keras.Variable(w0)
    optimizer = L2Adam(learning_rate=0.01, l2=0.1, beta_1=0.8, beta_2=0.99)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])

    # The same update written out: PyTorch's Adam with the decay added to the gradient.
    w, m, v = w0.astype("float64"), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g + 0.1 * w
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        w = w - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(to_numpy(variable), w, rtol=1e-5, atol=1e-6)


def test_l2_paths_round_trip_and_bad_values():
    for optimizer in (L2SGD(0.1, 0.9, l2=1e-4, l2_paths=["conv", "fc"]), L2Adam(1e-3, l2=1e-4, l2_paths=("conv",))):
        clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(clone) is type(optimizer)
        assert clone.l2 == optimizer.l2 and clone.l2_paths == tuple(optimizer.l2_paths)
    assert keras.optimizers.deserialize(keras.optimizers.serialize(L2Adam())).l2_paths is None
    with pytest.raises(TypeError, match="l2_paths"):
        L2SGD(l2_paths="conv")
    with pytest.raises(TypeError, match="l2_paths"):
        L2Adam(l2_paths=["conv", ""])
    with pytest.raises(ValueError, match="Pass l2"):
        L2Adam(weight_decay=1e-4)
    with pytest.raises(ValueError, match="beta_1"):
        L2Adam(beta_1=1.0)


def _authors_learning_rates(lr: float, epochs: int, warm_up: bool) -> list:
    """The rate of each epoch as the authors' main.py sets it, run with torch's own scheduler."""
    import torch

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [parameter], "initial_lr": lr}], lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs - warm_up * 4, eta_min=0, last_epoch=-1)
    rates = []
    for epoch in range(epochs):
        if warm_up and epoch < 5:
            for group in optimizer.param_groups:
                group["lr"] = lr * (epoch + 1) / 5
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (training)
        if epoch >= 4 * warm_up:
            scheduler.step()
    return rates


@pytest.mark.parametrize("epochs, warm_up", [(12, True), (200, True), (9, False)])
def test_epoch_warmup_cosine_is_the_authors_schedule(epochs, warm_up):
    from keras_recu.optimizers import EpochWarmupCosine

    steps_per_epoch = 3
    schedule = EpochWarmupCosine(0.1, epochs, steps_per_epoch, warmup_epochs=5 if warm_up else 0)
    expected = _authors_learning_rates(0.1, epochs, warm_up)
    for epoch, rate in enumerate(expected):
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            assert float(keras.ops.convert_to_numpy(schedule(step))) == pytest.approx(rate, rel=1e-5, abs=1e-9)
    restored = EpochWarmupCosine.from_config(schedule.get_config())
    assert float(keras.ops.convert_to_numpy(restored(7))) == float(keras.ops.convert_to_numpy(schedule(7)))
    with pytest.raises(ValueError, match="warmup_epochs"):
        EpochWarmupCosine(0.1, 5, 3, warmup_epochs=5)
