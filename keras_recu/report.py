"""The run report: plots and a one-page markdown summary of a training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np

__all__ = ["write_report"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_training(history: Dict[str, list], path: Path) -> None:
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
    right.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_tau(history: Dict[str, list], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    tau = history.get("tau", [])
    axis.plot(np.arange(1, len(tau) + 1), tau, marker="o", color="tab:purple")
    axis.set(title="ReCU clamp quantile tau", xlabel="epoch", ylabel="tau")
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_weights(initial: Dict[str, np.ndarray], final: Dict[str, np.ndarray], path: Path) -> None:
    """Latent weights, standardized per output channel as ReCU sees them, start vs end."""
    plt = _pyplot()
    names = [name for name in final if name in initial]
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        for kernel, label in ((initial[name], "start"), (final[name], "end")):
            flat = kernel.reshape(-1, kernel.shape[-1])
            standardized = (flat - flat.mean(0)) / (flat.std(0, ddof=1) + 1e-12)
            axis.hist(standardized.ravel(), bins=60, alpha=0.55, density=True, label=label)
        axis.set(title=name, xlabel="standardized latent weight", ylabel="density")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(out: Path, metrics: dict, initial: Dict[str, np.ndarray], final: Dict[str, np.ndarray]) -> Path:
    """Write the plots and report.md into `out`; return the report's path."""
    history = metrics.get("history", {})
    plot_training(history, out / "training.png")
    plot_tau(history, out / "tau.png")
    plot_weights(initial, final, out / "weights.png")
    deployment = metrics.get("deployment", {})
    config = metrics["config"]
    agreement = deployment.get("argmax_agreement")
    lines = [
        f"# {config['model']} on {config['dataset']}",
        "",
        f"- test accuracy **{metrics['test_accuracy']:.2%}** (loss {metrics['test_loss']:.4f}) after "
        f"{len(history.get('loss', []))} of {config['epochs']} epochs",
        f"- {metrics['parameters']:,} parameters; tau {config['tau_min']} -> {config['tau_max']}",
        f"- LCE flatbuffer `model.tflite`: {deployment.get('flatbuffer_kib')} KiB "
        f"(float32 parameters {deployment.get('float32_parameters_kib')} KiB); "
        f"{deployment.get('census', {}).get('LceBconv2d', 0)} of {deployment.get('binary_layers')} binary layers "
        f"run as LceBconv2d; left in float: {', '.join(deployment.get('binary_layers_left_in_float', [])) or 'none'}",
        f"- verified on {deployment.get('verify_samples')} test images: argmax agreement with Keras "
        f"{'n/a' if agreement is None else f'{agreement:.2%}'}, max |error| {deployment.get('max_abs_error', float('nan')):.2g}",
        "",
        "![accuracy and loss](training.png)",
        "",
        "![tau](tau.png)",
        "",
        "![latent weights](weights.png)",
        "",
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
