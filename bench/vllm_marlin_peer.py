"""vLLM 0.26.0's Marlin MXFP4 / MXFP8 dense kernels (the W4A16 / W8A16 linear kernels vLLM picks
on Hopper) as a peer of bench/cuda_gemm_bench.py, in the same process as mxq.

The kernels and vLLM's weight preparation come from ../shared/peers (a measuring instrument, not
part of mxq): `../shared/peers/fetch_vllm_peers.sh build/peers` writes build/peers/ (git-ignored)
on the build machine; carry that folder to the GPU host and pass --vllm-peers build/peers. Only the
numbers measured go into commits. Marlin gets the same canonical MX tensors as mxq (MXFP4 codes
[N, K/2] with element 2i in the low nibble / E4M3 codes [N, K], E8M0 scales [N, K/32]).
"""
import importlib
import os
import sys


def load(peers_dir):
    """(module, None) when vLLM's ops load from peers_dir, else (None, reason)."""
    if not peers_dir:
        return None, "disabled (no --vllm-peers)"
    try:
        os.environ.setdefault("VLLM_PEERS_DIR", os.path.join(os.path.abspath(peers_dir), "vllm"))
        sys.path.insert(0, os.path.abspath(peers_dir))
        vp = importlib.import_module("vllm_peers")
        vp.load_vllm_ops()
        return vp, None
    except Exception as ex:  # noqa: BLE001
        return None, f"{type(ex).__name__}: {str(ex).splitlines()[0][:200] if str(ex) else ''}"


def build(vp, fmt, packed, scales):
    """f(x bf16 [M, K]) -> bf16 [M, N] through vLLM's Marlin linear kernel for this format."""
    return vp.marlin_mxfp4_linear(packed, scales) if fmt == "mxfp4" else \
        vp.marlin_mxfp8_linear(packed, scales)
