"""Prepared linear and MoE layers: prepare once (the oracle picks a backend, the backend builds
its weight layout), run many times on CPU or CUDA arrays."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._arrays import (as_core, bias_f32, cuda_stream, device_kind, empty_like_framework,
                      host_array, shape_of)


def _weights(packed: Any, scales: Any, what: str):
    p = host_array(packed, f"{what} packed")
    s = host_array(scales, f"{what} scales")
    return p, s


def _k_of(packed_shape, fmt: str) -> int:
    bits = _core.elem_info(fmt)["bits"]
    return packed_shape[-1] * 8 // bits


class _Layer:
    _core_layer: Any
    _device: str

    @property
    def problem(self) -> "_core.Problem":
        """The layer's problem (M is the tokens it was prepared for)."""
        return self._core_layer.problem

    @property
    def backend(self) -> str:
        """The backend running this layer on the device it was prepared for."""
        name = self._core_layer.backend_for(self._device)
        return name if name is not None else self._core_layer.prepare(self._device)

    def backend_for(self, device: str) -> str:
        """The backend for 'cpu' or 'cuda' arrays (prepares for that device if needed)."""
        name = self._core_layer.backend_for(device)
        return name if name is not None else self._core_layer.prepare(device)

    @property
    def how(self) -> str:
        """How the backend was chosen ('automatic', 'override (backend=)', ...)."""
        self.backend  # noqa: B018 - prepares
        return self._core_layer.how_for(self._device)

    def prepare_for(self, device: str = "cpu") -> str:
        """Prepares the weights for 'cpu' or 'cuda' arrays now (not inside a CUDA graph
        capture); returns the backend name. (``Linear.prepare`` / ``MoE.prepare`` are the
        constructors from packed weights.)"""
        return self._core_layer.prepare(device)

    def explain(self, m: Optional[int] = None) -> str:
        """The oracle's table for this layer's problem (every backend, its verdict, the choice)."""
        return self._core_layer.explain(m or 0)

    def __repr__(self) -> str:
        return f"<mxq.{type(self).__name__} {self.problem} on {self.backend}>"


class Linear(_Layer):
    """A prepared MX linear layer: ``y[M, N] = act(x[M, K]) . W[N, K]^T + bias``.

    Build with :meth:`prepare` (from packed weights) or :meth:`mxq.Model.linear` (from a
    checkpoint); call with ``x [..., K]`` in the activation key's dtype (bf16 for 'bf16' and
    the FP8/MX dynamic keys, f16 for 'fp16'). CPU arrays run on the oracle's CPU backend, CUDA
    arrays on a CUDA backend (when the build has one).
    """

    def __init__(self, core_layer: Any, device: str = "cpu"):
        self._core_layer = core_layer
        self._device = "cuda" if str(device).startswith("cuda") else "cpu"

    @classmethod
    def prepare(cls, packed: Any, scales: Any, fmt: str = "mxfp4", *, bias: Any = None,
                act: str = "bf16", out_dtype: Optional[str] = None, input_scale: float = 1.0,
                backend: Optional[str] = None, strict: bool = False, device: str = "cpu",
                tokens: int = 1, use_env: bool = True) -> "Linear":
        """Prepares ``W`` given as packed ``[N, K * bits / 8]`` and scales ``[N, K / 32]``
        (uint8, host or device arrays; copied to the host if needed).

        ``act``: bf16 | fp16 | fp8-static-tensor (with ``input_scale``) | fp8-dynamic-token |
        fp8-dynamic-tensor | fp8-dynamic-group128 |
        mxfp8-dynamic | mxfp4-dynamic | mxfp6-e2m3-dynamic | mxfp6-e3m2-dynamic (a key no
        backend on the arrays' device runs exactly is refused). ``backend`` forces one (an error if it cannot run the
        problem); ``strict`` makes a fallback to cpu-reference an error. ``device`` ('cpu' or
        'cuda') is prepared now; the other is prepared on first use. ``tokens`` is the M used
        for selection.
        """
        p, s = _weights(packed, scales, "weight")
        if p.ndim != 2:
            raise ValueError(f"packed has shape {p.shape}; expected [N, K * bits / 8]")
        n, k = p.shape[0], _k_of(p.shape, fmt)
        b = bias_f32(bias, "bias")
        prob = _core.Problem.linear(fmt, act, tokens, n, k, b is not None, out_dtype and _dn(out_dtype))
        core = _core.Linear(prob, p, s, b, float(input_scale), [p, s, b], backend or "", strict,
                            use_env)
        layer = cls(core, device)
        core.prepare(layer._device)
        return layer

    @property
    def n(self) -> int:
        return self.problem.n

    @property
    def k(self) -> int:
        return self.problem.k

    def __call__(self, x: Any, out: Any = None, stream: Optional[int] = None) -> Any:
        """``x [..., K]`` -> ``y [..., N]`` on x's framework and device. CUDA work runs on
        ``stream`` (default: the framework's current stream), without synchronising."""
        shape = shape_of(x)
        if len(shape) == 0 or shape[-1] != self.k:
            raise ValueError(f"x has shape {list(shape)}; expected [..., K={self.k}]")
        m = 1
        for d in shape[:-1]:
            m *= d
        xc, x_dtype = as_core(x, "x")
        if out is None:
            result, out_c, out_dtype = empty_like_framework(x, (*shape[:-1], self.n), self.problem.out)
        else:
            result = out
            out_c, out_dtype = as_core(out, "out")
        if len(shape) != 2:
            xc = xc.reshape(m, self.k)
            out_c = out_c.reshape(m, self.n)
        self._core_layer.run(xc, out_c, x_dtype, out_dtype, cuda_stream(x, stream))
        return result


