#!/usr/bin/env python3
"""The mxq fused MoE layer (cuda-hopper and cuda-mma, --backends) against its peers, all in one process (run on the GPU host).

Usage: python3 bench/cuda_moe_bench.py --shim build/cuda/bench/libmxq_bench_cuda_shim.so \
           --out moe.json [--quick] [--formats mxfp4,mxfp8] [--shapes gpt-oss-120b,...]
           [--ms 1,16] [--routings uniform,skewed] [--reps 20]

Cases (issue 6): three MoE layers (SHAPES), tokens M, MXFP4 / MXFP8 expert weights with BF16
activations and output, two router-logit distributions:
  uniform: logits ~ N(0, 1) i.i.d. per token and expert (float32);
  skewed:  the same plus a fixed per-expert offset of +SKEW_OFFSET (3.0) on 2 * topk "hot"
           experts, the first 2 * topk of torch.randperm(E) under torch.manual_seed(SKEW_SEED),
           so most (token, slot) pairs go to a few experts while the rest still get some tokens.
Per case: mxq's time through the ctypes shim (median of CUDA-event timings, the L2 flushed
before every run, as bench/cuda_gemm_bench.py does; routing, dispatch, both grouped GEMMs and the
combine: the whole layer from router logits), the weight-bandwidth floor (bytes of the distinct
experts the routing hits, gate/up + down codes and E8M0 scales, divided by the device-to-device
copy bandwidth measured in this process), % of that floor, TFLOP/s (2 M topk 3 H I / t) and its
% of the BF16 peak measured in this process (cuBLAS BF16 GEMMs, bf16_peak_source), and the
BF16 baseline built from torch in the same process on the same x and logits (torch routing,
stable sort by expert, gather, torch._grouped_mm for gate/up and down with the activation in
between, weighted index_add_ combine; a per-expert torch.matmul loop if _grouped_mm is missing;
no host synchronisation inside). Up to M = --graph-max-m (512) both are also captured into a
CUDA graph and the replays timed the same way (graph_us, bf16_graph_us): the launch cost out,
as an engine runs decode; mxq's replay must give the eager output bit for bit.

humming-kernels (bench/humming_peer.py), when importable: humming has no fused MoE layer, only
MoE grouped GEMMs, so its peer is the BF16 baseline's torch layer with both torch._grouped_mm
calls replaced by humming's grouped-contiguous GEMM (gemm_type "grouped_contiguous": rows sorted by
expert, E + 1 offsets) on the same canonical MX experts (gate/up [E, 2I, H] in the layer's own
row layout, DeepSeek's w1 and w3 stacked into one [E, 2I, H] weight; down [E, H, I]), checked
against the same float32 reference as mxq and timed eager and as a graph like the others
(humming_*). Its first call per layer JIT-compiles (humming_layers: gate_up_compile_s,
down_compile_s; not timed);
--humming-shapes / --humming-budget-s limit that.

vLLM 0.26.0's MX MoE paths (bench/vllm_moe_peer.py, --vllm-peers build/peers from
../shared/peers), on gpt-oss layers only (the only ones they run): triton_kernels' matmul_ogs
(vllm_triton_*, vLLM's MXFP4 MoE choice on Hopper) and Marlin MoE (vllm_marlin_*, its MXFP4
fallback and its MXFP8 path), prepared once per layer from the same canonical MX experts, checked
against the same float32 reference and timed eager and as a graph (vllm_layers: prepare times).
The selection used for the floor is computed in torch with the same rule as mxq (float64):
top-k of the logits (softmax-topk, topk-softmax), or sigmoid scores, group score = sum of the
best 2 in each group, the best topk_group groups kept, top-k among their experts.

Correctness before timing: mxq's output is compared with a float32 torch reference of the same
MoE on the dequantized weights (intermediate rounded to BF16 like the kernel), relative
Frobenius error < 2e-2, for every M up to --check-max-m (default: all); the BF16 baseline is
checked the same way against its own weights for M <= 64.

Weights are random, generated on the GPU: E2M1 / E4M3 code bytes uniform (E4M3 NaN codes
0x7F / 0xFF replaced by 0x7E / 0xFE), E8M0 scales uniform in 118..123 (2^-9..2^-4) for MXFP4 and
112..117 for MXFP8 (E4M3 elements reach 448 = 2^8.8, E2M1 only 6: the shift keeps the weight
magnitudes alike). Results are written to --out after every case, with the run's provenance
(bench/provenance.py): the commit measured (MXQ_COMMIT first, then git), the commit the shim
was built from (`binary_commit`, as the shim says it), the shim's sha256,
device, driver, CUDA runtime, torch / triton versions, the peers' versions (`peers`) and the copy
bandwidth and BF16 peak measured in this process.
"""
import argparse
import ctypes
import json
import math
import statistics
import sys
import time

import torch

