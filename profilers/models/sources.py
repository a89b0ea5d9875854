"""Model sources: a registered id, `torchvision:NAME` (or a bare torchvision name), `timm:NAME`, `hf:PATH`, or a
factory in the user's own Python file. Each becomes a SplittableModel with split points found by graph.py.

Weights are random unless a local checkpoint is given (latency does not depend on their values); nothing is
ever downloaded. Every problem is one line naming what and where (STYLE.md rule 9).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from profilers.errors import EdgesimError, first_line
from profilers.models.graph import graph_model
from profilers.models.registry import SplittableModel, build, entries
from profilers.models.torchvision_models import load_checkpoint

PREFIXES = ("torchvision", "timm", "hf")
Warn = Callable[[str], None]


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked to profile: MODEL (or --model-file FILE:FACTORY), input size, checkpoint, split points."""

    spec: Optional[str] = None
    model_file: Optional[str] = None
    input_size: Optional[tuple[int, ...]] = None  # (H, W) or (C, H, W)
    checkpoint: Optional[str] = None
    split_points: str | Sequence[str] = "auto"
    shapes_only: bool = False


def _unknown(kind: str, name: str, known: Sequence[str], hint: str = "") -> EdgesimError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
    listed = f"close matches: {', '.join(close)}" if close else f"{len(known)} known{hint}"
    return EdgesimError(f"unknown {kind} model '{name}'; {listed}")


