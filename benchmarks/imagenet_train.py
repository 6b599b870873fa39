"""ImageNet training speed of ResNet-18 1w1a, the way `keras-recu train --recipe imagenet` trains.

On the JAX backend, at `--size` (224) and `--batch` (256):

* `keras_recu`'s `imagenet_resnet18_1w1a`, compiled with the imagenet
  recipe's optimizer (`keras_recu.app.build.optimizer`: L2SGD, momentum 0.9,
  the authors' weight decay on conv and fc), one jitted `train_on_batch` per
  batch, in float32 and under `mixed_bfloat16`: with the batch already on the
  device (the model's ceiling), and fed by the project's input pipeline;
* the input pipeline alone: a synthetic JPEG tree of ImageNet-sized images
  (`write_synthetic_jpeg_tree`), streamed by `FolderSource` + `StreamBatches`
  (decoder "pil", the authors' train transform, one thread per core);
* the authors' PyTorch ResNet-18 1w1a (tests/torch_models.py) with their SGD
  step (momentum 0.9, weight decay 1e-4), eager and under `torch.compile`.

A row that fails records its error message instead of a speed. From each
speed: minutes per ImageNet epoch (1,281,167 images), the projected 200
epochs of the vanilla recipe and 2 x 256 of the two stages (at the same
speed), beside the authors' 28 min per epoch on 2 V100s.

    python -m benchmarks.imagenet_train --json benchmarks/results/imagenet-train-h200.json
    python -m benchmarks.imagenet_train --smoke --json /tmp/smoke.json   # CPU, tiny, seconds

The last line printed is `RESULT {...}`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402

IMAGENET_TRAIN = 1_281_167
AUTHORS_MIN_PER_EPOCH = 28.0  # the paper's ResNet-18 epoch on 2 V100s
PARTIAL = None  # where `row` writes the rows so far (the --json path, until the record replaces it)
EPOCHS = {"vanilla": 200, "two_stage": 2 * 256}
SMOKE = dict(batch=4, size=32, steps=2, warmup=1, images=24, image_size=(48, 40), classes=10)


def projections(images_per_s):
    """Minutes per ImageNet epoch and hours of the two recipes at `images_per_s`."""
    if not images_per_s:
        return {}
    minutes = IMAGENET_TRAIN / images_per_s / 60
    return {"min_per_epoch": round(minutes, 2),
            **{f"{name}_hours": round(minutes * epochs / 60, 1) for name, epochs in EPOCHS.items()}}


def timed(step, steps: int, warmup: int):
    """Images/s is computed by the caller; this returns (seconds of `steps` calls, first-call seconds)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start, first


def row(rows, engine: str, dtype: str, feed: str, batch: int, function):
    """Run `function() -> dict` into a row; a failure is recorded as its message."""
    started = time.perf_counter()
    try:
        result = function()
    except Exception as error:  # noqa: BLE001  the failure is the row's result
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"[:500]}
    entry = {"engine": engine, "dtype": dtype, "feed": feed, "batch": batch, **result,
             **projections(result.get("images_per_s")), "wall_s": round(time.perf_counter() - started, 1)}
    rows.append(entry)
    if PARTIAL:  # a run stopped by its deadline keeps the rows it finished
        harness.write_json(PARTIAL, {"partial": True, "rows": rows}, indent=1)
    print(f"[{harness.now()}] {entry}", flush=True)


def keras_model(args, policy: str):
    """imagenet_resnet18_1w1a compiled as the imagenet recipe compiles it, under `policy`."""
    import keras

    from keras_recu import models
    from keras_recu.app.build import optimizer
    from keras_recu.app.config import TrainConfig

    keras.config.set_dtype_policy(policy)
    config = TrainConfig.for_recipe("imagenet", batch_size=args.batch)
    model = models.get("imagenet_resnet18_1w1a")(
        input_shape=(args.size, args.size, 3), num_classes=args.classes, tau=config.tau_min)
    model.compile(optimizer=optimizer(config, steps_per_epoch=IMAGENET_TRAIN // args.batch),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    return model


def device_batch(args):
    import jax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.size, args.size, 3), dtype=np.float32)
    y = rng.integers(0, args.classes, size=(args.batch,)).astype(np.int32)
    return jax.device_put(x), jax.device_put(y)


def keras_on_device(args, model):
    x, y = device_batch(args)
    seconds, first = timed(lambda: model.train_on_batch(x, y), args.steps, args.warmup)
    loss = float(model.train_on_batch(x, y))
    return {"images_per_s": round(args.steps * args.batch / seconds, 1), "step_ms": round(1e3 * seconds / args.steps, 2),
            "first_steps_s": round(first, 1), "loss_finite": bool(np.isfinite(loss))}


def stream(args, root: Path):
    from keras_recu.app.data import imagenet

    source = imagenet.FolderSource(root / "train")
    return imagenet.StreamBatches(source, args.batch, imagenet.ImageNetTransform(), augment=True, shuffle=True,
                                  seed=0, decoder="pil", workers=args.workers)


def pipeline_alone(args, root: Path):
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


