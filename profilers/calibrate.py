"""Per-operator latency model of a device and software stack, fitted to published latencies and validated leave-one-out.

Model: for each operator o of a network (profilers.opcount, conv-bn-activation fused),
    t_o = max(F_o / (eta_type(o) * P), B_o / (eta_mem * BW)) + tau,    T = sum_o t_o + c0,
with types dense conv (k >= 3; 3x3 stride 1, which engines run with Winograd, apart), 1x1 conv and linear,
depthwise/grouped conv, and memory-bound operators (F = 0).
P is the peak FP32 FLOP/s and BW the memory bandwidth of the compute the stack uses.

Fit: least squares on log T (scipy.optimize.least_squares, log-parameters within bounds; residuals divided by
an assumed scatter SIGMA_DATA) with Gaussian priors on the log-parameters as extra residuals (a MAP estimate). The ratios eta_3x3/eta_dense, eta_1x1/eta_dense and eta_dw/eta_dense shrink toward the
median of the other stacks of the same compute class (CPU or GPU), each fitted once with the default priors;
the other parameters have wide priors (PRIOR_SIGMA). Simpler forms share parameters: 'single' is today's
method (one efficiency for compute and memory, per top-level block, no overhead), 'overhead' adds tau and c0,
'types' has the four efficiencies without overhead; 'full' is the model above; 'winograd' adds a separate
efficiency for dense 3x3 stride-1 convolutions (tried, and it does not earn its place: see docs/device_fidelity.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import spearmanr

from profilers.calibration_data import PublishedLatency, load_points
from profilers.errors import ProfileError
from profilers.io import read_json
from profilers.opcount import Op, arch_ops
from profilers.schema import OPERATOR_KINDS as OP_TYPES

BOARDS_PATH = Path(__file__).resolve().parent / "data" / "calibration_boards.json"
FORMS = ("single", "overhead", "types", "full", "winograd")
PARAMS = ("eta_dense", "eta_3x3", "eta_1x1", "eta_dw", "eta_mem", "tau_s", "c0_s")
#: prior means of the log-parameters before any cross-device information (CPU and GPU)
DEFAULT_PRIOR = {"eta_dense": 0.3, "eta_3x3": 0.6, "eta_1x1": 0.3, "eta_dw": 0.05, "eta_mem": 0.3, "tau_s": 2e-5, "c0_s": 1e-3}
#: prior standard deviations in natural-log units: ratios to eta_dense are the informative ones
PRIOR_SIGMA = {"eta_dense": 2.0, "ratio_3x3": 0.5, "ratio_1x1": 0.5, "ratio_dw": 0.5, "eta_mem": 2.0, "tau_s": 2.0, "c0_s": 3.0}
LOG_BOUNDS = {"eta_dense": (1e-4, 8.0), "eta_3x3": (1e-4, 8.0), "eta_1x1": (1e-4, 8.0), "eta_dw": (1e-5, 8.0), "eta_mem": (1e-4, 4.0),
              "tau_s": (1e-8, 1e-2), "c0_s": (1e-7, 1.0)}
#: assumed scatter of log latency around the model, weighing the data against the priors; 1.0 gave a lower
#: leave-one-out error on the published data than 0.2 (8 of 25 stacks above 20 % instead of 3)
SIGMA_DATA = 1.0
MIN_POINTS = 5  # a stack with fewer published points uses the fallback (fit_fallback)


@dataclass(frozen=True)
class Roofline:
    """Peak FP32 FLOP/s and memory bandwidth of the compute a stack uses."""

    peak_flops: float
    bandwidth_bps: float


@dataclass(frozen=True)
class OpArrays:
    """A network's operators as arrays: FLOPs, bytes, type index; and its top-level blocks for today's method."""

    flops: np.ndarray
    bytes: np.ndarray
    kind: np.ndarray  # index into OP_TYPES
    block_flops: np.ndarray
    block_bytes: np.ndarray

    @property
    def n_ops(self) -> int:
        return int(self.flops.size)


def op_arrays(ops: Sequence[Op]) -> OpArrays:
    """Arrays of a list of operators; blocks grouped by Op.block (bytes = weights + first input + last output)."""
    blocks: dict[int, list[Op]] = {}
    for o in ops:
        blocks.setdefault(o.block, []).append(o)
    bf = [sum(o.flops for o in b) for b in blocks.values()]
    bb = [sum(o.weight_bytes for o in b) + b[0].in_bytes + b[-1].out_bytes for b in blocks.values()]
    return OpArrays(np.array([o.flops for o in ops], float), np.array([o.bytes for o in ops], float),
                    np.array([OP_TYPES.index(o.kind) for o in ops]), np.array(bf, float), np.array(bb, float))


def arrays_for(point: PublishedLatency) -> OpArrays:
    """Operator arrays of a published point's architecture, input size and batch."""
    return op_arrays(arch_ops(point.arch, point.input_size, point.batch))


