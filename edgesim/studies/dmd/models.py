"""The user's own edge and cloud classifiers for DMD (000 section 3): any model `edgesim profile` takes (a registered
id, torchvision:NAME, timm:NAME, hf:PATH, --model-file FILE:FACTORY), its head sized to the dataset's classes (or
read through a label mapping), a checkpoint with its own head, and the model's own preprocessing: size, resize and
mean/std from its weights' metadata (torchvision weights enum, timm pretrained_cfg, HF preprocessor_config.json) or
stated flags. Nothing is downloaded: weights come from the local checkpoint only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from edgesim.studies.dmd.adapters import INPUT_SUFFIX, TorchClassifierAdapter, preprocess_images
from profilers.errors import EdgesimError, first_line
from profilers.models import build
from profilers.models.sources import build_from_file, check_accepts, resolve_source, torchvision_names
from profilers.models.torchvision_models import load_checkpoint, read_state_dict

#: torchvision's and timm's default ImageNet normalisation (cited: torchvision.transforms._presets.ImageClassification)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: a --model-file's preprocessing is what the flags state (mean 0, std 1 when none: pixels in [0, 1])
FLAGS_SOURCE = "stated by the flags"


@dataclass(frozen=True)
class ModelChoice:
    """What the user asked for one side of the pair: the model, its checkpoint, head size, label mapping, preprocessing flags."""

    spec: Optional[str] = None
    model_file: Optional[str] = None  # FILE.py:FACTORY returning an nn.Module
    checkpoint: Optional[str] = None
    num_classes: Optional[int] = None
    classes: Optional[str] = None  # "DATASET=OUT[+OUT|A-B|name],...": dataset class -> the model's outputs
    input_size: Optional[tuple[int, int]] = None  # H, W fed to the model (the crop, when there is one)
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    hidden_layer: Optional[str] = None
    flag: str = "--edge"  # how errors name this side

    @property
    def label(self) -> str:
        return self.spec or str(self.model_file)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: (resize shorter side, centre crop or plain resize), channels, mean/std."""

    size_hw: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3
    resize_px: Optional[int] = None  # shorter side before the centre crop; None: resize straight to size_hw
    source: str = ""

    def __call__(self, batch: Sequence[Any]):
        return preprocess_images(batch, self.size_hw, self.mean, self.std, self.channels, self.resize_px)

    def describe(self) -> str:
        """One phrase: what is done and where it came from."""
        resize = f"shorter side {self.resize_px} px, centre crop" if self.resize_px else "resize to"
        mean = ",".join(f"{v:.3g}" for v in self.mean)
        std = ",".join(f"{v:.3g}" for v in self.std)
        return f"{resize} {self.size_hw[0]}x{self.size_hw[1]}, mean {mean}, std {std} ({self.source})"


@dataclass
class LoadedClassifier:
    """A classifier ready for DMD: the module, its preprocessing, output width and names, default hidden layer."""

    module: Any
    preprocessing: Preprocessing
    outputs: int
    output_names: list[str]
    hidden_layer: Optional[str]
    description: str


def head_module(module) -> Optional[str]:
    """Name of the classification head: the last Linear or Conv2d registered (torchvision fc / classifier.N / heads.head)."""
    import torch.nn as nn

    name = None
    for n, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            name = n
    return name


