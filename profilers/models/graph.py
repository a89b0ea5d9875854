"""Split points found automatically: trace a model's graph and cut it where exactly one tensor crosses.

A cut after node i of the traced graph (in execution order) is a single-tensor cut when the only value
computed at or before i and used after i is one tensor: the head then sends exactly that tensor to the
tail (002 section 2). Tracing uses torch.fx, then torch.export (Hugging Face models), and falls back to
the model's top-level children when both fail. Parameters and input-independent constants are not
activations: each segment gets its own copy of the ones it uses.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from profilers.errors import EdgesimError, first_line
from profilers.models.registry import SplittableModel


@dataclass(frozen=True)
class Cut:
    """A single-tensor cut: after `position` nodes of the traced graph, `value` is the only tensor crossing."""

    name: str
    position: int  # index into the activation nodes; -1 is the input
    value: Any  # the fx node whose tensor crosses
    output_shape: tuple[int, ...]  # without the batch dimension
    stage: bool  # at a boundary of the model's own stages (top-level children, or children of a container)


@dataclass
class TracedGraph:
    """A traced model: its graph module, activation nodes in execution order, cuts and how it was traced."""

    gm: Any  # torch.fx.GraphModule
    order: list
    cuts: list[Cut]
    tracer: str


class TraceFailed(Exception):
    """Neither torch.fx nor torch.export could trace the model."""


def trace(module, example) -> tuple[Any, str]:
    """(GraphModule, tracer name): torch.fx.symbolic_trace, else torch.export; TraceFailed with both reasons."""
    import torch
    import torch.fx as fx

    try:
        params = list(inspect.signature(module.forward).parameters.values())[1:]
        concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
        return _one_input(fx.symbolic_trace(module, concrete_args=concrete or None), "torch.fx"), "torch.fx"
    except Exception as fx_exc:  # any failure of symbolic tracing: data-dependent control flow and the like
        try:
            exported = torch.export.export(module, (example,), strict=False)
            return _one_input(_without_guards(exported.module()), "torch.export"), "torch.export"
        except Exception as export_exc:
            raise TraceFailed(f"torch.fx: {first_line(fx_exc, 200)}; torch.export: {first_line(export_exc, 200)}") from None


def _without_guards(gm):
    """torch.export's module with its input guard call (`_guards_fn`, checks only, no output) dropped: it is no
    activation, so it must not become a split point."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards_fn") and not node.users:
            gm.graph.erase_node(node)
    gm.recompile()
    return gm


def _one_input(gm, tracer: str):
    """gm with the placeholders of fixed arguments dropped; TraceFailed when more than one input is used."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for extra in placeholders[1:]:  # arguments fixed by concrete_args: unused, or only checked to be None
        for user in list(extra.users):
            if user.op == "call_function" and not user.users and "assert" in getattr(user.target, "__name__", ""):
                gm.graph.erase_node(user)
    used = [p for p in placeholders[1:] if p.users]
    if used:
        raise TraceFailed(f"{tracer}: the traced graph takes {1 + len(used)} inputs; one tensor is needed")
    return gm


def _module_path(node) -> str:
    """Dotted path of the module a node belongs to ('' for the top-level forward)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return _clean_path(str(path))


def _clean_path(path: str) -> str:
    """torch.export writes paths like L['self'].features[0]; bring them to features.0."""
    for old, new in (("L['self'].", ""), ("L['self']", ""), ("['", "."), ("']", ""), ("[", "."), ("]", "")):
        path = path.replace(old, new)
    return path.strip(".")


def _stage_of(path: str, stages: set[str]) -> str:
    """The stage a module path belongs to: the stage module that is a prefix of it ('' for top-level code)."""
    parts = path.split(".") if path else []
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in stages:
            return ".".join(parts[:k])
    return ""


