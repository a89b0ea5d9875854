"""VGG teachers and students of 003 section IV (VGG-11/13/16/19 and 2/3/4/5/8-layer students), 32x32 or 224x224.

Teachers use torchvision's layer configurations (module names match torchvision, so its state_dicts
load). At 224x224 the classifier is torchvision's (7x7 average pool, 4096-4096-classes); at 32x32 it is
the usual CIFAR classifier, global average pool then Linear(512, classes), since five 2x poolings leave
a 1x1 map and torchvision's 25088-wide first layer would be 98% of the parameters for nothing.

Students (003 Table II sizes; "n layers" = n weight layers, VGG's convention: n-1 convs and one linear):
each conv is 3x3 + BN + ReLU, widths double per stage from a base width c, then global average pool and
Linear(last, classes), at both resolutions. Base widths were chosen to match Table II's parameter counts
(num_classes=10): extra small = vgg-s2 (c=107: 4,183 params vs 4,178), small = vgg-s3 (c=28: 15,606 vs
15,978), medium = vgg-s4 (c=26: 62,956 vs 62,474), large = vgg-s5 (c=25: 239,685 vs 247,050), extra
large = vgg-s8 (c=24: 968,482 vs 982,538), all within 3%. 003 does not give the architectures, so the
operation counts differ: our MACs at 32x32 are 18x (s2), 8.6x, 3.9x, 1.4x and 0.83x (s8) Table II's "Ops";
the 224/32 ratio is 49.0 as in 003 (49-52x) because global pooling keeps the classifier size-independent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from profilers.errors import EdgesimError
from profilers.models.registry import SplittableModel, register
from profilers.models.torchvision_models import load_checkpoint

#: torchvision's VGG configurations (int = 3x3 conv width, "M" = 2x2 max-pool)
TEACHER_CFGS: dict[str, list] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _student_cfg(n_layers: int, c: int) -> list:
    """n_layers-1 convs with widths doubling per stage from c (the 8-layer one follows VGG-11's stage pattern)."""
    if n_layers == 8:
        return [c, "M", 2 * c, "M", 4 * c, 4 * c, "M", 8 * c, 8 * c, "M", 8 * c, "M"]
    cfg: list = []
    for i in range(n_layers - 1):
        cfg += [c * 2**i, "M"]
    return cfg


#: student id -> (003 Table II size name, weight layers, base width, Table II params in M, Table II Ops(M) at 32, at 224)
STUDENTS: dict[str, tuple[str, int, int, float, float, float]] = {
    "vgg-s2": ("extra small", 2, 107, 0.004178, 0.163754, 8.015786),
    "vgg-s3": ("small", 3, 28, 0.015978, 0.511818, 25.063242),
    "vgg-s4": ("medium", 4, 26, 0.062474, 1.760906, 86.253194),
    "vgg-s5": ("large", 5, 25, 0.24705, 6.470922, 317.013258),
    "vgg-s8": ("extra large", 8, 24, 0.982538, 24.738314, 1212.054026),
}


def _cfg(name: str) -> list:
    if name in TEACHER_CFGS:
        return TEACHER_CFGS[name]
    if name in STUDENTS:
        _, n, c, *_ = STUDENTS[name]
        return _student_cfg(n, c)
    raise EdgesimError(f"unknown VGG '{name}'; known: {', '.join(sorted([*TEACHER_CFGS, *STUDENTS]))}")


def _side(name: str, input_size) -> int:
    """Square input side from an int or (H, W); VGG here is built for 32 or 224 (any multiple of 32 works), a
    student for any side its poolings leave at least 1 px (16 px for vgg-s5, a lower resolution than 003's)."""
    min_px = 2 ** _cfg(name).count("M") if name in STUDENTS else 32
    if input_size is None:
        return 224
    sizes = [int(s) for s in (input_size if isinstance(input_size, (list, tuple)) else [input_size])]
    if len(set(sizes)) != 1 or sizes[0] < min_px:
        raise EdgesimError(f"VGG input size {input_size}: expected a square side >= {min_px} (003 uses 32 and 224)")
    return sizes[0]


@lru_cache(maxsize=None)
def _vgg_class():
    """The VGG nn.Module class (defined lazily: torch is imported only when a model is built)."""
    import torch.nn as nn

    class VGG(nn.Module):
        """features -> avgpool -> flatten -> classifier, as torchvision's VGG."""

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    return VGG


def build_vgg(name: str, num_classes: int = 10, input_size: int = 32, in_channels: int = 3,
              batch_norm: Optional[bool] = None):
    """A plain nn.Module (features, avgpool, classifier as in torchvision) for a teacher or student of 003."""
    import torch.nn as nn

    cfg = _cfg(name)
    student = name in STUDENTS
    side = _side(name, input_size)
    bn = student if batch_norm is None else batch_norm
    layers: list = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=False))
        c = v
    model = _vgg_class()()
    model.features = nn.Sequential(*layers)
    if student or side < 224:  # CIFAR-style classifier: global average pool, one linear layer
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Linear(c, num_classes))
    else:  # torchvision's ImageNet classifier
        model.avgpool = nn.AdaptiveAvgPool2d(7)
        model.classifier = nn.Sequential(
            nn.Linear(c * 49, 4096), nn.ReLU(inplace=False), nn.Dropout(), nn.Linear(4096, 4096),
            nn.ReLU(inplace=False), nn.Dropout(), nn.Linear(4096, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def vgg_blocks(model) -> tuple[list, list[tuple[str, int]]]:
    """Blocks grouped per VGG stage (convs..., pool) then avgpool, flatten, classifier; split points at the pools."""
    import torch.nn as nn

    blocks: list = []
    points: list[tuple[str, int]] = []
    stage: list = []
    for layer in model.features:
        stage.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*stage))
            stage = []
            points.append((f"pool{len(points) + 1}", len(blocks)))
    if stage:
        blocks.append(nn.Sequential(*stage))
    blocks += [model.avgpool, nn.Flatten(1)]
    linears = [i for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear)]
    start = 0
    for i in linears:  # each linear with the ReLU/Dropout that follow it
        end = linears[linears.index(i) + 1] if i != linears[-1] else len(model.classifier)
        blocks.append(nn.Sequential(*list(model.classifier)[start:end]))
        start = end
    return blocks, points


