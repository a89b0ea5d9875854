"""Operators of a real model as a deployed framework runs them: type, FLOPs and bytes, conv-bn-activation fused.

Two ways to the same list. A model built by name is traced with torch.fx and its shapes propagated on the meta
device (no weights, no download): every convolution, linear layer and memory-bound operator (element-wise,
pooling, concatenation, copies) becomes one Op. Any model that runs (a --model-file, a Hugging Face model cut by
torch.export) is recorded while it runs by OperatorStream, a TorchDispatchMode that sees the aten operators
(convolutions, matrix products and attention as compute, the rest memory-bound; views free; operators that read
only weights folded away). In both, a BatchNorm or an activation whose only input is a convolution or linear
layer (or such a fused chain) with no other user adds no operator, as ncnn, TensorRT and oneDNN fold them into
the convolution.
"""

from __future__ import annotations

import itertools
import math
import operator
import weakref
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from profilers.errors import first_line
from profilers.schema import OperatorKind as OpType
BYTES_PER_ELEMENT = 4  # float32 activations and weights

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU,
                nn.LeakyReLU, nn.Tanh, nn.ELU, nn.PReLU, nn.Mish)
_ACTIVATION_FUNCS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6, torch.nn.functional.hardtanh,
                     torch.nn.functional.silu, torch.nn.functional.hardswish, torch.nn.functional.hardsigmoid,
                     torch.sigmoid, torch.nn.functional.sigmoid, torch.nn.functional.gelu, torch.tanh,
                     torch.nn.functional.leaky_relu, torch.nn.functional.elu, torch.nn.functional.mish}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_"}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
#: operators that only re-describe memory (views) or vanish at inference
_FREE_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)
_FREE_FUNCS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, operator.getitem, getattr,
               torch.nn.functional.dropout, torch.chunk, torch.split}
_FREE_METHODS = {"view", "reshape", "flatten", "size", "dim", "transpose", "permute", "chunk", "split",
                 "unsqueeze", "squeeze", "expand", "expand_as", "view_as"}


@dataclass(frozen=True)
class Op:
    """One operator as executed: its type, FLOPs, bytes moved (float32 in + out + weights) and block index."""

    name: str
    kind: OpType
    flops: int  # 2 x multiply-accumulates; 0 for memory-bound operators
    in_bytes: int
    out_bytes: int
    weight_bytes: int
    block: int  # index of the top-level child the operator belongs to (-1: the model's own forward)
    fused: tuple[str, ...] = ()  # BatchNorm / activation nodes folded into it

    @property
    def bytes(self) -> int:
        """Bytes moved: input and output activations plus weights."""
        return self.in_bytes + self.out_bytes + self.weight_bytes


def conv_type(conv: nn.Conv2d) -> OpType:
    """The type of a convolution module (conv_kind)."""
    return conv_kind(conv.groups, conv.kernel_size, conv.stride, conv.dilation)


def conv_kind(groups: int, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> OpType:
    """Depthwise (and grouped) when groups > 1, 1x1 when the kernel is 1x1; dense 3x3 stride 1 apart (the
    convolutions deployed engines run with Winograd), dense otherwise (larger kernels, strided 3x3)."""
    if groups > 1:
        return "conv_dw"
    if tuple(kernel) == (1, 1):
        return "conv_1x1"
    if tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1):
        return "conv_3x3s1"
    return "conv_dense"


class _ScopeTracer(fx.Tracer):
    """An fx tracer that records, on every node, the dotted path of the module whose forward created it."""

    def __init__(self) -> None:
        super().__init__()
        self._path = ""

    def call_module(self, m, forward, args, kwargs):
        old, self._path = self._path, self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._path = old

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["scope"] = self._path
        return node


def _numel(meta) -> int:
    """Elements of a TensorMetadata or a (nested) tuple of them; 0 for anything else."""
    if meta is None:
        return 0
    if hasattr(meta, "shape"):
        return math.prod(meta.shape)
    if isinstance(meta, (tuple, list)):
        return sum(_numel(m) for m in meta)
    return 0


def _in_numel(node: fx.Node) -> int:
    return sum(_numel(a.meta.get("tensor_meta")) for a in node.all_input_nodes)


def _block_of(node: fx.Node, child_names: list[str]) -> int:
    head = node.meta.get("scope", "").split(".")[0]
    return child_names.index(head) if head in child_names else -1


def _is_activation(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _ACTIVATIONS)
    if node.op == "call_function":
        return node.target in _ACTIVATION_FUNCS
    return node.op == "call_method" and node.target in _ACTIVATION_METHODS


