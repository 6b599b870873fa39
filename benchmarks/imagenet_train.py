"""ImageNet training speed of ResNet-18 1w1a, the way `keras-recu train` trains it (both recipes).

On the JAX backend, at `--size` (224) and `--batch` (256), in row groups
(`--rows`, all by default):

* `resnet18`: `keras_recu`'s `imagenet_resnet18_1w1a`, compiled with the
  imagenet recipe's optimizer (`keras_recu.app.build.optimizer`: L2SGD,
  momentum 0.9, the authors' weight decay on conv and fc), one jitted
  `train_on_batch` per batch;
* `two-stage`: stage 2 of the two-stage recipe as `keras-recu train
  --recipe two-stage --stage 2` builds it (`keras_recu.app.build.build_model`):
  `imagenet_resnet18_two_stage(binary_weights=True)` in a `Distiller` with the
  recipe's float teacher (keras.applications ResNet50, random weights: the
  GPU machine has no network, and the speed does not depend on them; built
  under the row's dtype policy), the DistributionLoss, L2Adam, accuracy
  metric; 1000 classes, as the teacher's;
* each in float32 and under `mixed_bfloat16` (`--dtypes`), with the batch
  already on the device (the model's ceiling) and fed by the project's input
  pipeline (`--feeds device,pil`);
* `pipeline`: the input pipeline alone: a synthetic JPEG tree of
  ImageNet-sized images (`write_synthetic_jpeg_tree`), streamed by
  `FolderSource` + `StreamBatches` (decoder "pil", the authors' train
  transform, one thread per core);
* `torch`: the authors' PyTorch ResNet-18 1w1a, eager and under
  `torch.compile` (`imagenet_torch.py`).

A row that fails records its error message instead of a speed. The models
(as the recipes build them): `imagenet_models.py`. Rows,
projections (min per epoch, 200 and 2 x 256 epochs) and merging:
`imagenet_rows.py`. `--merge OLD` writes OLD's rows with this run's (rows
measured again replaced), each row naming its run (date, command, device).

    python -m benchmarks.imagenet_train --json benchmarks/results/imagenet-train-h200.json
    python -m benchmarks.imagenet_train --rows two-stage --merge benchmarks/results/imagenet-train-h200.json --json OUT.json
    python -m benchmarks.imagenet_train --smoke --json /tmp/smoke.json   # CPU, tiny, seconds

The last line printed is `RESULT {...}`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.imagenet_models import (TINY_TEACHER, TWO_STAGE_MODEL, two_stage_classes, two_stage_model,  # noqa: E402
                                        vanilla_model)
from benchmarks.imagenet_rows import PIPELINE_ENGINE, VANILLA_MODEL, MergeRefused, Rows, finish, merge, timed  # noqa: E402

ROW_GROUPS = ("pipeline", "resnet18", "two-stage", "torch")
FEEDS = ("device", "pil")
SMOKE = dict(batch=4, size=32, steps=2, warmup=1, images=24, image_size=(48, 40), classes=10, teacher=TINY_TEACHER)


def loss_of(result) -> float:
    """The loss of `train_on_batch`'s result (a list when the model has metrics)."""
    return float(result[0] if isinstance(result, (list, tuple)) else result)


def keras_on_device(args, model, classes: int) -> dict:
    import jax

    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((args.batch, args.size, args.size, 3), dtype=np.float32))
    y = jax.device_put(rng.integers(0, classes, size=(args.batch,)).astype(np.int32))
    seconds, first = timed(lambda: model.train_on_batch(x, y), args.steps, args.warmup)
    loss = loss_of(model.train_on_batch(x, y))
    return {"images_per_s": round(args.steps * args.batch / seconds, 1), "step_ms": round(1e3 * seconds / args.steps, 2),
            "first_steps_s": round(first, 1), "loss_finite": bool(np.isfinite(loss))}


def stream(args, root: Path):
    from keras_recu.app.data import imagenet

    source = imagenet.FolderSource(root / "train")
    return imagenet.StreamBatches(source, args.batch, imagenet.ImageNetTransform(image_size=args.size), augment=True,
                                  shuffle=True, seed=0, decoder="pil", workers=args.workers)


def pipeline_alone(args, root: Path) -> dict:
    batches = stream(args, root)
    batches[0]  # threads started outside the timing
    count = len(batches) - 1  # not the last: it starts the next epoch's pipeline
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(1, count):
        batches[i]
    seconds = time.perf_counter() - start
    images = (count - 1) * args.batch
    return {"images_per_s": round(images / seconds, 1), "cpu_s_per_image_ms": round(1e3 * (time.process_time() - cpu) / images, 2),
            "workers": args.workers}


def keras_fed(args, model, root: Path) -> dict:
    batches = stream(args, root)
    x, y = batches[0]
    model.train_on_batch(x, y)
    count = len(batches) - 1
    start = time.perf_counter()
    for i in range(1, count):
        x, y = batches[i]
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    return {"images_per_s": round((count - 1) * args.batch / seconds, 1),
            "waited_s": round(batches.wait_seconds, 2), "seconds": round(seconds, 2), "workers": args.workers}