# ----------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Params:
    """Fitted parameters of one device-stack (efficiencies are fractions of P or BW; times in seconds)."""

    eta_dense: float
    eta_3x3: float
    eta_1x1: float
    eta_dw: float
    eta_mem: float
    tau_s: float
    c0_s: float
    form: str = "full"

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARAMS}


def _roofline_s(p: Params, a: OpArrays, roof: Roofline) -> np.ndarray:
    """Per-operator max(F_o / (eta_type P), B_o / (eta_mem BW)), without tau and c0 (seconds)."""
    eta = np.array([p.eta_dense, p.eta_3x3, p.eta_1x1, p.eta_dw, np.inf])[a.kind]
    return np.maximum(a.flops / (eta * roof.peak_flops), a.bytes / (p.eta_mem * roof.bandwidth_bps))


def predict_s(p: Params, a: OpArrays, roof: Roofline) -> float:
    """Latency of one network under the model of p's form (seconds)."""
    if p.form == "single":  # today's per-block roofline with eta_m = eta_c
        comp = a.block_flops / (p.eta_dense * roof.peak_flops)
        mem = a.block_bytes / (p.eta_dense * roof.bandwidth_bps)
        return float(np.maximum(comp, mem).sum())
    return float(_roofline_s(p, a, roof).sum() + a.n_ops * p.tau_s + p.c0_s)


def op_times_s(p: Params, ops: Sequence[Op], roof: Roofline) -> np.ndarray:
    """Per-operator time of the full model (tau included, c0 not): what a derived profile sums per block."""
    return _roofline_s(p, op_arrays(ops), roof) + p.tau_s


def _free(form: str) -> tuple[str, ...]:
    """The parameters a form fits; the others are tied to eta_dense (efficiencies) or zero (overheads)."""
    return {"single": ("eta_dense",), "overhead": ("eta_dense", "tau_s", "c0_s"),
            "types": ("eta_dense", "eta_1x1", "eta_dw", "eta_mem"),
            "full": ("eta_dense", "eta_1x1", "eta_dw", "eta_mem", "tau_s", "c0_s"), "winograd": PARAMS}[form]


def _unpack(x: np.ndarray, form: str) -> Params:
    values = dict(zip(_free(form), np.exp(x)))
    e = values["eta_dense"]
    return Params(eta_dense=e, eta_3x3=values.get("eta_3x3", e), eta_1x1=values.get("eta_1x1", e), eta_dw=values.get("eta_dw", e),
                  eta_mem=values.get("eta_mem", e), tau_s=values.get("tau_s", 0.0), c0_s=values.get("c0_s", 0.0),
                  form=form)


@dataclass(frozen=True)
class Prior:
    """Prior means (natural units) for the parameters; ratios are eta_1x1/eta_dense and eta_dw/eta_dense."""

    eta_dense: float = DEFAULT_PRIOR["eta_dense"]
    ratio_3x3: float = DEFAULT_PRIOR["eta_3x3"] / DEFAULT_PRIOR["eta_dense"]
    ratio_1x1: float = DEFAULT_PRIOR["eta_1x1"] / DEFAULT_PRIOR["eta_dense"]
    ratio_dw: float = DEFAULT_PRIOR["eta_dw"] / DEFAULT_PRIOR["eta_dense"]
    eta_mem: float = DEFAULT_PRIOR["eta_mem"]
    tau_s: float = DEFAULT_PRIOR["tau_s"]
    c0_s: float = DEFAULT_PRIOR["c0_s"]