def _is_free(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules[node.target]
        return isinstance(mod, _FREE_MODULES) or type(mod).__name__ == "StochasticDepth"
    if node.op == "call_function":
        return node.target in _FREE_FUNCS
    return node.op == "call_method" and node.target in _FREE_METHODS


def trace_ops(model: nn.Module, input_shape: Sequence[int]) -> list[Op]:
    """Operators of model (eval mode) for one input of input_shape (N, C, H, W), conv-bn-activation fused."""
    model = model.eval()
    tracer = _ScopeTracer()
    graph = tracer.trace(model)
    gm = fx.GraphModule(tracer.root, graph)
    meta_model = gm.to("meta")
    ShapeProp(meta_model).propagate(torch.empty(*input_shape, device="meta"))
    modules = dict(meta_model.named_modules())
    child_names = [name for name, _ in model.named_children()]
    ops: list[Op] = []
    owner: dict[fx.Node, int] = {}  # node -> index in ops of the compute operator it is fused into
    for node in meta_model.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        out_numel = _numel(node.meta.get("tensor_meta"))
        producer = node.all_input_nodes[0] if node.all_input_nodes else None
        fusable = producer is not None and producer in owner and len(producer.users) == 1
        mod = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, nn.Conv2d) or isinstance(mod, nn.Linear):
            if isinstance(mod, nn.Conv2d):
                kind = conv_type(mod)
                macs = out_numel * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
            else:
                kind, macs = "conv_1x1", out_numel * mod.in_features
            weights = sum(p.numel() for p in mod.parameters())
            ops.append(Op(str(node.target), kind, 2 * macs, BYTES_PER_ELEMENT * _in_numel(node),
                          BYTES_PER_ELEMENT * out_numel, BYTES_PER_ELEMENT * weights, _block_of(node, child_names)))
            owner[node] = len(ops) - 1
        elif (isinstance(mod, _NORMS) or _is_activation(node, modules)) and fusable:
            i = owner[producer]
            ops[i] = replace(ops[i], fused=ops[i].fused + (node.name,))
            owner[node] = i
        elif _is_free(node, modules):
            continue
        elif out_numel > 0:
            ops.append(Op(node.name, "memory", 0, BYTES_PER_ELEMENT * _in_numel(node), BYTES_PER_ELEMENT * out_numel,
                          0, _block_of(node, child_names)))
    return ops


# --------------------------------------------------------------------------------------------- architectures


