"""Whole-tensor MX quantize / dequantize and the element-level numerics, over the C++ core."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from . import _core
from ._arrays import as_core, cuda_stream, dense_name, device_kind, empty_like_framework, shape_of


class MXTensor(NamedTuple):
    """An MX-quantized tensor in mxq's canonical layout: packed elements
    ``[..., K * bits / 8]`` and E8M0 scale codes ``[..., K / 32]`` (both uint8), on the device
    and framework of the input."""

    packed: Any
    scales: Any
    format: str
    k: int


def format_info(fmt: str) -> dict:
    """Element type facts: ``{'elem', 'format', 'bits', 'max_normal', 'is_int', 'pack_group'}``.
    ``fmt`` is an element name (e2m1, e4m3, ...) or a format name (mxfp4, mxfp8, ...)."""
    return _core.elem_info(fmt)


def quantize(x: Any, fmt: str = "mxfp4", *, scale_rule: str = "floor", rounding: str = "rne",
             saturation: str = "saturate", saturate_scale: bool = False, pad_k: bool = False,
             threads: int = 0, out: Optional[tuple] = None, stream: Optional[int] = None) -> MXTensor:
    """Quantizes ``x [..., K]`` (float32 / bfloat16 / float16; numpy, torch or any DLPack
    array, CPU or CUDA) to MX blocks of 32 along the last dimension.

    Bit-exact with ``mxq quantize`` (the same C++ code on the CPU; the same numerics.h on the
    GPU). ``K`` must be a multiple of 32 unless ``pad_k`` (rows are then zero-padded).
    ``out=(packed, scales)`` writes into preallocated uint8 arrays; CUDA work runs on
    ``stream`` (default: the framework's current stream) without synchronising.
    """
    xc, x_dtype = as_core(x, "x")
    shape = shape_of(x)
    if len(shape) == 0:
        raise ValueError("x is a scalar; expected an array [..., K]")
    k = shape[-1]
    kq = _core.quantized_k(k, pad_k)
    info = _core.elem_info(fmt)
    pshape = (*shape[:-1], kq * info["bits"] // 8)
    sshape = (*shape[:-1], kq // 32)
    if out is None:
        packed, packed_c, _ = empty_like_framework(x, pshape, "u8")
        scales, scales_c, _ = empty_like_framework(x, sshape, "u8")
    else:
        packed, scales = out
        packed_c, _ = as_core(packed, "packed")
        scales_c, _ = as_core(scales, "scales")
    _core.quantize_into(xc, packed_c, scales_c, fmt, scale_rule, rounding, saturation,
                        saturate_scale, pad_k, threads, x_dtype, cuda_stream(x, stream))
    return MXTensor(packed, scales, info["format"], kq)


def dequantize(packed: Any, scales: Any = None, fmt: Optional[str] = None, *, dtype: str = "f32",
               threads: int = 0, out: Any = None, stream: Optional[int] = None) -> Any:
    """Decodes MX blocks back to ``dtype`` (f32 exact; bf16 / f16 rounded to nearest even).

    Call as ``dequantize(mx_tensor)`` or ``dequantize(packed, scales, fmt)``. The result is
    ``[..., K]`` on the input's framework and device (numpy bfloat16 is ml_dtypes.bfloat16).
    """
    if isinstance(packed, MXTensor):
        packed, scales, fmt = packed.packed, packed.scales, packed.format
    if scales is None or fmt is None:
        raise ValueError("dequantize needs (packed, scales, fmt) or an MXTensor")
    info = _core.elem_info(fmt)
    pshape = shape_of(packed)
    if len(pshape) == 0:
        raise ValueError("packed is a scalar; expected [..., K * bits / 8]")
    nbytes = pshape[-1]
    if nbytes * 8 % info["bits"]:
        raise ValueError(f"packed's last dimension ({nbytes} bytes) is not a whole number of "
                         f"{info['elem']} elements")
    k = nbytes * 8 // info["bits"]
    oshape = (*pshape[:-1], k)
    dname = dense_name(dtype)
    if out is None:
        result, out_c, out_dtype = empty_like_framework(packed, oshape, dname)
    else:
        result = out
        out_c, out_dtype = as_core(out, "out")
    pc, _ = as_core(packed, "packed")
    sc, _ = as_core(scales, "scales")
    _core.dequantize_into(pc, sc, out_c, fmt, threads, out_dtype, cuda_stream(packed, stream))
    return result


def decode(type_name: str, codes: Any) -> np.ndarray:
    """float32 value of each element code (one code per uint8; ``type_name`` may be 'e8m0')."""
    c = np.ascontiguousarray(np.asarray(codes, dtype=np.uint8))
    out = np.empty(c.shape, dtype=np.float32)
    _core.decode_codes(type_name, c, out)
    return out


def encode(type_name: str, x: Any, *, scale: int = 127, rounding: str = "rne",
           saturation: str = "saturate") -> np.ndarray:
    """Element codes (uint8, one per element) of the finite float32 values ``x / 2^(scale-127)``."""
    xa = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    out = np.empty(xa.shape, dtype=np.uint8)
    _core.encode_values(type_name, xa, out, scale, rounding, saturation)
    return out


def scale_codes(type_name: str, amax: Any, rule: str = "floor", *,
                saturate_scale: bool = False) -> np.ndarray:
    """E8M0 scale code each block amax gets under ``rule`` (floor, rceil, round_up, even,
    even_fp4_mantissa)."""
    a = np.ascontiguousarray(np.asarray(amax, dtype=np.float32))
    out = np.empty(a.shape, dtype=np.uint8)
    _core.scale_codes(type_name, rule, a, out, saturate_scale)
    return out


def pack(type_name: str, codes: Any) -> np.ndarray:
    """Packs element codes (one per uint8) into mxq's packed layout (FP4: two per byte, low
    nibble first; FP6: four in three bytes)."""
    c = np.ascontiguousarray(np.asarray(codes, dtype=np.uint8))
    info = _core.elem_info(type_name)
    if c.ndim == 0 or c.shape[-1] % info["pack_group"]:
        raise ValueError(f"codes' last dimension must be a multiple of {info['pack_group']} "
                         f"for {info['elem']}, got shape {c.shape}")
    out = np.empty((*c.shape[:-1], c.shape[-1] * info["bits"] // 8), dtype=np.uint8)
    _core.pack_codes(type_name, c, out)
    return out


def unpack(type_name: str, packed: Any) -> np.ndarray:
    """Inverse of :func:`pack`: one code per uint8."""
    p = np.ascontiguousarray(np.asarray(packed, dtype=np.uint8))
    info = _core.elem_info(type_name)
    if p.ndim == 0 or (p.shape[-1] * 8) % info["bits"]:
        raise ValueError(f"packed's last dimension ({p.shape[-1] if p.ndim else 0} bytes) is "
                         f"not whole {info['elem']} groups")
    out = np.empty((*p.shape[:-1], p.shape[-1] * 8 // info["bits"]), dtype=np.uint8)
    _core.unpack_codes(type_name, p, out)
    return out