def _build(name: str, input_size=None, checkpoint: Optional[str] = None, num_classes: int = 10,
           in_channels: int = 3, batch_norm: Optional[bool] = None, shapes_only: bool = False, **_) -> SplittableModel:
    """Build, optionally load a local state_dict (torchvision key names), and cut into stage blocks."""

    import contextlib

    import torch

    if shapes_only and checkpoint is not None:
        raise EdgesimError(f"model {name}: a checkpoint cannot be loaded into a shapes-only (meta) model")
    side = _side(name, input_size if input_size is not None else (32 if name in STUDENTS else 224))
    with torch.device("meta") if shapes_only else contextlib.nullcontext():
        model = build_vgg(name, num_classes=num_classes, input_size=side, in_channels=in_channels,
                          batch_norm=batch_norm)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    blocks, points = vgg_blocks(model)
    return SplittableModel(
        model_id=name,
        blocks=blocks,
        split_points=[("input", 0), *points, ("output", len(blocks))],
        input_shape=(in_channels, side, side),
        shapes_only=shapes_only,
        description=f"{name} at {side}x{side}, {num_classes} classes",
        checkpoint=str(checkpoint) if checkpoint else "random-init",
        extra={"torch_model": model},
    )


def _registrar(name: str, description: str, family: str):
    @register(name, description, family)
    def _builder(input_size=None, checkpoint=None, **kw) -> SplittableModel:
        return _build(name, input_size=input_size, checkpoint=checkpoint, **kw)

    _builder.__doc__ = f"{name}: {description}"
    return _builder


for _name in TEACHER_CFGS:
    _registrar(_name, f"{_name.upper()} (003), torchvision layout; 224x224 default, input_size=32 for CIFAR", "vgg")
for _name, (_size, _n, _c, _p, _, _) in STUDENTS.items():
    _registrar(_name, f"VGG student, {_n} weight layers, base width {_c} (003 Table II '{_size}', "
                      f"{_p} M params); 32x32 default", "vgg")
