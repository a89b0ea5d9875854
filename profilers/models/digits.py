"""Registry entries for the DMD digits demo's edge and cloud models, so the profilers can measure them.

Importing this module registers "dmd-digits-edge" and "dmd-digits-cloud"; `checkpoint=` loads the trained
weights the demo saves (edge.safetensors, cloud.safetensors), else weights are random.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional

from profilers.errors import EdgesimError
from profilers.models.registry import SplittableModel, register

CLOUD_SIDE_PX = 32


def edge_net(n_classes: int = 2):
    """Edge model: average pool to 4x4 (16 features, any input side) -> Linear(16, 32) + ReLU ('hidden') -> Linear(32, classes)."""
    import torch.nn as nn

    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten()),
        hidden=nn.Sequential(nn.Linear(16, 32), nn.ReLU()),
        head=nn.Linear(32, n_classes),
    ))


def cloud_net(n_classes: int = 2):
    """Cloud model: resize to 32x32 (8x8 digits or 28x28 MNIST), three conv blocks (16, 32, 64 channels), FC 128, head."""
    import torch.nn as nn

    def conv(cin: int, cout: int):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(OrderedDict(
        upsample=nn.Upsample(size=(CLOUD_SIDE_PX, CLOUD_SIDE_PX), mode="bilinear", align_corners=False),
        conv1=conv(1, 16),
        conv2=conv(16, 32),
        conv3=conv(32, 64),
        fc=nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU()),
        head=nn.Linear(128, n_classes),
    ))


def load_safetensors_state(model, checkpoint: str | Path) -> None:
    """Load a safetensors state_dict strictly into model; one-line error naming the file."""
    from safetensors.torch import load_file

    path = Path(checkpoint)
    if not path.is_file():
        raise EdgesimError(f"checkpoint {path}: file not found (expected a .safetensors file from `edgesim dmd demo`)")
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:
        raise EdgesimError(f"checkpoint {path}: does not fit the model: {str(exc).splitlines()[0]}") from None


def _classes_in(checkpoint: Optional[str], default: int) -> int:
    """Number of classes from the checkpoint's head.weight rows (2 binary, 10 multiclass)."""
    if not checkpoint or not Path(checkpoint).is_file():
        return default
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt") as f:
            return int(f.get_slice("head.weight").get_shape()[0]) if "head.weight" in f.keys() else default
    except Exception:
        return default


def _shape(input_size) -> tuple[int, int, int]:
    """(1, S, S) for an input side S (default 8: scikit-learn's digits; 28: MNIST)."""
    side = int(input_size[-1] if isinstance(input_size, (list, tuple)) else input_size or 8)
    if side < 4:
        raise EdgesimError(f"DMD demo model input size {input_size}: expected a side of at least 4 pixels")
    return (1, side, side)


def _splittable(model_id: str, net, input_shape, description: str, checkpoint: Optional[str]) -> SplittableModel:
    """Blocks are the Sequential's named children; split points after each."""
    if checkpoint:
        load_safetensors_state(net, checkpoint)
    net.eval()
    names = [name for name, _ in net.named_children()]
    blocks = list(net.children())
    points = [("input", 0)] + [(names[i], i + 1) for i in range(len(blocks) - 1)] + [("output", len(blocks))]
    return SplittableModel(model_id, blocks, points, input_shape, description=description, checkpoint=str(checkpoint or "random-init"))


@register("dmd-digits-edge", "DMD demo edge model: 4x4-pooled digits, one 32-wide hidden layer (000 small-model role)", "dmd")
def build_edge(input_size=None, checkpoint: Optional[str] = None, n_classes: int = 2, **_kw) -> SplittableModel:
    """The demo's edge model as a SplittableModel (input 1x8x8, or 1xSxS with input_size=S, e.g. 28 for MNIST)."""
    net = edge_net(_classes_in(checkpoint, n_classes))
    return _splittable("dmd-digits-edge", net, _shape(input_size), "DMD digits edge model", checkpoint)


@register("dmd-digits-cloud", "DMD demo cloud model: 3-layer CNN on digits upsampled to 32x32 (000 large-model role)", "dmd")
def build_cloud(input_size=None, checkpoint: Optional[str] = None, n_classes: int = 2, **_kw) -> SplittableModel:
    """The demo's cloud model as a SplittableModel (input 1x8x8 or 1xSxS, resized to 32x32 inside)."""
    net = cloud_net(_classes_in(checkpoint, n_classes))
    return _splittable("dmd-digits-cloud", net, _shape(input_size), "DMD digits cloud model", checkpoint)