class MoE(_Layer):
    """A prepared fused Mixture-of-Experts layer: routing (softmax-topk, topk-softmax or
    DeepSeek's sigmoid-grouped-topk) from ``router_logits [M, E]``, gate/up GEMM, activation
    (silu or gpt-oss swigluoai), down GEMM, weighted sum: ``x [M, H] -> y [M, H]``."""

    def __init__(self, core_layer: Any, device: str = "cpu"):
        self._core_layer = core_layer
        self._device = "cuda" if str(device).startswith("cuda") else "cpu"

    @classmethod
    def prepare(cls, w13_packed: Any = None, w13_scales: Any = None, w2_packed: Any = None,
                w2_scales: Any = None, fmt: str = "mxfp4", *, topk: int,
                w1_packed: Any = None, w1_scales: Any = None, w3_packed: Any = None,
                w3_scales: Any = None, bias13: Any = None, bias1: Any = None, bias3: Any = None,
                bias2: Any = None, act: str = "bf16", out_dtype: Optional[str] = None,
                activation: str = "silu", layout: str = "chunked", routing: str = "softmax-topk",
                renormalize: bool = True, n_group: int = 1, topk_group: int = 1,
                routed_scaling: float = 1.0, correction_bias: bool = False,
                swiglu_alpha: float = 1.702, swiglu_limit: float = 7.0, expert_map: bool = False,
                input_scale13: float = 1.0, input_scale2: float = 1.0,
                experts: Optional[int] = None,
                backend: Optional[str] = None, strict: bool = False, device: str = "cpu",
                tokens: int = 1, use_env: bool = True) -> "MoE":
        """Prepares experts given as w13 (fused gate/up) packed ``[E, 2I, H * bits / 8]`` and
        scales ``[E, 2I, H / 32]`` (``layout`` chunked or interleaved), or w1 (gate) and w3
        (up) ``[E, I, ...]`` (``layout='separate'``), and w2 (down) ``[E, H, I * bits / 8]``.
        ``correction_bias`` / ``expert_map`` say whether calls pass those arrays. With
        ``expert_map`` (expert parallelism, e.g. from :func:`shard_moe`) the weights hold the
        local experts and ``experts`` is the global count E (router columns, map length)."""
        if w2_packed is None or w2_scales is None:
            raise ValueError("w2_packed and w2_scales (the down projection) are required")
        w2p, w2s = _weights(w2_packed, w2_scales, "w2")
        if w2p.ndim != 3:
            raise ValueError(f"w2 packed has shape {w2p.shape}; expected [E, H, I * bits / 8]")
        e, h, i = w2p.shape[0], w2p.shape[1], _k_of(w2p.shape, fmt)
        if experts is not None:
            if not expert_map:
                raise ValueError("experts (the global expert count) is for expert_map=True layers, "
                                 "whose weights hold the local experts")
            e = int(experts)
        keep = [w2p, w2s]
        w13p = w13s = w1p = w1s = w3p = w3s = None
        if layout == "separate":
            if w1_packed is None or w3_packed is None:
                raise ValueError("layout 'separate' needs w1_packed/w1_scales and w3_packed/w3_scales")
            w1p, w1s = _weights(w1_packed, w1_scales, "w1")
            w3p, w3s = _weights(w3_packed, w3_scales, "w3")
            keep += [w1p, w1s, w3p, w3s]
        else:
            if w13_packed is None or w13_scales is None:
                raise ValueError(f"layout {layout!r} needs w13_packed and w13_scales")
            w13p, w13s = _weights(w13_packed, w13_scales, "w13")
            keep += [w13p, w13s]
        biases = [bias_f32(b, n) for b, n in ((bias13, "bias13"), (bias1, "bias1"),
                                               (bias3, "bias3"), (bias2, "bias2"))]
        keep += biases
        has_bias = any(b is not None for b in biases)
        prob = _core.Problem.moe(fmt, act, tokens, h, i, e, topk, activation, layout, routing,
                                 renormalize, n_group, topk_group, routed_scaling,
                                 correction_bias, swiglu_alpha, swiglu_limit, expert_map,
                                 has_bias, out_dtype and _dn(out_dtype))
        core = _core.MoE(prob, w13p, w13s, w1p, w1s, w3p, w3s, w2p, w2s, *biases,
                         float(input_scale13), float(input_scale2), keep, backend or "", strict,
                         use_env)
        layer = cls(core, device)
        core.prepare(layer._device)
        return layer

    @property
    def hidden(self) -> int:
        return self.problem.n

    @property
    def experts(self) -> int:
        return self.problem.experts

    def __call__(self, x: Any, router_logits: Any, out: Any = None, *,
                 correction_bias: Any = None, expert_map: Any = None,
                 stream: Optional[int] = None) -> Any:
        """``x [M, H]``, ``router_logits [M, E]`` (f32 / bf16 / f16) -> ``y [M, H]``.
        ``correction_bias [E]`` float32 and ``expert_map [E]`` int32 (global -> local expert,
        -1 when not local) when the layer was prepared with them."""
        shape = shape_of(x)
        if len(shape) != 2:  # the view folds leading dimensions; H is the entry's check
            raise ValueError(f"x has shape {list(shape)}; expected [M, H={self.hidden}]")
        xc, x_dtype = as_core(x, "x")
        if isinstance(router_logits, np.ndarray):
            router_logits = np.ascontiguousarray(router_logits)
        lc, l_dtype = as_core(router_logits, "router_logits")
        if out is None:
            result, out_c, out_dtype = empty_like_framework(x, shape, self.problem.out)
        else:
            result = out
            out_c, out_dtype = as_core(out, "out")
        cb = as_core(correction_bias, "correction_bias")[0] if correction_bias is not None else None
        em = as_core(expert_map, "expert_map")[0] if expert_map is not None else None
        self._core_layer.run(xc, lc, out_c, cb, em, x_dtype, l_dtype, out_dtype,
                             cuda_stream(x, stream))
        return result


