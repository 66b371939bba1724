"""mxq.quantize / dequantize / element numerics: bit-exact against ml_dtypes (an independent
decoder), against the C++ pipeline (`mxq quantize`'s checkpoint bytes) and the CLI."""

import numpy as np
import pytest

import mxq

ml_dtypes = pytest.importorskip("ml_dtypes", reason="the cross-check needs ml_dtypes")

FLOAT = {  # element -> (ml_dtypes type, bits, emax, max normal)
    "e2m1": (ml_dtypes.float4_e2m1fn, 4, 2, 6.0),
    "e2m3": (ml_dtypes.float6_e2m3fn, 6, 2, 7.5),
    "e3m2": (ml_dtypes.float6_e3m2fn, 6, 4, 28.0),
    "e4m3": (ml_dtypes.float8_e4m3fn, 8, 8, 448.0),
    "e5m2": (ml_dtypes.float8_e5m2, 8, 15, 57344.0),
}
FORMATS = {"e2m1": "mxfp4", "e2m3": "mxfp6-e2m3", "e3m2": "mxfp6-e3m2", "e4m3": "mxfp8",
           "e5m2": "mxfp8-e5m2", "int8": "mxint8"}


def ref_quantize(x: np.ndarray, elem: str):
    """OCP MX reference (floor scale rule, RNE, saturating) through ml_dtypes casts:
    (element codes [rows, K], E8M0 codes [rows, K/32])."""
    rows, k = x.shape
    blocks = x.reshape(rows, k // 32, 32).astype(np.float64)
    amax = np.abs(blocks).max(axis=2)
    emax = 0 if elem == "int8" else FLOAT[elem][2]
    e = np.floor(np.log2(np.where(amax > 0, amax, 1.0))).astype(np.int64)
    code = np.where(amax > 0, np.clip(e - emax, -127, 127) + 127, 0)
    scaled = blocks / np.exp2(code - 127.0)[..., None]
    if elem == "int8":
        q = np.clip(np.rint(scaled * 64.0), -127, 127).astype(np.int8).view(np.uint8)
    else:
        dt, bits, _, maxn = FLOAT[elem]
        q = np.clip(scaled, -maxn, maxn).astype(np.float32).astype(dt).view(np.uint8)
        q &= np.uint8((1 << bits) - 1)
    return q.reshape(rows, k), code.astype(np.uint8)


def sample_x(rows=16, k=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x *= np.exp2(rng.integers(-12, 12, size=(rows, 1))).astype(np.float32)  # row magnitudes
    x[0, :32] = 0.0  # an all-zero block
    return x


@pytest.mark.parametrize("elem", list(FORMATS))
@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_quantize_matches_ml_dtypes_reference(elem, dtype):
    x = sample_x()
    npdt = {"f32": np.float32, "bf16": ml_dtypes.bfloat16, "f16": np.float16}[dtype]
    xin = x.astype(npdt)
    if dtype == "f16":
        xin = (x / np.abs(x).max() * 1000).astype(np.float16)  # keep within f16 range
    q = mxq.quantize(xin, FORMATS[elem])
    codes, scales = ref_quantize(xin.astype(np.float32), elem)
    assert q.format == FORMATS[elem] and q.k == 256
    np.testing.assert_array_equal(q.scales, scales)
    np.testing.assert_array_equal(mxq.unpack(elem, q.packed), codes)
    np.testing.assert_array_equal(q.packed, mxq.pack(elem, codes))


@pytest.mark.parametrize("elem", list(FORMATS))
def test_dequantize_matches_ml_dtypes_decode(elem):
    x = sample_x(seed=1)
    q = mxq.quantize(x, FORMATS[elem])
    codes = mxq.unpack(elem, q.packed)
    if elem == "int8":
        vals = codes.view(np.int8).astype(np.float64) / 64.0
    else:
        vals = codes.view(FLOAT[elem][0]).astype(np.float64)
    scale = np.exp2(q.scales.astype(np.float64) - 127.0)
    want = (vals.reshape(16, -1, 32) * scale[..., None]).reshape(16, 256).astype(np.float32)
    got = mxq.dequantize(q)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    for dt, npdt in (("bf16", ml_dtypes.bfloat16), ("f16", np.float16)):
        g = mxq.dequantize(q.packed, q.scales, q.format, dtype=dt)
        assert g.dtype == npdt
        np.testing.assert_array_equal(g.astype(np.float32), want.astype(npdt).astype(np.float32))


@pytest.mark.parametrize("elem", list(FLOAT) + ["e8m0"])
def test_decode_every_code_matches_ml_dtypes(elem):
    if elem == "e8m0":
        dt, bits = ml_dtypes.float8_e8m0fnu, 8
    else:
        dt, bits = FLOAT[elem][0], FLOAT[elem][1]
    codes = np.arange(1 << bits, dtype=np.uint8)
    got = mxq.decode(elem, codes)
    want = codes.view(dt).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("elem", list(FLOAT))
def test_encode_matches_ml_dtypes_and_cli(elem, cli):
    dt, _, _, maxn = FLOAT[elem]
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(4096) * maxn / 3).astype(np.float32)
    got = mxq.encode(elem, x)
    want = np.clip(x, -maxn, maxn).astype(dt).view(np.uint8) & np.uint8((1 << FLOAT[elem][1]) - 1)
    np.testing.assert_array_equal(got, want)
    # the CLI's test interface is the same C++ function
    stdin = "\n".join(f"{b:08x}" for b in x[:64].view(np.uint32).tolist()) + "\n"
    out = cli("codes", "encode", elem, stdin=stdin).split()
    np.testing.assert_array_equal(np.array(out, dtype=np.uint8), got[:64])


def test_scale_codes_rules():
    amax = np.array([0.0, 1.0, 6.0, 7.0, 1e-40, 3.0e38, np.inf], dtype=np.float32)
    floor = mxq.scale_codes("e2m1", amax, "floor")
    assert floor.tolist()[:4] == [0, 125, 127, 127]
    assert floor[-1] == 0xFF
    assert mxq.scale_codes("e2m1", np.float32([7.0]), "rceil")[0] == 128  # 7/6 -> 2^1
    with pytest.raises(ValueError, match="scale rule"):
        mxq.scale_codes("e2m1", amax, "nearest")


def test_quantize_options_and_padding():
    x = sample_x(rows=3, k=40)
    with pytest.raises(ValueError, match="K = 40"):
        mxq.quantize(x)
    q = mxq.quantize(x, pad_k=True)
    assert q.k == 64 and q.packed.shape == (3, 32) and q.scales.shape == (3, 2)
    xp = np.zeros((3, 64), np.float32)
    xp[:, :40] = x
    ref = mxq.quantize(xp)
    np.testing.assert_array_equal(q.packed, ref.packed)
    np.testing.assert_array_equal(q.scales, ref.scales)
    # other rules differ from floor somewhere, and round-trip through the CLI-compatible names
    r = mxq.quantize(sample_x(), "mxfp4", scale_rule="rceil")
    assert r.scales.shape == (16, 8)
    with pytest.raises(ValueError, match="nan_inf"):
        mxq.quantize(sample_x(), "mxfp4", saturation="nan_inf")
    # leading dims fold into rows
    x3 = sample_x(rows=6).reshape(2, 3, 256)
    q3 = mxq.quantize(x3, "mxfp8")
    assert q3.packed.shape == (2, 3, 256) and q3.scales.shape == (2, 3, 8)
    np.testing.assert_array_equal(q3.packed.reshape(6, -1), mxq.quantize(x3.reshape(6, 256), "mxfp8").packed)


def test_quantize_into_preallocated_and_errors():
    x = sample_x()
    packed = np.empty((16, 128), np.uint8)
    scales = np.empty((16, 8), np.uint8)
    q = mxq.quantize(x, out=(packed, scales))
    assert q.packed is packed
    np.testing.assert_array_equal(packed, mxq.quantize(x).packed)
    with pytest.raises(ValueError, match="packed has shape"):
        mxq.quantize(x, out=(np.empty((16, 127), np.uint8), scales))
    with pytest.raises(ValueError, match="dtype int32"):
        mxq.quantize(x.astype(np.int32))
    with pytest.raises(ValueError, match="not C-contiguous"):
        mxq.quantize(np.asfortranarray(np.ones((64, 64), np.float32)))
    with pytest.raises(ValueError, match="unknown"):
        mxq.quantize(x, "mxfp5")
    with pytest.raises(ValueError, match="scalar"):
        mxq.quantize(np.float32(1.0))


def test_nonfinite_block_gets_nan_scale():
    x = sample_x(rows=2)
    x[1, 40] = np.nan
    q = mxq.quantize(x, "mxfp8")
    assert q.scales[1, 1] == 0xFF and q.scales[1, 0] != 0xFF
    assert np.isnan(mxq.dequantize(q)[1, 32:64]).all()


def test_quantize_equals_checkpoint_bytes_from_cpp_pipeline(sample):
    """Every weight of the quantized sample model, re-quantized from the dense model through
    the package, reproduces the checkpoint bytes written by the C++ pipeline."""
    dense = mxq.load(sample / "dense")
    q = mxq.load(sample / "mxfp4")
    assert len(q.weights) == 20
    for w in q.weights:
        x = dense.tensor(w.module + ".weight")
        if w.gate_up_layout == "chunked":  # the sample's interleaved experts were de-interleaved
            continue
        got = mxq.quantize(x.reshape(-1, x.shape[-1]), "mxfp4")
        np.testing.assert_array_equal(got.packed, w.packed.reshape(got.packed.shape), err_msg=w.module)
        np.testing.assert_array_equal(got.scales, w.scales.reshape(got.scales.shape), err_msg=w.module)