def model_stages(module, min_stages: int = 4, dominant: float = 0.8) -> set[str]:
    """The model's own stages: its top-level children, opening the largest one while fewer than min_stages
    hold parameters or the largest holds more than `dominant` of them (features of EfficientNet, stages of
    ConvNeXt, encoder layers of a ViT), and every list of layers (nn.ModuleList, or a module holding one) into
    its layers."""

    def params(m) -> int:
        return sum(p.numel() for p in m.parameters())

    total = params(module) or 1
    stages = {name: child for name, child in module.named_children()}
    for _ in range(8):
        weighted = {n: params(m) for n, m in stages.items()}
        if not weighted:
            break
        largest = max(weighted, key=weighted.get)
        children = list(stages[largest].named_children())
        with_params = sum(1 for v in weighted.values() if v)
        if not children or (with_params >= min_stages and weighted[largest] <= dominant * total):
            break
        del stages[largest]
        stages.update({f"{largest}.{n}": c for n, c in children})
    import torch.nn as nn

    layers = {id(c) for m in module.modules() if isinstance(m, nn.ModuleList) for c in m}  # never opened

    def holds_layers(m) -> bool:  # a list of layers, or a wrapper around one (4.x's ViTEncoder)
        return id(m) not in layers and ((isinstance(m, nn.ModuleList) and len(m) > 0) or any(
            isinstance(c, nn.ModuleList) and len(c) > 0 for c in m.children()))

    while any(holds_layers(m) for m in stages.values()):  # each layer its own stage
        for name, m in list(stages.items()):
            if holds_layers(m):
                del stages[name]
                stages.update({f"{name}.{n}": c for n, c in m.named_children()})
    return set(stages)


def _flat_outputs(gm) -> list:
    out = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    import torch.fx as fx

    values = []

    def walk(a):
        if isinstance(a, fx.Node):
            values.append(a)
        elif isinstance(a, (list, tuple)):
            for item in a:
                walk(item)
        elif isinstance(a, dict):
            for item in a.values():
                walk(item)

    walk(out.args[0])
    return values


def find_cuts(module, example) -> TracedGraph:
    """Trace module on example and list every single-tensor cut in execution order (input first, output last)."""
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    gm, tracer = trace(module, example)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    ShapeProp(gm).propagate(example)
    source = placeholders[0]
    active = {source}
    order = []
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output"):
            continue
        if any(a in active for a in n.all_input_nodes):
            active.add(n)
            order.append(n)
    outputs = _flat_outputs(gm)
    if len(outputs) != 1 or outputs[0] not in active:
        raise TraceFailed(f"{tracer}: the model returns {len(outputs)} values; one tensor is needed")
    pos = {n: i for i, n in enumerate(order)}
    pos[source] = -1
    last_use = {}
    for n in [source, *order]:
        uses = [pos[u] for u in n.users if u in pos]
        if any(u.op == "output" for u in n.users):
            uses.append(len(order))
        last_use[n] = max(uses, default=pos[n])
    known_stages = model_stages(module)
    stages = [_stage_of(_module_path(n), known_stages) for n in order]

    def shape(node) -> Optional[tuple[int, ...]]:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape[1:]) if isinstance(meta, TensorMetadata) else None

    cuts = [Cut("input", -1, source, tuple(example.shape[1:]), True)]
    live = {source} if last_use[source] > -1 else set()
    names: set[str] = {"input", "output"}
    for i, n in enumerate(order):
        live = {v for v in live if last_use[v] > i}
        if last_use[n] > i:
            live.add(n)
        if i == len(order) - 1 or len(live) != 1:
            continue
        value = next(iter(live))
        if shape(value) is None:
            continue
        stage = stages[i] != stages[i + 1] and stages[i] != ""
        base = stages[i] if stage else (_module_path(n) if n.op == "call_module" else n.name)
        base = base.removeprefix("inner.")  # the logits wrapper of transformers models (sources.py)
        name = base or n.name
        while name in names:
            name = f"{name}_"
        names.add(name)
        cuts.append(Cut(name, i, value, shape(value), stage))
    cuts.append(Cut("output", len(order) - 1, outputs[0], shape(outputs[0]) or (1,), True))
    return TracedGraph(gm=gm, order=order, cuts=cuts, tracer=tracer)


def _segment(gm, order: list, start: Cut, end: Cut):
    """A GraphModule computing end.value from start.value: the activation nodes between the two cuts."""
    import torch.fx as fx

    graph = fx.Graph()
    env: dict = {start.value: graph.placeholder("x")}

    def copy(node):
        if node not in env:
            for inp in node.all_input_nodes:
                copy(inp)
            env[node] = graph.node_copy(node, lambda m: env[m])
        return env[node]

    for node in order[start.position + 1:end.position + 1]:
        copy(node)
    graph.output(copy(end.value))
    return fx.GraphModule(gm, graph)