def checkpoint_head_size(checkpoint: str, head: Optional[str]) -> Optional[int]:
    """How many outputs the checkpoint's own head has (rows of its head weight), None when it has no such tensor."""
    if head is None:
        return None
    weight = read_state_dict(checkpoint).get(f"{head}.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 1 else None


def _scaled_resize(pre: Preprocessing, size: Optional[tuple[int, int]]) -> Preprocessing:
    """The metadata's resize-then-crop kept in proportion when --input-size changes the crop (256/224 stays 256/224)."""
    if size is None:
        return pre
    resize = round(pre.resize_px * min(size) / min(pre.size_hw)) if pre.resize_px else None
    return replace(pre, size_hw=size, resize_px=resize, source=pre.source + f"; size {size[0]}x{size[1]} from the flag")


def _with_flags(pre: Preprocessing, choice: ModelChoice) -> Preprocessing:
    """Stated flags win over metadata: size, mean, std."""
    stated = pre.source == FLAGS_SOURCE
    pre = _scaled_resize(pre, None if stated else choice.input_size)
    for name in ("mean", "std"):
        value = getattr(choice, name)
        if value is not None:
            if len(value) not in (1, pre.channels):
                raise EdgesimError(f"{choice.flag}-{name} {','.join(map(str, value))}: expected 1 or {pre.channels} values")
            value = tuple(value) * (pre.channels if len(value) == 1 else 1)
            pre = replace(pre, **{name: value}, source=pre.source if stated else pre.source + f"; {name} from the flag")
    if any(s <= 0 for s in pre.std):
        raise EdgesimError(f"{choice.flag}-std: expected positive values, got {pre.std}")
    return pre


def _torchvision(name: str, choice: ModelChoice, num_classes: Optional[int]):
    """A torchvision classifier with num_classes outputs and its weights enum's preprocessing (metadata only)."""
    import torchvision.models as tvm

    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=False)
    weights = tvm.get_model_weights(name).DEFAULT
    categories = list(weights.meta.get("categories") or [])
    n = num_classes or len(categories) or 1000
    module = tvm.get_model(name, weights=None, num_classes=n, **kwargs)
    t = weights.transforms()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
    pre = Preprocessing((int(crop), int(crop)), tuple(t.mean), tuple(t.std), 3, int(resize),
                        f"torchvision {weights} metadata")
    return module, pre, categories if n == len(categories) else []


def _timm(name: str, choice: ModelChoice, num_classes: Optional[int]):
    """A timm classifier (pretrained=False) and its pretrained_cfg's preprocessing."""
    try:
        import timm
    except ImportError:
        raise EdgesimError(f"{choice.flag} timm:{name}: timm is not installed; pip install 'edgesim[timm]'") from None
    if name not in timm.list_models():
        raise EdgesimError(f"{choice.flag} timm:{name}: unknown timm model (timm.list_models())")
    module = timm.create_model(name, pretrained=False, **({"num_classes": num_classes} if num_classes else {}))
    cfg = getattr(module, "pretrained_cfg", None) or {}
    side = int(tuple(cfg.get("input_size", (3, 224, 224)))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875) or 0.875)
    pre = Preprocessing((side, side), tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)), 3,
                        round(side / crop_pct), f"timm pretrained_cfg of {name}")
    return module, pre, []


def _hw(size) -> Optional[tuple[int, int]]:
    """(H, W) from a processor size entry: {height, width}, {shortest_edge} or one int."""
    if isinstance(size, dict):
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
        return (int(size["shortest_edge"]),) * 2 if "shortest_edge" in size else None
    return (int(size), int(size)) if isinstance(size, (int, float)) else None


