"""Checkpoints: load / inspect any supported MX format, convert, quantize, verify; the oracle's
explanations for problems and models."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _core
from ._arrays import _BF16
from ._layers import Linear, MoE

PathLike = Union[str, "os.PathLike[str]"]

try:
    import ml_dtypes as _ml

    _ST_VIEWS = {"BF16": _BF16, "F16": np.dtype(np.float16),
                 "F8_E4M3": np.dtype(_ml.float8_e4m3fn), "F8_E5M2": np.dtype(_ml.float8_e5m2),
                 "F8_E8M0": np.dtype(_ml.float8_e8m0fnu)}
except ImportError:  # pragma: no cover
    _ST_VIEWS = {"F16": np.dtype(np.float16)}


class Model:
    """An MX checkpoint (compressed-tensors, gpt-oss, AMD Quark, NVIDIA ModelOpt, DeepSeek),
    memory-mapped and seen through mxq's canonical view: every MX weight as packed elements
    ``[..., N, K * bits / 8]`` + E8M0 scales ``[..., N, K / 32]`` (zero-copy numpy views)."""

    def __init__(self, path: PathLike):
        self._m = _core.Model.open(os.fspath(path))

    @property
    def path(self) -> str:
        return self._m.path

    @property
    def format(self) -> str:
        """'compressed-tensors', 'gpt-oss', 'quark', 'modelopt', 'deepseek' or 'unquantized'."""
        return self._m.format

    @property
    def scheme(self) -> str:
        return self._m.scheme

    @property
    def activations(self) -> str:
        """Recorded activation scheme: none, mxfp4, mxfp8, fp8-static, fp8-dynamic (per token),
        fp8-dynamic-tensor, fp8-dynamic-group128, mxfp6-e2m3, mxfp6-e3m2."""
        return self._m.activations

    @property
    def scale_rule(self) -> Optional[str]:
        return self._m.scale_rule

    @property
    def config(self) -> Dict[str, Any]:
        text = self._m.config_json
        return json.loads(text) if text else {}

    @property
    def weights(self) -> List["_core.MXWeight"]:
        """Every MX weight (module, format, shape, packed, scales, bias_name, gate_up_layout)."""
        return self._m.weights

    def weight(self, module: str) -> "_core.MXWeight":
        for w in self._m.weights:
            if w.module == module:
                return w
        raise KeyError(f"no MX weight for module {module!r} in {self.path}")

    @property
    def names(self) -> List[str]:
        """Every tensor name in the checkpoint (sorted)."""
        return self._m.names

    def tensor(self, name: str) -> np.ndarray:
        """A checkpoint tensor as a read-only numpy view (no copy). BF16 and FP8 come back as
        ml_dtypes arrays; packed FP4 / FP6 tensors as their raw bytes."""
        dtype, _shape = self._m.tensor_info(name)
        a = self._m.tensor_raw(name)
        view = _ST_VIEWS.get(dtype)
        return a.view(view) if view is not None and view.itemsize == a.dtype.itemsize else a

    def layers(self, tokens: int = 1) -> List[Dict[str, Any]]:
        """The model as layers backends run: each 2-D MX weight a linear layer, each MoE
        block (stacked gate_up_proj + down_proj, or per-expert tensors assembled into the
        stacked layout) with its router one MoE layer. Problems carry the checkpoint's
        activation key."""
        return self._m.layers(tokens)

    def linear(self, name: str, *, act: Optional[str] = None, out_dtype: Optional[str] = None,
               backend: Optional[str] = None, strict: bool = False, device: str = "cpu",
               tokens: int = 1, use_env: bool = True) -> Linear:
        """The prepared linear layer for module ``name`` (weights stay memory-mapped).
        ``act`` None: the checkpoint's activation scheme (e.g. mxfp4-dynamic for W4A4)."""
        core = self._m.linear(name, act or "", out_dtype, tokens, backend or "", strict, use_env)
        layer = Linear(core, device)
        core.prepare(layer._device)
        return layer

    def moe(self, name: str, *, act: Optional[str] = None, out_dtype: Optional[str] = None,
            backend: Optional[str] = None, strict: bool = False, device: str = "cpu",
            tokens: int = 1, use_env: bool = True) -> MoE:
        """The prepared MoE layer for block ``name`` (e.g. 'model.layers.2.mlp'); its router
        tensors are named in ``layers()``. ``act`` None: the checkpoint's activation scheme."""
        core = self._m.moe(name, act or "", out_dtype, tokens, backend or "", strict, use_env)
        layer = MoE(core, device)
        core.prepare(layer._device)
        return layer

    def router_logits(self, name: str, x: Any) -> np.ndarray:
        """Router logits ``[M, E]`` (float32, float64 sums, as ``mxq run``) of MoE block
        ``name`` for bfloat16 ``x [M, H]``."""
        xa = np.ascontiguousarray(np.asarray(x))
        if _BF16 is None or xa.dtype != _BF16:
            raise ValueError(f"x has dtype {xa.dtype}; router_logits takes bfloat16 x [M, H]")
        return self._m.router_logits(name, xa.view(np.uint16))

    def inspect(self) -> Dict[str, Any]:
        """What ``mxq inspect --json`` prints: format, scheme, activations, weights, ..."""
        mx = sum(w.nbytes for w in self._m.weights)
        other = 0
        for n in self._m.passthrough:
            dtype, shape = self._m.tensor_info(n)
            other += self._m.tensor_raw(n).nbytes
        return {
            "path": self.path, "format": self.format, "scheme": self.scheme,
            "activations": self.activations, "scale_rule": self.scale_rule,
            "ignored": list(self._m.ignored), "mx_bytes": mx, "other_bytes": other,
            "passthrough": list(self._m.passthrough),
            "weights": [{"module": w.module, "format": w.format, "shape": list(w.shape),
                         "bytes": w.nbytes, "packed": w.packed_name, "scales": w.scale_name,
                         "bias": w.bias_name, "gate_up_layout": w.gate_up_layout}
                        for w in self._m.weights],
            "layers": [{"name": l["name"], "op": l["op"], "problem": str(l["problem"]),
                        "act": l["act"], "weight": l["weight"], "up": l["up"],
                        "down": l["down"], "router": l["router_weight"]}
                       for l in self._m.layers(1)],
        }

    def explain(self, tokens: int = 1, *, device: str = "cpu", backend: Optional[str] = None,
                strict: bool = False) -> str:
        """One line per layer: the backend chosen for ``device`` arrays and how, or why none."""
        lines = [f"model    {self.path} ({self.format}, {self.scheme})",
                 f"{'layer':<40} {'op':<7} {'backend':<14} how"]
        for l in self.layers(tokens):
            try:
                name, how = _core.select(l["problem"], device, backend or "", strict)
            except (ValueError, NotImplementedError) as e:
                name, how = "-", str(e)
            lines.append(f"{l['name']:<40} {l['op']:<7} {name:<14} {how}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<mxq.Model {self.path} ({self.format}, {len(self._m.weights)} MX weights)>"


def load(path: PathLike) -> Model:
    """Opens an MX checkpoint (directory or .safetensors file); see :class:`Model`."""
    return Model(path)


def inspect(path: PathLike) -> Dict[str, Any]:
    """``mxq inspect --json`` as a dict."""
    return Model(path).inspect()


def convert(input: PathLike, output: PathLike, *, to: str = "compressed-tensors",
            overwrite: bool = False) -> Dict[str, Any]:
    """Losslessly rewrites an MX checkpoint as compressed-tensors (atomic: written to a
    temporary directory and renamed into place)."""
    if to != "compressed-tensors":
        raise ValueError(f"to={to!r}: only compressed-tensors is written")
    return _core.convert_model(os.fspath(input), os.fspath(output), overwrite)


def quantize_model(input: PathLike, output: PathLike, *, scheme: str = "mxfp4",
                   scale_rule: str = "floor", rounding: str = "rne", activations: str = "none",
                   ignore: Optional[List[str]] = None, default_ignores: bool = True,
                   overwrite: bool = False, threads: int = 0) -> Dict[str, Any]:
    """Quantizes a dense BF16/F16/F32 model to a compressed-tensors MX model (``mxq quantize``)."""
    return _core.quantize_model(os.fspath(input), os.fspath(output), scheme, scale_rule,
                                rounding, activations, list(ignore or []), default_ignores,
                                overwrite, threads, False)


def dequantize_model(input: PathLike, output: PathLike, *, dtype: str = "bf16",
                     overwrite: bool = False) -> Dict[str, Any]:
    """Decodes every MX weight to a dense model (``mxq dequantize``)."""
    return _core.dequantize_model(os.fspath(input), os.fspath(output), dtype, overwrite)


def verify(path: PathLike, against: Optional[PathLike] = None, *, threads: int = 0) -> Dict[str, Any]:
    """``mxq verify --json`` as a dict: per-layer error against ``against`` and consistency
    problems (``ok`` is True when there are none)."""
    return _core.verify_model(os.fspath(path), os.fspath(against) if against else "", threads)


def write_sample_model(outdir: PathLike, *, overwrite: bool = False) -> None:
    """Writes the embedded deterministic BF16 sample model (about 7 MB)."""
    _core.write_sample_model(os.fspath(outdir), overwrite)


def explain(what: Any = None, *, tokens: int = 1, device: str = "cpu",
            backend: Optional[str] = None, strict: bool = False, **problem: Any) -> str:
    """The oracle's explanation.

    ``explain(problem)`` / ``explain(op='linear', weights='mxfp4', n=4096, k=4096, ...)``: the
    table ``mxq explain`` prints (every backend, ok or its reason, the choice).
    ``explain(model_or_path)``: one line per layer of a model for ``device`` arrays."""
    if isinstance(what, Model):
        return what.explain(tokens, device=device, backend=backend, strict=strict)
    if isinstance(what, (str, os.PathLike)):
        return Model(what).explain(tokens, device=device, backend=backend, strict=strict)
    if what is None:
        what = make_problem(**problem)
    elif problem:
        raise TypeError("pass a Problem or keyword arguments, not both")
    return _core.explain(what, backend or "", strict)


def make_problem(op: str = "linear", weights: str = "mxfp4", act: str = "bf16", m: int = 1,
                 n: int = 4096, k: int = 4096, bias: bool = False, out: Optional[str] = None,
                 **moe: Any) -> "_core.Problem":
    """A Problem from ``mxq explain``-style arguments (MoE: n = hidden, k = intermediate,
    experts, topk, activation, layout, routing, ...)."""
    if op == "linear":
        if moe:
            raise TypeError(f"linear problems take no {sorted(moe)}")
        return _core.Problem.linear(weights, act, m, n, k, bias, out)
    if op == "moe":
        experts = moe.pop("experts", 8)
        topk = moe.pop("topk", 2)
        return _core.Problem.moe(weights, act, m, n, k, experts, topk, bias=bias, out=out, **moe)
    raise ValueError(f"op {op!r} (expected linear or moe)")


def backends() -> List[Dict[str, Any]]:
    """Every built-in backend: name, priority, reference, device ('cpu'/'cuda'), supported on
    this machine and why not."""
    return _core.backends()


def device() -> str:
    """This machine as mxq sees it (CPU features, CUDA devices)."""
    return _core.device()
