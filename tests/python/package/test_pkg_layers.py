"""Prepared layers (mxq.Linear / mxq.MoE): oracle choice, results against cpu-reference and
against a float64 computation from dequantized weights, errors."""

import numpy as np
import pytest

import mxq

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 numpy arrays need ml_dtypes")
BF16 = ml_dtypes.bfloat16


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def weights(n, k, fmt="mxfp4", seed=0):
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)
    return mxq.quantize(w, fmt)


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp6-e2m3", "mxfp8", "mxint8"])
def test_linear_reference_is_float64_definition(fmt):
    q = weights(96, 128, fmt)
    bias = np.linspace(-1, 1, 96).astype(np.float32)
    ref = mxq.Linear.prepare(q.packed, q.scales, fmt, bias=bias, backend="cpu-reference",
                             out_dtype="f32")
    assert ref.backend == "cpu-reference" and ref.how.startswith("override")
    x = np.random.default_rng(1).standard_normal((5, 128)).astype(BF16)
    y = ref(x)
    assert y.dtype == np.float32 and y.shape == (5, 96)
    w = mxq.dequantize(q).astype(np.float64)
    want = x.astype(np.float64) @ w.T + bias
    assert rel(y, want) < 1e-6


def test_linear_cpu_backend_matches_reference_and_oracle_picks_it():
    q = weights(256, 512)
    fast = mxq.Linear.prepare(q.packed, q.scales, "mxfp4")
    ref = mxq.Linear.prepare(q.packed, q.scales, "mxfp4", backend="cpu-reference")
    assert fast.backend == "cpu" and fast.how == "automatic"
    assert "cpu-reference" in fast.explain() and "chosen" in fast.explain()
    for m in (1, 3, 17):
        x = np.random.default_rng(m).standard_normal((m, 512)).astype(BF16)
        y, yr = fast(x), ref(x)
        assert y.dtype == BF16 and y.shape == (m, 256)
        assert rel(y, yr) < 2e-2
        out = np.empty((m, 256), BF16)
        assert fast(x, out=out) is out
        np.testing.assert_array_equal(out.view(np.uint16), y.view(np.uint16))
    # leading dimensions
    x3 = np.random.default_rng(9).standard_normal((2, 3, 512)).astype(BF16)
    np.testing.assert_array_equal(fast(x3).reshape(6, 256).view(np.uint16),
                                  fast(x3.reshape(6, 512)).view(np.uint16))


def test_prepare_for_a_device_returns_the_backend():
    q = weights(64, 64)
    lin = mxq.Linear.prepare(q.packed, q.scales, "mxfp4", backend="cpu-reference")
    assert lin.prepare_for("cpu") == "cpu-reference" == lin.backend_for("cpu")


def test_linear_fp16_and_dynamic_act_keys():
    q = weights(64, 64, "mxfp8")
    h = mxq.Linear.prepare(q.packed, q.scales, "mxfp8", act="fp16")
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float16)
    assert h(x).dtype == np.float16
    for act in ("mxfp8-dynamic", "mxfp4-dynamic", "fp8-dynamic-token", "fp8-dynamic-tensor",
                "fp8-dynamic-group128"):
        a = mxq.Linear.prepare(q.packed, q.scales, "mxfp8", act=act)
        r = mxq.Linear.prepare(q.packed, q.scales, "mxfp8", act=act, backend="cpu-reference")
        xb = x.astype(BF16)
        assert rel(a(xb), r(xb)) < 2e-2, act


@pytest.mark.parametrize("act,fmt", [("mxfp6-e2m3-dynamic", "mxfp6-e2m3"),
                                     ("mxfp6-e3m2-dynamic", "mxfp6-e3m2"),
                                     ("mxfp4-dynamic", "mxfp4"), ("mxfp8-dynamic", "mxfp8")])
def test_mx_act_keys_are_the_quantize_dequantize_of_x(act, fmt):
    """An MX activation key means: x quantized per 32-block by mxq.quantize's defaults and
    dequantized, then the float64 matmul (cpu-reference) -- fp6 keys included."""
    q = weights(64, 128, "mxfp8", seed=3)
    x = (np.random.default_rng(4).standard_normal((3, 128)) * 4).astype(BF16)
    ref = mxq.Linear.prepare(q.packed, q.scales, "mxfp8", act=act, backend="cpu-reference",
                             out_dtype="f32")
    assert ref.problem.act == act
    xq = mxq.dequantize(mxq.quantize(x, fmt)).astype(np.float64)
    assert not np.array_equal(xq, x.astype(np.float64))  # the key changes x
    want = xq @ mxq.dequantize(q).astype(np.float64).T
    assert rel(ref(x), want) < 1e-6
    fast = mxq.Linear.prepare(q.packed, q.scales, "mxfp8", act=act, out_dtype="f32")
    assert fast.backend == "cpu"
    assert rel(fast(x), want) < 1e-5


