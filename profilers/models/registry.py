"""The model registry: each entry builds a model as an ordered list of blocks with its natural split points.

Splitting at layer_index k runs blocks[:k] (the head) on the mobile device and blocks[k:] (the tail)
on the server; k = 0 is full offload (Org. ES of 002) and k = len(blocks) is local only (Org. MD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from profilers.errors import unknown_name


@dataclass
class SplittableModel:
    """A model cut into sequential blocks; each block takes the previous block's output."""

    model_id: str
    blocks: list  # list[torch.nn.Module]
    split_points: list[tuple[str, int]]  # (name, layer_index), ordered, "input" first and "output" last
    input_shape: tuple[int, ...]  # C, H, W of one image
    description: str = ""
    example_input: Optional[Callable[[int], Any]] = None  # batch -> input of blocks[0]; default: random image tensor
    shapes_only: bool = False  # built on the meta device: too large for this machine, FLOPs and shapes only
    checkpoint: str = "random-init"
    extra: dict = field(default_factory=dict)
    image_size: Optional[tuple[int, int]] = None  # (H, W) of the photo a non-tensor input is prepared from: its
    # image encodings (raw uint8, JPEG, PNG) are what a mobile device sends at split point 'input'



@dataclass(frozen=True)
class ModelEntry:
    """A registered model builder with a one-line description and its source."""

    model_id: str
    build: Callable[..., SplittableModel]
    description: str
    family: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(model_id: str, description: str, family: str) -> Callable:
    """Decorator: register a builder `build(input_size=None, checkpoint=None, **kw) -> SplittableModel`."""

    def deco(fn: Callable[..., SplittableModel]) -> Callable[..., SplittableModel]:
        _REGISTRY[model_id] = ModelEntry(model_id, fn, description, family)
        return fn

    return deco


def entries() -> dict[str, ModelEntry]:
    """All registered models by id."""
    return dict(_REGISTRY)


def build(model_id: str, **kwargs: Any) -> SplittableModel:
    """Build a registered model; unknown ids raise one line listing the known ones."""
    reg = entries()
    if model_id not in reg:
        raise unknown_name("model", model_id, list(reg))
    return reg[model_id].build(**kwargs)