import case_list
import forced_config
import humming_peer
import vllm_moe_peer
import provenance

# The layers (name: hidden h, intermediate i, experts e, top-k k, gate/up layout, activation,
# routing, groups) and token counts: tests/cases/cases.json, sets.cuda_moe_bench (the one case
# list of the tests and benchmarks). The shim's MoE has no biases: gpt-oss runs without them.
SHAPES, MS, QUICK_MS = case_list.moe_set("cuda_moe_bench")
LAYOUT = {"chunked": 0, "interleaved": 1, "separate": 2}
ACT = {"silu": 0, "swigluoai": 1}
ROUTING = {"softmax-topk": 0, "topk-softmax": 1, "sigmoid-grouped-topk": 2}
SCALES = {"mxfp4": (118, 123), "mxfp8": (112, 117)}
SKEW_OFFSET = 3.0
SKEW_SEED = 1234
SWIGLU_ALPHA, SWIGLU_LIMIT = 1.702, 7.0
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


class Shim:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        self.lib.mxq_shim_prepare_moe_on.argtypes = [
            ctypes.c_char_p, ctypes.c_int, i64, i64, i64, i64, ctypes.c_int, ctypes.c_int,
            ctypes.c_int, i64, i64, vp, vp, vp, vp, vp, vp, ctypes.POINTER(vp), ctypes.c_char_p,
            ctypes.c_int]
        self.lib.mxq_shim_plan.argtypes = [vp, i64, ctypes.c_char_p, ctypes.c_int]
        self.lib.mxq_shim_run_moe.argtypes = [vp, i64, vp, vp, vp, vp, ctypes.c_char_p,
                                              ctypes.c_int]
        self.lib.mxq_shim_free.argtypes = [vp]
        self.err = ctypes.create_string_buffer(1024)
        self.forced = {}  # handle -> MXQ_HOPPER_CONFIG of its "name@CONFIG" backend

    def prepare_moe(self, backend, elem, s, w):
        name, cfg = forced_config.split(backend)
        h = ctypes.c_void_p()
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        with forced_config.env(cfg):
            self._prepare(name, elem, s, w, h, ptr)
        self.forced[h.value] = cfg
        return h

    def _prepare(self, backend, elem, s, w, h, ptr):
        if self.lib.mxq_shim_prepare_moe_on(
                backend.encode(), elem, s["h"], s["i"], s["e"], s["k"], LAYOUT[s["layout"]], ACT[s["act"]],
                ROUTING[s["routing"]], s["n_group"], s["topk_group"], ptr(w["w13"]),
                ptr(w["s13"]), ptr(w.get("w3")), ptr(w.get("s3")), ptr(w["w2"]), ptr(w["s2"]),
                ctypes.byref(h), self.err, 1024):
            raise RuntimeError(self.err.value.decode())

    def run_moe(self, h, m, x, logits, y):
        stream = torch.cuda.current_stream().cuda_stream
        with forced_config.env(self.forced.get(h.value, "")):
            if self.lib.mxq_shim_run_moe(h, m, x.data_ptr(), logits.data_ptr(), y.data_ptr(),
                                         stream, self.err, 1024):
                raise RuntimeError(self.err.value.decode())

    def plan(self, h, m):
        buf = ctypes.create_string_buffer(2048)
        with forced_config.env(self.forced.get(h.value, "")):
            self.lib.mxq_shim_plan(h, m, buf, 2048)
        return buf.value.decode()

    def free(self, h):
        self.lib.mxq_shim_free(h)


class Timer:
    """Median of CUDA-event timings, a 256 MiB write before each run evicting L2 (50 MB), then
    a short GPU spin so that the host's launch work of the timed call overlaps the GPU's."""

    def __init__(self, reps):
        self.reps = reps
        self.flush = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda")

    def median_us(self, fn):
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        once = time.perf_counter() - t0
        fn()
        reps = self.reps if once < 0.02 else max(7, self.reps // 3)  # keep slow cases short
        ts = []
        for _ in range(reps):
            self.flush.zero_()
            if hasattr(torch.cuda, "_sleep"):  # ~100 us of GPU spin: hides the host launch cost
                torch.cuda._sleep(200_000)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) * 1e3)
        return statistics.median(ts), reps


