"""What one ablation run records while it trains: timing, deadline, diagnostics, histograms.

`Recorder` gives one ablation run (`ablation_one.py`) its callbacks and turns what they saw into
CSV rows:

* `timer()` (first in the callback list, so the diagnostics' end-of-epoch
  work is outside its per-epoch clock): seconds per epoch (training and
  validation), and the wall time from one epoch's end to the next (all of an
  epoch's work, compilation excluded), whose median is the run's
  `seconds_per_epoch`; from the second epoch on it projects the run's end
  from that median and stops the run (`gave_up`) if it would end after the
  deadline, so a run that cannot finish frees the accelerator for the others.
* `callbacks()`: `keras_recu.diagnostics.DiagnosticsCallback` (each binary
  layer as its own quantizer sees it: dead share at the layer's tau,
  quantization error of what is binarized, entropy, binary entropy, flip
  ratio) for binary variants, and `_Latent`, which measures every variant's
  latent kernels the same way: dead share at tau 0.85 and entropy of the
  standardized kernel (`kernel_diagnostics(..., recu=True)` at 0.85),
  quantization error of the latent kernel itself (`recu=False`), the
  learning rate, the diagnostics at initialization, and histograms of the
  standardized latent weights of all binary layers pooled, at the start, the
  middle and the end of training, on fixed bins.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np

from benchmarks.harness import environment

_OWN = ("dead_share", "quant_error", "entropy", "binary_entropy", "flip_ratio")
_NAN = float("nan")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else _NAN


def binary_layer_names(model) -> List[str]:
    from keras_recu import inspection

    return [found.name for found in inspection.binary_layers(model) if found.binary_kernel]


#: Epoch-to-epoch intervals a run measures before it may give up.
GIVE_UP_AFTER = 3


class Recorder:
    def __init__(self, variant, reference_tau: float, epochs: int, deadline: Optional[float],
                 hist_range, hist_bins: int, layer_names: Sequence[str], label: str) -> None:
        self.variant, self.reference_tau, self.epochs, self.deadline = variant, reference_tau, epochs, deadline
        self.edges = np.linspace(hist_range[0], hist_range[1], hist_bins + 1)
        self.layer_names, self.label = list(layer_names), label
        self.epoch_seconds: List[float] = []  # per epoch: training and validation
        self.wall_seconds: List[float] = []  # epoch end to epoch end, from the second epoch on
        self.latent: Dict[str, List[float]] = {}
        self.initial: Dict[str, float] = {}
        self.histograms: List[Dict[str, Any]] = []
        self.gave_up = False
        self.diagnostics = None

    # --- callbacks ------------------------------------------------------------------------

    def timer(self) -> keras.callbacks.Callback:
        recorder = self

        class Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.ends = [time.time()]

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                recorder.epoch_seconds.append(time.perf_counter() - self.start)
                self.ends.append(time.time())
                # From one epoch's end to the next: training, validation and the previous
                # epoch's diagnostics; the first interval (compilation) is left out.
                recorder.wall_seconds = [float(d) for d in np.diff(self.ends[1:])]
                done, left = epoch + 1, recorder.epochs - epoch - 1
                # Judged on the last GIVE_UP_AFTER intervals only: on the GPU session the
                # first ones ran while 14 other processes compiled, and a projection from
                # them gave up runs that would have finished (benchmarks/results, 2026-11-28).
                recent = recorder.wall_seconds[-GIVE_UP_AFTER:]
                if recorder.deadline is not None and left and len(recent) == GIVE_UP_AFTER:
                    if time.time() + left * statistics.median(recent) > recorder.deadline:
                        recorder.gave_up = True
                        self.model.stop_training = True
                if done == 1 or done % 10 == 0 or not left:
                    accuracy = (logs or {}).get("val_accuracy", _NAN)
                    print(f"[{time.strftime('%H:%M:%S')}] {recorder.label}: epoch {done}/{recorder.epochs} "
                          f"val acc {100 * accuracy:.2f}% ({recorder.epoch_seconds[-1]:.1f} s)", flush=True)

        return Timer()

    def callbacks(self) -> List[keras.callbacks.Callback]:
        out: List[keras.callbacks.Callback] = []
        if self.variant.kernel != "float":
            from keras_recu.diagnostics import DiagnosticsCallback

            self.diagnostics = DiagnosticsCallback(reference_tau=self.reference_tau, per_layer=False)
            out.append(self.diagnostics)
        out.append(_Latent(self))
        return out

    # --- measurements ---------------------------------------------------------------------

    def kernels(self, model) -> List[np.ndarray]:
        # `.value`: the backend array (numpy 2 warns when it converts a Keras variable itself)
        return [keras.ops.convert_to_numpy(model.get_layer(name).kernel.value) for name in self.layer_names]

    def measure(self, model) -> Dict[str, float]:
        """Every variant's latent kernels, measured alike (means over the binary layers)."""
        from keras_recu.diagnostics import kernel_diagnostics
        from keras_recu.ops import ClampOptions

        clamped, latent = [], []
        for kernel in self.kernels(model):
            clamped.append(kernel_diagnostics(kernel, self.reference_tau, ClampOptions(), recu=True))
            latent.append(kernel_diagnostics(kernel, self.reference_tau, ClampOptions(), recu=False))
        return {
            "dead_share_085": _mean([d["dead_share"] for d in clamped]),
            "entropy_standardized": _mean([d["entropy"] for d in clamped]),
            "latent_quant_error": _mean([d["quant_error"] for d in latent]),
        }

    def histogram(self, model, stage: str, epoch: int) -> None:
        from keras_recu import ops as recu_ops

        values = np.concatenate([
            np.ravel(keras.ops.convert_to_numpy(recu_ops.standardize(keras.ops.convert_to_tensor(k))))
            for k in self.kernels(model)
        ])
        counts, _ = np.histogram(values, bins=self.edges)
        self.histograms.append({
            "stage": stage, "epoch": epoch, "low": float(self.edges[0]), "high": float(self.edges[-1]),
            "underflow": int(np.sum(values < self.edges[0])), "overflow": int(np.sum(values > self.edges[-1])),
            "counts": " ".join(str(int(c)) for c in counts),
        })

    # --- rows -------------------------------------------------------------------------------

    def epoch_rows(self, history: Dict[str, List[float]]) -> List[Dict[str, Any]]:
        own = self.diagnostics.history if self.diagnostics is not None else {}
        rows = []
        for i in range(len(self.epoch_seconds)):
            row = {"epoch": i + 1, "seconds": round(self.epoch_seconds[i], 3)}
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                row[key] = float(history[key][i])
            row["tau"] = float(history["tau"][i]) if "tau" in history else self.variant.tau
            for key, values in {**self.latent, **{k: own.get(k, []) for k in _OWN}}.items():
                row[key] = float(values[i]) if i < len(values) else _NAN
            rows.append(row)
        return rows

    def final(self, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
        last = rows[-1]
        out = {key: last.get(key, _NAN) for key in (*_OWN, "dead_share_085", "latent_quant_error",
                                                     "entropy_standardized")}
        flips = [r["flip_ratio"] for r in rows if not math.isnan(r.get("flip_ratio", _NAN))]
        out["flip_ratio_mean"] = _mean(flips)
        out["seconds_per_epoch"] = round(statistics.median(self.wall_seconds or self.epoch_seconds), 3)
        return {**out, **self.initial}

    @staticmethod
    def versions() -> str:
        facts = environment()
        return " ".join(f"{k}={facts[k]}" for k in ("python", "numpy", "keras", "jax", "torch", "tensorflow")
                        if k in facts)


class _Latent(keras.callbacks.Callback):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_train_begin(self, logs=None):
        r = self.recorder
        initial = r.measure(self.model)
        r.initial = {"dead_share_085_init": initial["dead_share_085"]}
        if r.variant.kernel != "float":
            from keras_recu.diagnostics import model_diagnostics

            own = model_diagnostics(self.model, r.reference_tau).values()
            r.initial["dead_share_init"] = _mean([d["dead_share"] for d in own])
            r.initial["quant_error_init"] = _mean([d["quant_error"] for d in own])
        r.histogram(self.model, "start", 0)

    def on_epoch_end(self, epoch, logs=None):
        r = self.recorder
        measured = r.measure(self.model)
        rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        measured["learning_rate"] = float(rate)
        for key, value in measured.items():
            r.latent.setdefault(key, []).append(value)
        middle = max(0, r.epochs // 2 - 1)
        if epoch == middle and epoch != r.epochs - 1:
            r.histogram(self.model, "middle", epoch + 1)
        if epoch == r.epochs - 1:
            r.histogram(self.model, "end", epoch + 1)
