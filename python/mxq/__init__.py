"""mxq: MX-quantized (MXFP4 / MXFP6 / MXFP8 / MXINT8) LLM inference from Python.

A binding of the mxq C++ library (nanobind; numerics are never reimplemented here):

- :func:`quantize` / :func:`dequantize`: bit-exact whole-tensor MX quantization of numpy,
  torch or any DLPack array (CPU; CUDA with the CUDA part built).
- :func:`load` -> :class:`Model`: any supported MX checkpoint, zero-copy; :func:`inspect`,
  :func:`convert`, :func:`quantize_model`, :func:`dequantize_model`, :func:`verify`.
- :func:`explain`, :func:`backends`, :func:`device`: the oracle and why it picks a backend.
- :class:`Linear` / :class:`MoE`: prepared layers (prepare once, run many) on the backend the
  oracle picks for the array's device.
- ``mxq.torch``: torch.library custom ops (``torch.ops.mxq.quantize / linear / moe``) and the
  ``MXLinear`` / ``MXMoE`` modules (imported on demand; needs torch).

Errors are ValueError (bad shape, dtype, option), LookupError (missing tensor / layer),
NotImplementedError (valid but unsupported by this build or backend).
"""

from . import _core
from ._checkpoint import (Model, backends, convert, dequantize_model, device, explain, inspect,
                          load, make_problem, quantize_model, verify, write_sample_model)
from ._layers import Linear, MoE, shard_linear, shard_moe
from ._tensor import (MXTensor, decode, dequantize, encode, format_info, pack, quantize,
                      scale_codes, unpack)

Problem = _core.Problem
MXWeight = _core.MXWeight
cuda_built: bool = _core.cuda_built
__version__: str = _core.__version__  # project(mxq VERSION ...) in CMakeLists.txt
__commit__: str = _core.__commit__    # git commit of the build ("" outside a checkout)

__all__ = [
    "Linear", "MoE", "MXTensor", "MXWeight", "Model", "Problem", "backends", "convert",
    "cuda_built", "decode", "dequantize", "dequantize_model", "device", "encode", "explain",
    "format_info", "inspect", "load", "make_problem", "pack", "quantize", "quantize_model",
    "scale_codes", "shard_linear", "shard_moe", "unpack", "verify", "write_sample_model",
]
