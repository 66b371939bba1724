"""Tensor- and expert-parallel MX layers over ``torch.distributed`` (issue 21).

Each rank of a process group holds its shard of a layer, cut by the C++ sharding
(include/mxq/shard.h: :func:`mxq.shard_linear` / :func:`mxq.shard_moe`, or
``Model.linear_shard`` / ``Model.moe_shard`` for a checkpoint layer), prepared on the rank's
backend like any :class:`mxq.Linear` / :class:`mxq.MoE`, and the ranks' results are joined by
``torch.distributed`` collectives on tensors:

- :class:`ColumnParallelMXLinear`: rows ``[n0, n1)`` of W; output columns all-gathered along N
  (``gather_output=True``) or left split.
- :class:`RowParallelMXLinear`: K ``[k0, k1)`` in whole 32-blocks, bias on rank 0; partial sums
  in ``reduce_dtype`` (float32 by default: one rounding to the output dtype, as the one-rank
  layer) all-reduced, or reduce-scattered along the output's first dimension.
- :class:`ParallelMXMoE`: expert parallel (experts ``[e0, e1)`` with the local-expert map) or
  tensor parallel inside the experts (I ``[i0, i1)``); tokens replicated on every rank or
  sharded by rank (then all-gathered, computed for every token, and each rank's partial rows
  sent back to the tokens' owner); the combine sums the ranks' partials in rank order.

The process group is an argument of every constructor; nothing is global. ``ordered=True``
replaces the backend's own reduction by an all-gather (or all-to-all) of the partials and a sum
in fixed rank order (rank 0 + rank 1 + ...): bitwise the same on every rank and every run,
whatever the communication library's algorithm. The forward allocates only device (or CPU)
tensors through torch and calls ``torch.distributed`` collectives on them: no host copies, no
``.item()``, no synchronisation of its own. CUDA graph capture of these modules on NCCL is
untested (no multi-GPU machine was available); the gloo tests run on the CPU.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
import torch.distributed as dist

from . import _core
from ._checkpoint import Model
from ._layers import Linear, MoE, _k_of, _weights, shard_linear, shard_moe

_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
_DTYPES = {v: k for k, v in _NAMES.items()}


def _group_ranks(group: Any) -> "tuple[int, int]":
    if group is None:
        raise ValueError("group: pass the torch.distributed process group the layer is split "
                         "over (e.g. dist.group.WORLD or dist.new_group(...)); mxq keeps no "
                         "default group")
    return dist.get_rank(group), dist.get_world_size(group)


def _default_out(fmt: str, act: str) -> torch.dtype:
    # The output dtype a layer with this activation key has by default (the activations').
    return _DTYPES[_core.Problem.linear(fmt, act, 1, 32, 32, False, None).out]


def _dtype_name(d: Union[torch.dtype, str, None], what: str) -> Optional[str]:
    if d is None:
        return None
    if isinstance(d, str):
        d = _DTYPES.get(d, None) or getattr(torch, d, None)
    if d not in _NAMES:
        raise ValueError(f"{what} must be torch.float32, torch.bfloat16 or torch.float16, got {d}")
    return _NAMES[d]


def _model(src: Any) -> Model:
    return src if isinstance(src, Model) else Model(src)


def _gather(t: torch.Tensor, group: Any, ranks: int) -> torch.Tensor:
    """[*shape] on every rank -> [ranks, *shape] (rank r's tensor at index r)."""
    t = t.contiguous()
    # Allocated as the concatenation along dim 0 (what gloo requires; NCCL takes either).
    out = torch.empty((ranks * t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    dist.all_gather_into_tensor(out, t, group=group)
    return out.view(ranks, *t.shape)


def _ordered_sum(parts: torch.Tensor) -> torch.Tensor:
    """parts [R, ...] -> parts[0] + parts[1] + ... + parts[R-1], added left to right."""
    acc = parts[0].clone()
    for r in range(1, parts.shape[0]):
        acc.add_(parts[r])
    return acc


def _sum_all(y: torch.Tensor, group: Any, ranks: int, ordered: bool) -> torch.Tensor:
    """Every rank's partial y summed, the result on every rank."""
    if ranks == 1:
        return y
    if ordered:
        return _ordered_sum(_gather(y, group, ranks))
    dist.all_reduce(y, group=group)
    return y


def _sum_scatter(y: torch.Tensor, group: Any, ranks: int, ordered: bool) -> torch.Tensor:
    """Every rank's partial y [R * m, ...] summed; rank r keeps rows [r * m, (r + 1) * m)."""
    if ranks == 1:
        return y
    y = y.contiguous()
    rows = y.shape[0]
    if rows % ranks != 0:
        raise ValueError(f"mxq: reduce-scatter of {rows} rows over {ranks} ranks: the output's "
                         f"first dimension must be a multiple of the ranks")
    mine = (rows // ranks, *y.shape[1:])
    if ordered:
        recv = torch.empty_like(y)
        dist.all_to_all_single(recv, y, group=group)  # chunk r: rank r's partial of my rows
        return _ordered_sum(recv.view(ranks, *mine))
    out = torch.empty(mine, dtype=y.dtype, device=y.device)
    dist.reduce_scatter_tensor(out, y, group=group)
    return out


class _ParallelBase(torch.nn.Module):
    group: Any
    rank: int
    ranks: int
    shard: Dict[str, Any]

    def describe(self) -> str:
        """This rank's shard as the C++ sharding describes it: ranges, bytes, view or copy."""
        return self.shard["describe"]

    def prepare(self, device: Union[str, torch.device] = "cuda") -> str:
        """Builds this rank's prepared weights for ``device`` now (before CUDA graph capture)."""
        return self.layer.prepare_for(torch.device(device).type)

    @property
    def backend(self) -> str:
        return self.layer.backend

    @property
    def act(self) -> str:
        return self.layer.problem.act

    def explain(self) -> str:
        return self.layer.explain()


# ---- linear ------------------------------------------------------------------------------

class _ParallelLinear(_ParallelBase):
    _how = ""

    def __init__(self, layer: Linear, shard: Dict[str, Any], group: Any, out_dtype: torch.dtype):
        super().__init__()
        from .torch import register

        self.group = group
        self.rank, self.ranks = _group_ranks(group)
        self.layer = layer
        self.handle = register(layer, self)
        self.shard = dict(shard)
        self.in_features = int(shard["k"])
        self.out_features = int(shard["n"])
        self.n0, self.n1 = int(shard["n0"]), int(shard["n1"])
        self.k0, self.k1 = int(shard["k0"]), int(shard["k1"])
        self.out_dtype = out_dtype

    @classmethod
    def _layer_dtype(cls, out: torch.dtype, kw: Dict[str, Any]) -> torch.dtype:
        return out

    @classmethod
    def from_weights(cls, packed: Any, scales: Any, fmt: str = "mxfp4", *, group: Any,
                     bias: Any = None, act: str = "bf16", out_dtype: Any = None,
                     input_scale: float = 1.0, backend: Optional[str] = None,
                     strict: bool = False, device: str = "cpu", tokens: int = 1,
                     **kw: Any) -> "_ParallelLinear":
        """This rank's shard of ``W`` given as packed ``[N, K * bits / 8]`` / scales
        ``[N, K / 32]`` (the arguments of :meth:`mxq.Linear.prepare`), split over ``group``."""
        rank, ranks = _group_ranks(group)
        p, _ = _weights(packed, scales, "weight")
        if p.ndim != 2:
            raise ValueError(f"packed has shape {p.shape}; expected [N, K * bits / 8]")
        n, k = p.shape[0], _k_of(p.shape, fmt)
        out = _DTYPES[_dtype_name(out_dtype, "out_dtype")] if out_dtype is not None \
            else _default_out(fmt, act)
        layer_out = cls._layer_dtype(out, kw)
        d = shard_linear(packed, scales, fmt, how=cls._how, rank=rank, ranks=ranks, bias=bias,
                         act=act)
        layer = Linear.prepare(d["packed"], d["scales"], fmt, bias=d["bias"], act=act,
                               out_dtype=_NAMES[layer_out], input_scale=input_scale,
                               backend=backend, strict=strict, device=device, tokens=tokens)
        shard = {key: d[key] for key in ("n0", "n1", "k0", "k1", "bytes", "describe")}
        shard.update(n=n, k=k)
        return cls(layer, shard, group, out, **kw)

    @classmethod
    def from_checkpoint(cls, model: Union[str, "os.PathLike[str]", Model], name: str, *,
                        group: Any, act: Optional[str] = None, out_dtype: Any = None,
                        backend: Optional[str] = None, strict: bool = False,
                        device: str = "cpu", tokens: int = 1, **kw: Any) -> "_ParallelLinear":
        """This rank's shard of linear module ``name`` of an MX checkpoint (path or
        :class:`mxq.Model`); ``act`` None runs the checkpoint's activation scheme."""
        rank, ranks = _group_ranks(group)
        md = _model(model)
        spec = next((l for l in md.layers(tokens) if l["name"] == name and l["op"] == "linear"),
                    None)
        if spec is None:
            raise LookupError(f"no linear layer {name!r} in {md.path}")
        p = spec["problem"]
        fmt = p.weights
        act_key = act or p.act
        out = _DTYPES[_dtype_name(out_dtype, "out_dtype")] if out_dtype is not None \
            else _default_out(fmt, act_key)
        layer_out = cls._layer_dtype(out, kw)
        core, info = md._m.linear_shard(name, cls._how, rank, ranks, act or "", _NAMES[layer_out],
                                        tokens, backend or "", strict, True)
        layer = Linear(core, device)
        core.prepare(layer._device)
        return cls(layer, dict(info), group, out, **kw)


class ColumnParallelMXLinear(_ParallelLinear):
    """Column-parallel MX linear layer: this rank holds output rows ``[n0, n1)`` of W (and of
    the bias). ``forward(x [..., K])`` is ``[..., N]`` (all-gathered along N, the same on every
    rank) with ``gather_output=True``, else this rank's columns ``[..., n1 - n0]`` (e.g. the
    input of a :class:`RowParallelMXLinear` with ``input_is_parallel=True``). The gathered
    columns are bitwise the one-rank layer's."""

    _how = "column"

    def __init__(self, layer: Linear, shard: Dict[str, Any], group: Any,
                 out_dtype: torch.dtype, gather_output: bool = True):
        super().__init__(layer, shard, group, out_dtype)
        self.gather_output = bool(gather_output)
        self.local_out = self.n1 - self.n0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mxq.linear(x, self.handle, self.local_out, self.out_dtype)
        if not self.gather_output or self.ranks == 1:
            return y
        lead = y.shape[:-1]
        parts = _gather(y.reshape(-1, self.local_out), self.group, self.ranks)  # [R, M, N/R]
        return parts.permute(1, 0, 2).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"{self.describe()}, gather_output={self.gather_output}, backend={self.backend}, "
                f"handle={self.handle}")


class RowParallelMXLinear(_ParallelLinear):
    """Row-parallel MX linear layer: this rank holds K ``[k0, k1)`` of W in whole 32-blocks
    (the bias on rank 0 only) and computes a partial sum in ``reduce_dtype`` (float32 by
    default), joined by ``reduce``:

    - ``"all_reduce"``: the sum on every rank, ``[..., N]``;
    - ``"reduce_scatter"``: the sum split along the output's first dimension (sequence
      parallelism): rank r gets rows ``[r * d0 / R, (r + 1) * d0 / R)``; d0 must divide by R;
    - ``"none"``: this rank's partial sum, in ``reduce_dtype``.

    ``ordered=True`` sums the partials in rank order after an all-gather (all-to-all for the
    reduce-scatter) instead of the collective's own reduction: deterministic and identical on
    every rank whatever the backend's algorithm. The result is cast to ``out_dtype`` once.
    ``input_is_parallel``: x is already this rank's K slice ``[..., k1 - k0]`` (a column
    parallel layer's output without gathering); otherwise x is ``[..., K]`` and the rank takes
    its slice."""

    _how = "row"

    def __init__(self, layer: Linear, shard: Dict[str, Any], group: Any,
                 out_dtype: torch.dtype, reduce: str = "all_reduce", ordered: bool = False,
                 input_is_parallel: bool = False, reduce_dtype: Any = torch.float32):
        super().__init__(layer, shard, group, out_dtype)
        if reduce not in ("all_reduce", "reduce_scatter", "none"):
            raise ValueError(f"reduce must be 'all_reduce', 'reduce_scatter' or 'none', got {reduce!r}")
        self.reduce = reduce
        self.ordered = bool(ordered)
        self.input_is_parallel = bool(input_is_parallel)
        self.reduce_dtype = _DTYPES[_dtype_name(reduce_dtype, "reduce_dtype")]
        if _DTYPES[layer.problem.out] != self.reduce_dtype:
            raise ValueError(f"the rank's layer outputs {layer.problem.out}, reduce_dtype is "
                             f"{self.reduce_dtype}")
        self.local_in = self.k1 - self.k0

    @classmethod
    def _layer_dtype(cls, out: torch.dtype, kw: Dict[str, Any]) -> torch.dtype:
        return _DTYPES[_dtype_name(kw.get("reduce_dtype", torch.float32), "reduce_dtype")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel:
            if x.dim() == 0 or x.shape[-1] != self.in_features:
                raise ValueError(f"mxq: x has shape {list(x.shape)}; expected [..., K={self.in_features}] "
                                 f"(input_is_parallel=False)")
            x = x[..., self.k0:self.k1]
        y = torch.ops.mxq.linear(x, self.handle, self.out_features, self.reduce_dtype)
        if self.reduce == "none":
            return y
        if self.reduce == "all_reduce":
            y = _sum_all(y, self.group, self.ranks, self.ordered)
        else:
            y = _sum_scatter(y, self.group, self.ranks, self.ordered)
        return y if y.dtype == self.out_dtype else y.to(self.out_dtype)

    def extra_repr(self) -> str:
        return (f"{self.describe()}, reduce={self.reduce}, ordered={self.ordered}, "
                f"reduce_dtype={self.reduce_dtype}, backend={self.backend}, handle={self.handle}")


# ---- MoE ---------------------------------------------------------------------------------

class ParallelMXMoE(_ParallelBase):
    """A fused MoE block split over a process group: ``how='expert'`` (expert parallelism:
    experts ``[e0, e1)`` on this rank, prepared with the local-expert map) or ``'tensor'``
    (every expert's intermediate columns ``[i0, i1)``, gate and up together). Every rank routes
    over all E experts from the same logits, computes its part for every token in
    ``combine_dtype`` (float32 by default), and the partials are summed.

    ``sharded_tokens=False``: x ``[M, H]`` is the same on every rank; the result ``[M, H]`` too.
    ``sharded_tokens=True``: each rank passes its own M tokens (the same M on every rank); x
    and the router logits are all-gathered (rank order), every rank computes its part of all
    R * M tokens, and each rank gets its tokens' sum ``[M, H]`` back (all-to-all of the
    partial rows). ``ordered=True`` (default) sums the ranks' partials in rank order
    (deterministic, the same on every rank); ``ordered=False`` uses the collective's own
    all-reduce / reduce-scatter."""

    def __init__(self, layer: MoE, shard: Dict[str, Any], group: Any, how: str,
                 out_dtype: torch.dtype, *, sharded_tokens: bool = False, ordered: bool = True,
                 router_weight: Optional[torch.Tensor] = None,
                 router_bias: Optional[torch.Tensor] = None,
                 correction_bias: Optional[torch.Tensor] = None,
                 device: Union[str, torch.device] = "cpu"):
        super().__init__()
        from .torch import register

        if how not in ("expert", "tensor"):
            raise ValueError(f"how must be 'expert' or 'tensor', got {how!r}")
        self.group = group
        self.rank, self.ranks = _group_ranks(group)
        self.layer = layer
        self.handle = register(layer, self)
        self.how = how
        self.shard = dict(shard)
        self.hidden = layer.hidden
        self.experts = layer.experts
        self.e0, self.e1 = int(shard["e0"]), int(shard["e1"])
        self.i0, self.i1 = int(shard["i0"]), int(shard["i1"])
        self.out_dtype = out_dtype
        self.combine_dtype = _DTYPES[layer.problem.out]
        self.sharded_tokens = bool(sharded_tokens)
        self.ordered = bool(ordered)
        em = shard.get("expert_map")
        # The local-expert map on the device the layer runs on (a buffer: .to() moves it).
        em_t = torch.as_tensor(np.asarray(em, dtype=np.int32)).to(device) if how == "expert" else None
        self.register_buffer("expert_map", em_t)
        self.register_buffer("router_weight", router_weight)
        self.register_buffer("router_bias", router_bias)
        self.register_buffer("correction_bias", correction_bias)

    @classmethod
    def from_weights(cls, w13_packed: Any = None, w13_scales: Any = None, w2_packed: Any = None,
                     w2_scales: Any = None, fmt: str = "mxfp4", *, group: Any, topk: int,
                     how: str = "expert", layout: str = "chunked", act: str = "bf16",
                     out_dtype: Any = None, combine_dtype: Any = torch.float32,
                     w1_packed: Any = None, w1_scales: Any = None, w3_packed: Any = None,
                     w3_scales: Any = None, bias13: Any = None, bias1: Any = None,
                     bias3: Any = None, bias2: Any = None,
                     router_weight: Optional[torch.Tensor] = None,
                     router_bias: Optional[torch.Tensor] = None,
                     correction_bias: Optional[torch.Tensor] = None,
                     sharded_tokens: bool = False, ordered: bool = True,
                     backend: Optional[str] = None, strict: bool = False, device: str = "cpu",
                     tokens: int = 1, **moe: Any) -> "ParallelMXMoE":
        """This rank's shard of the experts given as for :meth:`mxq.MoE.prepare` (``moe``: its
        routing / activation options: activation, routing, renormalize, n_group, ...)."""
        rank, ranks = _group_ranks(group)
        out = _DTYPES[_dtype_name(out_dtype, "out_dtype")] if out_dtype is not None \
            else _default_out(fmt, act)
        cname = _dtype_name(combine_dtype, "combine_dtype")
        d = shard_moe(fmt, how=how, rank=rank, ranks=ranks, topk=topk, w2_packed=w2_packed,
                      w2_scales=w2_scales, w13_packed=w13_packed, w13_scales=w13_scales,
                      w1_packed=w1_packed, w1_scales=w1_scales, w3_packed=w3_packed,
                      w3_scales=w3_scales, bias13=bias13, bias1=bias1, bias3=bias3, bias2=bias2,
                      layout=layout, act=act)
        experts = int(np.asarray(d["expert_map"]).shape[0]) if how == "expert" else None
        layer = MoE.prepare(d["w13_packed"], d["w13_scales"], d["w2_packed"], d["w2_scales"], fmt,
                            topk=topk, w1_packed=d["w1_packed"], w1_scales=d["w1_scales"],
                            w3_packed=d["w3_packed"], w3_scales=d["w3_scales"],
                            bias13=d["bias13"], bias1=d["bias1"], bias3=d["bias3"],
                            bias2=d["bias2"], act=act, out_dtype=cname, layout=layout,
                            correction_bias=correction_bias is not None,
                            expert_map=how == "expert", experts=experts, backend=backend,
                            strict=strict, device=device, tokens=tokens, **moe)
        inter = _k_of(_weights(w2_packed, w2_scales, "w2")[0].shape, fmt)
        shard = {key: d[key] for key in ("e0", "e1", "i0", "i1", "bytes", "describe",
                                         "expert_map")}
        shard.update(experts=layer.experts, inter=inter)
        return cls(layer, shard, group, how, out, sharded_tokens=sharded_tokens,
                   ordered=ordered, router_weight=router_weight, router_bias=router_bias,
                   correction_bias=correction_bias, device=device)

    @classmethod
    def from_checkpoint(cls, model: Union[str, "os.PathLike[str]", Model], name: str, *,
                        group: Any, how: str = "expert", act: Optional[str] = None,
                        out_dtype: Any = None, combine_dtype: Any = torch.float32,
                        sharded_tokens: bool = False, ordered: bool = True,
                        backend: Optional[str] = None, strict: bool = False,
                        device: str = "cpu", tokens: int = 1) -> "ParallelMXMoE":
        """This rank's shard of MoE block ``name`` of an MX checkpoint, with its router (as
        :meth:`mxq.torch.MXMoE.from_checkpoint`)."""
        rank, ranks = _group_ranks(group)
        md = _model(model)
        spec = next((l for l in md.layers(tokens) if l["name"] == name and l["op"] == "moe"), None)
        if spec is None:
            raise LookupError(f"no MoE layer {name!r} in {md.path}")
        p = spec["problem"]
        out = _DTYPES[_dtype_name(out_dtype, "out_dtype")] if out_dtype is not None \
            else _default_out(p.weights, act or p.act)
        core, info = md._m.moe_shard(name, how, rank, ranks, act or "",
                                     _dtype_name(combine_dtype, "combine_dtype"), tokens,
                                     backend or "", strict, True)
        layer = MoE(core, device)
        core.prepare(layer._device)

        def dense(tname: str) -> Optional[torch.Tensor]:
            if not tname:
                return None
            return torch.from_numpy(np.array(md.tensor(tname), dtype=np.float32)).to(device)

        return cls(layer, dict(info), group, how, out, sharded_tokens=sharded_tokens,
                   ordered=ordered, router_weight=dense(spec["router_weight"]),
                   router_bias=dense(spec["router_bias"]),
                   correction_bias=dense(spec["correction_bias"]), device=device)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        if self.router_weight is None:
            raise ValueError("this ParallelMXMoE has no router weight: pass router_logits")
        return torch.nn.functional.linear(
            x.float(), self.router_weight.float(),
            None if self.router_bias is None else self.router_bias.float())

    def forward(self, x: torch.Tensor, router_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits = self.route(x) if router_logits is None else router_logits
        if self.sharded_tokens and self.ranks > 1:
            m = x.shape[0]
            x = _gather(x, self.group, self.ranks).reshape(self.ranks * m, self.hidden)
            logits = _gather(logits, self.group, self.ranks).reshape(self.ranks * m, -1)
        y = torch.ops.mxq.moe(x, logits, self.handle, self.correction_bias, self.expert_map,
                              self.combine_dtype)
        if self.sharded_tokens:
            y = _sum_scatter(y, self.group, self.ranks, self.ordered)
        else:
            y = _sum_all(y, self.group, self.ranks, self.ordered)
        return y if y.dtype == self.out_dtype else y.to(self.out_dtype)

    def extra_repr(self) -> str:
        return (f"{self.describe()}, sharded_tokens={self.sharded_tokens}, "
                f"ordered={self.ordered}, combine_dtype={self.combine_dtype}, "
                f"backend={self.backend}, handle={self.handle}")


__all__ = ["ColumnParallelMXLinear", "ParallelMXMoE", "RowParallelMXLinear"]
