"""vLLM 0.26.0's MX MoE paths as peers of bench/cuda_moe_bench.py, in the same process as mxq:
OpenAI triton_kernels' matmul_ogs (vLLM's default MXFP4 MoE backend on Hopper) and vLLM's Marlin
MoE (MXFP4 fallback; MXFP8's backend on Hopper).

The kernels and vLLM's weight preparation come from ../shared/peers (a measuring instrument, not
part of mxq): `../shared/peers/fetch_vllm_peers.sh build/peers` writes build/peers/ (git-ignored)
on the build machine; carry that folder to the GPU host and pass --vllm-peers build/peers. Only the
numbers measured go into commits.

Those paths implement gpt-oss's layer only: interleaved gate/up rows (gate0, up0, gate1, ...),
SwiGLU-OAI (alpha 1.702, limit 7.0), top-k of the logits then softmax over the k, biases. The
peers get the same canonical MX experts as mxq ([E, 2I, H/2] codes + [E, 2I, H/32] E8M0 scales,
[E, H, I/2] + [E, H, I/32]) and no biases (mxq's bench layer has none: triton_kernels takes
None, Marlin's fused path zeros, a few microseconds at most), and return BF16 [M, H] from BF16 x
and float32 router logits.
"""
import torch

import vllm_marlin_peer  # the loader is shared: the same build/peers folder and ops

load = vllm_marlin_peer.load


def applies(s):
    """Whether the layer `s` (a cuda_moe_bench SHAPES entry) is gpt-oss's, the only one the
    vLLM MX MoE paths run; else the reason."""
    if (s["layout"], s["act"], s["routing"]) != ("interleaved", "swigluoai", "topk-softmax"):
        return "vLLM's MX MoE paths run gpt-oss layers only (interleaved gate/up, swigluoai, " \
               "top-k then softmax)"
    return None


def names(fmt):
    """The peers that run this weight format, in the order they are reported."""
    return ["vllm_triton", "vllm_marlin"] if fmt == "mxfp4" else ["vllm_marlin"]


def build(vp, name, fmt, s, w):
    """f(x bf16 [M, H], logits f32 [M, E]) -> bf16 [M, H]; the weight preparation runs here."""
    e, h, i = s["e"], s["h"], s["i"]
    b13 = torch.zeros(e, 2 * i, dtype=torch.bfloat16, device="cuda")
    b2 = torch.zeros(e, h, dtype=torch.bfloat16, device="cuda")
    if name == "vllm_triton":  # takes no bias at all, as mxq's layer here
        return vp.triton_mxfp4_moe(w["w13"], w["s13"], None, w["w2"], w["s2"], None, top_k=s["k"])
    args = (w["w13"], w["s13"], b13, w["w2"], w["s2"], b2)
    if fmt == "mxfp4":
        return vp.marlin_mxfp4_moe(*args, top_k=s["k"])
    return vp.marlin_mxfp8_moe(*args, top_k=s["k"])