def torchvision_names() -> list[str]:
    """Every torchvision classification model name (torchvision.models.list_models)."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _example(shape: Sequence[int]):
    import torch

    return torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))


def _image_shape(size: Optional[tuple[int, ...]], default_side: int, what: str) -> tuple[int, int, int]:
    if size is None:
        return (3, default_side, default_side)
    if len(size) == 3:
        if size[0] != 3:
            raise EdgesimError(f"--input-size {','.join(map(str, size))}: {what} takes 3-channel images (give H,W)")
        return tuple(size)  # type: ignore[return-value]
    return (3, size[0], size[1])


def check_accepts(model_id: str, module, example) -> None:
    """Run the whole model once on the example input; one line when the model rejects that input."""
    import torch

    with torch.inference_mode():
        try:
            module(example)
        except Exception as exc:  # shape errors come as RuntimeError, ValueError, AssertionError, ...
            size = "x".join(str(s) for s in example.shape)
            raise EdgesimError(f"model {model_id} rejects input of size {size}: {first_line(exc)}") from None


def _finish(model_id: str, module, shape, request: ModelRequest, description: str, warn: Optional[Warn],
            checkpoint_loaded: Optional[str] = None) -> SplittableModel:
    """Load the checkpoint, freeze, check the input and cut the model at its single-tensor split points."""
    if request.checkpoint and checkpoint_loaded is None:
        load_checkpoint(module, request.checkpoint)
        checkpoint_loaded = request.checkpoint
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    example = _example(shape)
    check_accepts(model_id, module, example)
    weights = f"weights from {checkpoint_loaded}" if checkpoint_loaded else "random weights (no checkpoint)"
    return graph_model(model_id, module, example, request.split_points, f"{description}; {weights}",
                       checkpoint=str(checkpoint_loaded) if checkpoint_loaded else "random-init", warn=warn)


def torchvision_model(name: str, request: ModelRequest, warn: Optional[Warn] = None) -> SplittableModel:
    """A torchvision classification model by name, random weights, its default input size (299 for Inception-v3)."""
    import torchvision.models as tvm

    known = torchvision_names()
    if name not in known:
        raise _unknown("torchvision", name, known, " (torchvision.models.list_models)")
    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=False)
    module = tvm.get_model(name, weights=None, **kwargs)
    side = getattr(module, "image_size", None)
    if side is None:
        crop = tvm.get_model_weights(name).DEFAULT.transforms().crop_size
        side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    shape = _image_shape(request.input_size, int(side), f"torchvision {name}")
    return _finish(name, module, shape, request, f"torchvision {name} {shape[1]}x{shape[2]}", warn)


def timm_model(name: str, request: ModelRequest, warn: Optional[Warn] = None) -> SplittableModel:
    """A timm model by name (pretrained=False), input size from its pretrained_cfg; timm is the optional extra."""
    try:
        import timm
    except ImportError:
        raise EdgesimError("timm:{0}: timm is not installed; install the extra: pip install 'edgesim[timm]'"
                           .format(name)) from None
    known = timm.list_models()
    if name not in known:
        raise _unknown("timm", name, known, " (timm.list_models())")
    module = timm.create_model(name, pretrained=False)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    default = tuple(cfg.get("input_size", (3, 224, 224)))
    shape = _image_shape(request.input_size, int(default[-1]), f"timm {name}")
    model_id = f"timm:{name}"
    return _finish(model_id, module, shape, request, f"timm {name} {shape[1]}x{shape[2]}", warn)


class _Logits:
    """Lazily defined nn.Module wrapper: pixel_values -> logits of a transformers image model."""

    cls = None

    @classmethod
    def wrap(cls, model):
        import torch.nn as nn

        if cls.cls is None:
            class LogitsOf(nn.Module):
                """The logits of a transformers image model, so the traced graph returns one tensor."""

                def __init__(self, inner):
                    super().__init__()
                    self.inner = inner

                def forward(self, pixel_values):
                    out = self.inner(pixel_values=pixel_values)
                    return out.logits if hasattr(out, "logits") else out[0]

            cls.cls = LogitsOf
        return cls.cls(model)


def _image_classification_class(config):
    """The image-classification class of a config: the one its `architectures` names, else the first the auto
    mapping lists (DeiT maps to two; AutoModel.from_config fails on a config without `architectures`)."""
    from transformers import AutoModelForImageClassification

    mapping = AutoModelForImageClassification._model_mapping
    if type(config) not in mapping:
        raise ValueError(f"{type(config).__name__} has no image-classification model in transformers")
    classes = mapping[type(config)]
    classes = list(classes) if isinstance(classes, (list, tuple)) else [classes]
    named = [c for c in classes if c.__name__ in (getattr(config, "architectures", None) or [])]
    return (named or classes)[0]


def hf_model(path_text: str, request: ModelRequest, warn: Optional[Warn] = None) -> SplittableModel:
    """A transformers vision model from a local config.json or checkpoint folder; never the network."""
    from transformers import AutoConfig

    path = Path(path_text).expanduser()
    if not path.exists():
        raise EdgesimError(f"hf:{path_text}: no such file or folder (give a local config.json or a folder written "
                           "by save_pretrained; nothing is downloaded)")
    folder = path if path.is_dir() else path.parent
    config_path = path if path.is_file() else path / "config.json"
    if not config_path.is_file():
        raise EdgesimError(f"hf:{path_text}: no config.json in {folder}")
    try:
        config = AutoConfig.from_pretrained(str(config_path if path.is_file() else folder), local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise EdgesimError(f"hf:{path_text}: cannot read {config_path}: {first_line(exc)}") from None
    weights = [f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()] if path.is_dir() else []
    source = request.checkpoint or (str(folder) if weights else None)
    model_id = f"hf:{folder.name}"
    from profilers.models.hf import multimodal_from_config

    multimodal = multimodal_from_config(model_id, config, source, request.input_size)
    if multimodal is not None:  # ViLT, LLaVA-NeXT-Video: blocks of profilers.models.hf, split per layer
        return multimodal
    try:
        cls = _image_classification_class(config)
        if source:
            module = cls.from_pretrained(source, local_files_only=True)
        else:
            module = cls(config)
    except (OSError, ValueError, KeyError, RuntimeError, IndexError, TypeError, AttributeError) as exc:
        what = f"cannot load weights from {source}" if source else f"no image-classification model for {config_path}"
        raise EdgesimError(f"hf:{path_text}: {what}: {first_line(exc)}") from None
    side = getattr(config, "image_size", 224)
    side = int(side[0] if isinstance(side, (list, tuple)) else side)
    channels = int(getattr(config, "num_channels", 3))
    size = request.input_size
    shape = (channels, side, side) if size is None else ((channels, *size) if len(size) == 2 else tuple(size))
    return _finish(model_id, _Logits.wrap(module), shape, request,
                   f"transformers {type(module).__name__} from {config_path}", warn, checkpoint_loaded=source)


def build_from_file(model_file: str, flag: str) -> tuple[Path, str, Any]:
    """The user's FILE.py:FACTORY() called once -> (path, factory name, module); one line (naming flag) if it raises
    or returns something that is not a torch.nn.Module."""
    import torch.nn as nn

    path, factory, fn = _load_factory(model_file)
    try:
        module = fn()
    except Exception as exc:  # the user's factory
        raise EdgesimError(f"{flag} {model_file}: {factory}() raised {first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise EdgesimError(f"{flag} {model_file}: {factory}() returned {type(module).__name__}, "
                           "not a torch.nn.Module")
    return path, factory, module


def _load_factory(model_file: str) -> tuple[Path, str, Callable]:
    """FILE.py:FACTORY -> (path, factory name, callable); one line on a missing file or factory."""
    text, _, factory = model_file.rpartition(":") if ":" in model_file else (model_file, "", "build")
    if not text:
        text, factory = model_file, "build"
    path = Path(text).expanduser()
    if not path.is_file():
        raise EdgesimError(f"--model-file {model_file}: file {path} not found")
    name = f"edgesim_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EdgesimError(f"--model-file {model_file}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code at import time
        sys.modules.pop(name, None)
        raise EdgesimError(f"--model-file {model_file}: importing {path} raised {first_line(exc)}") from None
    fn = getattr(module, factory, None)
    if not callable(fn):
        known = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                 and getattr(v, "__module__", None) == name]
        close = difflib.get_close_matches(factory, known, n=5, cutoff=0.5) or known[:8]
        raise EdgesimError(f"--model-file {model_file}: {path} has no factory '{factory}'; "
                           f"functions there: {', '.join(close) or 'none'}")
    return path, factory, fn


def file_model(request: ModelRequest, warn: Optional[Warn] = None) -> SplittableModel:
    """The user's factory FILE.py:FACTORY() -> nn.Module, with --input-size C,H,W and an optional checkpoint."""

    assert request.model_file is not None
    if request.input_size is None or len(request.input_size) != 3:
        raise EdgesimError(f"--model-file {request.model_file}: give --input-size C,H,W (e.g. 3,224,224)")
    path, factory, module = build_from_file(request.model_file, "--model-file")
    model_id = request.spec or path.stem
    return _finish(model_id, module, request.input_size, request, f"{factory}() from {path.name}", warn)


