"""The authors' recipes as data: the defaults `keras-recu train --recipe` starts from.

A recipe only sets defaults: every value is a setting of its own
(`keras_recu.app.config.TrainConfig`), any flag given overrides it, and a
run's config.json records them all.
"""

from __future__ import annotations

from typing import Any, Dict

__all__ = ["AUTHORS_IMAGENET_DECAY", "LR_SCHEDULES", "OPTIMIZERS", "RECIPES"]

OPTIMIZERS = ("sgd", "adam")
#: "step": linear warm-up and cosine decay to 0, updated every step;
#: "epoch": the authors' main.py, held per epoch (keras_recu.optimizers.EpochWarmupCosine).
LR_SCHEDULES = ("step", "epoch")
#: The authors' decay rule on ImageNet: only parameters whose PyTorch name
#: contains "conv" or "fc" (the binary kernels and their alpha, the stem
#: conv, fc; not BatchNorm, the 1x1 downsample convs, the learnable biases or
#: PReLU). The ImageNet builders' layer names follow the PyTorch modules', so
#: the rule reads the same on Keras variable paths.
AUTHORS_IMAGENET_DECAY = ("conv", "fc")
#: `--recipe`: the defaults of every setting the authors' recipes fix; any
#: flag given overrides them.
RECIPES: Dict[str, Dict[str, Any]] = {
    # TrainConfig's own defaults: the paper's CIFAR recipe.
    "cifar": {},
    # imagenet/run.sh: SGD 0.1, momentum 0.9, batch 512, cosine with warm-up,
    # weight decay 1e-4 on conv and fc, 200 epochs, tau 0.85 -> 0.99.
    "imagenet": dict(
        model="imagenet_resnet18_1w1a", dataset="imagenet2012", epochs=200, batch_size=512,
        optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
        weight_decay_paths=AUTHORS_IMAGENET_DECAY, warmup_epochs=5, lr_schedule="epoch", verify_samples=100,
    ),
    # imagenet_two-stage/run.sh: Adam 1e-3, weight decay 0, batch 512, 256
    # epochs, cosine with warm-up, tau 0.85 -> 0.99, distillation from a
    # pretrained float teacher (theirs: torchvision's ResNet-34, which
    # keras.applications lacks; ResNet50 is the nearest it has).
    "two-stage": dict(
        model="imagenet_resnet18_two_stage", dataset="imagenet2012", epochs=256, batch_size=512,
        optimizer="adam", learning_rate=1e-3, weight_decay=0.0, weight_decay_paths=AUTHORS_IMAGENET_DECAY,
        warmup_epochs=5, lr_schedule="epoch", verify_samples=100, stage=1, teacher="ResNet50",
    ),
}