def keras_fed(args, model, root: Path):
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


def torch_rows(args, rows):
    import torch

    from tests import torch_models

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for compiled in (False,) if args.smoke else (False, True):  # torch.compile on CPU takes minutes
        name = "authors-torch" + ("-compile" if compiled else "")

        def run(compiled=compiled):
            torch.manual_seed(0)
            model = torch_models.imagenet_resnet18_1w1a(num_classes=args.classes)
            if args.size != 224:  # their fixed 7x7 average pool fits 224 only
                torch_models.pool_globally_(model)
            model = model.to(device)
            for module in model.modules():
                if isinstance(module, torch_models.BinarizeConv2d):
                    module.tau.fill_(0.85)
            model.train()
            # Their main.py: SGD, momentum 0.9, weight decay 1e-4 on conv and fc weights only.
            decay = [p for n, p in model.named_parameters() if ("conv" in n or "fc" in n) and "alpha" not in n]
            rest = [p for n, p in model.named_parameters() if not (("conv" in n or "fc" in n) and "alpha" not in n)]
            opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0}],
                                  lr=0.1, momentum=0.9)
            forward = torch.compile(model) if compiled else model
            x = torch.randn(args.batch, 3, args.size, args.size, device=device)
            y = torch.randint(0, args.classes, (args.batch,), device=device)

            def step():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(forward(x), y)
                loss.backward()
                opt.step()
                loss.item()

            seconds, first = timed(step, args.steps, args.warmup)
            return {"images_per_s": round(args.steps * args.batch / seconds, 1),
                    "step_ms": round(1e3 * seconds / args.steps, 2), "first_steps_s": round(first, 1)}

        row(rows, name, "float32", "device", args.batch, run)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=30, help="timed steps per on-device row")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument("--images", type=int, default=4096, help="JPEGs in the synthetic tree")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding threads")
    p.add_argument("--dtypes", default="float32,mixed_bfloat16")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--data", help="folder of the JPEG tree (default: a temporary one)")
    p.add_argument("--json", help="write the record here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps: a CPU check of every path")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if key != "image_size":
                setattr(args, key, value)
    if not harness.tensorflow_imported():
        harness.hide_tensorflow()  # as on the GPU machine, which has no TensorFlow
    import jax
    import keras

    from keras_recu.app.data import write_synthetic_jpeg_tree

    global PARTIAL
    PARTIAL = args.json
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data or scratch)
        per_class = 8
        classes = max(1, args.images // per_class)
        started = time.perf_counter()
        sizes = [SMOKE["image_size"]] if args.smoke else [(400, 350), (500, 375), (375, 500), (333, 300)]
        if not (root / "train").exists():
            write_synthetic_jpeg_tree(root, classes=classes, per_class=per_class, size=sizes, val_per_class=0)
        files = sorted((root / "train").rglob("*.JPEG"))
        jpeg = {"images": len(files), "mean_kB": round(float(np.mean([f.stat().st_size for f in files])) / 1e3, 1),
                "sizes": sizes, "written_s": round(time.perf_counter() - started, 1)}
        print(f"[{harness.now()}] jpeg tree {jpeg}", flush=True)
        row(rows, "input-pipeline", "uint8->float32", "pil", args.batch, lambda: pipeline_alone(args, root))
        for policy in args.dtypes.split(","):
            model = None
            try:
                model = keras_model(args, policy)
            except Exception as error:  # noqa: BLE001
                message = f"{type(error).__name__}: {error}"[:500]
                row(rows, "keras_recu-jax", policy, "device", args.batch, lambda: {"error": message})
                continue
            row(rows, "keras_recu-jax", policy, "device", args.batch, lambda: keras_on_device(args, model))
            row(rows, "keras_recu-jax", policy, "pil", args.batch, lambda: keras_fed(args, model, root))
            model = None
            keras.backend.clear_session()
        keras.config.set_dtype_policy("float32")
    if not args.no_torch:
        torch_rows(args, rows)
    speeds = {(r["engine"], r["dtype"], r["feed"]): r.get("images_per_s") for r in rows}
    f32, bf16 = (speeds.get(("keras_recu-jax", d, "device")) for d in ("float32", "mixed_bfloat16"))
    record = {
        "benchmark": "imagenet_train", "model": "imagenet_resnet18_1w1a", "size": args.size, "batch": args.batch,
        "classes": args.classes, "smoke": args.smoke, "jpeg_tree": jpeg, "rows": rows,
        "bf16_speedup": round(bf16 / f32, 2) if f32 and bf16 else None,
        "authors": {"min_per_epoch": AUTHORS_MIN_PER_EPOCH, "hardware": "2 x V100",
                    **{f"{n}_hours": round(AUTHORS_MIN_PER_EPOCH * e / 60, 1) for n, e in EPOCHS.items()}},
        "imagenet_train_images": IMAGENET_TRAIN,
        "environment": harness.environment(None, jax_devices=[str(d) for d in jax.devices()],
                                           machine=harness.machine_description()),
    }
    if args.json:
        harness.write_json(args.json, record, indent=1)
    harness.print_result(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