def _prior_residuals(x: np.ndarray, form: str, prior: Prior) -> list[float]:
    v = dict(zip(_free(form), x))
    out = []
    if form == "single":
        return out
    out.append((v["eta_dense"] - math.log(prior.eta_dense)) / PRIOR_SIGMA["eta_dense"])
    if "eta_3x3" in v:
        out.append((v["eta_3x3"] - v["eta_dense"] - math.log(prior.ratio_3x3)) / PRIOR_SIGMA["ratio_3x3"])
    if "eta_1x1" in v:
        out.append((v["eta_1x1"] - v["eta_dense"] - math.log(prior.ratio_1x1)) / PRIOR_SIGMA["ratio_1x1"])
        out.append((v["eta_dw"] - v["eta_dense"] - math.log(prior.ratio_dw)) / PRIOR_SIGMA["ratio_dw"])
        out.append((v["eta_mem"] - math.log(prior.eta_mem)) / PRIOR_SIGMA["eta_mem"])
    if "tau_s" in v:
        out.append((v["tau_s"] - math.log(prior.tau_s)) / PRIOR_SIGMA["tau_s"])
        out.append((v["c0_s"] - math.log(prior.c0_s)) / PRIOR_SIGMA["c0_s"])
    return out


def fit(arrays: Sequence[OpArrays], latencies_s: Sequence[float], roof: Roofline, form: str = "full",
        prior: Prior = Prior(), sigma_data: float = SIGMA_DATA) -> Params:
    """Least squares on log latency plus the prior residuals; a few starts, the lowest cost wins."""
    free = _free(form)
    obs = np.log(np.asarray(latencies_s, float))
    lo = np.log([LOG_BOUNDS[k][0] for k in free])
    hi = np.log([LOG_BOUNDS[k][1] for k in free])

    def residuals(x: np.ndarray) -> np.ndarray:
        p = _unpack(x, form)
        pred = np.log([predict_s(p, a, roof) for a in arrays])
        return np.concatenate([(pred - obs) / sigma_data, _prior_residuals(x, form, prior)])

    base = {"eta_dense": prior.eta_dense, "eta_3x3": prior.eta_dense * prior.ratio_3x3, "eta_1x1": prior.eta_dense * prior.ratio_1x1,
            "eta_dw": prior.eta_dense * prior.ratio_dw, "eta_mem": prior.eta_mem, "tau_s": prior.tau_s,
            "c0_s": prior.c0_s}
    best = None
    for scale in (1.0, 0.1, 3.0):
        x0 = np.clip(np.log([base[k] * (scale if k.startswith("eta") else 1.0) for k in free]), lo + 1e-9, hi - 1e-9)
        res = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale=1.0, diff_step=1e-4)
        if best is None or res.cost < best.cost:
            best = res
    return _unpack(best.x, form)


# --------------------------------------------------------------------------------------- stacks and boards


@dataclass
class Stack:
    """The published points of one device-stack with the roofline of the compute it uses."""

    key: str
    points: list[PublishedLatency]
    roof: Optional[Roofline]
    compute_class: str  # cpu or gpu
    sources: str = ""
    arrays: list[OpArrays] = field(default_factory=list)

    @property
    def latencies_s(self) -> list[float]:
        return [p.latency_ms / 1e3 for p in self.points]


def load_boards(path: Path = BOARDS_PATH) -> dict[str, dict]:
    """Board roofline figures by board name (aliases resolved)."""
    data = read_json(path, "calibration boards", ProfileError)
    if not isinstance(data, dict) or not isinstance(data.get("boards"), dict):
        raise ProfileError(f"{path}: field 'boards': expected an object of boards by name")
    boards = data["boards"]
    return {name: boards[b["alias"]] if "alias" in b else b for name, b in boards.items()}


