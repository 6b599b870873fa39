"""The rows of the ImageNet training-speed record (`imagenet_train.py`): projections, runs and merging.

A row is one engine, model, dtype and feed, with its images/s and what
they project to: minutes per ImageNet epoch (1,281,167 images) and the hours
of the vanilla recipe (200 epochs) and of the two stages (2 x 256), beside
the authors' 28 min per epoch on 2 V100s. A row that failed records its error.

A record can hold the rows of several runs (a GPU session measures only the
rows still missing, `imagenet_train.py --rows ...`): `runs` lists each run's
environment (date, command, device) and JPEG tree, and every row names its
`run`. `merge(old, new)` keeps the old rows, replaces those the new run
measured again (same model, engine, dtype, feed) and refuses to mix devices,
image sizes or smoke runs with real ones. A record written before runs
existed (one environment, one model) is read as a record of one run.

    python -m benchmarks.imagenet_rows OLD.json NEW.json --out MERGED.json
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks import harness

IMAGENET_TRAIN = 1_281_167
AUTHORS_MIN_PER_EPOCH = 28.0  # the paper's ResNet-18 epoch on 2 V100s
AUTHORS_HARDWARE = "2 x V100"
EPOCHS = {"vanilla": 200, "two_stage": 2 * 256}
VANILLA_MODEL = "imagenet_resnet18_1w1a"
#: The engine of the input pipeline's row, which has no model (`model` None).
PIPELINE_ENGINE = "input-pipeline"


class MergeRefused(ValueError):
    """The two records measure different things (device, image size, smoke and real); the message says which."""


def projections(images_per_s: Optional[float]) -> Dict[str, float]:
    """Minutes per ImageNet epoch and hours of the two recipes at `images_per_s`."""
    if not images_per_s:
        return {}
    minutes = IMAGENET_TRAIN / images_per_s / 60
    return {"min_per_epoch": round(minutes, 2),
            **{f"{name}_hours": round(minutes * epochs / 60, 1) for name, epochs in EPOCHS.items()}}


def authors() -> Dict[str, Any]:
    """The authors' reported epoch and what it projects to, for the record."""
    return {"min_per_epoch": AUTHORS_MIN_PER_EPOCH, "hardware": AUTHORS_HARDWARE,
            **{f"{n}_hours": round(AUTHORS_MIN_PER_EPOCH * e / 60, 1) for n, e in EPOCHS.items()}}


def timed(step: Callable[[], Any], steps: int, warmup: int) -> Tuple[float, float]:
    """(seconds of `steps` calls of `step`, seconds of the `warmup` calls before them)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start, first


class Rows:
    """The rows of one run; after each row, `record(rows)` is written to `partial` (a run cut by a deadline keeps them).

    `record` makes the whole record of the rows so far (merged, when the run
    merges), so that a cut run leaves a record as complete as its rows, marked
    `"partial": true`.
    """

    def __init__(self, partial: Optional[str] = None,
                 record: Callable[[List[Dict[str, Any]]], Dict[str, Any]] = lambda rows: {"rows": rows}) -> None:
        self.rows: List[Dict[str, Any]] = []
        self.partial = partial
        self.record = record

    def add(self, labels: Dict[str, Any], function: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """Run `function() -> dict` into a row labelled `labels` (model, engine, dtype, feed, batch, ...)."""
        started = time.perf_counter()
        try:
            result = function()
        except Exception as error:  # noqa: BLE001  the failure is the row's result
            traceback.print_exc()
            result = {"error": " ".join(f"{type(error).__name__}: {error}".split())[:500]}
        entry = {**labels, "run": 0, **result, **projections(result.get("images_per_s")),
                 "wall_s": round(time.perf_counter() - started, 1)}
        self.rows.append(entry)
        if self.partial:
            harness.write_json(self.partial, {**self.record(self.rows), "partial": True}, indent=1)
        print(f"[{harness.now()}] {entry}", flush=True)
        return entry


def key(row: Dict[str, Any]) -> Tuple[Optional[str], str, str, str]:
    """What a row measures: (model, engine, dtype, feed); the pipeline's model is None."""
    return row.get("model", VANILLA_MODEL), row["engine"], row["dtype"], row["feed"]


def bf16_speedups(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """Per model, keras_recu's mixed_bfloat16 images/s over its float32 ones, batches on the device."""
    speeds = {key(r): r.get("images_per_s") for r in rows}
    out = {}
    for model in sorted({key(r)[0] for r in rows} - {None}):
        f32, bf16 = (speeds.get((model, "keras_recu-jax", d, "device")) for d in ("float32", "mixed_bfloat16"))
        if f32 and bf16:
            out[model] = round(bf16 / f32, 2)
    return out


def as_runs(record: Dict[str, Any]) -> Dict[str, Any]:
    """`record` in the form of several runs: a record of before (one environment) becomes one run."""
    if "runs" in record:
        return record
    run = {**record["environment"], "jpeg_tree": record.get("jpeg_tree")}
    defaults = {"model": record.get("model", VANILLA_MODEL), "size": record.get("size"),
                "classes": record.get("classes")}
    rows = [{**defaults, **row, "run": 0} for row in record["rows"]]
    rows = [{**row, "model": None} if row["engine"] == PIPELINE_ENGINE else row for row in rows]
    kept = {k: v for k, v in record.items() if k not in ("environment", "jpeg_tree", "rows", "model", "classes",
                                                         "bf16_speedup")}
    return {**kept, "models": {defaults["model"]: {"recipe": "imagenet"}}, "rows": rows, "runs": [run]}


def merge(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """The old record's rows and runs, then the new run's; a row measured again is replaced by the new one."""
    old, new = as_runs(old), as_runs(new)
    devices = {run.get("device") for run in old["runs"] + new["runs"]}
    for field in ("smoke", "size"):
        if old.get(field) != new.get(field):
            raise MergeRefused(f"the records differ in {field!r} ({old.get(field)!r} and {new.get(field)!r}): "
                               "their rows do not measure the same thing.")
    if len(devices) > 1:
        raise MergeRefused(f"the records were measured on different devices ({', '.join(map(str, devices))}).")
    offset = len(old["runs"])
    fresh = [{**row, "run": row["run"] + offset} for row in new["rows"]]
    replaced = {key(row) for row in fresh}
    rows = [row for row in old["rows"] if key(row) not in replaced] + fresh
    models = {**old.get("models", {}), **new.get("models", {})}
    return finish({**old, **{k: v for k, v in new.items() if k not in ("rows", "runs")}, "models": models},
                  rows, old["runs"] + new["runs"])


def finish(record: Dict[str, Any], rows: List[Dict[str, Any]], runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """`record` with `rows`, `runs` and what follows from them (the bf16 speed-ups, the commands); not partial."""
    record = {k: v for k, v in record.items() if k != "partial"}
    return {**record, "rows": rows, "runs": runs, "commands": [run.get("command") for run in runs],
            "bf16_speedup": bf16_speedups(rows), "authors": authors(), "imagenet_train_images": IMAGENET_TRAIN,
            "environment": runs[-1]}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="merge a run of benchmarks.imagenet_train into an older record")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the merged record (may be OLD itself)")
    args = p.parse_args(argv)
    try:
        merged = merge(json.loads(args.old.read_text()), json.loads(args.new.read_text()))
    except MergeRefused as error:
        print(f"not merged: {error}")
        return 2
    harness.write_json(args.out, merged, indent=1)
    print(f"{args.out}: {len(merged['rows'])} rows of {len(merged['runs'])} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