def resolve_source(spec: str) -> tuple[str, str]:
    """(source, name) of MODEL: a prefix before ':' or, for a bare name, the registry then torchvision."""
    prefix, sep, name = spec.partition(":")
    if sep:
        if prefix not in PREFIXES:
            raise EdgesimError(f"unknown model source '{prefix}:' in '{spec}'; known: "
                               + ", ".join(f"{p}:" for p in PREFIXES) + " (or a registered model id)")
        if not name:
            raise EdgesimError(f"model '{spec}': give a name after '{prefix}:'")
        return prefix, name
    if spec in entries():
        return "registry", spec
    if spec in torchvision_names():
        return "torchvision", spec
    known = sorted(entries()) + torchvision_names()
    close = difflib.get_close_matches(spec, known, n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see edgesim list models"
    raise EdgesimError(f"unknown model '{spec}' (not registered, not a torchvision model; timm and Hugging Face "
                       f"models need timm:NAME or hf:PATH); {hint}")


def build_model(request: ModelRequest, warn: Optional[Warn] = None) -> SplittableModel:
    """The SplittableModel a request names, from whichever source it comes."""
    if request.model_file:
        return file_model(request, warn)
    if not request.spec:
        raise EdgesimError("give MODEL (a registered id, torchvision:NAME, timm:NAME or hf:PATH) or --model-file")
    source, name = resolve_source(request.spec)
    if request.shapes_only and source != "registry":
        raise EdgesimError(f"--shapes-only is available for registered models only, not '{request.spec}'")
    if source == "registry":
        kwargs: dict[str, Any] = {}
        if request.input_size:
            kwargs["input_size"] = tuple(request.input_size[-2:])
        if request.checkpoint:
            kwargs["checkpoint"] = request.checkpoint
        if request.shapes_only:
            kwargs["shapes_only"] = True
        return build(name, **kwargs)
    builders = {"torchvision": torchvision_model, "timm": timm_model, "hf": hf_model}
    return builders[source](name, request, warn)
