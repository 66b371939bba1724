"""torch integration without linking libtorch: ``torch.library`` custom ops in the ``mxq``
namespace and the :class:`MXLinear` / :class:`MXMoE` modules.

Ops (each with a fake/meta implementation, so ``torch.compile`` and
``torch.library.opcheck`` work):

- ``torch.ops.mxq.quantize(x, fmt, scale_rule, rounding, saturation, pad_k) -> (packed, scales)``
- ``torch.ops.mxq.linear(x, handle, n, out_dtype) -> y``
- ``torch.ops.mxq.moe(x, router_logits, handle, correction_bias, expert_map, out_dtype) -> y``

``handle`` names a prepared :class:`mxq.Linear` / :class:`mxq.MoE` (see :func:`register`):
prepared weights are not tensors torch should see, trace or move; the modules hold them. Each
op allocates its output with torch (the caching allocator, so CUDA graph capture works), then
calls the C++ core with data pointers on the tensor's device and torch's current CUDA stream;
nothing inside an op synchronises or allocates device memory. Prepare layers for CUDA
(``module.prepare('cuda')``) before capturing a graph.

On CUDA tensors, quantize runs the library's GPU kernels (src/cuda/quant), and linear and moe
the oracle's CUDA backend (cuda-mma: MXFP4 / MXFP8 weights with bf16 / fp16 activations or an
MX / FP8 activation key, quantized on the GPU as cpu-reference does; a layer no CUDA backend
runs, e.g. an MoE layer with an fp8 key, raises ``NotImplementedError`` with the oracle's
reason).

Activation keys: modules built from a checkpoint run its activation scheme (W4A4
``mxfp4-dynamic``, W8A8 ``mxfp8-dynamic``, Quark ``w_mxfp4_a_fp8`` ``fp8-static-tensor`` with
its input_scale, fp6 activations ``mxfp6-e2m3-dynamic`` / ``mxfp6-e3m2-dynamic``); ``act=``
overrides it (e.g. ``act="bf16"``), and :attr:`MXLinear.act` says which key runs. A key no
backend on the tensors' device computes exactly is refused, never run as 16-bit activations.
"""

import contextlib
import itertools
import os
import threading
import weakref
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from . import _core
from ._checkpoint import Model
from ._layers import Linear, MoE

_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
_DTYPES = {v: k for k, v in _NAMES.items()}

_registry: Dict[int, Union[Linear, MoE]] = {}
_registry_lock = threading.Lock()
_next_handle = itertools.count(1)


def register(layer: Union[Linear, MoE], owner: Any = None) -> int:
    """Registers a prepared layer for the ops; returns its handle. With ``owner``, the handle
    is released when ``owner`` is garbage-collected."""
    if not isinstance(layer, (Linear, MoE)):
        raise TypeError(f"expected mxq.Linear or mxq.MoE, got {type(layer).__name__}")
    with _registry_lock:
        h = next(_next_handle)
        _registry[h] = layer
    if owner is not None:
        weakref.finalize(owner, _registry.pop, h, None)
    return h


def unregister(handle: int) -> None:
    _registry.pop(handle, None)


def _layer(handle: int, kind: type) -> Any:
    layer = _registry.get(handle)
    if layer is None:
        raise ValueError(f"mxq: no prepared layer with handle {handle} (registered: "
                         f"{sorted(_registry)}); use mxq.torch.register()")
    if not isinstance(layer, kind):
        raise ValueError(f"mxq: handle {handle} is a {type(layer).__name__}, not a {kind.__name__}")
    return layer


def _stream(t: torch.Tensor) -> int:
    return int(torch.cuda.current_stream(t.device).cuda_stream) if t.is_cuda else 0


# The out-of-memory exception engines already handle (torch.OutOfMemoryError, torch >= 2.5;
# torch.cuda.OutOfMemoryError before): mxq's MemoryError (a resource-exhausted Status: what was
# being allocated and how many bytes) is re-raised as it inside the torch ops.
_TorchOOM = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError",
                                                                MemoryError)


@contextlib.contextmanager
def _oom_as_torch():
    try:
        yield
    except MemoryError as e:
        raise _TorchOOM(f"mxq: {e}") from e


