#!/usr/bin/env python3
"""mxq's CUDA GEMM backends against their peers, all in one process (run on the GPU host).

Usage: python3 bench/cuda_gemm_bench.py --shim build/cuda/bench/libmxq_bench_cuda_shim.so \
           --out results.json [--quick] [--formats mxfp4,mxfp8] [--reps 50] \
           [--backends cuda-hopper,cuda-mma]

--backends lists mxq backends measured per case (the first is "mxq" in the table and the
ratios; the others are reported beside it, with the config each one launched). An entry
name@CONFIG runs backend `name` with MXQ_HOPPER_CONFIG=CONFIG (bench/forced_config.py), so
launch configs can be A/B'd in one process: --backends cuda-hopper,cuda-hopper@128:2:1. An
entry name+KEY runs the layer under activation key KEY (fp8-dynamic-token, fp8-static-tensor,
fp8-dynamic-group128 (cuda-mma): BF16 x quantized to E4M3 by the layer; checked against the
reference on the same quantized x):
--backends cuda-hopper+fp8-dynamic-token,cuda-hopper. A key suffix /16bit prepares the layer
with MXQ_HOPPER_FP8_PATH=16bit (cuda-hopper: the FP8 keys on the exact 16-bit kernel instead of
the FP8 tensor cores): cuda-hopper+fp8-dynamic-token/16bit.

Per case (N x K, M, weight format): mxq's time (median of CUDA-event timings, the L2 flushed
before every run so the weights come from HBM, then a ~100 us GPU spin so that the host's launch
work of the timed call overlaps the GPU's), weight TB/s, % of the device-to-device copy
bandwidth measured in this process, TFLOP/s, and the time ratio against peers measured the same
way: cuBLAS BF16 (torch.matmul), cuBLASLt FP8 rowwise (torch._scaled_mm) and humming-kernels
(bench/humming_peer.py) when importable. Before timing, mxq's output is checked against a float32
torch reference on the dequantized weights (relative Frobenius error must be < 1e-2); humming's
output is checked against the same reference and its error recorded (humming_rel_err).

The JSON records the run's provenance (bench/provenance.py): commit, the shim's build commit
(`binary_commit`), shim sha256, device,
driver, CUDA runtime, torch / triton versions, the peers' versions (`peers`), and the copy
bandwidth and cuBLAS BF16 peak (`bf16_peak_flops`, `bf16_peak_source`) measured in this process.

humming gets the same canonical MX weights (MXFP4 / MXFP8 codes, E8M0 scales per 32 along K) and
the same BF16 x, writes into a preallocated BF16 y, and is timed the same way. Its first call per
layer JIT-compiles its kernels for every M interval (humming_layers[].compile_s, not in any
timing); --humming-shapes limits it to some N x K and --humming-budget-s caps the compile time in
one run (layers past it are skipped and say so).
"""
import argparse
import ctypes
import json
import math
import statistics
import sys

import torch

import case_list
import forced_config
import humming_peer
import vllm_marlin_peer
import provenance

# Default N x K shapes and token counts: tests/cases/cases.json, sets.cuda_gemm_bench (the one
# case list of the tests and benchmarks).
SHAPES, MS, QUICK_MS = case_list.linear_set("cuda_gemm_bench")
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


