"""The run report: plots and a one-page markdown summary of a training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

__all__ = ["write_report"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _epoch_axis(axis, legend: bool = True) -> None:
    """Integer epoch ticks, a light grid, a legend: every per-epoch plot's style."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if legend:
        axis.legend()


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)


def plot_training(history: Dict[str, list], path: Path, distilled: bool = False) -> None:
    plt = _pyplot()
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        if key in history:
            left.plot(epochs, history[key], marker="o", label=label)
    left.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for key, label in (("loss", "train"), ("val_loss", "test")):
        if key in history:
            right.plot(epochs, history[key], marker="o", label=label)
    right.set(title="Loss" + (" (train: distribution loss to the teacher)" if distilled else ""), xlabel="epoch",
              ylabel="cross-entropy")
    for axis in (left, right):
        _epoch_axis(axis, legend=bool(axis.get_legend_handles_labels()[0]))
    _save(figure, path)


def plot_tau(history: Dict[str, list], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    tau = history.get("tau", [])
    axis.plot(np.arange(1, len(tau) + 1), tau, marker="o", color="tab:purple")
    axis.set(title="ReCU clamp quantile tau", xlabel="epoch", ylabel="tau")
    _epoch_axis(axis, legend=False)
    _save(figure, path)


def plot_weights(initial: Dict[str, np.ndarray], final: Dict[str, np.ndarray], path: Path) -> None:
    """Latent weights, standardized per output channel as ReCU sees them, start vs end."""
    plt = _pyplot()
    names = [name for name in final if name in initial]
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        for kernel, label in ((initial[name], "start"), (final[name], "end")):
            flat = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
            with np.errstate(all="ignore"):
                standardized = ((flat - flat.mean(0)) / (flat.std(0, ddof=1) + 1e-12)).ravel()
            finite = standardized[np.isfinite(standardized)]
            if finite.size < standardized.size:
                label = f"{label} ({standardized.size - finite.size} non-finite left out)"
            if finite.size:  # hist() refuses an empty or non-finite range
                axis.hist(finite, bins=60, alpha=0.55, density=True, label=label)
        axis.set(title=name, xlabel="standardized latent weight", ylabel="density")
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    _save(figure, path)


#: The panels of diagnostics.png: metric, title, y label.
_DIAGNOSTIC_PANELS = (
    ("dead_share", "Dead weights (beyond the clamp)", "share of latent weights"),
    ("quant_error", "Quantization error", "relative L2 error, XNOR scale"),
    ("entropy", "Latent weight entropy", "nats (histogram estimate)"),
    ("flip_ratio", "Flip ratio", "share of binary weights flipped"),
)


def plot_diagnostics(
    diagnostics: Dict[str, list], path: Path, per_layer: Optional[Dict[str, Dict[str, list]]] = None
) -> None:
    """Four panels per epoch: dead share, quantization error, entropy, flip ratio.

    The model values (`keras_recu.diagnostics.DiagnosticsCallback`) are drawn
    bold; each binary layer's values, when given, as thin grey lines.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(_DIAGNOSTIC_PANELS), figsize=(4.2 * len(_DIAGNOSTIC_PANELS), 3.5))
    for axis, (metric, title, label) in zip(axes, _DIAGNOSTIC_PANELS):
        for record in (per_layer or {}).values():
            values = record.get(metric, [])
            axis.plot(np.arange(1, len(values) + 1), values, color="grey", alpha=0.3, linewidth=0.8)
        values = diagnostics.get(metric, [])
        axis.plot(np.arange(1, len(values) + 1), values, marker="o", color="tab:red",
                  label="pooled" if metric == "flip_ratio" else "mean over layers")
        axis.set(title=title, xlabel="epoch", ylabel=label)
        _epoch_axis(axis)
    _save(figure, path)


def _deployment_lines(deployment: dict) -> list:
    """The report's lines on the flatbuffer, or on how to make it when the run could not."""
    if not deployment.get("converted", "census" in deployment):
        later = deployment.get("convert_later", "keras-recu convert RUN_DIR --verify")
        return [
            "- not converted to LCE: " + deployment.get("note", "no flatbuffer was made") + ".",
            f"  To convert later, on a machine with TensorFlow and larq-compute-engine: `{later}`",
        ]
    agreement = deployment.get("argmax_agreement")
    error = deployment.get("max_abs_error")
    return [
        f"- LCE flatbuffer `model.tflite`: {deployment.get('flatbuffer_kib')} KiB "
        f"(float32 parameters {deployment.get('float32_parameters_kib')} KiB); "
        f"{deployment.get('census', {}).get('LceBconv2d', 0)} of {deployment.get('binary_layers')} binary layers "
        f"run as LceBconv2d; left in float: {', '.join(deployment.get('binary_layers_left_in_float', [])) or 'none'}",
        f"- verified on {deployment.get('verify_samples')} test images: argmax agreement with Keras "
        f"{'n/a' if agreement is None else f'{agreement:.2%}'}, max |error| "
        f"{'n/a' if error is None else f'{error:.2g}'}",
        *_verification_lines(deployment),
    ]


def _verification_lines(deployment: dict) -> list:
    """The verdict on the disagreements: sign ties (harmless) or unexplained (a failed verification)."""
    if "verification" not in deployment:
        return []
    lines = [f"- {deployment['verification']}"
             + ("" if deployment.get("verified", True) else " - **verification failed**: an unexplained "
                "disagreement may be a wrong conversion")]
    if deployment.get("disagreements"):
        lines.append(
            f"  (an image disagrees when its argmax differs or an output is off by more than "
            f"{deployment.get('tolerance', 1e-3):g} of the largest; a sign tie is a pre-sign activation within "
            f"{deployment.get('tie_ulps', 64):g} float32 ulps of 0, which LCE's fused arithmetic may binarize the "
            "other way: see `keras_recu.deploy.ties`)"
        )
    for entry in deployment.get("disagreements", [])[:10]:
        where = (f"sign tie at `{entry['layer']}` (|a| = {entry['activation']:.2g})" if entry["kind"] == "tie"
                 else "unexplained")
        if entry.get("confirmed"):
            where += ", reproduced by flipping it in Keras"
        argmax = ("" if entry.get("keras_class") is None
                  else f"argmax {entry['keras_class']} -> {entry['flatbuffer_class']}, ")
        lines.append(f"  - image {entry['index']}: {argmax}max |error| {entry['max_abs_error']:.2g}: {where}")
    if len(deployment.get("disagreements", [])) > 10:
        lines.append(f"  - ... and {len(deployment['disagreements']) - 10} more in `metrics.json`")
    return lines


def _precision_lines(config: dict, metrics: dict) -> list:
    """Under a mixed policy: where each dtype lived, and the float32 twin that deployment converts."""
    policy = config.get("dtype_policy", "float32")
    twin = metrics.get("float32_twin")
    if policy == "float32" or not twin:
        return []
    return [
        f"- trained under `{policy}`: variables and ReCU's statistics in float32, binarized kernels, activations "
        f"and layer outputs in {policy.split('_', 1)[1]}; its float32 twin (the same weights, converted below) has "
        f"test accuracy {twin['test_accuracy']:.2%} and classifies {twin['argmax_agreement']:.2%} of the "
        f"{twin['test_examples']} test images as the trained model does"
    ]


def _recipe_lines(config: dict, metrics: dict) -> list:
    """What the recipe was: optimizer, decay rule, distillation and stage (none for a plain CIFAR-recipe run)."""
    lines = []
    if config.get("recipe", "cifar") != "cifar" or config.get("optimizer", "sgd") != "sgd" \
            or config.get("weight_decay_paths") is not None:
        decayed = ", ".join(config["weight_decay_paths"]) if config.get("weight_decay_paths") else "all variables"
        lines.append(
            f"- recipe {config.get('recipe', 'cifar')}: {config.get('optimizer', 'sgd')} at learning rate "
            f"{config['learning_rate']} (batch {config['batch_size']}, {config['warmup_epochs']} warm-up epochs, "
            f"cosine, updated every {config.get('lr_schedule', 'step')}), coupled weight decay "
            f"{config['weight_decay']} on variables matching {decayed}"
        )
    if config.get("teacher"):
        lines.append(
            f"- distilled from the teacher `{config['teacher']}`: the training loss is the distribution loss to "
            "its softmax, the test loss the cross-entropy on the labels"
        )
    if config.get("stage") == 1:
        lines.append("- two-stage recipe, stage 1: binary activations, float weights (stage 2 starts from this run)")
    elif config.get("stage") == 2:
        carried = metrics.get("stage1", {})
        lines.append(
            f"- two-stage recipe, stage 2: binary weights, started from `{carried.get('source', config.get('stage1'))}`"
            + (f" ({carried['variables']} variables carried over)" if "variables" in carried else "")
        )
    return lines


def write_report(out: Path, metrics: dict, initial: Dict[str, np.ndarray], final: Dict[str, np.ndarray]) -> Path:
    """Write the plots and report.md into `out`; return the report's path."""
    history = metrics.get("history", {})
    config = metrics["config"]
    plot_training(history, out / "training.png", distilled=bool(config.get("teacher")))
    plot_tau(history, out / "tau.png")
    plot_weights(initial, final, out / "weights.png")
    diagnostics = metrics.get("diagnostics")
    if diagnostics:
        plot_diagnostics(diagnostics, out / "diagnostics.png", metrics.get("diagnostics_per_layer"))
    lines = [
        f"# {config['model']} on {config['dataset']}",
        "",
        f"- test accuracy **{metrics['test_accuracy']:.2%}** (loss {metrics['test_loss']:.4f}) after "
        f"{len(history.get('loss', []))} of {config['epochs']} epochs"
        + (f", trained on the {metrics['backend']} backend" if metrics.get("backend") else ""),
        f"- {metrics['parameters']:,} parameters; tau {config['tau_min']} -> {config['tau_max']}",
        *_recipe_lines(config, metrics),
        *_precision_lines(config, metrics),
        *(
            [f"- input pipeline: training waited {metrics['input_wait_this_session']['seconds']} s for decoded "
             f"batches over {metrics['input_wait_this_session']['batches']} batches "
             f"({metrics['train_seconds_this_session']} s of training in this session)"]
            if metrics.get("input_wait_this_session")
            else []
        ),
        *_deployment_lines(metrics.get("deployment") or {}),
        "",
        "![accuracy and loss](training.png)",
        "",
        "![tau](tau.png)",
        "",
        "![latent weights](weights.png)",
        "",
        *(
            [
                "![weight diagnostics](diagnostics.png)",
                "",
                "Per epoch, over the binary layers (grey: each layer): the share of latent weights beyond "
                "ReCU's clamp, the relative quantization error with XNOR-Net's scale, the entropy of the latent "
                "weights as ReCU sees them (standardized) and the share of binary weights whose sign flipped "
                "(definitions: `keras_recu.diagnostics`; per-layer values in `metrics.json`).",
                "",
            ]
            if diagnostics
            else []
        ),
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
        "The model's summary table and the verification report are in `summary.txt`.",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
