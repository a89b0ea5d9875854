"""Torchvision image classifiers of 002 section 2 (DenseNet-169/-201, ResNet-152, Inception-v3) cut into blocks.

Weights are random unless a local checkpoint is given: split-point sizes and FLOPs do not depend on
the weights, and latency of dense convolutions barely does. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Sequence

from profilers.errors import EdgesimError
from profilers.models.registry import SplittableModel, register


def read_state_dict(checkpoint: str, drop_prefixes: Sequence[str] = ()) -> dict:
    """A local state_dict (torch.load weights_only or .safetensors), 'module.' prefixes removed; one-line error otherwise."""
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise EdgesimError(f"checkpoint {path}: file not found (give a local state_dict .pt/.pth or .safetensors)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle refused, wrong format
        raise EdgesimError(f"checkpoint {path}: cannot read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EdgesimError(f"checkpoint {path}: expected a state_dict (mapping of tensor names), got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(tuple(drop_prefixes))}


def load_checkpoint(model, checkpoint: str, drop_prefixes: Sequence[str] = ()) -> None:
    """Load a local state_dict (torch.load weights_only or .safetensors) into model; one-line error otherwise."""
    path = Path(checkpoint)
    state = read_state_dict(checkpoint, drop_prefixes)
    missing, unexpected = [], []
    try:
        result = model.load_state_dict(state, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    except RuntimeError as exc:  # shape mismatch
        raise EdgesimError(f"checkpoint {path}: does not fit the model: {str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise EdgesimError(f"checkpoint {path}: does not fit the model ({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {what})")


def _input_shape(input_size: Optional[Sequence[int]], default: int) -> tuple[int, int, int]:
    """C, H, W of the input; input_size is (H, W) or a single side."""
    if input_size is None:
        return (3, default, default)
    sizes = [int(s) for s in (input_size if isinstance(input_size, (list, tuple)) else [input_size])]
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise EdgesimError(f"input size {input_size}: expected H,W with positive integers")
    return (3, sizes[0], sizes[1])


def _construct(builder, shapes_only: bool, **kwargs):
    """Call a torchvision builder with random init, on the meta device when only shapes are wanted."""
    import torch

    ctx = torch.device("meta") if shapes_only else contextlib.nullcontext()
    with ctx:
        model = builder(weights=None, **kwargs)
    return model.eval()


def _finish(model_id, model, blocks, split_points, input_shape, description, checkpoint, shapes_only, drop=()):
    """Load the checkpoint, freeze for inference and wrap as a SplittableModel with input/output points."""
    if checkpoint is not None:
        if shapes_only:
            raise EdgesimError(f"model {model_id}: a checkpoint cannot be loaded into a shapes-only (meta) model")
        load_checkpoint(model, checkpoint, drop)
    for block in blocks:
        block.eval()
        for p in block.parameters():
            p.requires_grad_(False)
    points = [("input", 0), *split_points, ("output", len(blocks))]
    return SplittableModel(
        model_id=model_id,
        blocks=list(blocks),
        split_points=points,
        input_shape=input_shape,
        description=description,
        shapes_only=shapes_only,
        checkpoint=str(checkpoint) if checkpoint else "random-init",
        extra={"torch_model": model},
    )


def _densenet(model_id: str, builder_name: str, input_size, checkpoint, shapes_only) -> SplittableModel:
    """DenseNet as features children, ReLU, global average pool, flatten, classifier (torchvision forward)."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = _construct(getattr(tvm, builder_name), shapes_only)
    names = [name for name, _ in model.features.named_children()]
    blocks = [child for _, child in model.features.named_children()]
    blocks += [nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier]
    # 002 section 3: the natural bottlenecks are the 1st/2nd/3rd average pooling layers, i.e. the transition layers.
    points = [(n, names.index(n) + 1) for n in ("transition1", "transition2", "transition3")]
    return _finish(model_id, model, blocks, points, _input_shape(input_size, 224),
                   f"torchvision {builder_name}; split points after the transition layers (002 Table 2)",
                   checkpoint, shapes_only)