class Shim:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.mxq_shim_prepare.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                              ctypes.c_int]
        self.lib.mxq_shim_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                          ctypes.c_int]
        self.lib.mxq_shim_free.argtypes = [ctypes.c_void_p]
        self.lib.mxq_shim_plan.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p,
                                           ctypes.c_int]
        self.lib.mxq_shim_config.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                             ctypes.c_int64, ctypes.c_char_p, ctypes.c_int]
        self.lib.mxq_shim_prepare_on.argtypes = [ctypes.c_char_p] + \
            self.lib.mxq_shim_prepare.argtypes
        self.lib.mxq_shim_config_on.argtypes = [ctypes.c_char_p] + \
            self.lib.mxq_shim_config.argtypes
        self.err = ctypes.create_string_buffer(1024)
        self.forced = {}  # handle -> MXQ_HOPPER_CONFIG of its "name@CONFIG" backend
        self.paths = {}  # handle -> MXQ_HOPPER_FP8_PATH of its "name+KEY/16bit" backend

    def prepare(self, elem, n, k, packed, scales, backend="cuda-mma"):
        name, cfg = forced_config.split(backend)
        path = "16bit" if name.endswith("/16bit") else ""
        name, key = split_key(name)
        h = ctypes.c_void_p()
        with forced_config.env(cfg), forced_config.env(path, "MXQ_HOPPER_FP8_PATH"):
            if self.lib.mxq_shim_prepare_on(name.encode(), elem, ACT_CODES[key], n, k,
                                            packed.data_ptr(),
                                            scales.data_ptr(), ctypes.byref(h), self.err, 1024):
                raise RuntimeError(self.err.value.decode())
        self.forced[h.value] = cfg
        self.paths[h.value] = path
        return h

    def run(self, h, m, x, y):
        stream = torch.cuda.current_stream().cuda_stream
        with forced_config.env(self.forced.get(h.value, "")):
            if self.lib.mxq_shim_run(h, m, x.data_ptr(), y.data_ptr(), stream, self.err, 1024):
                raise RuntimeError(self.err.value.decode())

    def plan(self, h, m):
        buf = ctypes.create_string_buffer(1024)
        with forced_config.env(self.forced.get(h.value, "")), \
                forced_config.env(self.paths.get(h.value, ""), "MXQ_HOPPER_FP8_PATH"):
            self.lib.mxq_shim_plan(h, m, buf, 1024)
        return buf.value.decode()

    def config(self, elem, m, n, k, backend="cuda-mma"):
        name, cfg = forced_config.split(backend)
        buf = ctypes.create_string_buffer(512)
        with forced_config.env(cfg):
            self.lib.mxq_shim_config_on(name.encode(), elem, m, n, k, buf, 512)
        return buf.value.decode()


# The shim's activation codes (bench/cuda_gemm_shim.cc, act_of) and fp8-static-tensor's scale.
ACT_CODES = {"": 0, "fp8-dynamic-token": 2, "fp8-static-tensor": 3, "fp8-dynamic-group128": 4}
STATIC_INPUT_SCALE = 5.0 / 448.0


def split_key(name):
    """'cuda-hopper+fp8-dynamic-token' -> ('cuda-hopper', 'fp8-dynamic-token') (a /16bit
    suffix of the key is dropped here: path_env reads it)."""
    name, _, key = name.partition("+")
    key = key.split("/")[0]
    if key not in ACT_CODES:
        raise SystemExit(f"unknown activation key {key!r} in {name}+{key}")
    return name, key