def _mobilenet_v1() -> nn.Module:
    """MobileNet v1 (Howard et al. 2017, Table 1), width 1.0: the 'mobilenet' of ncnn's benchmark."""
    def cbr(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
    cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
          [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    layers = [cbr(3, 32, 3, 2)]
    for cin, cout, s in cfg:
        layers += [cbr(cin, cin, 3, s, groups=cin), cbr(cin, cout, 1, 1)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))


def _alexnet_caffe() -> nn.Module:
    """BVLC AlexNet as in Caffe (grouped conv2/4/5, LRN), 227x227: the 'alexnet' of ncnn's benchmark."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, 1, 2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(), nn.Conv2d(384, 384, 3, 1, 1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, 1, 1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


CUSTOM_ARCHS = {"mobilenet_v1": _mobilenet_v1, "alexnet_caffe": _alexnet_caffe}
#: architectures a published point or calibration anchor may name
KNOWN_ARCHS = frozenset({"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2",
                         "mobilenet_v3_large", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
                         "vgg19_bn", "densenet121", "densenet161", "densenet169", "densenet201", "inception_v3",
                         "googlenet", "squeezenet1_0", "squeezenet1_1", "alexnet", "shufflenet_v2_x1_0", "mnasnet1_0",
                         "efficientnet_b0", "regnet_y_400mf", *CUSTOM_ARCHS})


def build_arch(arch: str) -> nn.Module:
    """A torchvision classification model (weights=None) or one of CUSTOM_ARCHS, built on the meta device."""
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    for device in ("meta", "cpu"):  # RegNet computes its widths with tensors, which meta cannot read back
        try:
            with torch.device(device):
                if arch in CUSTOM_ARCHS:
                    return CUSTOM_ARCHS[arch]().eval()
                return torchvision.models.get_model(arch, weights=None, **kwargs).eval()
        except NotImplementedError:
            continue
    raise RuntimeError(f"cannot build {arch}")


_CACHE: dict[tuple[str, int, int], list[Op]] = {}


def arch_ops(arch: str, input_size: int = 224, batch: int = 1) -> list[Op]:
    """Operators of a named architecture for a batch of square RGB inputs (cached)."""
    key = (arch, input_size, batch)
    if key not in _CACHE:
        _CACHE[key] = trace_ops(build_arch(arch), (batch, 3, input_size, input_size))
    return _CACHE[key]


def block_ops(blocks: Sequence[nn.Module], input_shape: Sequence[int]) -> Optional[list[Op]]:
    """Operators of a chain of blocks (a measured model's top-level blocks), each Op tagged with its block index;
    None when fx cannot trace the chain into modules (a torch.export segment calls aten operators, which
    trace_ops would misread as memory-bound: OperatorStream reads those)."""
    chain = nn.Sequential(*blocks)
    try:
        graph = fx.Tracer().trace(chain)
        if any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) for n in graph.nodes):
            return None
        return trace_ops(chain, input_shape)
    except Exception:  # fx raises many types on untraceable code (control flow on values, hf models)
        return None


# ------------------------------------------------------------------------- operators of any model as it runs

#: aten convolutions (the flop counter's names); their weight, stride, dilation and groups give the type
_CONV_OPS = frozenset({"convolution", "_convolution", "cudnn_convolution", "convolution_overrideable",
                       "_slow_conv2d_forward"})
#: aten operators folded into a preceding convolution or matrix product (trace_ops' norms and activations)
_FUSABLE_OPS = frozenset({"relu", "relu6", "hardtanh", "silu", "hardswish", "hardsigmoid", "sigmoid", "gelu",
                          "leaky_relu", "tanh", "elu", "mish", "clamp", "clamp_min", "batch_norm", "native_batch_norm",
                          "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"})
#: aten operators that only re-describe memory or vanish at inference (beyond those whose schema says view)
_FREE_OPS = frozenset({"_unsafe_view", "detach", "alias", "lift_fresh", "split", "split_with_sizes", "chunk", "unbind",
                       "unsafe_split", "dropout", "native_dropout", "feature_dropout", "sym_size", "sym_numel",
                       "sym_stride", "sym_storage_offset", "_assert_tensor_metadata", "_assert_scalar"})


@dataclass(frozen=True)
class _Event:
    """One aten operator that read an activation: its role, its inputs and output as graph nodes, its sizes."""

    name: str
    block: int
    role: str  # compute, fusable, free, memory
    kind: OpType
    inputs: tuple[int, ...]  # activation nodes read, first the one a fused operator would follow
    node: int
    flops: int
    act_numel: int  # elements of the activations read
    const_numel: int  # elements of the weights and constants read
    out_numel: int


def _sdpa_cpu_flops(query, key, value, *args, out_val=None, **kwargs) -> int:
    """FLOPs of CPU flash attention (the flop counter knows the CUDA kernels' formula, not this one's name)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _flops_of(func) -> Optional[Any]:
    """The FLOP formula of an aten operator, None for operators the counter does not count (memory-bound)."""
    from torch.utils.flop_counter import flop_registry

    packet = func.overloadpacket
    if packet in flop_registry:
        return flop_registry[packet]
    return _sdpa_cpu_flops if packet.__name__ == "_scaled_dot_product_flash_attention_for_cpu" else None


class OperatorStream(TorchDispatchMode):
    """Records, while a model runs, every aten operator that reads an activation (a tensor computed from the
    input): the operator stream a deployed framework executes. Operators that read only weights or constants are
    folded away, as engines fold them; `ops()` turns the stream into Ops as trace_ops does (same types, FLOPs,
    bytes and conv-bn-activation fusion). Call `start` before each measured block and `block_done` after it."""

    def __init__(self, inputs: Any) -> None:
        super().__init__()
        self.block = 0
        self.events: list[_Event] = []
        self.failed: Optional[str] = None
        self._nodes: dict[int, tuple[weakref.ref, int]] = {}
        self._constants: dict[int, weakref.ref] = {}  # tensors aten operators made from weights and constants
        for t in tree_leaves(inputs):
            if isinstance(t, torch.Tensor):
                self._nodes[id(t)] = (weakref.ref(t), -1)

    def _node_of(self, t: torch.Tensor) -> Optional[int]:
        entry = self._nodes.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _flops_of(func) is None and func is not torch.ops.prim.device.default:
            with self:  # a composite (conv2d, linear, batch_norm): its parts, as FlopCounterMode does
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if self.failed is None:
            try:
                self._record(func, args, kwargs, out)
            except Exception as exc:  # never break the model's run: the stream is then unusable, and says why
                self.failed = f"{func}: {first_line(exc)}"
        return out

    def start(self, index: int, block: nn.Module) -> None:
        """Tag what follows with block `index`; its parameters, buffers and tensor attributes are its constants."""
        self.block = index
        for t in itertools.chain(block.parameters(), block.buffers(),
                                 (v for m in block.modules() for v in vars(m).values() if isinstance(v, torch.Tensor))):
            self._constants[id(t)] = weakref.ref(t)

    def block_done(self, out: Any) -> None:
        """Every tensor a block outputs must come out of aten operators, computed from its input or from its
        constants (a mask, say): one made outside them (through numpy, say) means operators went unseen, and the
        stream is unusable."""
        if self.failed is None and any(self._node_of(t) is None and not self._made(t)
                                       for t in tree_leaves(out) if isinstance(t, torch.Tensor)):
            self.failed = (f"an output of block {self.block} is not computed by aten operators (the stream would "
                           "miss operators)")

    def _made(self, t: torch.Tensor) -> bool:
        ref = self._constants.get(id(t))
        return ref is not None and ref() is t

    def _record(self, func, args, kwargs, out) -> None:
        tensors = list({id(t): t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}.values())
        nodes = [self._node_of(t) for t in tensors]
        acts = list(dict.fromkeys(n for n in nodes if n is not None))
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not acts:  # reads only weights or constants: folded away
            if all(self._made(t) for t in tensors):  # a constant of the model's, not a tensor from outside torch
                self._constants.update((id(t), weakref.ref(t)) for t in outs)
            return
        node = len(self.events)
        for t in outs:
            self._nodes[id(t)] = (weakref.ref(t), node)
        name = func.overloadpacket.__name__
        base = name.rstrip("_")
        formula = _flops_of(func)
        kind: OpType = "memory"
        flops = 0
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            role, kind = "compute", "conv_1x1"  # matrix products and attention: GEMMs, as a linear layer
            if name in _CONV_OPS:
                weight = args[1]
                transposed = name in ("convolution", "_convolution") and bool(args[6])
                kind = "conv_dense" if transposed else conv_kind(
                    int(args[8]) if name in ("convolution", "_convolution") else 1, tuple(weight.shape[2:]),
                    tuple(args[3]) if name in ("convolution", "_convolution") else (1,),
                    tuple(args[5]) if name in ("convolution", "_convolution") else (1,))
        elif base in _FUSABLE_OPS:
            role = "fusable"
        elif base in _FREE_OPS or func.is_view:
            role = "free"
        else:
            role = "memory"
        act_numel = sum(t.numel() for t, n in zip(tensors, nodes) if n is not None)
        const_numel = sum(t.numel() for t, n in zip(tensors, nodes) if n is None)
        self.events.append(_Event(name, self.block, role, kind, tuple(acts), node, flops, act_numel, const_numel,
                                  outs[0].numel() if outs else 0))

    def ops(self) -> list[Op]:
        """The recorded operators as Ops, conv-bn-activation fused as trace_ops fuses them; a view of a fused
        chain that only it reads passes the fusion on (a linear layer on a 3-D input: matrix product, view,
        activation)."""
        users = Counter(n for e in self.events for n in e.inputs)
        owner: dict[int, int] = {}
        ops: list[Op] = []
        for e in self.events:
            producer = e.inputs[0]
            fusable = producer in owner and users[producer] == 1
            if e.role == "compute":
                ops.append(Op(e.name, e.kind, e.flops, BYTES_PER_ELEMENT * e.act_numel, BYTES_PER_ELEMENT * e.out_numel,
                              BYTES_PER_ELEMENT * e.const_numel, e.block))
                owner[e.node] = len(ops) - 1
            elif fusable and e.role in ("fusable", "free"):
                i = owner[producer]
                if e.role == "fusable":
                    ops[i] = replace(ops[i], fused=ops[i].fused + (e.name,))
                owner[e.node] = i
            elif e.role != "free" and e.out_numel > 0:
                ops.append(Op(e.name, "memory", 0, BYTES_PER_ELEMENT * e.act_numel, BYTES_PER_ELEMENT * e.out_numel,
                              0, e.block))  # activations only, as trace_ops counts a norm module's input
        return ops


def run_ops(blocks: Sequence[nn.Module], x: Any) -> tuple[Optional[list[Op]], str]:
    """Operators of a chain of blocks run on x, each tagged with its block index (OperatorStream); (None, why)
    when the stream could not be read."""
    stream = OperatorStream(x)
    with torch.inference_mode():
        for i, block in enumerate(blocks):
            stream.start(i, block)
            with stream:
                x = block(x)
            stream.block_done(x)
    return (None, stream.failed) if stream.failed else (stream.ops(), "")
