"""torch integration: torch.library.opcheck and torch.compile for every mxq op, CUDA graph
capture, results vs cpu-reference; on CUDA, the linear op vs the C++ cuda-mma backend through
the package's non-torch path and vs `mxq run --backend cuda-mma --dump`, bit for bit; the MoE op
on CUDA (cuda-mma) vs cpu-reference, deterministic, in torch.compile and in a CUDA graph.

Runs where torch is installed (the GPU host: tests/python/run_torch_gpu.sh); skipped with the
reason elsewhere. CUDA cases additionally need a GPU and, for linear / moe, a CUDA backend in
the build (cuda-mma)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the torch tests run on the GPU host: tests/python/run_torch_gpu.sh)")
import mxq  # noqa: E402
import mxq.torch as mt  # noqa: E402

HAS_CUDA = torch.cuda.is_available() and mxq.cuda_built
CUDA_BACKEND = HAS_CUDA and any(b["device"] == "cuda" and b["supported"] for b in mxq.backends())
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])


def need(device, backend=False):
    if device == "cuda" and not HAS_CUDA:
        pytest.skip("no CUDA device or mxq built without the CUDA part")
    if device == "cuda" and backend and not CUDA_BACKEND:
        pytest.skip("this build has no CUDA backend for linear/moe yet (cuda-mma)")


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def make_linear(n=256, k=512, fmt="mxfp4", device="cpu", bias=True, backend=None):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, k, generator=g)
    q = mxq.quantize(w.numpy(), fmt)
    b = torch.linspace(-1, 1, n) if bias else None
    return q, b, mt.MXLinear.from_weights(q.packed, q.scales, fmt, bias=b, device=device,
                                          backend=backend)


def make_moe(device="cpu", backend=None, e=8, h=256, i=128):
    g = torch.Generator().manual_seed(1)
    w13 = mxq.quantize(torch.randn(e, 2 * i, h, generator=g).numpy(), "mxfp4")
    w2 = mxq.quantize(torch.randn(e, h, i, generator=g).numpy(), "mxfp4")
    layer = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4", topk=2,
                            device=device, backend=backend)
    return mt.MXMoE(layer)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp6-e2m3", "mxfp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_op_bit_exact_with_numpy_path(device, fmt, dtype):
    need(device)
    x = torch.randn(33, 256, dtype=torch.float32).to(dtype)
    packed, scales = torch.ops.mxq.quantize(x.to(device), fmt)
    ref = mxq.quantize(x.float().numpy() if dtype == torch.float32 else x, fmt)
    assert packed.device.type == device and packed.dtype == torch.uint8
    np.testing.assert_array_equal(packed.cpu().numpy(), np.asarray(ref.packed))
    np.testing.assert_array_equal(scales.cpu().numpy(), np.asarray(ref.scales))
    back = mxq.dequantize(packed, scales, fmt)  # dequantize on the tensor's device
    assert back.device.type == device
    np.testing.assert_array_equal(back.cpu().numpy(), mxq.dequantize(ref))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_quantize(device):
    need(device)
    x = torch.randn(4, 64, device=device, dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.mxq.quantize.default, (x, "mxfp4", "floor", "rne", "saturate", False))
    torch.library.opcheck(torch.ops.mxq.quantize.default, (x[:, :40].contiguous(), "mxfp8", "rceil", "rne", "saturate", True))


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp6-e3m2", "mxfp8", "mxfp8-e5m2", "mxint8"])
@pytest.mark.parametrize("rule", ["floor", "rceil"])
def test_cuda_quantize_op_equals_cpu_op(fmt, rule):
    """The library's GPU kernels (src/cuda/quant) through the op == the CPU op, on the fast path
    (aligned, K % 32 == 0) and the general one (misaligned input, pad_k)."""
    need("cuda")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(67, 512, generator=g) * torch.logspace(-3, 3, 67)[:, None]
    x[3, 40] = float("nan")
    for xi, pad in ((x.bfloat16(), False), (x, False), (x[:, :100].half(), True)):
        want = torch.ops.mxq.quantize(xi, fmt, rule, "rne", "saturate", pad)
        got = torch.ops.mxq.quantize(xi.cuda(), fmt, rule, "rne", "saturate", pad)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))
    # a 2-byte-misaligned contiguous input (storage offset 1) takes the general kernel
    buf = torch.empty(1 + 67 * 512, dtype=torch.bfloat16, device="cuda")
    xm = buf[1:].view(67, 512)
    xm.copy_(x.bfloat16())
    assert xm.data_ptr() % 16 != 0
    got = torch.ops.mxq.quantize(xm, fmt, rule, "rne", "saturate", False)
    want = torch.ops.mxq.quantize(x.bfloat16(), fmt, rule, "rne", "saturate", False)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got, want))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_linear(device):
    need(device, backend=True)
    for fmt in ("mxfp4", "mxfp8"):
        _, _, lin = make_linear(fmt=fmt, device=device)
        for m in (1, 3, 20):
            x = torch.randn(m, 512, device=device, dtype=torch.bfloat16)
            torch.library.opcheck(torch.ops.mxq.linear.default,
                                  (x, lin.handle, lin.out_features, torch.bfloat16))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_moe(device):
    need(device, backend=True)
    moe = make_moe(device=device)
    for m in (1, 5, 40):
        xm = torch.randn(m, 256, dtype=torch.bfloat16, device=device)
        logits = torch.randn(m, 8, device=device)
        torch.library.opcheck(torch.ops.mxq.moe.default,
                              (xm, logits, moe.handle, None, None, torch.bfloat16))


@pytest.mark.parametrize("m", [1, 7, 300])
def test_cuda_moe_op_vs_cpu_reference(m):
    need("cuda", backend=True)
    moe = make_moe(device="cuda")
    ref = make_moe(backend="cpu-reference")
    x = torch.randn(m, 256, dtype=torch.bfloat16)
    logits = torch.randn(m, 8)
    y = moe(x.cuda(), logits.cuda())
    assert y.is_cuda and y.dtype == torch.bfloat16 and y.shape == (m, 256)
    assert rel(y, ref(x, logits)) < 1e-2
    assert torch.equal(y, moe(x.cuda(), logits.cuda()))  # deterministic


def test_cuda_moe_needs_a_backend_that_runs_the_layer():
    need("cuda", backend=True)
    g = torch.Generator().manual_seed(1)
    w13 = mxq.quantize(torch.randn(8, 256, 256, generator=g).numpy(), "mxfp6-e2m3")
    w2 = mxq.quantize(torch.randn(8, 256, 128, generator=g).numpy(), "mxfp6-e2m3")
    layer = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp6-e2m3", topk=2)
    with pytest.raises(NotImplementedError, match="moe"):
        mt.MXMoE(layer)(torch.randn(3, 256, dtype=torch.bfloat16, device="cuda"),
                        torch.randn(3, 8, device="cuda"))


@pytest.mark.parametrize("device", DEVICES)
def test_linear_module_vs_cpu_reference(device):
    need(device, backend=True)
    q, b, lin = make_linear(device=device)
    ref = mxq.Linear.prepare(q.packed, q.scales, "mxfp4", bias=b, backend="cpu-reference")
    x = torch.randn(7, 512, dtype=torch.bfloat16)
    y = lin(x.to(device))
    assert y.shape == (7, 256) and y.dtype == torch.bfloat16 and y.device.type == device
    assert rel(y, ref(x)) < 2e-2
    # leading dims
    x3 = x[:6].reshape(2, 3, 512).to(device)
    assert torch.equal(lin(x3).reshape(6, 256), lin(x3.reshape(6, 512)))


@pytest.mark.parametrize("fmt,act,out", [("mxfp4", "bf16", None), ("mxfp8", "bf16", None),
                                         ("mxfp4", "fp16", None), ("mxfp4", "bf16", "f32")])
def test_cuda_linear_op_equals_cuda_mma_through_the_package(fmt, act, out):
    """The op on CUDA tensors gives exactly the bits of the C++ cuda-mma backend called through
    the package's non-torch path (a separately prepared mxq.Linear, DLPack, explicit stream)."""
    need("cuda", backend=True)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(384, 1024, generator=g)
    q = mxq.quantize(w.numpy(), fmt)
    b = torch.linspace(-1, 1, 384)
    kw = dict(bias=b, act=act, out_dtype=out)
    lin = mt.MXLinear.from_weights(q.packed, q.scales, fmt, device="cuda", **kw)
    direct = mxq.Linear.prepare(q.packed, q.scales, fmt, backend="cuda-mma", strict=True,
                                device="cuda", **kw)
    assert lin.backend == "cuda-mma" and direct.backend == "cuda-mma"
    xdt = torch.float16 if act == "fp16" else torch.bfloat16
    for m in (1, 7, 16, 33, 200):
        x = torch.randn(m, 1024, generator=g).to(xdt).cuda()
        y_op = lin(x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        y_direct = direct(x, stream=s.cuda_stream)
        torch.cuda.synchronize()
        assert y_op.dtype == y_direct.dtype and torch.equal(y_op, y_direct), m


@pytest.mark.parametrize("tokens", [1, 16, 45])
def test_cuda_linear_op_equals_mxq_run(sample, cli, tmp_path, tokens):
    """`mxq run --backend cuda-mma --dump` (the C++ CLI: checkpoint -> prepare -> run, x from its
    seeded generator) and the torch op on CUDA, same checkpoint and x: the same bits."""
    need("cuda", backend=True)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
             "model.layers.0.mlp.down_proj"]
    args = ["run", sample / "mxfp4", "--backend", "cuda-mma", "--tokens", tokens, "--iters", 1,
            "--dump", tmp_path]
    for n in names:
        args += ["--layer", n]
    assert cli(*args).count(" cuda-mma ") == len(names)
    for n in names:
        xf = tmp_path / f"{n}.x.bf16"
        (yf,) = tmp_path.glob(f"{n}.y.*")
        assert yf.suffix == ".bf16"
        x = torch.from_numpy(np.fromfile(xf, np.int16)).view(torch.bfloat16).reshape(tokens, -1)
        y_run = torch.from_numpy(np.fromfile(yf, np.int16)).view(torch.bfloat16).reshape(tokens, -1)
        lin = mt.MXLinear.from_checkpoint(sample / "mxfp4", n, device="cuda", backend="cuda-mma",
                                          strict=True)
        y = lin(x.cuda()).cpu()
        assert torch.equal(y.view(torch.int16), y_run.view(torch.int16)), n