def _dn(name: str) -> str:
    from ._arrays import dense_name

    return dense_name(name)


__all__ = ["Linear", "MoE", "device_kind"]


def shard_linear(packed: Any, scales: Any, fmt: str = "mxfp4", *, how: str, rank: int,
                 ranks: int, bias: Any = None, act: str = "bf16") -> dict:
    """One rank's part of a linear layer for tensor parallelism (the C++ ``mxq::shard_linear``,
    include/mxq/shard.h): ``how='column'`` splits N (the rank's output columns, joined by an
    all-gather), ``how='row'`` splits K on 32-element blocks (a partial sum, joined by an
    all-reduce; the bias on rank 0 only). Returns ``packed``, ``scales``, ``bias`` (or None) as
    new arrays for :meth:`Linear.prepare`, ``act``, the ranges ``n0 n1 k0 k1``, ``bytes`` and
    ``describe``; a split that would change the numerics is a ValueError naming the rule."""
    p, s = _weights(packed, scales, "weight")
    if p.ndim != 2:
        raise ValueError(f"packed has shape {p.shape}; expected [N, K * bits / 8]")
    n, k = p.shape[0], _k_of(p.shape, fmt)
    b = bias_f32(bias, "bias")
    prob = _core.Problem.linear(fmt, act, 1, n, k, b is not None, None)
    d = dict(_core.shard_linear(prob, p, s, b, how, int(rank), int(ranks)))
    if d["bias"] is not None:
        d["bias"] = d["bias"].reshape(-1)
    d["act"] = act
    return d