def stack_roofline(point: PublishedLatency, boards: dict[str, dict]) -> tuple[Optional[Roofline], str, str]:
    """Roofline of a point's stack from the board figures: CPU peak scaled by threads/cores; GPU peak as is."""
    cls = "cpu" if point.compute == "cpu" else "gpu"
    unit = boards.get(point.board, {}).get(cls)
    if unit is None:
        return None, cls, ""
    peak = unit["peak_gflops"]
    if cls == "cpu" and point.threads:
        peak *= min(point.threads, unit["cores"]) / unit["cores"]
    return Roofline(peak * 1e9, unit["memory_bandwidth_gbs"] * 1e9), cls, unit["source"]


def stacks(points: Optional[list[PublishedLatency]] = None, boards: Optional[dict] = None) -> dict[str, Stack]:
    """Usable points (an architecture maps, fp32/fp16/tf32) grouped by device-stack, with their operator arrays."""
    points = load_points() if points is None else points
    boards = load_boards() if boards is None else boards
    out: dict[str, Stack] = {}
    for p in points:
        if not p.arch or p.precision == "int8":
            continue
        if p.stack not in out:
            roof, cls, src = stack_roofline(p, boards)
            out[p.stack] = Stack(p.stack, [], roof, cls, src)
        out[p.stack].points.append(p)
    for s in out.values():
        s.arrays = [arrays_for(p) for p in s.points]
    return out


@lru_cache(maxsize=1)
def published_stacks() -> dict[str, Stack]:
    """stacks() of the shipped calibration data, built once per process (derive asks for every device)."""
    return stacks()


_OWN_FITS: dict[tuple, Params] = {}


def cross_device_priors(all_stacks: dict[str, Stack]) -> dict[str, Prior]:
    """Per stack: the prior whose ratio means are the medians of the other same-class stacks' own fits."""
    own: dict[str, Params] = {}
    for key, s in all_stacks.items():
        if s.roof is not None and len(s.points) >= MIN_POINTS:
            memo = (key, s.roof, tuple(s.latencies_s))
            if memo not in _OWN_FITS:
                _OWN_FITS[memo] = fit(s.arrays, s.latencies_s, s.roof, "full")
            own[key] = _OWN_FITS[memo]
    priors = {}
    for key, s in all_stacks.items():
        others = [p for k, p in own.items() if k != key and all_stacks[k].compute_class == s.compute_class]
        if not others:
            priors[key] = Prior()
            continue
        med = lambda f: math.exp(statistics.median(math.log(f(p)) for p in others))  # noqa: E731
        priors[key] = Prior(eta_dense=med(lambda p: p.eta_dense),
                            ratio_1x1=med(lambda p: p.eta_1x1 / p.eta_dense),
                            ratio_dw=med(lambda p: p.eta_dw / p.eta_dense), eta_mem=med(lambda p: p.eta_mem),
                            tau_s=med(lambda p: p.tau_s), c0_s=med(lambda p: p.c0_s))
    return priors


# ------------------------------------------------------------------------------------------ leave-one-out


@dataclass(frozen=True)
class LooResult:
    """Leave-one-out relative errors (predicted / published - 1) of one form on one stack."""

    stack: str
    form: str
    models: tuple[str, ...]
    published_ms: tuple[float, ...]
    predicted_ms: tuple[float, ...]

    @property
    def errors(self) -> np.ndarray:
        return np.array(self.predicted_ms) / np.array(self.published_ms) - 1.0

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.errors)))

    @property
    def within_25(self) -> float:
        return float(np.mean(np.abs(self.errors) <= 0.25))

    @property
    def spearman(self) -> float:
        return float(spearmanr(self.published_ms, self.predicted_ms).statistic)