def capture(fn):
    """fn captured into a CUDA graph (after a warm-up on a side stream), or the reason why not."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        torch.cuda.synchronize()
        return g, None
    except Exception as ex:  # noqa: BLE001
        torch.cuda.synchronize()
        return None, f"{type(ex).__name__}: {str(ex).splitlines()[0][:200]}"


# ---------------------------------------------------------------------------------- weights

def random_mx(fmt, shape_nk, gen):
    """Canonical MX tensor [E, N, K]: packed codes + E8M0 scales, on the GPU."""
    e, n, k = shape_nk
    kb = k // 2 if fmt == "mxfp4" else k
    codes = torch.randint(0, 256, (e, n, kb), dtype=torch.uint8, device="cuda", generator=gen)
    if fmt == "mxfp8":  # no NaN codes: 0x7F -> 0x7E, 0xFF -> 0xFE (one expert at a time)
        for j in range(e):
            c = codes[j]
            c.sub_(((c & 0x7F) == 0x7F).to(torch.uint8))
    lo, hi = SCALES[fmt]
    scales = torch.randint(lo, hi + 1, (e, n, k // 32), dtype=torch.uint8, device="cuda",
                           generator=gen)
    return codes, scales


def make_mx_weights(fmt, s, gen):
    e, h, i = s["e"], s["h"], s["i"]
    w = {}
    if s["layout"] == "separate":
        w["w13"], w["s13"] = random_mx(fmt, (e, i, h), gen)
        w["w3"], w["s3"] = random_mx(fmt, (e, i, h), gen)
    else:
        w["w13"], w["s13"] = random_mx(fmt, (e, 2 * i, h), gen)
    w["w2"], w["s2"] = random_mx(fmt, (e, h, i), gen)
    return w


def dequant(fmt, packed, scales):
    """[N, K * bits / 8] codes + [N, K / 32] scales -> float32 [N, K]."""
    n = packed.shape[0]
    if fmt == "mxfp4":
        lut = torch.tensor(E2M1 + [-v for v in E2M1], device=packed.device)
        vals = lut[torch.stack([packed & 15, packed >> 4], dim=-1).reshape(n, -1).long()]
    else:
        vals = packed.view(torch.float8_e4m3fn).float()
    return vals * torch.exp2(scales.float() - 127.0).repeat_interleave(32, dim=1)


def mx_expert(fmt, s, w):
    """e -> (gate [I, H], up [I, H], down [H, I]) float32, dequantized, in the weights' layout."""
    i = s["i"]

    def get(e):
        if s["layout"] == "separate":
            g = dequant(fmt, w["w13"][e], w["s13"][e])
            u = dequant(fmt, w["w3"][e], w["s3"][e])
        else:
            w13 = dequant(fmt, w["w13"][e], w["s13"][e])
            if s["layout"] == "interleaved":
                g, u = w13[0::2], w13[1::2]
            else:
                g, u = w13[:i], w13[i:]
        return g, u, dequant(fmt, w["w2"][e], w["s2"][e])
    return get


def make_bf16_weights(s, gen):
    """BF16 baseline weights, nn.Linear style: w13 [E, 2I, H] (gate rows then up), w2 [E, H, I]."""
    e, h, i = s["e"], s["h"], s["i"]
    w13 = torch.empty(e, 2 * i, h, dtype=torch.bfloat16, device="cuda")
    w2 = torch.empty(e, h, i, dtype=torch.bfloat16, device="cuda")
    w13.normal_(0.0, 0.02, generator=gen)
    w2.normal_(0.0, 0.02, generator=gen)
    return w13, w2


def bf16_expert(s, w13, w2):
    i = s["i"]
    return lambda e: (w13[e, :i].float(), w13[e, i:].float(), w2[e].float())


# ---------------------------------------------------------------------------------- routing