def test_linear_errors():
    q = weights(64, 128)
    lin = mxq.Linear.prepare(q.packed, q.scales, "mxfp4")
    with pytest.raises(ValueError, match=r"expected \[..., K=128\]"):
        lin(np.zeros((2, 64), BF16))
    with pytest.raises(ValueError, match="linear x: expected dtype bf16, got f32"):
        lin(np.zeros((2, 128), np.float32))
    with pytest.raises(ValueError, match=r"linear y: expected shape \[2, 64\], got \[2, 63\]"):
        lin(np.zeros((2, 128), BF16), out=np.empty((2, 63), BF16))
    with pytest.raises(ValueError, match="K = 256.*expected|scales has shape"):
        mxq.Linear.prepare(q.packed, q.scales[:, :2], "mxfp4")
    with pytest.raises(ValueError, match="unknown backend 'nope'.*cpu-reference"):
        mxq.Linear.prepare(q.packed, q.scales, "mxfp4", backend="nope")
    with pytest.raises(ValueError, match="dtype int32"):
        mxq.Linear.prepare(q.packed.astype(np.int32), q.scales, "mxfp4")


def test_cuda_arrays_without_a_cuda_backend_are_a_clear_error():
    if any(b["device"] == "cuda" for b in mxq.backends()):
        pytest.skip("this build has a CUDA backend")
    p = mxq.make_problem(n=256, k=256)
    with pytest.raises(NotImplementedError, match="this build has no CUDA backend for linear mxfp4"):
        mxq._core.select(p, "cuda")
    q = weights(64, 64)
    with pytest.raises(NotImplementedError, match="no CUDA backend"):
        mxq.Linear.prepare(q.packed, q.scales, "mxfp4", device="cuda")


def test_strict_and_env_override(monkeypatch):
    q = weights(64, 64)
    monkeypatch.setenv("MXQ_LINEAR_BACKEND", "cpu-reference")
    assert mxq.Linear.prepare(q.packed, q.scales).backend == "cpu-reference"
    assert mxq.Linear.prepare(q.packed, q.scales, use_env=False).backend == "cpu"
    monkeypatch.delenv("MXQ_LINEAR_BACKEND")
    # fp8-static is implemented by cpu-reference only? Either way strict never silently falls back.
    for act in ("bf16", "fp8-static-tensor"):
        try:
            layer = mxq.Linear.prepare(q.packed, q.scales, act=act, strict=True, input_scale=0.5)
        except NotImplementedError as e:
            assert "strict" in str(e)
        else:
            assert layer.backend != "cpu-reference"


def moe_weights(e=4, h=64, i=32, fmt="mxfp4", seed=0):
    rng = np.random.default_rng(seed)
    w13 = mxq.quantize(rng.standard_normal((e, 2 * i, h)).astype(np.float32), fmt)
    w2 = mxq.quantize(rng.standard_normal((e, h, i)).astype(np.float32), fmt)
    return w13, w2



# A malformed call gets exactly one error, from the public entry that owns the check (the C++
# backend entry Backend::prepare_* / run_* for views; the Python op for the array's shape it
# reshapes by), naming the tensor, the expected and the given value: the whole message is
# matched, so an error wrapped in another or reported twice fails.
def one_error(exc, message):
    return pytest.raises(exc, match="^" + message.replace("[", r"\[").replace("]", r"\]")
                         .replace("(", r"\(").replace(")", r"\)") + "$")


def test_malformed_linear_call_is_one_error_from_the_entry():
    q = weights(8, 64)
    lin = mxq.Linear.prepare(q.packed, q.scales, "mxfp4", backend="cpu")
    x = np.zeros((2, 64), BF16)
    with one_error(ValueError, "invalid argument: cpu: linear x: expected dtype bf16, got f32"):
        lin(np.zeros((2, 64), np.float32))
    with one_error(ValueError, "invalid argument: cpu: linear y: expected shape [2, 8], got [2, 7]"):
        lin(x, out=np.empty((2, 7), BF16))
    with one_error(ValueError, "x has shape [2, 63]; expected [..., K=64]"):  # the Python op's
        lin(np.zeros((2, 63), BF16))
    # K not in whole 32-blocks: 20 bytes of E2M1 per row are K = 40 (canonical views round up).
    packed = np.zeros((8, 20), np.uint8)
    scales = np.full((8, 1), 127, np.uint8)
    with one_error(ValueError, "invalid argument: cpu: linear weight: expected shape [1, 8, 64], "
                               "got [1, 8, 40] (K must be a multiple of 32)"):
        mxq.Linear.prepare(packed, scales, "mxfp4", backend="cpu")
    assert lin(x).shape == (2, 8)  # the layer still runs


