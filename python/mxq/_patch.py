"""transformers integration: :func:`patch_model` swaps a model's quantized ``nn.Linear`` modules
for :class:`~mxq.torch.MXLinear` and its MoE blocks for :class:`MXMoEBlock` (the block's forward
signature, built on :class:`~mxq.torch.MXMoE`), from an MX checkpoint of the same weights.

The checkpoint's layers are the C++ model layer's (``mxq.load(path).layers()``): every 2-D MX
weight one linear layer, every MoE block one MoE layer (per-expert tensors assembled into the
stacked layout, router and routing parameters from config.json). Nothing here re-reads tensors
or re-implements routing; this module only matches those layers to the model's modules.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ._checkpoint import Model
from .torch import _DTYPES, MXLinear, MXMoE


def _tf_major() -> int:
    try:
        import transformers

        return int(transformers.__version__.split(".")[0])
    except Exception:  # pragma: no cover - transformers absent or odd version string
        return 0


# ---- the report --------------------------------------------------------------------------

@dataclasses.dataclass
class Replaced:
    name: str          # module path in the model
    kind: str          # "linear" or "moe"
    original: str      # class name of the module it replaced
    checkpoint: str    # layer name in the checkpoint (differs e.g. Mixtral block_sparse_moe)
    problem: str       # the mxq problem (weights x activation key, shape)
    backend: str       # the backend the oracle chose for `device`


@dataclasses.dataclass
class Left:
    name: str          # module path in the model, or checkpoint layer name (unmatched)
    kind: str          # "linear", "moe" or "checkpoint"
    original: str      # class name ("" for an unmatched checkpoint layer)
    reason: str


@dataclasses.dataclass
class PatchReport:
    """What :func:`patch_model` did: ``replaced`` modules, modules ``left`` alone (nn.Linear
    and MoE blocks of the model that kept their dense weights) and checkpoint layers that
    matched no module (``unmatched``), each with the reason."""

    checkpoint: str
    device: str
    replaced: List[Replaced] = dataclasses.field(default_factory=list)
    left: List[Left] = dataclasses.field(default_factory=list)
    unmatched: List[Left] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every layer of the checkpoint replaced a module."""
        return not self.unmatched

    def names(self, kind: Optional[str] = None) -> List[str]:
        return [r.name for r in self.replaced if kind is None or r.kind == kind]

    def __str__(self) -> str:
        nl = sum(r.kind == "linear" for r in self.replaced)
        nm = len(self.replaced) - nl
        lines = [f"patch_model {self.checkpoint} on {self.device}: replaced {nl} linear, {nm} MoE;"
                 f" left {len(self.left)}; unmatched checkpoint layers {len(self.unmatched)}"]
        for r in self.replaced:
            lines.append(f"  replaced {r.name:<44} {r.original} -> {r.kind} {r.problem} [{r.backend}]"
                         + (f" (checkpoint {r.checkpoint})" if r.checkpoint != r.name else ""))
        for l in self.left:
            lines.append(f"  left     {l.name:<44} {l.original}: {l.reason}")
        for u in self.unmatched:
            lines.append(f"  UNMATCHED checkpoint layer {u.name}: {u.reason}")
        return "\n".join(lines)


# ---- modules -----------------------------------------------------------------------------