def quantized_x(x, key):
    """x as the layer under `key` sees it (E4M3 RNE per token or per tensor; torch's cast)."""
    if not key:
        return x.float()
    xf = x.float()
    if key == "fp8-dynamic-group128":  # per token and 128 columns (the last group padded)
        m, k = xf.shape
        g = (k + 127) // 128
        xp = torch.nn.functional.pad(xf, (0, g * 128 - k)).view(m, g, 128)
        s = (xp.abs().amax(dim=2, keepdim=True) / 448.0).clamp_min(1e-30)
        q = (xp / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
        return q.reshape(m, g * 128)[:, :k]
    s = (xf.abs().amax(dim=1, keepdim=True) / 448.0).clamp_min(1e-30) \
        if key == "fp8-dynamic-token" else torch.tensor(STATIC_INPUT_SCALE, device=x.device)
    return (xf / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s


def dequant(elem, packed, scales, n, k):
    """Canonical MX weights -> float32 [n, k] (torch, on the GPU)."""
    if elem == 0:
        lut = torch.tensor(E2M1 + [-v for v in E2M1], device=packed.device)
        codes = torch.stack([packed & 15, packed >> 4], dim=-1).reshape(n, k).long()
        vals = lut[codes]
    else:
        vals = packed.view(torch.float8_e4m3fn).float().reshape(n, k)
    s = torch.exp2(scales.float() - 127.0).repeat_interleave(32, dim=1)
    return vals * s


class Timer:
    """Median of CUDA-event timings with the L2 emptied of the operands before every run.

    flush="read" (default): a 256 MiB read (a sum) evicts everything and leaves clean lines, so
    the timed kernel's misses cost only their own reads, as after the previous layer of a model.
    flush="write" (the harness before 2026-12-03): a 256 MiB memset leaves L2 full of dirty
    lines, and the timed kernel's first misses also pay their write-back to HBM (up to ~50 MB
    extra traffic: it inflates small, bandwidth-bound cases).
    """

    def __init__(self, reps, flush="read"):
        self.reps = reps
        self.mode = flush
        self.flush = torch.ones(64 * 1024 * 1024, dtype=torch.float32, device="cuda")

    def _flush(self):
        if self.mode == "write":
            self.flush.fill_(1.0)
        else:
            self.sink = self.flush.sum()

    def median_us(self, fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(self.reps):
            self._flush()  # evict the weights from L2 (50 MB)
            if hasattr(torch.cuda, "_sleep"):  # ~100 us of GPU spin: hides the host launch cost
                torch.cuda._sleep(200_000)  # (humming's Python forward: 45-130 us per call)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b) * 1e3)
        return statistics.median(ts)


def copy_bandwidth(timer):
    """Bytes read + written per second of a 1 GiB device-to-device copy (bench/provenance.py)."""
    return provenance.copy_bandwidth(timer.median_us)


def peers(m, n, k, x, timer):
    out = {}
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    out["cublas_bf16_us"] = timer.median_us(lambda: torch.matmul(x, w.t()))
    try:
        xf = x.to(torch.float8_e4m3fn)
        wf = w.to(torch.float8_e4m3fn)
        sa = torch.ones(m, 1, device="cuda", dtype=torch.float32)
        sb = torch.ones(1, n, device="cuda", dtype=torch.float32)
        torch._scaled_mm(xf, wf.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
        out["cublaslt_fp8_rowwise_us"] = timer.median_us(
            lambda: torch._scaled_mm(xf, wf.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
    except Exception as e:  # shape limits of _scaled_mm (e.g. M not a multiple of 16)
        out["cublaslt_fp8_rowwise_error"] = str(e).splitlines()[0][:160]
    del w
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--formats", default="mxfp4,mxfp8")
    ap.add_argument("--shapes", default="")
    ap.add_argument("--ms", default="")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--backends", default="cuda-mma",
                    help="mxq backends to measure, the first one is 'mxq' in the ratios")
    ap.add_argument("--no-humming", action="store_true")
    ap.add_argument("--humming-shapes", default="", help="N x K list (default: every shape)")
    ap.add_argument("--humming-budget-s", type=float, default=1e9,
                    help="stop building humming layers once their JIT compiles took this long")
    ap.add_argument("--vllm-peers", default="",
                    help="build/peers from ../shared/peers/fetch_vllm_peers.sh: vLLM's Marlin")
    ap.add_argument("--flush", choices=["read", "write"], default="read",
                    help="how the L2 is emptied before each timed run (see Timer)")
    args = ap.parse_args()

    shim = Shim(args.shim)
    timer = Timer(args.reps, args.flush)
    vp, vp_error = vllm_marlin_peer.load(args.vllm_peers)
    marlin_note = "vLLM 0.26.0 Marlin (dense MXFP4/MXFP8)" if vp else f"not available: {vp_error}"
    props = torch.cuda.get_device_properties(0)
    # Copy bandwidth and cuBLAS BF16 peak, measured here with this bench's timer.
    rates = provenance.measure(timer.median_us)
    bw = rates["copy_bandwidth_Bps"]
    torch.manual_seed(0)  # after the peak's random GEMM operands: the cases' weights as before
    hk_version, hk_error = (None, "disabled (--no-humming)") if args.no_humming else \
        humming_peer.probe()
    humming_note = hk_version or f"not available: {hk_error}"
    hk_budget = humming_peer.Budget(args.humming_budget_s)
    hk_shapes = {tuple(map(int, v.split("x"))) for v in args.humming_shapes.split(",") if v}
    result = {**provenance.environment(args.shim, args.vllm_peers,
                                       {"humming": humming_note, "marlin": marlin_note}),
              "device": props.name, "sms": props.multi_processor_count,
              **rates, "torch": torch.__version__, "humming": humming_note,
              "marlin": marlin_note, "flush": args.flush,
              "humming_layers": [], "argv": sys.argv[1:], "backends": args.backends,
              "cases": []}

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(f"# {props.name}: copy bandwidth {bw / 1e12:.2f} TB/s; BF16 peak "
          f"{rates['bf16_peak_flops'] / 1e12:.0f} TFLOP/s; driver {result['driver']}; "
          f"humming-kernels {humming_note}; "
          f"marlin {marlin_note}; L2 flush by {args.flush}; commit {result['commit']} (shim built "
          f"from {result.get('binary_commit')}); "
          f"shim sha256 {result['shim_sha256'][:16]}", flush=True)

    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split("x")))
                                             for s in args.shapes.split(",")]
    ms = [int(v) for v in args.ms.split(",")] if args.ms else (QUICK_MS if args.quick else MS)
    formats = [f for f in args.formats.split(",") if f]
    print("| format | N x K | M | mxq us | TB/s | % copy BW | TFLOP/s | cuBLAS BF16 us | "
          "vs BF16 | FP8 rowwise us | vs FP8 | humming us | vs humming | Marlin us | vs Marlin | "
          "rel err | humming err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for fmt in formats:
        elem = 0 if fmt == "mxfp4" else 1
        for (n, k) in shapes:
            kb = k // 2 if elem == 0 else k
            packed = torch.randint(0, 256, (n, kb), dtype=torch.uint8, device="cuda")
            if elem == 1:  # no NaN codes
                nan = (packed & 0x7F) == 0x7F
                packed[nan] ^= 1
            scales = torch.randint(118, 124, (n, k // 32), dtype=torch.uint8, device="cuda")
            backends = [b for b in args.backends.split(",") if b]
            hs = {b: shim.prepare(elem, n, k, packed, scales, b) for b in backends}
            wref = dequant(elem, packed, scales, n, k)
            hk, hk_info = None, {"format": fmt, "n": n, "k": k}
            if hk_version and (not hk_shapes or (n, k) in hk_shapes):
                if hk_budget.ok():
                    hk, why = humming_peer.build(fmt, n, k, [(0, packed, scales)])
                    hk_budget.spend(hk)
                    if hk is None:
                        hk_info["error"] = why
                    else:
                        hk_info.update(compile_s=hk.compile_s, pad=hk.pad)
                else:
                    hk_info["error"] = "skipped: --humming-budget-s spent on earlier layers"
                result["humming_layers"].append(hk_info)
                print(f"# humming {fmt} {n}x{k}: {hk_info}", flush=True)
            marlin = None
            if vp is not None:
                try:
                    marlin = vllm_marlin_peer.build(vp, fmt, packed, scales)
                except Exception as ex:  # noqa: BLE001
                    result.setdefault("marlin_errors", []).append(
                        {"format": fmt, "n": n, "k": k, "error": humming_peer.short(ex)})
            wbytes = n * k * (0.5 if elem == 0 else 1.0) + n * k / 32
            for m in ms:
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
                ref = x.float() @ wref.t()
                refs = {"": ref}
                per = {}
                for b, h in hs.items():
                    key = split_key(forced_config.split(b)[0])[1]
                    if key not in refs:
                        refs[key] = quantized_x(x, key) @ wref.t()
                    y.fill_(float("nan"))
                    shim.run(h, m, x, y)
                    torch.cuda.synchronize()
                    err = ((y.float() - refs[key]).norm() / refs[key].norm()).item()
                    if not math.isfinite(err) or err > 1e-2:
                        raise SystemExit(f"{b} {fmt} {n}x{k} M={m}: relative error {err} "
                                         "(want < 1e-2)")
                    per[b] = {"us": timer.median_us(lambda: shim.run(h, m, x, y)),
                              "rel_err": err,
                              "config": shim.plan(h, m) if key else shim.config(elem, m, n, k, b)}
                first = per[backends[0]]
                us, err = first["us"], first["rel_err"]
                case = {"format": fmt, "n": n, "k": k, "m": m, "us": us, "rel_err": err,
                        "backend": backends[0],
                        "weight_TBps": wbytes / (us * 1e-6) / 1e12,
                        "pct_copy_bw": 100 * wbytes / (us * 1e-6) / bw,
                        "tflops": 2 * m * n * k / (us * 1e-6) / 1e12,
                        "config": first["config"], "mxq_backends": per}
                for b in backends[1:]:
                    case[f"vs_{forced_config.tag(b)}"] = per[b]["us"] / us
                if not args.no_peers:
                    case.update(peers(m, n, k, x, timer))
                if hk is not None:
                    try:
                        yh = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
                        hk(x, out=yh)
                        torch.cuda.synchronize()
                        herr = ((yh.float() - ref).norm() / ref.norm()).item()
                        case["humming_rel_err"] = herr
                        case["humming_check"] = "ok" if math.isfinite(herr) and herr < 1e-2 \
                            else "FAIL"
                        case["humming_us"] = timer.median_us(lambda: hk(x, out=yh))
                        case["vs_humming"] = case["humming_us"] / us
                        del yh
                    except Exception as ex:  # noqa: BLE001
                        case["humming_error"] = humming_peer.short(ex)
                if marlin is not None:
                    try:
                        ym = marlin(x)
                        torch.cuda.synchronize()
                        merr = ((ym.float() - ref).norm() / ref.norm()).item()
                        case["marlin_rel_err"] = merr
                        case["marlin_check"] = "ok" if math.isfinite(merr) and merr < 1e-2 \
                            else "FAIL"
                        case["marlin_us"] = timer.median_us(lambda: marlin(x))
                        case["vs_marlin"] = case["marlin_us"] / us
                        del ym
                    except Exception as ex:  # noqa: BLE001
                        case["marlin_error"] = humming_peer.short(ex)
                result["cases"].append(case)
                save()
                b16 = case.get("cublas_bf16_us")
                f8 = case.get("cublaslt_fp8_rowwise_us")
                hu = case.get("humming_us")
                mu = case.get("marlin_us")
                print(f"| {fmt} | {n}x{k} | {m} | {us:.1f} | {case['weight_TBps']:.2f} | "
                      f"{case['pct_copy_bw']:.0f}% | {case['tflops']:.1f} | "
                      f"{b16 if b16 is None else round(b16, 1)} | "
                      f"{'' if b16 is None else f'{b16 / us:.2f}x'} | "
                      f"{'n/a' if f8 is None else round(f8, 1)} | "
                      f"{'' if f8 is None else f'{f8 / us:.2f}x'} | "
                      f"{'' if hu is None else round(hu, 1)} | "
                      f"{'' if hu is None else f'{hu / us:.2f}x'} | "
                      f"{'' if mu is None else round(mu, 1)} | "
                      f"{'' if mu is None else f'{mu / us:.2f}x'} | {err:.1e} | "
                      f"{case.get('humming_rel_err', case.get('humming_error', ''))} |"
                      + "".join(f" {b} {per[b]['us']:.1f} us ({per[b]['us'] / us:.2f}x) |"
                                for b in backends[1:]),
                      flush=True)
                del x, y, ref
            for h in hs.values():
                shim.lib.mxq_shim_free(h)
            if hk is not None:
                hk.free()
            del packed, scales, wref, hk, marlin
            torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    sys.exit(main())
