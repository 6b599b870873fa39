"""The authors' PyTorch ResNet-18 1w1a rows of the ImageNet training-speed record, eager and compiled.

Their model as tests/torch_models.py transcribes it, tau 0.85, with the SGD
step of their main.py (momentum 0.9, weight decay 1e-4 on the conv and fc
weights only), on a batch already on the device; once eager and once under
`torch.compile` (inductor). Called by `imagenet_train.py` (`--rows torch`).
"""

from __future__ import annotations

import argparse

from benchmarks.imagenet_rows import VANILLA_MODEL, Rows, timed

TAU = 0.85


def authors_step(args: argparse.Namespace, compiled: bool, device: str):
    """One of the authors' SGD steps (zero_grad, forward, cross-entropy, backward, step) as a function."""
    import torch

    from tests import torch_models

    torch.manual_seed(0)
    model = torch_models.imagenet_resnet18_1w1a(num_classes=args.classes)
    if args.size != 224:  # their fixed 7x7 average pool fits 224 only
        torch_models.pool_globally_(model)
    model = model.to(device)
    for module in model.modules():
        if isinstance(module, torch_models.BinarizeConv2d):
            module.tau.fill_(TAU)
    model.train()

    def decays(name: str) -> bool:
        return ("conv" in name or "fc" in name) and "alpha" not in name

    named = list(model.named_parameters())
    opt = torch.optim.SGD([{"params": [p for n, p in named if decays(n)], "weight_decay": 1e-4},
                           {"params": [p for n, p in named if not decays(n)], "weight_decay": 0}],
                          lr=0.1, momentum=0.9)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)

    def step() -> None:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device

    return step


def torch_rows(args: argparse.Namespace, rows: Rows) -> None:
    """The eager row, and the compiled one unless `--smoke` (torch.compile on CPU takes minutes)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for compiled in (False,) if args.smoke else (False, True):
        def run(compiled: bool = compiled) -> dict:
            seconds, first = timed(authors_step(args, compiled, device), args.steps, args.warmup)
            return {"images_per_s": round(args.steps * args.batch / seconds, 1),
                    "step_ms": round(1e3 * seconds / args.steps, 2), "first_steps_s": round(first, 1)}

        labels = {"model": VANILLA_MODEL, "engine": "authors-torch" + ("-compile" if compiled else ""),
                  "dtype": "float32", "feed": "device", "batch": args.batch, "size": args.size,
                  "classes": args.classes}
        rows.add(labels, run)