def route(logits, s, dtype):
    """Top-k ids [M, k] and weights [M, k] (float32) with mxq's rule, computed in `dtype`."""
    l, k = logits.to(dtype), s["k"]
    if s["routing"] == "topk-softmax":
        v, ids = l.topk(k, dim=-1)
        w = torch.softmax(v, dim=-1)
    elif s["routing"] == "softmax-topk":
        w, ids = torch.softmax(l, dim=-1).topk(k, dim=-1)
        w = w / w.sum(-1, keepdim=True)  # renormalised (Qwen3 norm_topk_prob)
    else:
        m, e = l.shape
        sc = torch.sigmoid(l)
        g = sc.view(m, s["n_group"], e // s["n_group"])
        gscore = g.topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(gscore, dtype=torch.bool)
        keep.scatter_(1, gscore.topk(s["topk_group"], dim=-1).indices, True)
        masked = g.masked_fill(~keep.unsqueeze(-1), float("-inf")).view(m, e)
        ids = masked.topk(k, dim=-1).indices
        w = sc.gather(1, ids)
        w = w / w.sum(-1, keepdim=True)  # renormalised, routed scaling 1 (the shim's)
    return ids, w.float()


def activation(s, g, u):
    if s["act"] == "silu":
        return torch.nn.functional.silu(g) * u
    g = g.clamp(max=SWIGLU_LIMIT)
    u = u.clamp(-SWIGLU_LIMIT, SWIGLU_LIMIT)
    return g * torch.sigmoid(SWIGLU_ALPHA * g) * (u + 1)


def reference(s, x, logits, expert):
    """float32 MoE on dequantized weights, one expert at a time (only the experts hit)."""
    ids, w = route(logits, s, torch.float64)
    flat, wflat = ids.reshape(-1), w.reshape(-1)
    y = torch.zeros(x.shape[0], s["h"], dtype=torch.float32, device="cuda")
    xf = x.float()
    for e in torch.unique(flat).tolist():
        sel = (flat == e).nonzero().squeeze(1)
        t = sel // s["k"]
        g_w, u_w, d_w = expert(e)
        xt = xf.index_select(0, t)
        a = activation(s, xt @ g_w.t(), xt @ u_w.t()).bfloat16().float()
        y.index_add_(0, t, (a @ d_w.t()) * wflat[sel].unsqueeze(1))
        del g_w, u_w, d_w
    return y


def rel_err(y, ref):
    return ((y.float() - ref).norm() / ref.norm()).item()


# ---------------------------------------------------------------------------------- BF16 peer

def grouped_mm_works():
    if not hasattr(torch, "_grouped_mm"):
        return False, "torch._grouped_mm missing"
    try:
        a = torch.randn(40, 64, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(4, 32, 64, device="cuda", dtype=torch.bfloat16)
        offs = torch.tensor([0, 17, 17, 40], device="cuda", dtype=torch.int32)
        out = torch._grouped_mm(a, b.transpose(1, 2), offs=offs)
        ref = torch.cat([a[:17] @ b[1].t(), a[17:] @ b[3].t()])
        err = rel_err(out, ref.float())
        return err < 1e-2, f"probe rel err {err:.1e}"
    except Exception as ex:  # noqa: BLE001
        return False, f"{type(ex).__name__}: {str(ex).splitlines()[0][:200]}"


def bf16_moe(s, x, logits, w13, w2, grouped):
    """The BF16 baseline: routing, sort, gather, gate/up GEMM, activation, down GEMM, combine."""
    m, k, i = x.shape[0], s["k"], s["i"]
    ids, w = route(logits, s, torch.float32)
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // k
    xs = x.index_select(0, tok)
    counts = torch.zeros(s["e"], dtype=torch.int32, device="cuda").scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int32))  # bincount would sync the host
    if grouped:
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        gu = torch._grouped_mm(xs, w13.transpose(1, 2), offs=offs)
        a = activation(s, gu[:, :i], gu[:, i:])
        o = torch._grouped_mm(a, w2.transpose(1, 2), offs=offs)
    else:
        o = torch.empty(m * k, s["h"], dtype=torch.bfloat16, device="cuda")
        start = 0
        for e, c in enumerate(counts.tolist()):
            if c:
                gu = xs[start:start + c] @ w13[e].t()
                o[start:start + c] = activation(s, gu[:, :i], gu[:, i:]) @ w2[e].t()
                start += c
    o = o.float() * w.reshape(-1)[order].unsqueeze(1)
    return torch.zeros(m, s["h"], dtype=torch.float32, device="cuda").index_add_(
        0, tok, o).to(torch.bfloat16)


def humming_layers(fmt, s, w):
    """humming grouped GEMMs for the layer: (gate/up, down, info) or (None, None, info)."""
    e, h, i = s["e"], s["h"], s["i"]
    p13 = [(0, w["w13"], w["s13"])]
    if s["layout"] == "separate":
        p13.append((i, w["w3"], w["s3"]))
    info = {}
    h13, why = humming_peer.build(fmt, 2 * i, h, p13, e, "grouped_contiguous")
    if h13 is None:
        return None, None, {"error": f"gate/up: {why}"}
    info.update(gate_up_compile_s=h13.compile_s, gate_up_pad=h13.pad)
    h2, why = humming_peer.build(fmt, h, i, [(0, w["w2"], w["s2"])], e, "grouped_contiguous")
    if h2 is None:
        h13.free()
        return None, None, {"error": f"down: {why}", **info}
    info.update(down_compile_s=h2.compile_s, down_pad=h2.pad)
    return h13, h2, info


def humming_moe(s, x, logits, h13, h2):
    """The BF16 baseline's torch layer with humming's grouped GEMMs on the MX experts."""
    m, k, i = x.shape[0], s["k"], s["i"]
    ids, w = route(logits, s, torch.float32)
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tok = order // k
    xs = x.index_select(0, tok)
    counts = torch.zeros(s["e"], dtype=torch.int64, device="cuda").scatter_add_(
        0, flat, torch.ones_like(flat, dtype=torch.int64))
    offs = torch.nn.functional.pad(torch.cumsum(counts, 0), (1, 0))
    gu = h13(xs, expert_layout=offs)
    if s["layout"] == "interleaved":
        g, u = gu[:, 0::2], gu[:, 1::2]
    else:
        g, u = gu[:, :i], gu[:, i:]
    a = activation(s, g, u).contiguous()
    o = h2(a, expert_layout=offs)
    o = o.float() * w.reshape(-1)[order].unsqueeze(1)
    return torch.zeros(m, s["h"], dtype=torch.float32, device="cuda").index_add_(
        0, tok, o).to(torch.bfloat16)


