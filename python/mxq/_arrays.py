"""Array plumbing shared by the package: which framework an array belongs to, how it reaches
the C++ core (numpy bfloat16 travels as a uint16 view), and output allocation on the input's
framework and device. No numerics here."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

try:
    import ml_dtypes as _ml

    _BF16 = np.dtype(_ml.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency; kept importable without it
    _ml = None
    _BF16 = None

DENSE_NAMES = {"f32": "f32", "float32": "f32", "fp32": "f32",
               "bf16": "bf16", "bfloat16": "bf16",
               "f16": "f16", "float16": "f16", "fp16": "f16", "half": "f16"}


def dense_name(dtype: Any) -> str:
    """'f32' / 'bf16' / 'f16' for a dtype given as a name, numpy dtype or torch dtype."""
    if isinstance(dtype, str):
        key = dtype.lower()
        if key in DENSE_NAMES:
            return DENSE_NAMES[key]
        raise ValueError(f"dtype {dtype!r}: expected one of f32, bf16, f16")
    if _is_torch_dtype(dtype):
        return dense_name(str(dtype).split(".")[-1])
    d = np.dtype(dtype)
    if d == np.float32:
        return "f32"
    if d == np.float16:
        return "f16"
    if _BF16 is not None and d == _BF16:
        return "bf16"
    raise ValueError(f"dtype {d}: expected float32, bfloat16 (ml_dtypes) or float16")


def numpy_dtype(name: str) -> np.dtype:
    name = dense_name(name)
    if name == "f32":
        return np.dtype(np.float32)
    if name == "f16":
        return np.dtype(np.float16)
    if _BF16 is None:
        raise ImportError("bfloat16 numpy arrays need ml_dtypes: pip install ml_dtypes")
    return _BF16


def _is_torch_dtype(d: Any) -> bool:
    return type(d).__module__ == "torch" and type(d).__name__ == "dtype"


def is_torch(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and hasattr(x, "data_ptr") and hasattr(x, "is_cuda")


def is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def device_kind(x: Any) -> str:
    """'cpu' or 'cuda' for any array the core accepts."""
    if isinstance(x, np.ndarray):
        return "cpu"
    if is_torch(x):
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"torch tensor on device {x.device}: mxq takes CPU and CUDA tensors")
        return x.device.type
    if hasattr(x, "__dlpack_device__"):
        dev_type = int(x.__dlpack_device__()[0])
        if dev_type in (1, 3):  # kDLCPU, kDLCUDAHost
            return "cpu"
        if dev_type in (2, 13):  # kDLCUDA, kDLCUDAManaged
            return "cuda"
        raise ValueError(f"array on DLPack device type {dev_type}: mxq takes CPU and CUDA arrays")
    return "cpu"  # buffer protocol objects, lists: numpy converts them


def as_core(x: Any, what: str) -> Tuple[Any, Optional[str]]:
    """(object the core can import, dtype override or None). numpy bfloat16 becomes a uint16
    view with the override 'bf16'; torch tensors are detached; other array-likes go through
    numpy when they live on the CPU and have no DLPack export."""
    if isinstance(x, np.ndarray):
        if _BF16 is not None and x.dtype == _BF16:
            return np.ascontiguousarray(x).view(np.uint16), "bf16"
        return x, None
    if is_torch(x):
        return x.detach(), None
    if hasattr(x, "__dlpack__"):
        return x, None
    return np.asarray(x), None


def shape_of(x: Any) -> Tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def empty_like_framework(x: Any, shape: Tuple[int, ...], dtype: str) -> Tuple[Any, Any, Optional[str]]:
    """Allocates an output on x's framework and device. dtype: 'u8' or a dense name.
    Returns (user-facing array, array for the core, dtype override for the core)."""
    if is_torch(x):
        import torch

        td = {"u8": torch.uint8, "f32": torch.float32, "bf16": torch.bfloat16,
              "f16": torch.float16}[dtype if dtype == "u8" else dense_name(dtype)]
        out = torch.empty(shape, dtype=td, device=x.device)
        return out, out, None
    if device_kind(x) == "cuda":
        if is_cupy(x):
            import cupy

            if dtype == "bf16":
                out = cupy.empty(shape, dtype=cupy.uint16)
                return out, out, "bf16"
            cd = {"u8": cupy.uint8, "f32": cupy.float32, "f16": cupy.float16}[dtype if dtype == "u8" else dense_name(dtype)]
            out = cupy.empty(shape, dtype=cd)
            return out, out, None
        raise ValueError(f"{type(x).__name__} on CUDA: pass out= (mxq allocates CUDA outputs only "
                         "for torch tensors and cupy arrays)")
    if dtype == "u8":
        out = np.empty(shape, dtype=np.uint8)
        return out, out, None
    nd = numpy_dtype(dtype)
    out = np.empty(shape, dtype=nd)
    if _BF16 is not None and nd == _BF16:
        return out, out.view(np.uint16), "bf16"
    return out, out, None


def cuda_stream(x: Any, stream: Optional[int]) -> int:
    """The stream a CUDA call runs on: the given one, else the framework's current stream."""
    if stream is not None:
        return int(stream)
    if device_kind(x) != "cuda":
        return 0
    if is_torch(x):
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    if is_cupy(x):
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return 0  # the legacy default stream


def host_array(x: Any, what: str) -> np.ndarray:
    """A contiguous host numpy array of x (weights for prepare: the backends repack from host
    memory). Copies only when x is not already a contiguous host array."""
    if is_torch(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        x = x.contiguous()
        if str(x.dtype) == "torch.bfloat16":
            return x.view(dtype=_torch_int16()).numpy().view(np.uint16).view(_BF16)
        return x.numpy()
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    if hasattr(x, "__dlpack__") and device_kind(x) == "cpu":
        return np.ascontiguousarray(np.from_dlpack(x))
    if device_kind(x) == "cuda":
        if is_cupy(x):
            return np.ascontiguousarray(x.get())
        raise ValueError(f"{what}: a {type(x).__name__} on CUDA; pass host (CPU) weights")
    return np.ascontiguousarray(np.asarray(x))


def _torch_int16():
    import torch

    return torch.int16


def bias_f32(b: Any, what: str) -> Optional[np.ndarray]:
    """A bias as a float32 host array (exact widening of bf16 / f16)."""
    if b is None:
        return None
    a = host_array(b, what)
    if a.dtype not in (np.float32, np.float16) and not (_BF16 is not None and a.dtype == _BF16):
        raise ValueError(f"{what} has dtype {a.dtype}; expected float32, bfloat16 or float16")
    return np.ascontiguousarray(a.astype(np.float32))