def keras_rows(args, rows: Rows, group: str, root: Path) -> None:
    """The rows of one model (`group`: "resnet18" or "two-stage"), every dtype policy and feed."""
    import keras

    two_stage = group == "two-stage"
    classes = two_stage_classes(args) if two_stage else args.classes
    labels = {"model": TWO_STAGE_MODEL if two_stage else VANILLA_MODEL, "engine": "keras_recu-jax",
              "batch": args.batch, "size": args.size, "classes": classes}
    if two_stage:
        labels.update(stage=2, teacher=args.teacher + ("" if args.teacher.endswith(".keras") else " (random weights)"))
    for policy in args.dtypes:
        try:
            model = two_stage_model(args, policy) if two_stage else vanilla_model(args, policy)
        except Exception as error:  # noqa: BLE001  the failure is the row's result
            message = " ".join(f"{type(error).__name__}: {error}".split())[:500]
            rows.add({**labels, "dtype": policy, "feed": args.feeds[0]}, lambda: {"error": message})
            continue
        for feed in args.feeds:
            measure = (lambda: keras_on_device(args, model, classes)) if feed == "device" else (
                lambda: keras_fed(args, model, root))
            rows.add({**labels, "dtype": policy, "feed": feed}, measure)
        model = None
        keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")


def jpeg_tree(args, root: Path) -> dict:
    """The synthetic JPEG tree the pipeline rows read (written unless `root` holds one); what it holds."""
    from keras_recu.app.data import write_synthetic_jpeg_tree

    started = time.perf_counter()
    sizes = [SMOKE["image_size"]] if args.smoke else [(400, 350), (500, 375), (375, 500), (333, 300)]
    if not (root / "train").exists():
        per_class = 8
        write_synthetic_jpeg_tree(root, classes=max(1, args.images // per_class), per_class=per_class, size=sizes,
                                  val_per_class=0)
    files = sorted((root / "train").rglob("*.JPEG"))
    tree = {"images": len(files), "mean_kB": round(float(np.mean([f.stat().st_size for f in files])) / 1e3, 1),
            "sizes": sizes, "written_s": round(time.perf_counter() - started, 1)}
    print(f"[{harness.now()}] jpeg tree {tree}", flush=True)
    return tree


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", default=",".join(ROW_GROUPS), help=f"row groups, comma-separated: {', '.join(ROW_GROUPS)}")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000, help="classes of the vanilla and torch rows")
    p.add_argument("--steps", type=int, default=30, help="timed steps per on-device row")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument("--images", type=int, default=4096, help="JPEGs in the synthetic tree")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding threads")
    p.add_argument("--dtypes", default="float32,mixed_bfloat16")
    p.add_argument("--feeds", default=",".join(FEEDS), help="device (batches on the device), pil (the pipeline)")
    p.add_argument("--teacher", help="two-stage teacher: a keras.applications name (default: the recipe's), "
                                     f"a .keras file, or {TINY_TEACHER!r} (one layer: the smoke run's)")
    p.add_argument("--no-torch", action="store_true", help="leave out the torch rows (as --rows without torch)")
    p.add_argument("--data", help="folder of the JPEG tree (default: a temporary one)")
    p.add_argument("--merge", type=Path, help="an earlier record whose rows the written record keeps")
    p.add_argument("--json", help="write the record here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps: a CPU check of every path")
    args = p.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            if name != "image_size" and not (name == "teacher" and args.teacher):
                setattr(args, name, value)
    if args.teacher is None:
        from keras_recu.app.config import TrainConfig

        args.teacher = TrainConfig.for_recipe("two-stage").teacher
    args.rows = [g for g in args.rows.split(",") if g and not (args.no_torch and g == "torch")]
    args.dtypes, args.feeds = args.dtypes.split(","), args.feeds.split(",")
    unknown = sorted(set(args.rows) - set(ROW_GROUPS)) + sorted(set(args.feeds) - set(FEEDS))
    if unknown:
        p.error(f"unknown row group or feed {', '.join(unknown)}; known: {', '.join(ROW_GROUPS + FEEDS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not harness.tensorflow_imported():
        harness.hide_tensorflow()  # as on the GPU machine, which has no TensorFlow
    import jax

    from benchmarks.imagenet_torch import torch_rows

    device = harness.device_description("jax")
    old = json.loads(args.merge.read_text()) if args.merge else None
    record = {"benchmark": "imagenet_train", "size": args.size, "batch": args.batch, "smoke": args.smoke,
              "models": {VANILLA_MODEL: {"recipe": "imagenet"}, TWO_STAGE_MODEL: {"recipe": "two-stage", "stage": 2}}}
    if old is not None:  # refused before anything is measured
        try:
            merge(old, finish(dict(record), [], [{"device": device}]))
        except MergeRefused as error:
            print(f"--merge {args.merge}: {error}")
            return 2
    # The run's environment as it starts: a run cut by its deadline leaves a record that names it.
    run = harness.environment(None, jax_devices=[str(d) for d in jax.devices()], machine=harness.machine_description(),
                              device=device, rows=args.rows, jpeg_tree=None)

    def complete(measured: list) -> dict:
        this = finish(record, measured, [run])
        return merge(old, this) if old is not None else this

    rows = Rows(partial=args.json, record=complete)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data or scratch)
        if "pipeline" in args.rows or "pil" in args.feeds and {"resnet18", "two-stage"} & set(args.rows):
            run["jpeg_tree"] = jpeg_tree(args, root)
        if "pipeline" in args.rows:
            rows.add({"model": None, "engine": PIPELINE_ENGINE, "dtype": "uint8->float32", "feed": "pil",
                      "batch": args.batch, "size": args.size}, lambda: pipeline_alone(args, root))
        for group in ("resnet18", "two-stage"):
            if group in args.rows:
                keras_rows(args, rows, group, root)
    if "torch" in args.rows:
        torch_rows(args, rows)
    record = complete(rows.rows)
    if args.json:
        harness.write_json(args.json, record, indent=1)
    harness.print_result(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