def shard_moe(fmt: str = "mxfp4", *, how: str, rank: int, ranks: int, topk: int,
              w2_packed: Any, w2_scales: Any, w13_packed: Any = None, w13_scales: Any = None,
              w1_packed: Any = None, w1_scales: Any = None, w3_packed: Any = None,
              w3_scales: Any = None, bias13: Any = None, bias1: Any = None, bias3: Any = None,
              bias2: Any = None, layout: str = "chunked", act: str = "bf16") -> dict:
    """One rank's part of an MoE layer (the C++ ``mxq::shard_moe``): ``how='expert'`` takes a
    balanced contiguous range of experts ``[e0, e1)`` and returns the local-expert map
    (``expert_map`` int32 [E], -1 for other ranks' experts: prepare with ``expert_map=True``
    and pass it per call); ``how='tensor'`` splits every expert's intermediate columns
    ``[i0, i1)`` on 32-element blocks, gate and up kept together for any ``layout``, the down
    bias on rank 0 only. Either way the ranks' outputs sum to the layer's (an all-reduce).
    Returns the rank's arrays under the argument names (3-D ``[E_local, rows, bytes]``)."""
    w2p, w2s = _weights(w2_packed, w2_scales, "w2")
    if w2p.ndim != 3:
        raise ValueError(f"w2 packed has shape {w2p.shape}; expected [E, H, I * bits / 8]")
    e, h, i = w2p.shape[0], w2p.shape[1], _k_of(w2p.shape, fmt)
    arrays = {"w2_packed": w2p, "w2_scales": w2s}
    for name, pk, sc in (("w13", w13_packed, w13_scales), ("w1", w1_packed, w1_scales),
                         ("w3", w3_packed, w3_scales)):
        if pk is not None or sc is not None:
            arrays[f"{name}_packed"], arrays[f"{name}_scales"] = _weights(pk, sc, name)
    biases = {n: bias_f32(b, n) for n, b in (("bias13", bias13), ("bias1", bias1),
                                             ("bias3", bias3), ("bias2", bias2))}
    arrays.update({n: b for n, b in biases.items() if b is not None})
    prob = _core.Problem.moe(fmt, act, 1, h, i, e, topk, "silu", layout, "softmax-topk", True, 1,
                             1, 1.0, False, 1.702, 7.0, False,
                             any(b is not None for b in biases.values()), None)
    d = dict(_core.shard_moe(prob, arrays, how, int(rank), int(ranks)))
    local = d["e1"] - d["e0"]
    for key, v in list(d.items()):
        if key.endswith(("_packed", "_scales", "bias13", "bias1", "bias3", "bias2")) and v is not None:
            d[key] = v.reshape(local, -1, v.shape[-1]) if key.endswith(("_packed", "_scales")) \
                else v.reshape(local, -1)
    d["act"] = act
    d["layout"] = layout
    return d