# ---------------------------------------------------------------------------------- main

def inputs(s, name, routing, m):
    gen = torch.Generator(device="cuda")
    gen.manual_seed(list(SHAPES).index(name) * 1000003 + (routing == "skewed") * 7919 + m)
    x = torch.randn(m, s["h"], device="cuda", dtype=torch.bfloat16, generator=gen)
    logits = torch.randn(m, s["e"], device="cuda", dtype=torch.float32, generator=gen)
    if routing == "skewed":
        g = torch.Generator().manual_seed(SKEW_SEED)
        hot = torch.randperm(s["e"], generator=g)[:2 * s["k"]].cuda()
        logits[:, hot] += SKEW_OFFSET
    return x, logits.contiguous()


def kernel_times(fn):
    """Each GPU kernel's time (us) in one call of fn, by torch.profiler (CUPTI), summed by
    kernel name (shortened), in launch order."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out = {}
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = e.name.split("(")[0].split("<")[0].split("::")[-1][:60]
        out[name] = out.get(name, 0.0) + e.device_time_total
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="every shape and format, M 1 and 2048, 5 reps")
    ap.add_argument("--formats", default="mxfp4,mxfp8")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--routings", default="uniform,skewed")
    ap.add_argument("--ms", default="")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--check-max-m", type=int, default=1 << 30)
    ap.add_argument("--graph-max-m", type=int, default=512,
                    help="also time CUDA-graph replays (mxq and the BF16 baseline) up to this M")
    ap.add_argument("--backends", default="cuda-hopper,cuda-mma",
                    help="mxq MoE backends, all timed in this process; the first that prepares "
                         "is the case's 'us' / 'graph_us', the others '<name>_us' (cuda-mma: "
                         "mma_us) and vs_<name> = their time / the first's; name@CONFIG runs "
                         "a backend with MXQ_HOPPER_CONFIG=CONFIG (bench/forced_config.py: A/B "
                         "of launch configs in one process)")
    ap.add_argument("--kernels", action="store_true",
                    help="per case, each GPU kernel's time in one run of the first backend "
                         "(torch.profiler), recorded as 'kernels'")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-humming", action="store_true")
    ap.add_argument("--humming-shapes", default="", help="layer names (default: every shape)")
    ap.add_argument("--humming-budget-s", type=float, default=1e9,
                    help="stop building humming layers once their JIT compiles took this long")
    ap.add_argument("--vllm-peers", default="",
                    help="build/peers from ../shared/peers/fetch_vllm_peers.sh: vLLM's "
                         "triton_kernels and Marlin MX MoE (gpt-oss layers; vllm_moe_peer.py)")
    args = ap.parse_args()
    if args.quick:
        args.reps = min(args.reps, 5)

    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is plain float32
    vp, vp_error = vllm_moe_peer.load(args.vllm_peers)  # before CUDA starts (lazy loading)
    vllm_note = "vLLM 0.26.0 triton_kernels + Marlin MX MoE" if vp else \
        f"not available: {vp_error}"
    shim = Shim(args.shim)
    timer = Timer(args.reps)
    props = torch.cuda.get_device_properties(0)
    # Copy bandwidth and BF16 peak measured here with this bench's timer (bench/provenance.py).
    rates = provenance.measure(lambda fn: timer.median_us(fn)[0])
    bw, peak, peak_source = rates["copy_bandwidth_Bps"], rates["bf16_peak_flops"], \
        rates["bf16_peak_source"]
    hk_version, hk_error = (None, "disabled (--no-humming)") if args.no_humming else \
        humming_peer.probe()
    humming_note = hk_version or f"unavailable: {hk_error}"
    hk_budget = humming_peer.Budget(args.humming_budget_s)
    hk_shapes = [v for v in args.humming_shapes.split(",") if v]
    grouped, probe = grouped_mm_works()
    baseline = ("torch._grouped_mm (CUTLASS BF16 grouped GEMM)" if grouped else
                "per-expert torch.matmul loop over the experts with tokens") + \
        ": torch routing, stable argsort by expert, gather, gate/up GEMM, activation in BF16, " \
        "down GEMM, float32 weighted index_add_ combine"
    result = {**provenance.environment(args.shim, args.vllm_peers,
                                       {"humming": humming_note, "vllm_moe": vllm_note}),
              "device": props.name, "sms": props.multi_processor_count,
              **rates, "torch": torch.__version__, "humming": humming_note,
              "vllm_moe": vllm_note, "bf16_baseline": baseline, "grouped_mm_probe": probe,
              "reps": args.reps,
              "skew": {"offset": SKEW_OFFSET, "hot_experts": "2 * topk",
                       "rule": f"logits ~ N(0,1) + {SKEW_OFFSET} on the first 2*topk experts of "
                               f"torch.randperm(E) with torch.manual_seed({SKEW_SEED})"},
              "scales": SCALES, "argv": sys.argv[1:], "humming_layers": [], "vllm_layers": [],
              "cases": []}
    print(f"# {props.name}: copy bandwidth {bw / 1e12:.2f} TB/s; BF16 peak "
          f"{peak / 1e12:.0f} TFLOP/s ({peak_source}); humming-kernels {humming_note}; "
          f"vLLM MoE {vllm_note}; "
          f"BF16 baseline {baseline} ({probe}); commit {result['commit']} (shim built from "
          f"{result.get('binary_commit')}); "
          f"shim sha256 {result['shim_sha256'][:16]}", flush=True)

    def run_humming(case, s, x, logits, h13, h2, ref, us, m):
        try:
            yh = humming_moe(s, x, logits, h13, h2)
            torch.cuda.synchronize()
            if ref is not None:
                herr = rel_err(yh, ref)
                case["humming_rel_err"] = herr
                case["humming_check"] = "ok" if math.isfinite(herr) and herr < 2e-2 else "FAIL"
            case["humming_us"], _ = timer.median_us(lambda: humming_moe(s, x, logits, h13, h2))
            case["vs_humming"] = case["humming_us"] / us
            if m <= args.graph_max_m:
                g, why = capture(lambda: humming_moe(s, x, logits, h13, h2))
                if g is None:
                    case["humming_graph_error"] = why
                else:
                    case["humming_graph_us"], _ = timer.median_us(g.replay)
                    del g
                    if "graph_us" in case:
                        case["vs_humming_graph"] = case["humming_graph_us"] / case["graph_us"]
        except Exception as ex:  # noqa: BLE001
            case["humming_error"] = humming_peer.short(ex)
            print(f"# humming {case['shape']} {case['format']} M={m}: {case['humming_error']}",
                  flush=True)

    def run_vllm(case, tag, f, x, logits, ref, us, m):
        """One vLLM MoE peer on the case's inputs: checked, timed eager and as a graph."""
        try:
            yv = f(x, logits)
            torch.cuda.synchronize()
            if ref is not None:
                verr = rel_err(yv, ref)
                case[f"{tag}_rel_err"] = verr
                case[f"{tag}_check"] = "ok" if math.isfinite(verr) and verr < 2e-2 else "FAIL"
            case[f"{tag}_us"], _ = timer.median_us(lambda: f(x, logits))
            case[f"vs_{tag}"] = case[f"{tag}_us"] / us
            if m <= args.graph_max_m:
                g, why = capture(lambda: f(x, logits))
                if g is None:
                    case[f"{tag}_graph_error"] = why
                else:
                    case[f"{tag}_graph_us"], _ = timer.median_us(g.replay)
                    del g
                    if "graph_us" in case:
                        case[f"vs_{tag}_graph"] = case[f"{tag}_graph_us"] / case["graph_us"]
            del yv
        except Exception as ex:  # noqa: BLE001
            case[f"{tag}_error"] = humming_peer.short(ex)
            print(f"# {tag} {case['shape']} {case['format']} M={m}: {case[f'{tag}_error']}",
                  flush=True)

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)

    ms = [int(v) for v in args.ms.split(",")] if args.ms else (QUICK_MS if args.quick else MS)
    formats = [f for f in args.formats.split(",") if f]
    routings = [r for r in args.routings.split(",") if r]
    print("| shape | format | routing | M | experts hit | mxq us | floor us | % floor | TFLOP/s | "
          "BF16 us | vs BF16 | mxq graph us | BF16 graph us | vs BF16 (graphs) | humming us | "
          "humming graph us | humming err | rel err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    bf16_cache = {}  # (shape, routing, m) -> the BF16 baseline's numbers (same x and logits)
    shapes = [n for n in args.shapes.split(",") if n]
    for fmt in formats:  # every shape in MXFP4 first: the required format
        for name in shapes:
            s = SHAPES[name]
            gen = torch.Generator(device="cuda")
            gen.manual_seed(1 + list(SHAPES).index(name) + 100 * formats.index(fmt))
            b13 = b2 = None
            if not args.no_peers and any((name, r, m) not in bf16_cache
                                         for r in routings for m in ms):
                b13, b2 = make_bf16_weights(s, gen)
            flops_per_token = 2 * s["k"] * 3 * s["h"] * s["i"]
            t0 = time.perf_counter()
            w = make_mx_weights(fmt, s, gen)
            elem = 0 if fmt == "mxfp4" else 1
            handles = {}  # backend -> prepared layer, in --backends order
            for b in [v for v in args.backends.split(",") if v]:
                try:
                    handles[b] = shim.prepare_moe(b, elem, s, w)
                except RuntimeError as ex:
                    print(f"# {name} {fmt} {b}: prepare failed: {ex}", flush=True)
                    result["cases"].append({"shape": name, "format": fmt, "backend": b,
                                            "error": str(ex)})
                    save()
            if not handles:
                continue
            primary = next(iter(handles))
            handle = handles[primary]
            torch.cuda.synchronize()
            print(f"# {name} {fmt}: weights + prepare {time.perf_counter() - t0:.1f} s", flush=True)
            h13 = h2 = None
            if hk_version and (not hk_shapes or name in hk_shapes):
                hk_info = {"shape": name, "format": fmt}
                if hk_budget.ok():
                    h13, h2, more = humming_layers(fmt, s, w)
                    hk_info.update(more)
                    hk_budget.spend(h13)
                    hk_budget.spend(h2)
                else:
                    hk_info["error"] = "skipped: --humming-budget-s spent on earlier layers"
                result["humming_layers"].append(hk_info)
                print(f"# humming {name} {fmt}: {hk_info}", flush=True)
            vllm = {}  # peer tag -> f(x, logits), built once per layer
            if vp is not None:
                why = vllm_moe_peer.applies(s)
                for tag in ([] if why else vllm_moe_peer.names(fmt)):
                    info = {"shape": name, "format": fmt, "peer": tag}
                    t1 = time.perf_counter()
                    try:
                        vllm[tag] = vllm_moe_peer.build(vp, tag, fmt, s, w)
                        torch.cuda.synchronize()
                        info["prepare_s"] = time.perf_counter() - t1
                    except Exception as ex:  # noqa: BLE001
                        info["error"] = humming_peer.short(ex)
                    result["vllm_layers"].append(info)
                    print(f"# {tag} {name} {fmt}: {info}", flush=True)
                if why:
                    result["vllm_layers"].append({"shape": name, "format": fmt, "skipped": why})
            per_expert = 3 * s["h"] * s["i"] * ((0.5 if fmt == "mxfp4" else 1.0) + 1 / 32)
            expert = mx_expert(fmt, s, w)
            for routing in routings:
                for m in ms:
                    case = {"shape": name, "format": fmt, "routing": routing, "m": m,
                            "h": s["h"], "i": s["i"], "e": s["e"], "k": s["k"],
                            "backend": primary, "plan": shim.plan(handle, m)}
                    try:
                        x, logits = inputs(s, name, routing, m)
                        ids, _ = route(logits, s, torch.float64)
                        cnt = torch.bincount(ids.reshape(-1), minlength=s["e"])
                        hit = int((cnt > 0).sum())
                        case.update(experts_hit=hit, max_pairs_per_expert=int(cnt.max()),
                                    weight_bytes_hit=hit * per_expert)
                        floor_us = hit * per_expert / bw * 1e6
                        y = torch.full((m, s["h"]), float("nan"), device="cuda",
                                       dtype=torch.bfloat16)
                        shim.run_moe(handle, m, x, logits, y)
                        torch.cuda.synchronize()
                        ref = None
                        if m <= args.check_max_m:
                            ref = reference(s, x, logits, expert)
                            err = rel_err(y, ref)
                            case["rel_err"] = err
                            case["check"] = "ok" if math.isfinite(err) and err < 2e-2 else "FAIL"
                        us, reps = timer.median_us(lambda: shim.run_moe(handle, m, x, logits, y))
                        if args.kernels:
                            try:
                                case["kernels"] = kernel_times(
                                    lambda: shim.run_moe(handle, m, x, logits, y))
                                print("#   kernels (us): " + ", ".join(
                                    f"{k} {v:.1f}" for k, v in case["kernels"].items()), flush=True)
                            except Exception as ex:  # noqa: BLE001
                                case["kernels_error"] = f"{type(ex).__name__}: {str(ex)[:200]}"
                        if m <= args.graph_max_m:  # launch overhead out: what an engine sees
                            y_eager = y.clone()
                            g, why = capture(lambda: shim.run_moe(handle, m, x, logits, y))
                            if g is None:
                                case["graph_error"] = why
                            else:
                                y.fill_(float("nan"))
                                g.replay()
                                torch.cuda.synchronize()
                                case["graph_same_output"] = bool(torch.equal(y, y_eager))
                                case["graph_us"], _ = timer.median_us(g.replay)
                                del g
                            del y_eager
                        case.update(us=us, reps=reps, floor_us=floor_us,
                                    pct_floor=100 * floor_us / us,
                                    tflops=m * flops_per_token / (us * 1e-6) / 1e12,
                                    pct_bf16_peak=100 * m * flops_per_token / (us * 1e-6) / peak)
                        for b, hb in handles.items():  # the other mxq backends, same inputs
                            if b == primary:
                                continue
                            tag = forced_config.tag(b.replace("cuda-", ""))
                            try:
                                case[f"{tag}_plan"] = shim.plan(hb, m)
                                yo = torch.full_like(y, float("nan"))
                                shim.run_moe(hb, m, x, logits, yo)
                                torch.cuda.synchronize()
                                if ref is not None:
                                    case[f"{tag}_rel_err"] = rel_err(yo, ref)
                                case[f"{tag}_us"], _ = timer.median_us(
                                    lambda: shim.run_moe(hb, m, x, logits, yo))
                                case[f"vs_{tag}"] = case[f"{tag}_us"] / us
                                if m <= args.graph_max_m:
                                    g, why = capture(lambda: shim.run_moe(hb, m, x, logits, yo))
                                    if g is not None:
                                        case[f"{tag}_graph_us"], _ = timer.median_us(g.replay)
                                        del g
                                        if "graph_us" in case:
                                            case[f"vs_{tag}_graph"] = \
                                                case[f"{tag}_graph_us"] / case["graph_us"]
                                del yo
                            except Exception as ex:  # noqa: BLE001
                                case[f"{tag}_error"] = f"{type(ex).__name__}: {str(ex)[:200]}"
                        if b13 is not None or (name, routing, m) in bf16_cache:
                            key = (name, routing, m)
                            if key not in bf16_cache:
                                pc = {}
                                try:
                                    if m <= 64:
                                        yb = bf16_moe(s, x, logits, b13, b2, grouped)
                                        pc["bf16_rel_err"] = rel_err(
                                            yb, reference(s, x, logits, bf16_expert(s, b13, b2)))
                                    pc["bf16_us"], _ = timer.median_us(
                                        lambda: bf16_moe(s, x, logits, b13, b2, grouped))
                                    if m <= args.graph_max_m and grouped:
                                        g, why = capture(
                                            lambda: bf16_moe(s, x, logits, b13, b2, grouped))
                                        if g is None:
                                            pc["bf16_graph_error"] = why
                                        else:
                                            pc["bf16_graph_us"], _ = timer.median_us(g.replay)
                                            del g
                                except Exception as ex:  # noqa: BLE001
                                    pc["bf16_error"] = f"{type(ex).__name__}: {str(ex)[:200]}"
                                bf16_cache[key] = pc
                            case.update(bf16_cache[key])
                            if "bf16_us" in case:
                                case["bf16_tflops"] = m * flops_per_token / (case["bf16_us"] * 1e-6) / 1e12
                                case["vs_bf16"] = case["bf16_us"] / us
                            if "bf16_graph_us" in case and "graph_us" in case:
                                case["vs_bf16_graph"] = case["bf16_graph_us"] / case["graph_us"]
                        if h13 is not None:
                            run_humming(case, s, x, logits, h13, h2, ref, us, m)
                        for tag, f in vllm.items():
                            run_vllm(case, tag, f, x, logits, ref, us, m)
                        del x, logits, y, ref
                    except Exception as ex:  # noqa: BLE001
                        case["error"] = f"{type(ex).__name__}: {str(ex)[:300]}"
                        print(f"# {name} {fmt} {routing} M={m}: {case['error']}", flush=True)
                    result["cases"].append(case)
                    save()
                    if "us" in case:
                        b = case.get("bf16_us")
                        bs = "" if b is None else f"{b:.1f}"
                        vs = "" if b is None else f"{case['vs_bf16']:.2f}x"
                        gs = " | ".join(f"{case[k]:.1f}" if k in case else ""
                                        for k in ("graph_us", "bf16_graph_us", "vs_bf16_graph"))
                        hs = " | ".join(f"{case[k]:.1f}" if k in case else ""
                                        for k in ("humming_us", "humming_graph_us"))
                        others = " ".join(f"{k}={case[k]:.1f}" for k in case
                                          if k.endswith("_us") and k.split("_")[0] not in
                                          ("bf16", "humming", "graph", "floor"))
                        if others:
                            print(f"#   {primary}: {case['plan']}; {others}", flush=True)
                        print(f"| {name} | {fmt} | {routing} | {m} | {case['experts_hit']} | "
                              f"{case['us']:.1f} | {case['floor_us']:.1f} | "
                              f"{case['pct_floor']:.0f}% | {case['tflops']:.1f} | {bs} | {vs} | "
                              f"{gs} | {hs} | {case.get('humming_rel_err', '')} | "
                              f"{case.get('rel_err', float('nan')):.1e} {case.get('check', '')} |",
                              flush=True)
            for hb in handles.values():
                shim.free(hb)
            if h13 is not None:
                h13.free()
                h2.free()
            vllm.clear()
            del w, expert, b13, b2, h13, h2
            torch.cuda.empty_cache()
    save()
    bad = [c for c in result["cases"] if c.get("check") == "FAIL" or "error" in c
           or c.get("graph_same_output") is False]
    if bad:
        print(f"# {len(bad)} case(s) failed the check or errored", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