def _on(t: torch.Tensor) -> Any:
    """Makes t's GPU the current device for the core call (kernels launch on the current
    device; no allocation or synchronisation, so this is fine inside graph capture)."""
    if t.is_cuda and t.device.index is not None and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _check_x(x: torch.Tensor, want: str, cols: int, what: str = "x") -> None:
    if _NAMES.get(x.dtype) != want:
        raise ValueError(f"mxq: {what} has dtype {x.dtype}; this layer takes {_DTYPES[want]}")
    if x.dim() == 0 or x.shape[-1] != cols:
        raise ValueError(f"mxq: {what} has shape {list(x.shape)}; expected [..., {cols}]")
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"mxq: {what} is on {x.device}; mxq takes CPU and CUDA tensors")


def _out_dtype(layer: Any, out_dtype: Optional[torch.dtype]) -> torch.dtype:
    want = _DTYPES[layer.problem.out]
    if out_dtype is not None and out_dtype != want:
        raise ValueError(f"mxq: out_dtype {out_dtype} differs from the layer's output {want}")
    return want


# ---- quantize ----------------------------------------------------------------------------

def _quant_shapes(shape, fmt: str, pad_k: bool) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    kq = _core.quantized_k(int(shape[-1]), pad_k)
    bits = _core.elem_info(fmt)["bits"]
    return (*shape[:-1], kq * bits // 8), (*shape[:-1], kq // 32)


@torch.library.custom_op("mxq::quantize", mutates_args=())
def quantize(x: torch.Tensor, fmt: str = "mxfp4", scale_rule: str = "floor",
             rounding: str = "rne", saturation: str = "saturate",
             pad_k: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """MX-quantizes ``x [..., K]`` (float32 / bfloat16 / float16, CPU or CUDA) along its last
    dimension: ``(packed uint8 [..., K*bits/8], scales uint8 [..., K/32])``, bit-exact with
    :func:`mxq.quantize`."""
    if x.dim() == 0:
        raise ValueError("mxq: x is a scalar; expected [..., K]")
    if x.dtype not in _NAMES:
        raise ValueError(f"mxq: x has dtype {x.dtype}; expected float32, bfloat16 or float16")
    pshape, sshape = _quant_shapes(x.shape, fmt, pad_k)
    xc = x.contiguous()
    packed = torch.empty(pshape, dtype=torch.uint8, device=x.device)
    scales = torch.empty(sshape, dtype=torch.uint8, device=x.device)
    with _on(x), _oom_as_torch():
        _core.quantize_into(xc, packed, scales, fmt, scale_rule, rounding, saturation, False,
                            pad_k, 0, None, _stream(x))
    return packed, scales


@quantize.register_fake
def _(x, fmt="mxfp4", scale_rule="floor", rounding="rne", saturation="saturate", pad_k=False):
    pshape, sshape = _quant_shapes(x.shape, fmt, pad_k)
    return x.new_empty(pshape, dtype=torch.uint8), x.new_empty(sshape, dtype=torch.uint8)


# ---- linear ------------------------------------------------------------------------------

@torch.library.custom_op("mxq::linear", mutates_args=())
def linear(x: torch.Tensor, handle: int, n: int,
           out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``y [..., N] = act(x [..., K]) . W^T + bias`` with the prepared layer ``handle``
    (:func:`register`) on x's device and torch's current stream."""
    layer: Linear = _layer(handle, Linear)
    if n != layer.n:
        raise ValueError(f"mxq: n = {n}, but layer {handle} has N = {layer.n}")
    _check_x(x, layer.problem.x_dtype, layer.k)
    xc = x.contiguous()
    out = torch.empty((*x.shape[:-1], n), dtype=_out_dtype(layer, out_dtype), device=x.device)
    with _on(x), _oom_as_torch():
        layer._core_layer.run_ptr(xc.data_ptr(), out.data_ptr(), xc.numel() // layer.k,
                                  x.is_cuda, _stream(x))
    return out


@linear.register_fake
def _(x, handle, n, out_dtype=None):
    layer = _registry.get(handle)
    dt = out_dtype or (_DTYPES[layer.problem.out] if isinstance(layer, Linear) else x.dtype)
    return x.new_empty((*x.shape[:-1], n), dtype=dt)


# ---- moe ---------------------------------------------------------------------------------

@torch.library.custom_op("mxq::moe", mutates_args=())
def moe(x: torch.Tensor, router_logits: torch.Tensor, handle: int,
        correction_bias: Optional[torch.Tensor] = None,
        expert_map: Optional[torch.Tensor] = None,
        out_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Fused MoE ``x [M, H] -> y [M, H]`` with the prepared layer ``handle``: routing from
    ``router_logits [M, E]`` (f32 / bf16 / f16), experts, weighted sum."""
    layer: MoE = _layer(handle, MoE)
    p = layer.problem
    if x.is_cuda:
        _cuda_moe_backend(layer)
    _check_x(x, p.x_dtype, p.n)
    if x.dim() != 2:
        raise ValueError(f"mxq: x has shape {list(x.shape)}; expected [M, H={p.n}]")
    m = x.shape[0]
    if router_logits.dtype not in _NAMES or tuple(router_logits.shape) != (m, p.experts):
        raise ValueError(f"mxq: router_logits is {router_logits.dtype} {list(router_logits.shape)}; "
                         f"expected float32/bfloat16/float16 [{m}, {p.experts}]")
    for t, what in ((router_logits, "router_logits"), (correction_bias, "correction_bias"),
                    (expert_map, "expert_map")):
        if t is not None and t.device != x.device:
            raise ValueError(f"mxq: {what} is on {t.device}, x on {x.device}")
    if correction_bias is not None and (correction_bias.dtype != torch.float32 or correction_bias.numel() != p.experts):
        raise ValueError(f"mxq: correction_bias must be float32 [{p.experts}]")
    if expert_map is not None and (expert_map.dtype != torch.int32 or expert_map.numel() != p.experts):
        raise ValueError(f"mxq: expert_map must be int32 [{p.experts}]")
    xc = x.contiguous()
    lc = router_logits.contiguous()
    cb = correction_bias.contiguous() if correction_bias is not None else None
    em = expert_map.contiguous() if expert_map is not None else None
    out = torch.empty(x.shape, dtype=_out_dtype(layer, out_dtype), device=x.device)
    with _on(x), _oom_as_torch():
        layer._core_layer.run_ptr(xc.data_ptr(), lc.data_ptr(), _NAMES[lc.dtype], out.data_ptr(),
                                  m, cb.data_ptr() if cb is not None else 0,
                                  em.data_ptr() if em is not None else 0, x.is_cuda, _stream(x))
    return out


def _cuda_moe_backend(layer: MoE) -> str:
    """The CUDA backend of an MoE layer, or NotImplementedError naming what is missing."""
    name = layer._core_layer.backend_for("cuda")
    if name is not None:
        return name
    try:
        return layer._core_layer.prepare("cuda")
    except NotImplementedError as e:
        raise NotImplementedError(
            f"mxq::moe on CUDA tensors: no CUDA backend runs this MoE layer. Oracle: {e}") from None


@moe.register_fake
def _(x, router_logits, handle, correction_bias=None, expert_map=None, out_dtype=None):
    layer = _registry.get(handle)
    dt = out_dtype or (_DTYPES[layer.problem.out] if isinstance(layer, MoE) else x.dtype)
    return x.new_empty(x.shape, dtype=dt)


# ---- modules -----------------------------------------------------------------------------

def _model(src: Any) -> Model:
    return src if isinstance(src, Model) else Model(src)


class MXLinear(torch.nn.Module):
    """An MX linear layer as a module: ``forward(x [..., K]) -> [..., N]`` through
    ``torch.ops.mxq.linear``. The prepared weights live in the :class:`mxq.Linear` (host views
    of the checkpoint; each device's prepared form is built once); nothing is a parameter."""

    def __init__(self, layer: Linear):
        super().__init__()
        if not isinstance(layer, Linear):
            raise TypeError(f"expected mxq.Linear, got {type(layer).__name__}")
        self.layer = layer
        self.handle = register(layer, self)
        self.in_features = layer.k
        self.out_features = layer.n
        self.out_dtype = _DTYPES[layer.problem.out]

    @classmethod
    def from_checkpoint(cls, model: Union[str, "os.PathLike[str]", Model], name: str, *,
                        act: Optional[str] = None, backend: Optional[str] = None,
                        strict: bool = False, device: str = "cpu") -> "MXLinear":
        """Module ``name`` of any supported MX checkpoint (path or :class:`mxq.Model`).
        ``act`` None runs the checkpoint's activation scheme; a key (e.g. "bf16") overrides it."""
        return cls(_model(model).linear(name, act=act, backend=backend, strict=strict,
                                        device=device))

    @classmethod
    def from_weights(cls, packed: Any, scales: Any, fmt: str = "mxfp4", **kw: Any) -> "MXLinear":
        """From packed ``[N, K*bits/8]`` / scales ``[N, K/32]`` (see :meth:`mxq.Linear.prepare`)."""
        return cls(Linear.prepare(packed, scales, fmt, **kw))

    def prepare(self, device: Union[str, torch.device] = "cuda") -> str:
        """Builds the prepared weights for ``device`` now (do this before CUDA graph capture);
        returns the backend name."""
        return self.layer.prepare_for(torch.device(device).type)

    @property
    def backend(self) -> str:
        return self.layer.backend

    @property
    def act(self) -> str:
        """The activation key the layer runs (the checkpoint's scheme unless overridden)."""
        return self.layer.problem.act

    def explain(self) -> str:
        return self.layer.explain()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mxq.linear(x, self.handle, self.out_features, self.out_dtype)

    def extra_repr(self) -> str:
        return f"{self.layer.problem}, handle={self.handle}"


class MXMoE(torch.nn.Module):
    """A fused MoE block as a module: ``forward(x [M, H], router_logits=None) -> [M, H]``
    through ``torch.ops.mxq.moe``. Without ``router_logits`` the router (a dense buffer taken
    from the checkpoint) computes them in float32."""

    def __init__(self, layer: MoE, router_weight: Optional[torch.Tensor] = None,
                 router_bias: Optional[torch.Tensor] = None,
                 correction_bias: Optional[torch.Tensor] = None):
        super().__init__()
        if not isinstance(layer, MoE):
            raise TypeError(f"expected mxq.MoE, got {type(layer).__name__}")
        self.layer = layer
        self.handle = register(layer, self)
        self.hidden = layer.hidden
        self.experts = layer.experts
        self.out_dtype = _DTYPES[layer.problem.out]
        self.register_buffer("router_weight", router_weight)
        self.register_buffer("router_bias", router_bias)
        self.register_buffer("correction_bias", correction_bias)

    @classmethod
    def from_checkpoint(cls, model: Union[str, "os.PathLike[str]", Model], name: str, *,
                        act: Optional[str] = None, backend: Optional[str] = None,
                        strict: bool = False, device: str = "cpu") -> "MXMoE":
        """MoE block ``name`` (e.g. 'model.layers.2.mlp') of any supported MX checkpoint, with
        its router. ``act`` None runs the checkpoint's activation scheme (gate/up input and
        intermediate activation); a key (e.g. "bf16") overrides it."""
        md = _model(model)
        spec = next((l for l in md.layers() if l["name"] == name and l["op"] == "moe"), None)
        if spec is None:
            raise LookupError(f"no MoE layer {name!r} in {md.path}")
        layer = md.moe(name, act=act, backend=backend, strict=strict, device=device)

        def dense(tname: str) -> Optional[torch.Tensor]:
            if not tname:
                return None
            return torch.from_numpy(np.array(md.tensor(tname), dtype=np.float32))

        dev = torch.device(device)
        rw, rb = dense(spec["router_weight"]), dense(spec["router_bias"])
        cb = dense(spec["correction_bias"])  # DeepSeek's e_score_correction_bias, as float32
        return cls(layer, rw.to(dev) if rw is not None else None,
                   rb.to(dev) if rb is not None else None,
                   cb.to(dev) if cb is not None else None)

    def prepare(self, device: Union[str, torch.device] = "cuda") -> str:
        return self.layer.prepare_for(torch.device(device).type)

    @property
    def backend(self) -> str:
        return self.layer.backend

    @property
    def act(self) -> str:
        """The activation key the layer runs (the checkpoint's scheme unless overridden)."""
        return self.layer.problem.act

    def explain(self) -> str:
        return self.layer.explain()

    def route(self, x: torch.Tensor) -> torch.Tensor:
        if self.router_weight is None:
            raise ValueError("this MXMoE has no router weight: pass router_logits")
        return torch.nn.functional.linear(x.float(), self.router_weight.float(),
                                          None if self.router_bias is None else self.router_bias.float())

    def forward(self, x: torch.Tensor, router_logits: Optional[torch.Tensor] = None,
                expert_map: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits = self.route(x) if router_logits is None else router_logits
        return torch.ops.mxq.moe(x, logits, self.handle, self.correction_bias, expert_map,
                                 self.out_dtype)

    def extra_repr(self) -> str:
        return f"{self.layer.problem}, handle={self.handle}"


# transformers integration (needs only torch here; transformers is imported on use).
from ._patch import MXMoEBlock, PatchedLinear, PatchReport, patch_model  # noqa: E402
# Tensor- and expert-parallel modules over torch.distributed (issue 21).
from ._parallel import ColumnParallelMXLinear, ParallelMXMoE, RowParallelMXLinear  # noqa: E402

__all__ = ["ColumnParallelMXLinear", "MXLinear", "MXMoE", "MXMoEBlock", "ParallelMXMoE",
           "PatchReport", "PatchedLinear", "RowParallelMXLinear", "linear", "moe",
           "patch_model", "quantize", "register", "unregister"]