def test_moe_module_vs_cpu_reference():
    moe = make_moe(device="cpu")
    ref = make_moe(backend="cpu-reference")
    x = torch.randn(9, 256, dtype=torch.bfloat16)
    logits = torch.randn(9, 8)
    y = moe(x, logits)
    assert rel(y, ref(x, logits)) < 2e-2


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile(device):
    need(device, backend=True)
    _, _, lin = make_linear(device=device)
    moe = make_moe(device=device)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.moe = lin, moe

        def forward(self, x, logits):
            packed, scales = torch.ops.mxq.quantize(x.float(), "mxfp8")
            h = self.lin(x)[:, :256].contiguous()
            y = self.moe(h, logits)
            return y + 1, packed, scales

    block = Block()
    for m in (4, 9):
        x = torch.randn(m, 512, dtype=torch.bfloat16, device=device)
        logits = torch.randn(m, 8, device=device)
        want = block(x, logits)
        compiled = torch.compile(block, fullgraph=True)
        got = compiled(x, logits)
        for g, w in zip(got, want):
            assert torch.equal(g, w)


@pytest.mark.parametrize("device", DEVICES)
def test_module_prepare_returns_the_backend(device):
    need(device, backend=True)
    _, _, lin = make_linear()
    assert lin.prepare(device) == ("cpu" if device == "cpu" else "cuda-mma")
    moe = make_moe()
    assert moe.prepare(device) == ("cpu" if device == "cpu" else "cuda-mma")


