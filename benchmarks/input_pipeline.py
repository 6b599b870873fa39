"""Decode + augment throughput of the ImageNet input pipeline (keras_recu.app.data.imagenet).

Writes a tree of synthetic JPEGs of ImageNet's typical size (500x375, about
ImageNet's ~110 kB per file at quality 90), then times `StreamBatches` over
it: the train transform (RandomResizedCrop 224 + Lighting + flip +
normalize) and the eval transform (resize 256 + center crop 224), for each
decoder ("tf": tf.data, "pil": PIL threads), on one core (the process pinned
to one CPU, one decoding thread) and on all cores of the machine.

Images/s per core say how many CPU cores keep a GPU fed: a step of B images
every t seconds needs B / t images/s, so B / (t * per-core rate) cores.

    python -m benchmarks.input_pipeline --images 256 --batch 64
    python -m benchmarks.input_pipeline --quick      # a few seconds, for tests

The last line printed is `RESULT {...}`, the results as one JSON object;
`--out FILE.md` also writes them as a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402

QUICK = dict(images=32, batch=8, rounds=1, size=(120, 90))


def write_photo_like_jpegs(root: Path, count: int, size=(500, 375), seed: int = 0, quality: int = 90) -> float:
    """`count` JPEGs in root/train/n0000000 (and 8 in val/) with smooth shapes and grain; returns the mean kB."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    sizes = []
    for split, n in (("train", count), ("val", 8)):
        folder = root / split / "n0000000"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            # A low-resolution random field upsampled (the scene) plus grain:
            # compresses like a photo, unlike pure noise.
            scene = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
            image = Image.fromarray(scene, "RGB").resize((width, height), Image.BICUBIC)
            pixels = np.asarray(image).astype(np.float64) + rng.normal(0, 20, size=(height, width, 3))
            path = folder / f"{k:05d}.JPEG"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, quality=quality)
            sizes.append(path.stat().st_size)
    return float(np.mean(sizes)) / 1000


def time_pass(root: Path, decoder: str, augment: bool, batch: int, workers) -> tuple:
    """(images per wall second, images per CPU second) of one pass over the split, after a warm-up batch.

    CPU seconds are the process's, all its threads together: on a machine
    that other work shares, they measure the pipeline's cost per core where
    wall time would measure its share of the machine.
    """
    from keras_recu.app.data import imagenet

    source = imagenet.FolderSource(root / "train")
    batches = imagenet.StreamBatches(
        source, batch, imagenet.ImageNetTransform(), augment=augment, shuffle=augment, seed=0,
        decoder=decoder, workers=workers,
    )
    batches[0]  # starts the pipeline (threads, tf.data graph) outside the timing
    start, cpu_start = time.perf_counter(), time.process_time()
    images = 0
    # Not the last batch: serving it starts the next epoch's pipeline, a
    # once-per-epoch cost that a real epoch of thousands of batches amortizes.
    for index in range(1, len(batches) - 1):
        images += len(batches[index][1])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    batches.close()
    return images / seconds, images / cpu_seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="training images in the synthetic tree")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="passes per setting; the median is reported")
    parser.add_argument("--decoders", default="tf,pil")
    parser.add_argument("--quick", action="store_true", help="a tiny run for the test suite")
    parser.add_argument("--out", type=Path, help="also write the results as a markdown table here")
    args = parser.parse_args(argv)
    size = (500, 375)
    if args.quick:
        args.images, args.batch, args.rounds, size = QUICK["images"], QUICK["batch"], QUICK["rounds"], QUICK["size"]

    all_cores = sorted(os.sched_getaffinity(0))
    settings = []
    for decoder in args.decoders.split(","):
        for augment in (True, False):
            settings.append((decoder, augment))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kilobytes = write_photo_like_jpegs(root, args.images, size)
        for decoder, augment in settings:
            for cores in ([all_cores[0]], all_cores) if len(all_cores) > 1 else ([all_cores[0]],):
                os.sched_setaffinity(0, cores)
                try:
                    rates = [
                        time_pass(root, decoder, augment, args.batch, workers=len(cores))
                        for _ in range(args.rounds)
                    ]
                finally:
                    os.sched_setaffinity(0, all_cores)
                wall = statistics.median(rate for rate, _ in rates)
                row = {
                    "decoder": decoder,
                    "transform": "train" if augment else "eval",
                    "cores": len(cores),
                    "images_per_s": round(wall, 1),
                    "images_per_s_per_core": round(wall / len(cores), 1),
                    "images_per_cpu_s": round(statistics.median(per_cpu for _, per_cpu in rates), 1),
                    "load_average": harness.loadavg(),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    report = {
        "machine": f"{harness.machine_description()}, shared with other work",
        "image_size": list(size),
        "mean_jpeg_kB": round(kilobytes, 1),
        "images": args.images,
        "batch": args.batch,
        "rounds": args.rounds,
        "results": results,
    }
    if args.out:
        args.out.write_text(markdown(report), encoding="utf-8")
    harness.print_result(report)
    return report


def markdown(report: dict) -> str:
    """The results as the Markdown record (`--out`): what was measured, then one row per setting."""
    header = ["decoder", "transform", "cores", "images/s", "images/s per core", "images/CPU-s", "load"]
    keys = ["decoder", "transform", "cores", "images_per_s", "images_per_s_per_core", "images_per_cpu_s",
            "load_average"]
    return "\n".join([
        "# ImageNet input pipeline: decode + augment throughput",
        "",
        f"Synthetic JPEGs {report['image_size'][0]}x{report['image_size'][1]}, mean "
        f"{report['mean_jpeg_kB']} kB; {report['images']} images, batch {report['batch']}, median of "
        f"{report['rounds']} passes. Machine: {report['machine']}. No GPU: these are CPU figures.",
        "",
        "images/s: wall clock, with the process pinned to `cores` CPUs and as many decoding threads. "
        "images/CPU-s: per second of the process's CPU time (all threads), the cost per core that "
        "other work on a shared machine does not distort. load: the 1-minute load average after the row.",
        "",
        harness.markdown_table(header, [[row[key] for key in keys] for row in report["results"]]),
    ])


if __name__ == "__main__":
    main()
