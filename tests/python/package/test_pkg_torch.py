"""torch integration: torch.library.opcheck and torch.compile for every mxq op, CUDA graph
capture, results vs cpu-reference, CUDA vs the same backend through the DLPack path.

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


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_linear_and_moe(device):
    need(device, backend=True)
    _, _, lin = make_linear(device=device)
    x = torch.randn(3, 512, device=device, dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.mxq.linear.default, (x, lin.handle, lin.out_features, torch.bfloat16))
    moe = make_moe(device=device)
    xm = torch.randn(5, 256, device=device, dtype=torch.bfloat16)
    logits = torch.randn(5, 8, device=device)
    torch.library.opcheck(torch.ops.mxq.moe.default, (xm, logits, moe.handle, None, None, torch.bfloat16))


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


def test_cuda_linear_op_equals_same_backend_through_dlpack():
    """The op on a CUDA tensor returns exactly what the backend gives through mxq.Linear
    (DLPack path, explicit stream): the same computation `mxq run` times and checks."""
    need("cuda", backend=True)
    q, b, lin = make_linear(device="cuda")
    x = torch.randn(16, 512, dtype=torch.bfloat16, device="cuda")
    y_op = lin(x)
    y_direct = lin.layer(x)  # torch tensor in, DLPack, current stream
    torch.cuda.synchronize()
    assert lin.backend.startswith("cuda")
    assert torch.equal(y_op, y_direct)


@pytest.mark.parametrize("device", DEVICES)
def test_moe_module_vs_cpu_reference(device):
    need(device, backend=True)
    moe = make_moe(device=device)
    ref = make_moe(backend="cpu-reference")
    x = torch.randn(9, 256, dtype=torch.bfloat16)
    logits = torch.randn(9, 8)
    y = moe(x.to(device), logits.to(device))
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
            return self.moe(h, logits) + 1, packed, scales

    block = Block()
    x = torch.randn(4, 512, dtype=torch.bfloat16, device=device)
    logits = torch.randn(4, 8, device=device)
    want = block(x, logits)
    compiled = torch.compile(block, fullgraph=True)
    got = compiled(x, logits)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_cuda_graph_capture_and_replay():
    need("cuda", backend=True)
    _, _, lin = make_linear(device="cuda")
    moe = make_moe(device="cuda")
    lin.prepare("cuda")
    moe.prepare("cuda")
    x = torch.randn(8, 512, dtype=torch.bfloat16, device="cuda")
    logits = torch.randn(8, 8, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as torch recommends
        for _ in range(2):
            lin(x), moe(x[:, :256].contiguous(), logits), torch.ops.mxq.quantize(x, "mxfp4")
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = lin(x)
        ym = moe(x[:, :256].contiguous(), logits)
        packed, scales = torch.ops.mxq.quantize(x, "mxfp4")
    x.copy_(torch.randn_like(x))
    logits.copy_(torch.randn_like(logits))
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, lin(x))
    assert torch.equal(ym, moe(x[:, :256].contiguous(), logits))
    p2, s2 = torch.ops.mxq.quantize(x, "mxfp4")
    assert torch.equal(packed, p2) and torch.equal(scales, s2)


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