def leave_one_out(s: Stack, form: str, prior: Prior = Prior(),
                  predict_with: Optional[Sequence[OpArrays]] = None) -> LooResult:
    """Fit the stack without each point in turn and predict the point left out (from predict_with[i] instead of
    its operators when given: how another description of the same network fares with the same fit)."""
    preds = []
    for i in range(len(s.points)):
        keep = [j for j in range(len(s.points)) if j != i]
        p = fit([s.arrays[j] for j in keep], [s.latencies_s[j] for j in keep], s.roof, form, prior)
        preds.append(predict_s(p, (predict_with or s.arrays)[i], s.roof) * 1e3)
    return LooResult(s.key, form, tuple(p.model for p in s.points), tuple(p.latency_ms for p in s.points),
                     tuple(preds))


def loo_report(all_stacks: Optional[dict[str, Stack]] = None, forms: Sequence[str] = FORMS) -> list[LooResult]:
    """Leave-one-out of every form on every stack with at least MIN_POINTS points and a known roofline."""
    all_stacks = published_stacks() if all_stacks is None else all_stacks
    priors = cross_device_priors(all_stacks)
    out = []
    for key, s in sorted(all_stacks.items()):
        if s.roof is None or len(s.points) < MIN_POINTS:
            continue
        for form in forms:
            out.append(leave_one_out(s, form, priors[key]))
    return out


# ------------------------------------------------------------------------------- calibrating a catalog device


@dataclass(frozen=True)
class DeviceCalibration:
    """What a derived device carries: the fitted parameters, the stack they model and their validated error."""

    stack: str
    params: Params
    n_points: int
    loo_errors: tuple[float, ...]  # relative errors, predicted / published - 1, each point held out
    method: str  # 'fitted on N published points' or the stated fallback

    @property
    def median_abs_error(self) -> Optional[float]:
        return float(np.median(np.abs(self.loo_errors))) if self.loo_errors else None


def fit_fallback(s: Stack, prior: Prior) -> Params:
    """Too few points: the cross-device default shape (prior means) with one common speed factor fitted on the
    points there are (all efficiencies scaled together, overheads divided by it); the prior alone when none."""
    base = Params(prior.eta_dense, prior.eta_dense * prior.ratio_3x3, prior.eta_dense * prior.ratio_1x1, prior.eta_dense * prior.ratio_dw,
                  prior.eta_mem, prior.tau_s, prior.c0_s)
    if not s.points or s.roof is None:
        return base

    def scaled(k: float) -> Params:
        return Params(base.eta_dense * k, base.eta_3x3 * k, base.eta_1x1 * k, base.eta_dw * k, base.eta_mem * k, base.tau_s / k,
                      base.c0_s / k)

    obs = np.log(s.latencies_s)
    res = least_squares(lambda x: np.log([predict_s(scaled(math.exp(x[0])), a, s.roof) for a in s.arrays]) - obs,
                        [0.0], bounds=([-12.0], [12.0]))
    return scaled(math.exp(res.x[0]))


def calibrate_stack(key: str, roof: Roofline, all_stacks: Optional[dict[str, Stack]] = None,
                    compute_class: Optional[str] = None, anchors: Sequence[PublishedLatency] = ()
                    ) -> DeviceCalibration:
    """Fit the full model for one stack with the given roofline (a catalog device's facts), with its LOO errors;
    the fallback of fit_fallback when the stack has fewer than MIN_POINTS points. anchors are further published
    points (a device's own calibration entries) used only by the fallback."""
    all_stacks = published_stacks() if all_stacks is None else all_stacks
    s = all_stacks.get(key)
    if s is None:
        s = Stack(key, [], roof, compute_class or "cpu")
    s = Stack(s.key, s.points, roof, compute_class or s.compute_class, s.sources, s.arrays)
    if len(s.points) < MIN_POINTS and anchors:
        s = Stack(s.key, s.points + list(anchors), roof, s.compute_class, s.sources,
                  s.arrays + [arrays_for(a) for a in anchors])
    priors = cross_device_priors({**all_stacks, key: s})
    prior = priors[key]
    if len(s.points) < MIN_POINTS:
        how = (f"fallback: only {len(s.points)} published point(s) (< {MIN_POINTS}); cross-device default "
               f"parameters of the {s.compute_class} stacks" + (", one speed factor fitted on them" if s.points else ""))
        return DeviceCalibration(key, fit_fallback(s, prior), len(s.points), (), how)
    params = fit(s.arrays, s.latencies_s, roof, "full", prior)
    loo = leave_one_out(s, "full", prior)
    return DeviceCalibration(key, params, len(s.points), tuple(float(e) for e in loo.errors),
                             f"fitted on {len(s.points)} published points (least squares on log latency, priors "
                             "shrinking the efficiency ratios toward the other stacks' median)")


