"""The two-stage recipe's hand-over: stage 2 (binary weights) starts from stage 1's trained weights.

Stage 1 trains `imagenet_resnet18_two_stage(binary_weights=False)` (binary
activations, float weights); stage 2 builds the same network with
`binary_weights=True`, whose variables carry the same layer and variable
names, and starts from stage 1's values. The authors load stage 1's
`state_dict` with `strict=False`, which silently skips whatever does not
match; here every variable must find its counterpart with the same shape,
or the hand-over fails and says which ones did not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import keras
import numpy as np

from keras_recu.app.errors import RunError
from keras_recu.app.messages import command_line, first_line
from keras_recu.app.rundir import MODEL

__all__ = ["StageMismatch", "carry_stage1", "carry_weights", "stage1_model_path"]


class StageMismatch(ValueError):
    """The stage-1 model's variables do not match stage 2's by name and shape."""


def stage1_model_path(path: os.PathLike) -> Path:
    """The stage-1 `.keras` file: `path` itself, or a finished run directory's model.keras."""
    path = Path(path)
    if path.is_dir():
        model = path / MODEL
        if not model.is_file():
            raise FileNotFoundError(
                f"--stage1 {path}: the directory has no model.keras (a stage-1 run that has not finished?); "
                f"finish it with `{command_line('keras-recu', 'train', '--out', path, '--resume')}`, or pass a .keras file."
            )
        return model
    if not path.is_file():
        raise FileNotFoundError(f"--stage1 {path}: no such file or run directory.")
    return path


def _by_name(model, which: str) -> Dict[str, object]:
    """The model's variables by "layer/variable" name, tau left out (the tau schedule sets it each epoch).

    Variable paths are not enough: a quantizer's tau is created outside its
    layer's name scope. The layer that holds a variable (its quantizers'
    included) and the variable's own name are.
    """
    from keras_recu.inspection import tau_variables

    schedule = {id(variable) for variable in tau_variables(model)}
    variables: Dict[str, object] = {}

    def walk(container, prefix: str) -> None:
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                walk(layer, f"{prefix}{layer.name}/")
                continue
            for variable in layer.weights:
                if id(variable) in schedule:
                    continue
                key = f"{prefix}{layer.name}/{variable.name}"
                if key in variables:
                    raise StageMismatch(
                        f"the {which} model has two variables named {key!r}; the hand-over matches variables "
                        "by layer and variable name, so every layer needs its own name."
                    )
                variables[key] = variable

    walk(model, "")
    return variables


def carry_weights(source: keras.Model, target: keras.Model) -> dict:
    """Copy every variable of `source` into `target`'s of the same layer and name; all must match.

    The tau variables are left to the tau schedule.

    Returns what was carried: {"variables": n, "values": total number of
    numbers, "layers": sorted layer names}.

    Raises:
        StageMismatch: a variable of either model has no counterpart in the
            other, or the shapes differ; the message lists them (nothing is
            copied then).
    """
    sources, targets = _by_name(source, "stage-1"), _by_name(target, "stage-2")
    problems: List[str] = []
    only_source = sorted(set(sources) - set(targets))
    only_target = sorted(set(targets) - set(sources))
    if only_source:
        problems.append(f"in stage 1 only: {', '.join(only_source[:8])}{' ...' if len(only_source) > 8 else ''}")
    if only_target:
        problems.append(f"in stage 2 only: {', '.join(only_target[:8])}{' ...' if len(only_target) > 8 else ''}")
    shapes = [
        f"{path} {tuple(sources[path].shape)} -> {tuple(targets[path].shape)}"
        for path in sorted(set(sources) & set(targets))
        if tuple(sources[path].shape) != tuple(targets[path].shape)
    ]
    if shapes:
        problems.append(f"shapes differ: {', '.join(shapes[:8])}{' ...' if len(shapes) > 8 else ''}")
    if problems:
        raise StageMismatch(
            f"the stage-1 model ({source.name}, {len(sources)} variables) does not match stage 2 "
            f"({target.name}, {len(targets)} variables): {'; '.join(problems)}. Pass the stage-1 run of the "
            "same --model, number of classes and input size."
        )
    values = 0
    for path, variable in targets.items():
        value = keras.ops.convert_to_numpy(sources[path])
        variable.assign(value.astype(np.dtype(variable.dtype)))
        values += int(value.size)
    return {
        "variables": len(targets),
        "values": values,
        "layers": sorted({key.rsplit("/", 1)[0] for key in targets}),
    }


def carry_stage1(stage1: str, student) -> dict:
    """Stage 2's start: the weights of the stage-1 run or file `stage1`, copied by name into `student`.

    Returns what was carried (stage1.json of the run); RunError, in one line,
    when the stage-1 model cannot be found, loaded or matched.
    """
    try:
        path = stage1_model_path(stage1)
    except FileNotFoundError as error:
        raise RunError(str(error)) from None
    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as error:  # whatever the file holds: one line, not Keras' traceback
        first = first_line(error, 300)
        raise RunError(
            f"--stage1 {stage1}: cannot load {path} ({type(error).__name__}: {first}); pass the stage-1 "
            "run directory or its model.keras."
        ) from None
    try:
        carried = carry_weights(source, student)
    except StageMismatch as error:
        raise RunError(f"--stage1 {stage1}: {error}") from None
    print(
        f"Stage 2 starts from stage 1 ({path}): {carried['variables']} variables, {carried['values']:,} values, "
        f"of {len(carried['layers'])} layers carried over."
    )
    return {"source": str(path), **carried}