def _resnet(model_id: str, builder_name: str, input_size, checkpoint, shapes_only) -> SplittableModel:
    """ResNet as conv1, bn1, relu, maxpool, layer1..4, avgpool, flatten, fc (torchvision forward)."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = _construct(getattr(tvm, builder_name), shapes_only)
    blocks = [model.conv1, model.bn1, model.relu, model.maxpool,
              model.layer1, model.layer2, model.layer3, model.layer4, model.avgpool, nn.Flatten(1), model.fc]
    points = [(f"layer{i}", 4 + i) for i in range(1, 5)]
    return _finish(model_id, model, blocks, points, _input_shape(input_size, 224),
                   f"torchvision {builder_name}; split points at the stage boundaries layer1..layer4",
                   checkpoint, shapes_only)


@register("densenet169", "DenseNet-169 (002 Tables 2, Fig. 1), torchvision, random init unless checkpoint", "densenet")
def densenet169(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """DenseNet-169 with split points at its three transition layers."""
    return _densenet("densenet169", "densenet169", input_size, checkpoint, shapes_only)


@register("densenet201", "DenseNet-201 (002 Table 2, section 4), torchvision, random init unless checkpoint", "densenet")
def densenet201(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """DenseNet-201 with split points at its three transition layers."""
    return _densenet("densenet201", "densenet201", input_size, checkpoint, shapes_only)


@register("resnet152", "ResNet-152 (002 Table 3), torchvision, random init unless checkpoint", "resnet")
def resnet152(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """ResNet-152 with split points at its four stage boundaries."""
    return _resnet("resnet152", "resnet152", input_size, checkpoint, shapes_only)


@register("resnet18", "ResNet-18, torchvision, small (tests, quick runs)", "resnet")
def resnet18(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """ResNet-18 with split points at its four stage boundaries."""
    return _resnet("resnet18", "resnet18", input_size, checkpoint, shapes_only)


@register("resnet50", "ResNet-50, torchvision (calibration anchor of derived laptop-class CPUs)", "resnet")
def resnet50(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """ResNet-50 with stage-boundary split points."""
    return _resnet("resnet50", "resnet50", input_size, checkpoint, shapes_only)


@register("inception_v3", "Inception-v3 (002 Table 3), torchvision, 299x299, no aux logits", "inception")
def inception_v3(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """Inception-v3 as its Conv/Mixed blocks and pools; split points at block-group boundaries."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = _construct(tvm.inception_v3, shapes_only, aux_logits=False, init_weights=False, transform_input=False)
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
             "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
             "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "dropout"]
    blocks = [getattr(model, n) for n in names] + [nn.Flatten(1), model.fc]
    points = [(n, names.index(n) + 1) for n in ("maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c")]
    return _finish("inception_v3", model, blocks, points, _input_shape(input_size, 299),
                   "torchvision inception_v3 (aux_logits=False, transform_input=False); split points after "
                   "maxpool1, maxpool2, Mixed_5d, Mixed_6e, Mixed_7c", checkpoint, shapes_only,
                   drop=("AuxLogits.",))


@register("mobilenet_v2", "MobileNetV2 (002 section 3 comparison), torchvision, random init unless checkpoint", "mobilenet")
def mobilenet_v2(input_size=None, checkpoint=None, shapes_only=False, **_) -> SplittableModel:
    """MobileNetV2 as features[0..18], pool, flatten, classifier; split points where the resolution halves."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = _construct(tvm.mobilenet_v2, shapes_only)
    blocks = list(model.features.children()) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier]
    # outputs: features[1] 16x112x112, [3] 24x56x56, [6] 32x28x28, [13] 96x14x14, [17] 320x7x7 at 224x224
    points = [(f"features{i}", i + 1) for i in (1, 3, 6, 13, 17)]
    return _finish("mobilenet_v2", model, blocks, points, _input_shape(input_size, 224),
                   "torchvision mobilenet_v2; split points at the ends of the resolution stages",
                   checkpoint, shapes_only)