def test_cuda_graph_capture_and_replay():
    need("cuda", backend=True)
    _, _, lin = make_linear(device="cuda")
    lin.prepare("cuda")
    moe = make_moe(device="cuda")
    moe.prepare("cuda")
    x = torch.randn(8, 512, dtype=torch.bfloat16, device="cuda")
    logits = torch.randn(8, 8, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as torch recommends
        for _ in range(2):
            lin(x), torch.ops.mxq.quantize(x, "mxfp4"), moe(x[:, :256].contiguous(), logits)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):  # fails on any host sync or non-graph allocation inside the ops
        y = lin(x)
        y2 = lin(y[:, :256].repeat(1, 2).contiguous())
        packed, scales = torch.ops.mxq.quantize(x, "mxfp4")
        packed8, _ = torch.ops.mxq.quantize(y, "mxfp8", "rceil", "rne", "saturate", False)
        ym = moe(y[:, :256].contiguous(), logits)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        g.replay()
        torch.cuda.synchronize()
        want = lin(x)
        assert torch.equal(y, want)
        assert torch.equal(y2, lin(want[:, :256].repeat(1, 2).contiguous()))
        p2, s2 = torch.ops.mxq.quantize(x, "mxfp4")
        assert torch.equal(packed, p2) and torch.equal(scales, s2)
        assert torch.equal(packed8, torch.ops.mxq.quantize(want, "mxfp8", "rceil", "rne", "saturate", False)[0])
        assert torch.equal(ym, moe(want[:, :256].contiguous(), logits))


def test_modules_from_checkpoint(tmp_path):
    mxq.write_sample_model(tmp_path / "dense")
    mxq.quantize_model(tmp_path / "dense", tmp_path / "q")
    m = mxq.load(tmp_path / "q")
    lin = mt.MXLinear.from_checkpoint(m, "model.layers.0.self_attn.q_proj")
    x = torch.randn(2, lin.in_features, dtype=torch.bfloat16)
    ref = m.linear("model.layers.0.self_attn.q_proj", backend="cpu-reference")
    assert rel(lin(x), ref(x)) < 2e-2
    moe = mt.MXMoE.from_checkpoint(tmp_path / "q", "model.layers.2.mlp")
    xm = torch.randn(3, moe.hidden, dtype=torch.bfloat16)
    y = moe(xm)
    xb = xm.view(torch.int16).numpy().view(np.uint16).view(mxq._arrays._BF16)
    logits = torch.from_numpy(m.router_logits("model.layers.2.mlp", xb))
    ref_moe = m.moe("model.layers.2.mlp", backend="cpu-reference")
    assert rel(y, ref_moe(xm, logits)) < 2e-2
    with pytest.raises(ValueError, match="this layer takes torch.bfloat16"):
        lin(x.float())
    with pytest.raises(LookupError, match="no MoE layer"):
        mt.MXMoE.from_checkpoint(m, "model.layers.0.mlp")


