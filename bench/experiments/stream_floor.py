"""Diagnostic (issue 14): the streaming floor of the small-M cuda-hopper GEMM.

Times, in one process and the harness of cuda_gemm_bench.py (Timer: events, L2 flushed by a
read, a GPU sleep before each run): an empty launch, a plain 16-byte-load stream, and the TMA
bulk-copy ring of stream_floor.cu over stage sizes / depths / copies per stage, all over the
bytes of one MXFP4 weight matrix; with --shim, the real cuda-hopper and cuda-mma kernels of
that shape at M = 1 and 16 beside them. Build the library by hand:
  nvcc -O3 -std=c++20 -gencode=arch=compute_90a,code=sm_90a -Isrc -Iinclude -shared \
       -Xcompiler -fPIC bench/experiments/stream_floor.cu -o libstream_floor.so
"""
import argparse
import ctypes
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cuda_gemm_bench import Shim, Timer, copy_bandwidth  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--shim", default="")
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--k", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lib = ctypes.CDLL(args.lib)
    vp, i32 = ctypes.c_void_p, ctypes.c_int
    lib.sf_empty.argtypes = [vp]
    lib.sf_ldg.argtypes = [vp, ctypes.c_size_t, vp, i32, i32, vp]
    lib.sf_ring.argtypes = [vp, ctypes.c_size_t, vp, i32, vp, i32, i32, i32, i32, i32, vp]
    timer = Timer(args.reps)
    st = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    n, k = args.n, args.k
    wbytes = n * k // 2 + n * k // 32  # MXFP4 elements + E8M0 scales
    src = torch.randint(0, 255, (wbytes,), dtype=torch.uint8, device="cuda")
    side = torch.zeros(4096, dtype=torch.uint8, device="cuda")
    out = torch.zeros(4, dtype=torch.int32, device="cuda")
    res = {"n": n, "k": k, "bytes": wbytes, "device": torch.cuda.get_device_name(0),
           "copy_bw": copy_bandwidth(timer), "rows": []}

    def rec(name, us, **kw):
        row = {"name": name, "us": us, "tb_s": wbytes / (us * 1e-6) / 1e12, **kw}
        res["rows"].append(row)
        print(json.dumps(row), flush=True)

    def check(rc):
        if rc:
            raise RuntimeError(f"cuda error {rc}")

    rec("empty launch", timer.median_us(lambda: check(lib.sf_empty(st()))))
    for blocks, threads in [(132 * 4, 256), (132 * 8, 256), (132 * 16, 256)]:
        rec("ldg", timer.median_us(lambda: check(lib.sf_ldg(src.data_ptr(), wbytes, out.data_ptr(),
                                                            blocks, threads, st()))),
            blocks=blocks, threads=threads)
    # ring: (ctas, stage bytes, copies per stage, stages, consumer warps, side copy)
    cfgs = []
    for ctas in (128, 132):
        for stage, stages in [(4352, 24), (4352, 40), (8704, 20), (17408, 10), (34816, 5),
                              (17408, 6), (8704, 12)]:
            cfgs.append((ctas, stage, 2, stages, 8, 0))
    cfgs += [(128, 4352, 2, 24, 8, 2048), (128, 8704, 2, 20, 8, 2048), (128, 17408, 2, 10, 8, 2048),
             (128, 8704, 4, 20, 8, 0), (128, 17408, 8, 10, 8, 0), (128, 4352, 1, 24, 8, 0),
             (128, 4352, 2, 24, 4, 0), (256, 4352, 2, 12, 8, 0), (264, 4352, 2, 12, 8, 0)]
    for ctas, stage, copies, stages, cw, sb in cfgs:
        f = lambda: check(lib.sf_ring(src.data_ptr(), wbytes, side.data_ptr() if sb else None, sb,  # noqa: E731
                                      out.data_ptr(), ctas, stage, copies, stages, cw, st()))
        rec("ring", timer.median_us(f), ctas=ctas, stage_bytes=stage, copies=copies, stages=stages,
            consumer_warps=cw, side_bytes=sb)
    for m in (1, 16):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        rec("cublas bf16 (4x the bytes)", timer.median_us(lambda: torch.matmul(x, w.t())), m=m)
        del w
    if args.shim:
        shim = Shim(args.shim)
        packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device="cuda")
        scales = torch.randint(118, 124, (n, k // 32), dtype=torch.uint8, device="cuda")
        for backend in ("cuda-hopper", "cuda-mma", "cuda-hopper@16:2:1", "cuda-hopper@16:3:1",
                        "cuda-hopper@16:3:2", "cuda-hopper@16:3:3", "cuda-hopper@16:2:4"):
            h = shim.prepare(0, n, k, packed, scales, backend)
            for m in (1, 16):
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
                rec(backend, timer.median_us(lambda: shim.run(h, m, x, y)), m=m,
                    config=shim.config(0, m, n, k, backend))
            shim.lib.mxq_shim_free(h)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