class PatchedLinear(MXLinear):
    """An :class:`MXLinear` standing in for an ``nn.Linear``: it casts the input to the layer's
    activation dtype and the output back to the input's dtype, so a float32 or float16 model
    runs it too (a bfloat16 model casts nothing)."""

    def __init__(self, layer: Any):
        super().__init__(layer)
        self.in_dtype = _DTYPES[layer.problem.x_dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        y = torch.ops.mxq.linear(x if dt == self.in_dtype else x.to(self.in_dtype), self.handle,
                                 self.out_features, self.out_dtype)
        return y if y.dtype == dt else y.to(dt)


@dataclasses.dataclass(frozen=True)
class _Adapter:
    """How a transformers MoE block class is driven: its router attribute, how the router
    gives logits, the dense parts kept (shared experts) and what forward returns."""

    router: str                     # attribute holding the router ("gate", "router")
    returns: str                    # "y", "y,logits" or "y,scores"
    keep: Tuple[str, ...] = ()      # submodules kept and added to the output (shared experts)
    router_f32: bool = False        # the router computes in float32 (DeepSeek)
    experts_attr: str = "experts"


def _adapters() -> Dict[str, _Adapter]:
    v5 = _tf_major() >= 5
    return {
        # transformers 5: the routers return (logits, scores, indices) and the blocks a tensor;
        # 4.x: Qwen3-MoE / Mixtral gates are nn.Linear and the blocks return (y, router_logits).
        "Qwen3MoeSparseMoeBlock": _Adapter("gate", "y" if v5 else "y,logits"),
        "MixtralSparseMoeBlock": _Adapter("gate", "y" if v5 else "y,logits"),
        "DeepseekV3MoE": _Adapter("gate", "y", keep=("shared_experts",), router_f32=True),
        "GptOssMLP": _Adapter("router", "y,scores"),
    }


class MXMoEBlock(torch.nn.Module):
    """Replaces a transformers MoE block (``forward(hidden_states [..., H])``, returning what
    the block returns): the block's own router module (kept, so its hooks and
    ``output_router_logits`` still see it) gives the logits, :class:`MXMoE` runs routing and
    the experts, shared experts (kept as they are, or patched themselves) are added."""

    def __init__(self, moe: MXMoE, original: torch.nn.Module, adapter: _Adapter,
                 correction_bias: bool):
        super().__init__()
        self.moe = moe
        self.adapter = adapter
        self.original_class = type(original).__name__
        self.in_dtype = _DTYPES[moe.layer.problem.x_dtype]
        self.hidden = moe.hidden
        self.router_name = adapter.router
        setattr(self, adapter.router, getattr(original, adapter.router))
        for k in adapter.keep:
            setattr(self, k, getattr(original, k))
        self.uses_correction_bias = correction_bias
        self._v5 = _tf_major() >= 5

    def _logits(self, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        router = getattr(self, self.router_name)
        if isinstance(router, torch.nn.Linear):       # transformers 4.x Qwen3-MoE / Mixtral
            return router(x), None
        if self._v5:                                  # (logits, scores, indices)
            out = router(x)
            return out[0], out
        w = router.weight
        b = getattr(router, "bias", None)
        if self.adapter.router_f32:
            logits = F.linear(x.float(), w.float(), None if b is None else b.float())
        else:
            logits = F.linear(x, w, b)
        return logits, None

    def _correction_bias(self) -> Optional[torch.Tensor]:
        if not self.uses_correction_bias:
            return None
        b = getattr(getattr(self, self.router_name), "e_score_correction_bias", None)
        if b is None:
            raise ValueError(f"mxq: the checkpoint's MoE layer has a correction bias but the "
                             f"router of this {self.original_class} has no e_score_correction_bias")
        return b.float()

    def forward(self, hidden_states: torch.Tensor) -> Any:
        shape, dt = hidden_states.shape, hidden_states.dtype
        x = hidden_states.reshape(-1, shape[-1])
        logits, router_out = self._logits(x)
        xin = x if dt == self.in_dtype else x.to(self.in_dtype)
        y = torch.ops.mxq.moe(xin, logits, self.moe.handle, self._correction_bias(), None,
                              self.moe.out_dtype)
        y = (y if y.dtype == dt else y.to(dt)).reshape(shape)
        for k in self.adapter.keep:
            y = y + getattr(self, k)(hidden_states)
        if self.adapter.returns == "y":
            return y
        if self.adapter.returns == "y,logits":
            return y, logits
        # gpt-oss returns the router's scores; transformers 5: (logits, scores, indices),
        # 4.x: (scores, indices).
        if router_out is None:
            router_out = getattr(self, self.router_name)(x)
            return y, router_out[0]
        return y, router_out[1]

    def prepare(self, device: Union[str, torch.device] = "cuda") -> str:
        return self.moe.prepare(device)

    def extra_repr(self) -> str:
        return f"replaces {self.original_class}: {self.moe.layer.problem}"


# ---- matching ----------------------------------------------------------------------------

# Checkpoint names vs module paths: transformers renames some blocks when it loads (Mixtral's
# block_sparse_moe is the module `mlp` from transformers 5 on) and base models drop "model.".
_RENAMES: Tuple[Tuple[str, str], ...] = ((".block_sparse_moe", ".mlp"),)


def _candidates(name: str) -> List[str]:
    out = [name]
    for a, b in _RENAMES:
        if a in name:
            out.append(name.replace(a, b))
    for n in list(out):
        if n.startswith("model."):
            out.append(n[len("model."):])
        else:
            out.append("model." + n)
    return out


def _is_moe_like(mod: torch.nn.Module, adapters: Dict[str, _Adapter]) -> bool:
    name = type(mod).__name__
    return name in adapters or ("moe" in name.lower() and "experts" in dict(mod.named_children()))


def _set(model: torch.nn.Module, path: str, new: torch.nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _param_device(model: torch.nn.Module) -> str:
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device.type
    return "cpu"


def patch_model(model: torch.nn.Module, checkpoint: Union[str, "os.PathLike[str]", Model], *,
                device: Union[str, torch.device, None] = None, act: Optional[str] = None,
                backend: Optional[str] = None, strict: bool = False,
                require_all: bool = False,
                skip: Optional[Callable[[str], bool]] = None) -> PatchReport:
    """Swaps ``model``'s modules for mxq ones built from ``checkpoint`` (a path or
    :class:`mxq.Model` holding the same model's weights, MX-quantized): every ``nn.Linear``
    whose weight the checkpoint stores in an MX format becomes a :class:`PatchedLinear` (an
    :class:`MXLinear`), every MoE block whose experts it stores (Qwen3-MoE, Mixtral,
    DeepSeek-V3, gpt-oss) an :class:`MXMoEBlock`. The rest of the model (embeddings, norms,
    attention math, routers, lm_head, layers the checkpoint keeps dense) is left as it is.

    ``device`` ('cpu' / 'cuda'; default: where the model's parameters are) is the device the
    layers are prepared for now (the other is prepared on first use). The model is not moved:
    the mxq modules hold no parameters, so ``model.to(...)`` before or after is fine.
    ``act`` / ``backend`` / ``strict`` are those of :meth:`mxq.Model.linear`. ``skip(name)``
    True leaves a module alone. ``require_all`` makes a checkpoint layer that matches no
    module an error (otherwise it is listed in ``report.unmatched``).

    Returns a :class:`PatchReport`. A module whose shape, bias or class disagrees with the
    checkpoint layer is left alone with the reason; nothing is replaced silently."""
    md = checkpoint if isinstance(checkpoint, Model) else Model(checkpoint)
    dev = torch.device(device).type if device is not None else _param_device(model)
    report = PatchReport(checkpoint=md.path, device=dev)
    adapters = _adapters()
    modules = dict(model.named_modules())
    handled: Dict[str, str] = {}  # module path -> "replaced" or reason (left)

    def resolve(name: str) -> Optional[str]:
        for c in _candidates(name):
            if c in modules:
                return c
        return None

    specs = md.layers()
    # MoE blocks first: their shared experts are kept and then patched as linear layers.
    for spec in sorted(specs, key=lambda s: s["op"] != "moe"):
        cname, op = spec["name"], spec["op"]
        path = resolve(cname)
        if path is None:
            report.unmatched.append(Left(cname, "checkpoint", "", f"no module named "
                                         f"{' / '.join(_candidates(cname))} in the model"))
            continue
        mod = modules[path]
        cls = type(mod).__name__
        if skip is not None and skip(path):
            report.left.append(Left(path, op, cls, "skipped (skip= returned True)"))
            handled[path] = "skipped"
            continue
        prob = spec["problem"]
        if op == "linear":
            why = None
            if not isinstance(mod, torch.nn.Linear):
                why = f"checkpoint layer {cname} is linear but the module is a {cls}"
            elif (mod.in_features, mod.out_features) != (prob.k, prob.n):
                why = (f"shape [{mod.out_features}, {mod.in_features}] differs from the "
                       f"checkpoint's [{prob.n}, {prob.k}]")
            elif (mod.bias is not None) != bool(prob.bias):
                why = ("the module has a bias the checkpoint lacks" if mod.bias is not None
                       else "the checkpoint has a bias the module lacks")
            if why is not None:
                report.left.append(Left(path, "linear", cls, why))
                handled[path] = why
                continue
            layer = md.linear(cname, act=act, backend=backend, strict=strict, device=dev)
            new: torch.nn.Module = PatchedLinear(layer)
            kind = "linear"
            be = layer.backend
        else:
            adapter = adapters.get(cls)
            why = None
            if adapter is None:
                why = (f"checkpoint layer {cname} is an MoE layer but no adapter drives a "
                       f"{cls} (adapters: {', '.join(sorted(adapters))})")
            else:
                experts = getattr(mod, adapter.experts_attr, None)
                n_exp = (getattr(experts, "num_experts", None) if experts is not None else None)
                if n_exp is None and isinstance(experts, torch.nn.ModuleList):
                    n_exp = len(experts)
                if not hasattr(mod, adapter.router):
                    why = f"the {cls} has no router attribute {adapter.router!r}"
                elif n_exp is not None and n_exp != prob.experts:
                    why = f"the {cls} has {n_exp} experts, the checkpoint {prob.experts}"
            if why is not None:
                report.left.append(Left(path, "moe", cls, why))
                handled[path] = why
                continue
            layer = md.moe(cname, act=act, backend=backend, strict=strict, device=dev)
            new = MXMoEBlock(MXMoE(layer), mod, adapter, bool(spec["correction_bias"]))
            kind = "moe"
            be = layer.backend
        _set(model, path, new)
        handled[path] = "replaced"
        report.replaced.append(Replaced(path, kind, cls, cname, str(prob), be))

    # Everything else that could have been replaced, and why it was not.
    ignored = set(md._m.ignored)
    dense_names = set(md.names)
    replaced_paths = [r.name for r in report.replaced if r.kind == "moe"]
    for path, mod in model.named_modules():
        if path in handled or isinstance(mod, (MXLinear, MXMoE, MXMoEBlock)):
            continue
        inside = next((p for p in replaced_paths if path.startswith(p + ".")), None)
        if isinstance(mod, torch.nn.Linear):
            cls = type(mod).__name__
            names = _candidates(path)
            if any(n in ignored for n in names):
                why = "in the checkpoint's ignore list (kept in high precision)"
            elif any(n + ".weight" in dense_names for n in names):
                why = "the checkpoint stores this weight dense (not MX)"
            else:
                why = "no MX weight for it in the checkpoint"
            if inside is not None:
                why += f" (kept inside the replaced MoE block {inside})"
            report.left.append(Left(path, "linear", cls, why))
        elif _is_moe_like(mod, adapters) and inside is None:
            report.left.append(Left(path, "moe", type(mod).__name__,
                                    "the checkpoint has no MoE layer for this block (its "
                                    "experts are dense or absent)"))
    if require_all and report.unmatched:
        raise LookupError("mxq.patch_model: checkpoint layers matched no module:\n" +
                          "\n".join(f"  {u.name}: {u.reason}" for u in report.unmatched))
    return report


__all__ = ["Left", "MXMoEBlock", "PatchReport", "PatchedLinear", "Replaced", "patch_model"]