@pytest.mark.parametrize("device", DEVICES)
def test_modules_from_checkpoint_run_its_activation_scheme(tmp_path, device):
    """A W4A4 checkpoint's modules run mxfp4-dynamic (not bf16) by default, on CPU and CUDA
    tensors alike; act="bf16" overrides it; a key no CUDA backend runs is refused."""
    need(device, backend=True)
    mxq.write_sample_model(tmp_path / "dense")
    mxq.quantize_model(tmp_path / "dense", tmp_path / "w4a4", activations="mxfp4")
    m = mxq.load(tmp_path / "w4a4")
    name = "model.layers.0.self_attn.q_proj"
    lin = mt.MXLinear.from_checkpoint(m, name, device=device)
    assert lin.act == "mxfp4-dynamic"
    x = torch.randn(4, lin.in_features, dtype=torch.bfloat16)
    ref = m.linear(name, backend="cpu-reference")
    assert ref.problem.act == "mxfp4-dynamic"
    assert ref.problem.act_rule == "even_fp4_mantissa"  # compressed-tensors' activation rule
    ref16 = m.linear(name, act="bf16", backend="cpu-reference")
    y = lin(x.to(device)).cpu()
    r, r16 = ref(x), ref16(x)
    assert rel(y, r) < 1e-2
    assert rel(y, r16) > 5 * rel(y, r)  # it is the key that runs, not 16-bit activations
    over = mt.MXLinear.from_checkpoint(m, name, act="bf16", device=device)
    assert over.act == "bf16" and rel(over(x.to(device)).cpu(), r16) < 1e-2
    moe = mt.MXMoE.from_checkpoint(m, "model.layers.2.mlp", device=device)
    assert moe.act == "mxfp4-dynamic"
    if device == "cuda":
        # cuda-mma runs fp8 keys for linear layers (scale after the FP32 GEMM), not for MoE
        # layers: on CUDA tensors that is refused with the reason, never run as bf16.
        g = torch.Generator().manual_seed(2)
        w13 = mxq.quantize(torch.randn(8, 256, 256, generator=g).numpy(), "mxfp4")
        w2 = mxq.quantize(torch.randn(8, 256, 128, generator=g).numpy(), "mxfp4")
        layer = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4", topk=2,
                                act="fp8-dynamic-token")
        with pytest.raises(NotImplementedError, match="fused gate/up epilogue"):
            mt.MXMoE(layer)(torch.randn(3, 256, dtype=torch.bfloat16, device="cuda"),
                            torch.randn(3, 8, device="cuda"))


# Out of memory (issue 19): inside the torch ops mxq's MemoryError is torch.OutOfMemoryError
# (what engines' memory profiling catches), with mxq's message; the module works afterwards.
# CPU tensors in a child process whose address space is capped (RLIMIT_AS) just above its use.
_TORCH_OOM_CHILD = r"""
import resource
import torch, mxq, mxq.torch as mt
# K large, N small: the output (512 KB, allocated by torch) fits under the cap, the run's
# working set (x in FP32, 128 MB) does not.
q = mxq.quantize(torch.randn(64, 8192, generator=torch.Generator().manual_seed(0)).numpy(), "mxfp4")
lin = mt.MXLinear.from_weights(q.packed, q.scales, "mxfp4", device="cpu", backend="cpu")
x = torch.randn(4096, 8192).to(torch.bfloat16)
want = lin(x[:8])
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 4 * 2**20, resource.RLIM_INFINITY))
oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
try:
    lin(x)
    print("RAN")
except oom as e:
    print("TORCHOOM", e)
except MemoryError as e:
    print("PLAINMEMORYERROR", e)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("AGAIN", bool(torch.equal(lin(x[:8]), want)))
"""


def test_out_of_memory_is_torch_out_of_memory_error():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", _TORCH_OOM_CHILD], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    err = next((l for l in lines if l.startswith(("TORCHOOM", "PLAINMEMORYERROR", "RAN"))), "")
    assert err.startswith("TORCHOOM"), p.stdout[-2000:]
    assert "resource exhausted" in err and "cpu run_linear" in err, err
    assert "AGAIN True" in lines, p.stdout