def test_malformed_moe_call_is_one_error_from_the_entry():
    w13, w2 = moe_weights()
    layer = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4", topk=2,
                            backend="cpu")
    x = np.zeros((3, 64), BF16)
    logits = np.zeros((3, 4), np.float32)
    with one_error(ValueError, "invalid argument: cpu: moe x: expected dtype bf16, got f32"):
        layer(np.zeros((3, 64), np.float32), logits)
    with one_error(ValueError, "invalid argument: cpu: moe router_logits: expected [3, 4], "
                               "got [3, 3]"):
        layer(x, np.zeros((3, 3), np.float32))
    with one_error(ValueError, "invalid argument: cpu: moe y: expected shape [3, 64], "
                               "got [2, 64]"):
        layer(x, logits, out=np.empty((2, 64), BF16))
    # H is the entry's check (the Python op checks only that x is 2-D, which the view folds).
    with one_error(ValueError, "invalid argument: cpu: moe x: expected shape [3, 64], "
                               "got [3, 63]"):
        layer(np.zeros((3, 63), BF16), logits)
    with one_error(ValueError, "x has shape [3, 1, 64]; expected [M, H=64]"):
        layer(np.zeros((3, 1, 64), BF16), logits)
    # The down projection with I = 40 (20 bytes per row): not whole 32-blocks.
    e, h, i = 4, 64, 40
    w13p = np.zeros((e, 2 * i, h // 2), np.uint8)
    w13s = np.full((e, 2 * i, h // 32), 127, np.uint8)
    w2p = np.zeros((e, h, i // 2), np.uint8)
    w2s = np.full((e, h, 1), 127, np.uint8)
    with one_error(ValueError, "invalid argument: cpu: moe w2: expected shape [4, 64, 64], "
                               "got [4, 64, 40] (K must be a multiple of 32)"):
        mxq.MoE.prepare(w13p, w13s, w2p, w2s, "mxfp4", topk=2, backend="cpu")
    assert layer(x, logits).shape == (3, 64)  # the layer still runs

@pytest.mark.parametrize("routing,activation,layout", [
    ("softmax-topk", "silu", "chunked"),
    ("topk-softmax", "swigluoai", "interleaved"),
])
def test_moe_from_arrays_matches_reference(routing, activation, layout):
    w13, w2 = moe_weights()
    kw = dict(topk=2, routing=routing, activation=activation, layout=layout)
    fast = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4", **kw)
    ref = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4",
                          backend="cpu-reference", **kw)
    assert fast.backend == "cpu" and fast.experts == 4 and fast.hidden == 64
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 64)).astype(BF16)
    logits = rng.standard_normal((7, 4)).astype(np.float32)
    y = fast(x, logits)
    assert y.shape == (7, 64) and y.dtype == BF16
    assert rel(y, ref(x, logits)) < 2e-2


def test_moe_grouped_routing_and_errors():
    w13, w2 = moe_weights(e=8)
    layer = mxq.MoE.prepare(w13.packed, w13.scales, w2.packed, w2.scales, "mxfp4", topk=2,
                            routing="sigmoid-grouped-topk", n_group=4, topk_group=2,
                            correction_bias=True, routed_scaling=2.5, backend="cpu-reference")
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(BF16)
    logits = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    cb = np.zeros(8, np.float32)
    assert layer(x, logits, correction_bias=cb).shape == (3, 64)
    with pytest.raises(ValueError, match="correction_bias=true"):
        layer(x, logits)
    with pytest.raises(ValueError, match=r"moe router_logits: expected \[3, 8\], got \[3, 4\]"):
        layer(x, logits[:, :4], correction_bias=cb)
    with pytest.raises(ValueError, match=r"moe w13: expected shape \[8, 64, 32\], got \[8, 64, 64\]"):
        mxq.MoE.prepare(w13.packed, w13.scales, w2.packed[:, :32], w2.scales[:, :32], "mxfp4", topk=2)
    with pytest.raises(ValueError, match="separate"):
        mxq.MoE.prepare(None, None, w2.packed, w2.scales, "mxfp4", topk=2, layout="separate")


def test_model_layers_match_reference(sample):
    """Every layer of the quantized sample model, prepared from the checkpoint, on the oracle's
    backend vs cpu-reference (what `mxq run` checks)."""
    m = mxq.load(sample / "mxfp4")
    rng = np.random.default_rng(0)
    for spec in m.layers(tokens=3):
        if spec["op"] == "linear":
            fast = m.linear(spec["name"])
            ref = m.linear(spec["name"], backend="cpu-reference")
            x = rng.standard_normal((3, fast.k)).astype(BF16)
            assert rel(fast(x), ref(x)) < 2e-2, spec["name"]
        else:
            fast = m.moe(spec["name"])
            ref = m.moe(spec["name"], backend="cpu-reference")
            x = rng.standard_normal((3, fast.hidden)).astype(BF16)
            logits = m.router_logits(spec["name"], x)
            assert logits.shape == (3, fast.experts) and logits.dtype == np.float32
            assert rel(fast(x, logits), ref(x, logits)) < 2e-2, spec["name"]
    with pytest.raises(LookupError, match="no MX layer 'nope'.*model.layers.0"):
        m.linear("nope")
    with pytest.raises(ValueError, match="is an MoE layer"):
        m.linear("model.layers.2.mlp")


def read_run_dump(d, name, tokens):
    """`mxq run --dump` files of a layer: x (bf16 [M, K]) and the backend's y ([M, N])."""
    xf = d / f"{name}.x.bf16"
    (yf,) = d.glob(f"{name}.y.*")
    x = np.fromfile(xf, np.uint16).view(BF16).reshape(tokens, -1)
    ydt = {"bf16": np.uint16, "f16": np.uint16, "f32": np.uint32}[yf.suffix[1:]]
    return x, np.fromfile(yf, ydt).reshape(tokens, -1), yf.suffix[1:]


@pytest.mark.parametrize("tokens", [1, 5])
def test_linear_equals_mxq_run_bitwise(sample, cli, tmp_path, tokens):
    """The package's Linear on the CPU computes the same bits as `mxq run --backend cpu` on the
    same checkpoint and input (the same check on CUDA: test_pkg_torch.py)."""
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"]
    args = ["run", sample / "mxfp4", "--backend", "cpu", "--tokens", tokens, "--iters", 1,
            "--dump", tmp_path]
    for n in names:
        args += ["--layer", n]
    out = cli(*args)
    assert out.count(" cpu ") == len(names)
    m = mxq.load(sample / "mxfp4")
    for n in names:
        x, y_run, ydt = read_run_dump(tmp_path, n, tokens)
        lin = m.linear(n, backend="cpu", strict=True)
        y = lin(x)
        assert lin.problem.out == ydt
        np.testing.assert_array_equal(np.asarray(y).view(y_run.dtype), y_run)


# Out of memory (issue 19): a layer whose run cannot get its working set raises MemoryError
# naming the backend, the call and the bytes, leaves `out` untouched, and the same layer runs
# once memory is back. In a child process, whose address space is capped (RLIMIT_AS) just
# above what it already uses after the layer is prepared and every array allocated.
_OOM_CHILD = r"""
import resource, sys
import numpy as np, ml_dtypes, mxq
backend = sys.argv[1]
q = mxq.quantize(np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32), "mxfp4")
x = np.random.default_rng(1).standard_normal((4096, 1024)).astype(ml_dtypes.bfloat16)
out = np.full((4096, 1024), 7.0, np.float32)
lay = mxq.Linear.prepare(q.packed, q.scales, "mxfp4", backend=backend, out_dtype="f32")
want = lay(x[:8])
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 4 * 2**20, resource.RLIM_INFINITY))
try:
    lay(x, out=out)
    print("RAN")
except MemoryError as e:
    print("MEMORYERROR", e)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("UNTOUCHED", bool((out == 7.0).all()))
y = lay(x, out=out)
print("AGAIN", bool(np.array_equal(y[:8].view(np.uint32), want.view(np.uint32))))
"""


@pytest.mark.parametrize("backend", ["cpu", "cpu-reference"])
def test_out_of_host_memory_is_memory_error_and_the_layer_recovers(backend):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", _OOM_CHILD, backend], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    err = next((l for l in lines if l.startswith("MEMORYERROR")), None)
    assert err is not None, f"no MemoryError under the cap: {p.stdout[-2000:]}"
    # mxq's own error (a resource-exhausted Status), not numpy's or the interpreter's
    assert "resource exhausted" in err and backend in err and "run_linear" in err, err
    assert "bytes" in err, err
    assert "UNTOUCHED True" in lines, p.stdout
    assert "AGAIN True" in lines, p.stdout
