"""--diagnostics: the per-epoch weight diagnostics of a run, logged across sessions and summed up in metrics.json.

The model means go into the epoch's logs (and so history.csv); the values of
each layer go to diagnostics.jsonl, one line per epoch, appended across
resumed sessions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from keras_recu.app.config import TrainConfig
from keras_recu.app.rundir import DIAGNOSTICS, write_text

__all__ = ["diagnostics_callbacks", "diagnostics_metrics", "trim_diagnostics"]


def diagnostics_callbacks(config: TrainConfig, target: Path) -> list:
    """DiagnosticsCallback (model means into the logs) and a writer of its per-layer values into `target`.

    The per-layer values go to diagnostics.jsonl, one line per epoch, appended
    across resumed sessions; the logs (and so history.csv) get the model means
    only, to keep the CSV readable.
    """
    import keras

    from keras_recu.diagnostics import DiagnosticsCallback

    # reference_tau only matters for non-ReCU binary layers (plain STE).
    diagnostics = DiagnosticsCallback(reference_tau=config.tau_min, per_layer=False)
    path = target / DIAGNOSTICS

    class LayerLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            layers = {
                name: {metric: values[-1] for metric, values in record.items()}
                for name, record in diagnostics.layer_history.items()
            }
            with open(path, "a") as file:
                file.write(json.dumps({"epoch": int(epoch), "layers": layers}) + "\n")

    return [diagnostics, LayerLog()]


def _lines_by_epoch(path: Path) -> Dict[int, dict]:
    """diagnostics.jsonl by epoch; a re-run epoch's last line wins, a torn last line is skipped."""
    by_epoch = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            by_epoch[int(entry["epoch"])] = entry["layers"]
    return by_epoch


def trim_diagnostics(path: Path, epochs_done: int) -> None:
    """Keep diagnostics.jsonl to the checkpointed epochs (a kill may have left later or torn lines)."""
    by_epoch = _lines_by_epoch(path)
    kept = [json.dumps({"epoch": e, "layers": by_epoch[e]}) for e in sorted(by_epoch) if e < epochs_done]
    if path.exists() or kept:
        write_text(path, "".join(line + "\n" for line in kept))


def diagnostics_metrics(history: Dict[str, list], path: Path) -> dict:
    """metrics.json's "diagnostics" (model means per epoch) and "diagnostics_per_layer", from the history and `path`."""
    from keras_recu.diagnostics import LOG_PREFIX, METRICS

    means = {metric: history.get(LOG_PREFIX + metric, []) for metric in METRICS}
    by_epoch = _lines_by_epoch(path)
    per_layer: Dict[str, Dict[str, List[float]]] = {}
    for epoch in history.get("epoch", []):
        for name, values in by_epoch.get(int(epoch), {}).items():
            record = per_layer.setdefault(name, {metric: [] for metric in METRICS})
            for metric in METRICS:
                record[metric].append(values[metric])
    return {"diagnostics": means, "diagnostics_per_layer": per_layer}