def dense_block_ops(ops: Sequence[Op]) -> list[Op]:
    """Each top-level block as one dense-convolution operator with the block's FLOPs and bytes: what the derivation
    does with a model it cannot trace into operators."""
    blocks: dict[int, list[Op]] = {}
    for o in ops:
        blocks.setdefault(o.block, []).append(o)
    return [Op(f"block{b}", "conv_dense", sum(o.flops for o in group), group[0].in_bytes, group[-1].out_bytes,
               sum(o.weight_bytes for o in group), b) for b, group in blocks.items()]


@lru_cache(maxsize=None)
def dense_fallback_loo(key: str, roof: Roofline, compute_class: str) -> tuple[float, ...]:
    """Leave-one-out relative errors of the dense-operator fallback on a stack's published points: the full model
    fitted without each point, the point predicted from its blocks as dense operators; () below MIN_POINTS."""
    all_stacks = published_stacks()
    s = all_stacks.get(key)
    if s is None or len(s.points) < MIN_POINTS:
        return ()
    s = Stack(s.key, s.points, roof, compute_class, s.sources, s.arrays)
    prior = cross_device_priors({**all_stacks, key: s})[key]
    dense = [op_arrays(dense_block_ops(arch_ops(p.arch, p.input_size, p.batch))) for p in s.points]
    return tuple(float(e) for e in leave_one_out(s, "full", prior, dense).errors)


# ---------------------------------------------------------------------------------------------------- report


def report_rows(results: list[LooResult]) -> list[dict]:
    """One row per stack: n and, per form, median |error|, share within 25 %, Spearman's rho."""
    rows: dict[str, dict] = {}
    for r in results:
        row = rows.setdefault(r.stack, {"stack": r.stack, "n": len(r.models)})
        row[f"{r.form} MdAE %"] = 100 * r.median_abs_error
        row[f"{r.form} <=25 %"] = 100 * r.within_25
        row[f"{r.form} rho"] = r.spearman
    return list(rows.values())


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m profilers.calibrate --report`: leave-one-out validation of every form on every stack."""
    parser = argparse.ArgumentParser(prog="python -m profilers.calibrate", description=main.__doc__)
    parser.add_argument("--report", action="store_true", help="print the leave-one-out table")
    parser.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated subset of {', '.join(FORMS)}")
    parser.add_argument("--details", action="store_true", help="also print each held-out prediction")
    args = parser.parse_args(argv)
    if not args.report:
        parser.print_help()
        return 0
    import pandas as pd

    forms = [f for f in args.forms.split(",") if f]
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        print(f"calibrate: error: unknown form(s) {', '.join(unknown)}; known: {', '.join(FORMS)}", file=sys.stderr)
        return 2
    results = loo_report(forms=forms)
    print("Leave-one-out validation against published latencies (profilers/data/calibration.csv): each point is "
          "predicted by a fit without it.\nn: published points of the stack; per form, MdAE %: median |predicted / "
          "published - 1|; <=25 %: share of points within 25 %; rho: Spearman rank correlation.\n")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 70)
    print(pd.DataFrame(report_rows(results)).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.details:
        for r in results:
            if r.form == "full":
                print(f"\n{r.stack}")
                for m, pub, pred in zip(r.models, r.published_ms, r.predicted_ms):
                    print(f"  {m:20s} published {pub:9.2f} ms  LOO {pred:9.2f} ms  {100 * (pred / pub - 1):+6.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