def _hf(path_text: str, choice: ModelChoice):
    """A transformers image classifier from a local folder; its preprocessor_config.json (else config.json) preprocessing."""
    from transformers import AutoConfig, AutoModelForImageClassification

    from profilers.models.sources import _Logits

    folder = Path(path_text).expanduser()
    if not (folder / "config.json").is_file():
        raise EdgesimError(f"{choice.flag} hf:{path_text}: no config.json in {folder} (a save_pretrained folder)")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        module = AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EdgesimError(f"{choice.flag} hf:{path_text}: cannot load an image classifier: {first_line(exc)}") from None
    side = getattr(config, "image_size", 224)
    side = int(side[0] if isinstance(side, (list, tuple)) else side)
    channels = int(getattr(config, "num_channels", 3))
    pre = Preprocessing((side, side), (0.5,) * channels, (0.5,) * channels, channels, None,
                        "config.json image_size; mean/std 0.5 (transformers' ViT default: no preprocessor_config.json)")
    proc_file = folder / "preprocessor_config.json"
    if proc_file.is_file():
        try:
            proc = json.loads(proc_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EdgesimError(f"{proc_file}: not valid JSON ({first_line(exc)})") from None
        crop = _hw(proc.get("crop_size")) if proc.get("do_center_crop") else None
        size = proc.get("size")
        short = size.get("shortest_edge") if isinstance(size, dict) else None
        pre = Preprocessing(crop or _hw(size) or (side, side), tuple(proc.get("image_mean") or pre.mean),
                            tuple(proc.get("image_std") or pre.std), channels, int(short) if crop and short else None,
                            proc_file.name)
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else []
    return _Logits.wrap(module), pre, names


def _model_file(choice: ModelChoice):
    """The user's FILE.py:FACTORY() -> nn.Module; its input size and normalisation are stated by flags."""
    _, factory, module = build_from_file(str(choice.model_file), f"{choice.flag}-file")
    if choice.input_size is None:
        raise EdgesimError(f"{choice.flag}-file {choice.model_file}: give {choice.flag}-input-size H,W (and "
                           f"{choice.flag}-mean / {choice.flag}-std if the model was trained on normalised pixels)")
    pre = Preprocessing(choice.input_size, (0.0,) * 3, (1.0,) * 3, 3, None, FLAGS_SOURCE)
    return module, pre, []


def _registry(name: str, choice: ModelChoice):
    """A registered edgesim model (e.g. the demo's dmd-digits-*): its blocks in sequence, pixels in [0, 1] as trained."""
    import torch.nn as nn

    sm = build(name, checkpoint=choice.checkpoint)
    c, h, w = sm.input_shape
    pre = Preprocessing((h, w), (0.0,) * c, (1.0,) * c, c, None, f"registered {name}: [0, 1] pixels, as trained")
    hidden = str(len(sm.blocks) - 2) if len(sm.blocks) >= 2 else None
    return nn.Sequential(*sm.blocks), pre, [], hidden


def load_classifier(choice: ModelChoice, dataset_classes: int) -> LoadedClassifier:
    """Build the model the choice names, with its head and checkpoint, and check it takes its own preprocessed input."""
    import torch

    hidden = choice.hidden_layer
    checkpoint_loaded = False
    if choice.model_file:
        module, pre, names = _model_file(choice)
        source = "file"
    else:
        if not choice.spec:
            raise EdgesimError(f"give {choice.flag} MODEL (registered id, torchvision:NAME, timm:NAME, hf:PATH) or "
                               f"{choice.flag}-file FILE.py:FACTORY")
        source, name = resolve_source(choice.spec)
        if source == "registry" and name in torchvision_names():
            source = "torchvision"  # a registered torchvision id (resnet18, mobilenet_v2): built with its own head
        if source == "registry":
            module, pre, names, reg_hidden = _registry(name, choice)
            hidden, checkpoint_loaded = hidden or reg_hidden, True
        elif source == "hf":
            module, pre, names = _hf(name, choice)
            checkpoint_loaded = True  # from_pretrained loaded the folder's weights
        else:
            num = choice.num_classes
            if num is None and choice.checkpoint:  # a checkpoint with its own head decides the class count
                probe = _torchvision(name, choice, None)[0] if source == "torchvision" else _timm(name, choice, None)[0]
                num = checkpoint_head_size(choice.checkpoint, head_module(probe))
            builder = _torchvision if source == "torchvision" else _timm
            module, pre, names = builder(name, choice, num)
    if choice.checkpoint and not checkpoint_loaded:
        load_checkpoint(module, choice.checkpoint)
    pre = _with_flags(pre, choice)
    module.eval()
    example = torch.zeros((1, pre.channels, *pre.size_hw))
    check_accepts(choice.label, module, example)
    with torch.no_grad():
        out = module(example)
    out = getattr(out, "logits", out)
    if out.ndim != 2:
        raise EdgesimError(f"{choice.flag} {choice.label}: output of shape {tuple(out.shape)}; expected (batch, classes) logits")
    outputs = int(out.shape[1])
    if choice.num_classes is not None and outputs != choice.num_classes:
        raise EdgesimError(f"{choice.flag} {choice.label}: {outputs} outputs, not --num-classes {choice.num_classes} "
                           "(a registered model or HF folder keeps its own head)")
    if hidden is None:
        head = head_module(module)
        hidden = f"{head}{INPUT_SUFFIX}" if head else None
    weights = f"weights {choice.checkpoint}" if choice.checkpoint else ("weights from the HF folder" if source == "hf"
                                                                         else "random weights (no checkpoint)")
    return LoadedClassifier(module, pre, outputs, names, hidden, f"{choice.label}: {outputs} outputs, {weights}")


def _output_indices(part: str, names: Sequence[str], outputs: int, where: str) -> list[int]:
    """One mapping target: an output index, a range A-B, or an output name (HF id2label, torchvision categories)."""
    part = part.strip()
    if part.isdigit():
        idx = [int(part)]
    elif "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
        a, b = (int(p) for p in part.split("-", 1))
        idx = list(range(a, b + 1))
    elif part in names:
        idx = [list(names).index(part)]
    else:
        raise EdgesimError(f"{where}: '{part}' is not an output index, a range A-B or an output name of the model")
    bad = [i for i in idx if not 0 <= i < outputs]
    if bad or not idx:
        raise EdgesimError(f"{where}: output {bad[0] if bad else part} outside the model's 0..{outputs - 1}")
    return idx


def class_groups(text: Optional[str], outputs: int, dataset_classes: int, names: Sequence[str] = (),
                 where: str = "--edge-classes", model: str = "") -> Optional[list[list[int]]]:
    """Each dataset class's model outputs from 'D=OUT[+OUT],...'; None when the head already has the dataset's classes."""
    if not text:
        if outputs == dataset_classes:
            return None
        raise EdgesimError(f"{model}: {outputs} outputs but the dataset has {dataset_classes} classes; give --num-classes "
                           f"{dataset_classes} with a checkpoint trained for them, or {where} "
                           f"0=OUT[+OUT],1=... (which outputs mean which dataset class)")
    groups: dict[int, list[int]] = {}
    for entry in (e for e in text.split(",") if e.strip()):
        key, sep, targets = entry.partition("=")
        if not sep or not key.strip().isdigit():
            raise EdgesimError(f"{where} '{text}': entry '{entry}' is not DATASET_CLASS=OUTPUT[+OUTPUT]")
        d = int(key)
        if not 0 <= d < dataset_classes or d in groups:
            raise EdgesimError(f"{where} '{text}': dataset class {d} "
                               + ("given twice" if d in groups else f"outside 0..{dataset_classes - 1}"))
        groups[d] = [i for p in targets.split("+") for i in _output_indices(p, names, outputs, f"{where} '{text}'")]
    missing = [d for d in range(dataset_classes) if d not in groups]
    if missing:
        raise EdgesimError(f"{where} '{text}': dataset class(es) {missing} have no outputs")
    flat = [i for g in groups.values() for i in g]
    if len(flat) != len(set(flat)):
        raise EdgesimError(f"{where} '{text}': an output is mapped to two dataset classes")
    return [groups[d] for d in range(dataset_classes)]


def classifier_adapter(choice: ModelChoice, dataset_classes: int, device: str = "cpu") -> tuple[TorchClassifierAdapter, str]:
    """The DMD adapter of the user's model and one line saying what it is and how its input is prepared."""
    loaded = load_classifier(choice, dataset_classes)
    groups = class_groups(choice.classes, loaded.outputs, dataset_classes, loaded.output_names,
                          f"{choice.flag}-classes", f"{choice.flag} {choice.label}")
    adapter = TorchClassifierAdapter(loaded.module, loaded.hidden_layer, loaded.preprocessing, device=device,
                                     class_groups=groups)
    mapped = f"; outputs grouped into {dataset_classes} classes by {choice.flag}-classes" if groups else ""
    return adapter, f"{loaded.description}; {loaded.preprocessing.describe()}{mapped}"

