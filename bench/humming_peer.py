"""humming-kernels (PyPI `humming-kernels`, vllm-project/humming) as a peer of the CUDA benchmarks.

Used by bench/cuda_gemm_bench.py (dense W4A16 / W8A16 GEMM) and bench/cuda_moe_bench.py (its
grouped GEMM inside a torch MoE layer). The GPU host has no internet: the wheels are carried in
build/hk-wheels (git-ignored) and installed with
    python3 -m pip install -q --no-index --no-deps --target /tmp/hk build/hk-wheels/*.whl
then PYTHONPATH=/tmp/hk. humming needs torch, cuda-bindings (cuda.bindings.driver / nvrtc),
jinja2, filelock, numpy and pyelftools; with torch >= 2.11 its launcher is a precompiled
stable-ABI library and its kernels are JIT-compiled with NVRTC (or nvcc) the first time a layer
configuration runs: every M interval of its heuristics for that layer is compiled at once, in
parallel, cached under HUMMING_CACHE_DIR (~/.humming/cache by default). The benchmarks time that
first call separately (`compile_s`) and never include it in the kernel timings.

Weights: the same canonical MX tensors that mxq gets. MXFP4: `mxfp4` schema (codes [N, K/2] uint8,
low nibble = even element; E8M0 scales [N, K/32]); MXFP8: the native humming schema with
b_dtype float8e4m3, bs_dtype float8e8m0, group 32 (codes [N, K] bytes viewed as int32 [N, K/4],
element i of a word at bits 8i, which is the byte order). Activations and output BF16
(W4A16 / W8A16: humming dequantizes to BF16 and runs wgmma on Hopper). humming repacks the
weights (`transform()`) into its own layout once, like mxq's prepare.
"""
import gc
import time
import traceback

import torch


def probe():
    """(version string, None) when humming imports, else (None, reason)."""
    try:
        import humming
        from humming.layer import HummingLayer  # noqa: F401
        return f"humming-kernels {humming.__version__}", None
    except Exception as ex:  # noqa: BLE001
        return None, f"{type(ex).__name__}: {str(ex).splitlines()[0][:200] if str(ex) else ''}"


def _weight_config(fmt):
    if fmt == "mxfp4":
        return {"quant_method": "mxfp4"}
    return {"quant_method": "humming", "b_dtype": "float8e4m3", "bs_dtype": "float8e8m0",
            "weight_scale_group_size": 32}


def short(ex):
    msg = str(ex).strip().splitlines()
    return f"{type(ex).__name__}: {(msg[-1] if msg else '')[:240]}"


class HummingLinear:
    """One humming layer built from canonical MX codes + E8M0 scales.

    pieces: list of (row offset, codes uint8 [..., rows, K * bits / 8], scales uint8
    [..., rows, K / 32]) that fill the layer's [E,] N x K weight (several pieces: DeepSeek's separate
    w1 / w3 stacked into one gate/up weight). num_experts: None for a dense layer. gemm_type:
    None (dense) or "grouped_contiguous" (rows sorted by expert, expert_layout = E + 1 offsets).
    """

    def __init__(self, fmt, n, k, pieces, num_experts=None, gemm_type=None, pad=1):
        from humming.layer import HummingLayer
        self.n, self.k, self.pad = n, k, pad
        self.layer = HummingLayer(shape_n=n, shape_k=k, weight_config=_weight_config(fmt),
                                  num_experts=num_experts, pad_n_to_multiple=pad,
                                  pad_k_to_multiple=pad, torch_dtype=torch.bfloat16).cuda()
        w = self.layer.weight.data.view(torch.uint8)
        s = self.layer.weight_scale.data.view(torch.uint8)
        for row, codes, scales in pieces:
            rows = codes.shape[-2]
            w[..., row:row + rows, :].copy_(codes)
            s[..., row:row + rows, :].copy_(scales)
        self.layer.transform()
        torch.cuda.synchronize()
        self.compute_config = None if gemm_type is None else '{"gemm_type": "%s"}' % gemm_type
        self.compile_s = None

    def __call__(self, x, out=None, expert_layout=None):
        return self.layer(x, outputs=out, expert_layout=expert_layout,
                          compute_config=self.compute_config)

    def first_call(self, *args, **kwargs):
        """The first call JIT-compiles every kernel of the layer's heuristics: timed apart."""
        t0 = time.perf_counter()
        y = self(*args, **kwargs)
        torch.cuda.synchronize()
        self.compile_s = time.perf_counter() - t0
        return y

    def free(self):
        del self.layer


def build(fmt, n, k, pieces, num_experts=None, gemm_type=None):
    """HummingLinear with no padding, else N and K padded to multiples of 128 (on the H100 an
    N = 2880 layer fails a tile-shape assertion of humming's kernels unpadded), compiled by a first
    call on one dummy row. Returns (layer, None) or (None, reason)."""
    errors = []
    for pad in (1, 128):
        try:
            layer = HummingLinear(fmt, n, k, pieces, num_experts, gemm_type, pad)
            x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
            offs = None
            if num_experts:
                offs = torch.ones(num_experts + 1, dtype=torch.int64, device="cuda")
                offs[0] = 0
            y = layer.first_call(x, expert_layout=offs)
            if tuple(y.shape) != (1, n):
                raise RuntimeError(f"output shape {tuple(y.shape)}, want (1, {n})")
            return layer, None
        except Exception as ex:  # noqa: BLE001
            errors.append(f"pad {pad}: {short(ex)}")
            traceback.print_exc()
            layer = None
            gc.collect()
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    return None, "; ".join(errors)


class Budget:
    """Caps the wall time spent on humming's JIT compiles (first calls) in one process."""

    def __init__(self, seconds):
        self.left = seconds

    def spend(self, layer):
        if layer is not None and layer.compile_s:
            self.left -= layer.compile_s

    def ok(self):
        return self.left > 0
