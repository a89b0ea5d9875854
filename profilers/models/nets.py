"""Teachers and students for distillation on small images: VGG (003 Table II sizes), ResNet-18, tiny ViTs.

Every net is a plain nn.Module (images -> logits) built with random init; nothing is downloaded. The ViTs are
torchvision's VisionTransformer with small configurations (ours; 003 uses ViT-B, DeiT and Swin, far too
heavy for a CPU in minutes): "vit-micro" (student, about the parameters of vgg-s3), "vit-small" and "vit-medium" (the ViT teacher of the
pairs study: larger than every student, as 003's teachers are).
"""

from __future__ import annotations

from profilers.errors import unknown_name
from profilers.models.vgg import STUDENTS, TEACHER_CFGS, build_vgg

#: vit id -> (patches per side, layers, heads, hidden width, MLP width)
VITS: dict[str, tuple[int, int, int, int, int]] = {  # 16 tokens: cheap on a CPU
    "vit-micro": (4, 2, 2, 32, 64),
    "vit-small": (4, 4, 4, 128, 256),
    "vit-medium": (4, 6, 4, 192, 384),  # the ViT teacher: 1.8 M parameters, larger than every student (vgg-s8 0.97 M)
}


def known_nets() -> list[str]:
    """Every net id make_net accepts."""

    return sorted([*STUDENTS, *TEACHER_CFGS, "resnet18", *VITS])


def is_vit(name: str) -> bool:
    """Transformer (True) or CNN (False), for the 003 Table I pairs."""
    return name in VITS


def make_net(name: str, num_classes: int = 10, side_px: int = 32, channels: int = 3):
    """A randomly initialised classifier for images of channels x side_px x side_px."""
    import torch.nn as nn


    if name in STUDENTS or name in TEACHER_CFGS:
        return build_vgg(name, num_classes=num_classes, input_size=side_px, in_channels=channels)
    if name == "resnet18":
        import torchvision.models as tvm

        net = tvm.resnet18(weights=None, num_classes=num_classes)
        if channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net
    if name in VITS:
        from torchvision.models import VisionTransformer

        per_side, layers, heads, hidden, mlp = VITS[name]
        patch = max(1, side_px // per_side)
        net = VisionTransformer(image_size=side_px, patch_size=patch, num_layers=layers, num_heads=heads,
                                hidden_dim=hidden, mlp_dim=mlp, num_classes=num_classes)
        if channels != 3:
            net.conv_proj = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        return net
    raise unknown_name("distillation net", name, known_nets())


def classifier_params(net) -> list:
    """Parameters of the task-specific head (003 section IV-D: fine-tune these, freeze the features)."""
    for attr in ("classifier", "fc", "heads"):
        if hasattr(net, attr):
            return list(getattr(net, attr).parameters())
    raise ValueError(f"{type(net).__name__}: no classifier / fc / heads module")