def select_cuts(cuts: list[Cut], wanted: str | Sequence[str], model_id: str) -> list[Cut]:
    """auto: the model's stage boundaries; all: every cut; else the named cuts (close matches listed on a typo)."""
    import difflib

    if isinstance(wanted, str) and wanted.strip() in ("auto", "all"):
        if wanted.strip() == "all":
            return list(cuts)
        return [c for c in cuts if c.stage]
    names = [w.strip() for w in wanted.split(",")] if isinstance(wanted, str) else list(wanted)
    names = [n for n in names if n]
    by_name = {c.name: c for c in cuts}
    for name in names:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=5, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else f"{len(cuts)} candidates (--list-split-points)"
            raise EdgesimError(f"model {model_id} has no split point '{name}'; {hint}")
    if not names:
        raise EdgesimError(f"no split points given for model {model_id}; use auto, all or names from --list-split-points")
    chosen = {by_name[n].position: by_name[n] for n in names}
    chosen.setdefault(-1, cuts[0])
    chosen[cuts[-1].position] = cuts[-1]
    return [chosen[p] for p in sorted(chosen)]


def graph_model(model_id: str, module, example, wanted: str | Sequence[str] = "auto", description: str = "",
                checkpoint: str = "random-init", warn: Optional[Callable[[str], None]] = None) -> SplittableModel:
    """A SplittableModel cut at the selected single-tensor cuts, or at the top-level children when tracing fails."""
    input_shape = tuple(example.shape[1:])
    try:
        traced = find_cuts(module, example)
    except TraceFailed as exc:
        model = children_model(model_id, module, example, description, checkpoint)
        if warn:
            how = "its top-level children" if model.extra["tracer"] == "children" else "input and output only"
            warn(f"model {model_id}: cannot trace its graph ({exc}); split points fall back to {how}")
        return model
    chosen = select_cuts(traced.cuts, wanted, model_id)
    if chosen[0].position == chosen[-1].position:
        chosen = [chosen[0], traced.cuts[-1]]
    blocks = [_segment(traced.gm, traced.order, a, b) for a, b in zip(chosen, chosen[1:])]
    points = [(c.name, k) for k, c in enumerate(chosen)]
    return SplittableModel(
        model_id=model_id, blocks=blocks, split_points=points, input_shape=input_shape,
        description=f"{description}; split points: single-tensor cuts of the {traced.tracer} graph",
        example_input=_example_input(example), checkpoint=checkpoint,
        extra={"torch_model": module, "tracer": traced.tracer, "candidates": traced.cuts,
               "block_names": [c.name for c in chosen[1:]]},
    )


def _example_input(example) -> Optional[Callable[[int], Any]]:
    """None for a 3-channel image (the profiler then measures on the real image), else the example repeated."""
    if example.dim() == 4 and example.shape[1] == 3:
        return None
    return lambda batch: example.expand(batch, *example.shape[1:]).clone()


def children_model(model_id: str, module, example, description: str = "",
                   checkpoint: str = "random-init") -> SplittableModel:
    """The top-level children as blocks when chaining them reproduces the forward, else the whole model."""
    import torch

    children = list(module.named_children())
    chained = False
    if children:
        with torch.inference_mode():
            try:
                x = example
                for _, child in children:
                    x = child(x)
                want = module(example)
                chained = isinstance(x, torch.Tensor) and isinstance(want, torch.Tensor) and x.shape == want.shape \
                    and torch.allclose(x, want, rtol=1e-4, atol=1e-5)
            except Exception:  # a child that does not take its predecessor's output
                chained = False
    if chained:
        blocks = [c for _, c in children]
        names = [n for n, _ in children]
        how = "top-level children (the graph could not be traced)"
    else:
        blocks, names = [module], ["model"]
        how = "input and output only (the graph could not be traced and the children do not chain)"
    points = [("input", 0), *[(n, i + 1) for i, n in enumerate(names[:-1])], ("output", len(blocks))]
    return SplittableModel(
        model_id=model_id, blocks=blocks, split_points=points, input_shape=tuple(example.shape[1:]),
        description=f"{description}; split points: {how}",
        example_input=_example_input(example), checkpoint=checkpoint,
        extra={"torch_model": module, "tracer": "children" if chained else "none", "block_names": names},
    )


def candidate_rows(model: SplittableModel) -> list[dict]:
    """Every split point candidate with its output shape and float32 size, without timing anything."""
    cuts = model.extra.get("candidates")
    if cuts is None:
        return [{"split_point": name, "layer_index": k, "stage": True, "output_shape": "", "float32_bytes": None}
                for name, k in model.split_points]
    return [{"split_point": c.name, "layer_index": c.position + 1, "stage": c.stage,
             "output_shape": "x".join(str(s) for s in c.output_shape),
             "float32_bytes": 4 * math.prod(c.output_shape)} for c in cuts]
