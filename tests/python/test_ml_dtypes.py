"""Cross-check of mxq's element numerics against ml_dtypes (and numpy for MXINT8).

Through the CLI's test interface (`mxq codes decode` / `mxq codes encode`, see cli/codes.cc):
  - every code of every type decodes to the same FP32 bits as ml_dtypes (signed zeros included;
    NaN codes are compared by NaN-ness);
  - round-to-nearest-even element encodes agree code for code on every representable value,
    every midpoint between neighbours and the FP32 values either side of it, ~200k random finite
    FP32 values in and beyond each type's range, and FP32 subnormals;
  - `--scale s` divides by 2^(s-127) exactly;
  - the CLI's error paths.

ml_dtypes quirks handled here (ml_dtypes 0.5/0.6):
  - float32 -> float8_e4m3fn does not saturate: anything that rounds beyond 448 becomes NaN
    (0x7F / 0xFF); float32 -> float8_e5m2 overflows to +-Inf. So mxq's default `saturate` mode is
    compared against ml_dtypes applied to the input clipped to +-max_normal, and the `nan_inf`
    mode against unclipped ml_dtypes.
  - float32 -> float4_e2m1fn / float6_* already saturates to +-max (those types have no NaN/Inf
    codes); clipping first changes nothing and keeps one code path.
  - fp4/fp6 values are stored one per byte: codes are compared as uint8 views masked to the width.
"""

import math

import numpy as np
import pytest

try:
    import ml_dtypes
except ImportError as e:  # a hard failure, not a skip: this test exists to cross-check
    raise ImportError("the ml_dtypes cross-check needs `pip install numpy ml_dtypes`") from e

# name -> (ml_dtypes type, storage bits, max normal)
FLOAT_TYPES = {
    "e2m1": (ml_dtypes.float4_e2m1fn, 4, 6.0),
    "e2m3": (ml_dtypes.float6_e2m3fn, 6, 7.5),
    "e3m2": (ml_dtypes.float6_e3m2fn, 6, 28.0),
    "e4m3": (ml_dtypes.float8_e4m3fn, 8, 448.0),
    "e5m2": (ml_dtypes.float8_e5m2, 8, 57344.0),
}
FP8_TYPES = ["e4m3", "e5m2"]
ALL_ENCODE_TYPES = [*FLOAT_TYPES, "int8"]
INT8_MAX = 127.0 / 64.0

F32_MIN_SUBNORMAL = np.float32(2.0**-149)
F32_MAX = np.finfo(np.float32).max


# ---- references --------------------------------------------------------------------------

def ref_decode_bits(type_name: str) -> np.ndarray:
    """FP32 bits of every code of a type, decoded by ml_dtypes (numpy for int8)."""
    if type_name == "int8":
        v = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64) / 64.0
        return v.astype(np.float32).view(np.uint32)
    if type_name == "e8m0":
        dt, bits = ml_dtypes.float8_e8m0fnu, 8
    else:
        dt, bits, _ = FLOAT_TYPES[type_name]
    codes = np.arange(1 << bits, dtype=np.uint8)
    return codes.view(dt).astype(np.float32).view(np.uint32)


def ref_encode(type_name: str, x: np.ndarray, saturation: str = "saturate") -> np.ndarray:
    """RNE element codes of the float32 values x (no block scale)."""
    x = np.asarray(x, dtype=np.float32)
    if type_name == "int8":
        q = np.clip(np.rint(x.astype(np.float64) * 64.0), -127, 127)  # rint: ties to even
        return q.astype(np.int8).view(np.uint8)
    dt, bits, max_normal = FLOAT_TYPES[type_name]
    if saturation == "saturate":
        x = np.clip(x, np.float32(-max_normal), np.float32(max_normal))
    else:
        assert type_name in FP8_TYPES
    return x.astype(dt).view(np.uint8) & np.uint8((1 << bits) - 1)


def representable(type_name: str) -> np.ndarray:
    """All finite values of a type, as float32 (both zeros included)."""
    if type_name == "int8":
        return (np.arange(-128, 128, dtype=np.float64) / 64.0).astype(np.float32)
    v = ref_decode_bits(type_name).view(np.float32)
    return v[np.isfinite(v)]


def max_value(type_name: str) -> float:
    return INT8_MAX if type_name == "int8" else FLOAT_TYPES[type_name][2]


def neighbours(v: np.ndarray) -> np.ndarray:
    """v and the float32 values immediately below and above each entry."""
    v = np.asarray(v, dtype=np.float32)
    return np.concatenate([v, np.nextafter(v, np.float32(-np.inf)),
                           np.nextafter(v, np.float32(np.inf))])


def with_negatives(v: np.ndarray) -> np.ndarray:
    return np.concatenate([v, -v]).astype(np.float32)


def grid_inputs(type_name: str) -> np.ndarray:
    """Representable values, midpoints between neighbours (including the overflow midpoint
    above max), and the float32 values either side of each, both signs."""
    v = np.unique(np.abs(representable(type_name)).astype(np.float64))
    ulp_at_max = v[-1] - v[-2]
    above = np.append(v, v[-1] + ulp_at_max)  # the value an unbounded format would have next
    mids = (above[:-1] + above[1:]) / 2.0
    assert (mids.astype(np.float32).astype(np.float64) == mids).all(), "midpoint not exact in f32"
    x = neighbours(np.concatenate([v, mids]).astype(np.float32))
    x = x[np.isfinite(x)]
    return with_negatives(x)


def random_inputs(type_name: str, rng: np.random.Generator, n: int = 200_000) -> np.ndarray:
    """~n random finite float32 values: uniform bit patterns over all finite float32,
    log-uniform magnitudes from well below the smallest subnormal to well beyond max, and
    uniform values over [-1.5 max, 1.5 max]."""
    n_bits, n_log = n // 4, n // 2
    n_lin = n - n_bits - n_log
    bits = rng.integers(0, 2**32, size=n_bits, dtype=np.uint64).astype(np.uint32)
    bits = bits[(bits & 0x7F800000) != 0x7F800000]
    mx = max_value(type_name)
    lo = math.log2(1.0 / 64.0) - 4 if type_name == "int8" else math.log2(
        float(np.min(np.abs(representable(type_name))[np.abs(representable(type_name)) > 0]))) - 4
    hi = math.log2(mx) + 4
    mag = np.exp2(rng.uniform(lo, hi, size=n_log))
    sign = np.where(rng.random(n_log) < 0.5, -1.0, 1.0)
    lin = rng.uniform(-1.5 * mx, 1.5 * mx, size=n_lin)
    return np.concatenate([bits.view(np.float32), (sign * mag).astype(np.float32),
                           lin.astype(np.float32)])


def subnormal_inputs(rng: np.random.Generator, n: int = 5000) -> np.ndarray:
    edges = np.array([1, 2, 3, 0x400000, 0x7FFFFE, 0x7FFFFF], dtype=np.uint32)
    bits = np.concatenate([edges, rng.integers(1, 0x800000, size=n, dtype=np.uint32)])
    v = bits.view(np.float32)
    return with_negatives(np.concatenate([v, [np.float32(0.0)]]))


def special_inputs() -> np.ndarray:
    v = np.array([0.0, F32_MIN_SUBNORMAL, np.finfo(np.float32).tiny, 1.0, F32_MAX,
                  np.nextafter(np.float32(1.0), np.float32(0.0))], dtype=np.float32)
    return with_negatives(v)


def assert_codes_equal(type_name: str, x: np.ndarray, got: np.ndarray, want: np.ndarray,
                       what: str) -> None:
    bad = np.nonzero(got != want)[0]
    if bad.size == 0:
        return
    lines = [f"  x={float(x[i])!r} (0x{int(x.view(np.uint32)[i]):08x}): "
             f"mxq {int(got[i])} (0x{int(got[i]):02x}), reference {int(want[i])} "
             f"(0x{int(want[i]):02x})" for i in bad[:10]]
    pytest.fail(f"{type_name} {what}: {bad.size} of {x.size} codes differ, e.g.\n"
                + "\n".join(lines))


# ---- decode ------------------------------------------------------------------------------

@pytest.mark.parametrize("type_name", [*FLOAT_TYPES, "int8", "e8m0"])
def test_decode_every_code(mxq, type_name):
    codes, got = mxq.decode(type_name)
    want = ref_decode_bits(type_name)
    assert codes.tolist() == list(range(want.size)), "decode must list every code once, in order"
    got_nan = np.isnan(got.view(np.float32))
    want_nan = np.isnan(want.view(np.float32))
    assert (got_nan == want_nan).all(), (
        f"NaN codes differ: mxq {np.nonzero(got_nan)[0].tolist()}, "
        f"ml_dtypes {np.nonzero(want_nan)[0].tolist()}")
    bad = np.nonzero((got != want) & ~want_nan)[0]
    assert bad.size == 0, "codes decoding differently (code: mxq bits vs reference bits): " + ", ".join(
        f"{c}: {got[c]:08x} vs {want[c]:08x}" for c in bad[:16].tolist())


def test_decode_spot_values(mxq):
    # A few values fixed by NUMERICS.md, independent of any reference library.
    _, e8m0 = mxq.decode("e8m0")
    assert e8m0[0] == 0x00400000  # 2^-127, not zero
    assert e8m0[127] == 0x3F800000
    assert e8m0[254] == 0x7F000000  # 2^127, not Inf
    assert np.isnan(e8m0.view(np.float32)[255])
    _, e2m1 = mxq.decode("e2m1")
    assert e2m1.view(np.float32)[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert e2m1[8] == 0x80000000  # -0
    _, i8 = mxq.decode("int8")
    assert i8.view(np.float32)[0x80] == -2.0


# ---- RNE encode at scale 1 ---------------------------------------------------------------

@pytest.mark.parametrize("type_name", ALL_ENCODE_TYPES)
def test_encode_grid(mxq, type_name):
    x = np.concatenate([grid_inputs(type_name), special_inputs()])
    assert_codes_equal(type_name, x, mxq.encode(type_name, x), ref_encode(type_name, x),
                       "representable values, midpoints and their neighbours")


@pytest.mark.parametrize("type_name", ALL_ENCODE_TYPES)
def test_encode_random(mxq, type_name):
    rng = np.random.default_rng(20261122 + len(type_name) + ord(type_name[-1]))
    x = random_inputs(type_name, rng)
    assert_codes_equal(type_name, x, mxq.encode(type_name, x), ref_encode(type_name, x),
                       "random finite float32")


@pytest.mark.parametrize("type_name", ALL_ENCODE_TYPES)
def test_encode_fp32_subnormals(mxq, type_name):
    x = subnormal_inputs(np.random.default_rng(7))
    got = mxq.encode(type_name, x)
    assert_codes_equal(type_name, x, got, ref_encode(type_name, x), "FP32 subnormals")


def test_encode_signed_zero(mxq):
    # Underflow keeps the sign of zero for the float types (int8 has no -0).
    x = np.array([-0.0, -1e-30, 0.0, 1e-30], dtype=np.float32)
    for t, (_, bits, _) in FLOAT_TYPES.items():
        sign = 1 << (bits - 1)
        assert mxq.encode(t, x).tolist() == [sign, sign, 0, 0], t
    assert mxq.encode("int8", x).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("type_name", FP8_TYPES)
def test_encode_nan_inf_overflow(mxq, type_name):
    """--saturation nan_inf: finite overflow gives NaN (E4M3) / Inf (E5M2), as ml_dtypes does."""
    rng = np.random.default_rng(99)
    x = np.concatenate([grid_inputs(type_name), special_inputs(),
                        random_inputs(type_name, rng, 50_000)])
    got = mxq.encode(type_name, x, saturation="nan_inf")
    assert_codes_equal(type_name, x, got, ref_encode(type_name, x, "nan_inf"),
                       "nan_inf saturation vs unclipped ml_dtypes")
    mx = FLOAT_TYPES[type_name][2]
    over = np.array([2 * mx, -2 * mx, F32_MAX], dtype=np.float32)
    codes = mxq.encode(type_name, over, saturation="nan_inf")
    dt = FLOAT_TYPES[type_name][0]
    vals = codes.view(dt).astype(np.float32)
    if type_name == "e4m3":
        assert np.isnan(vals).all(), codes
    else:
        assert vals.tolist() == [np.inf, -np.inf, np.inf], codes
    # and the default saturates to +-max
    sat = mxq.encode(type_name, over).view(dt).astype(np.float32)
    assert sat.tolist() == [mx, -mx, mx]


# ---- block scale -------------------------------------------------------------------------

SCALES = [0, 1, 2, 60, 120, 126, 127, 128, 134, 200, 252, 253, 254]


def scale_cases(type_name: str, s: int, rng: np.random.Generator):
    """(x, y) pairs with y = x / 2^(s-127) where both are float32 and the division is exact."""
    c = s - 127
    # element-domain values y scaled up into x ...
    y1 = np.concatenate([grid_inputs(type_name), random_inputs(type_name, rng, 20_000),
                         subnormal_inputs(rng, 500)]).astype(np.float64)
    x1 = np.ldexp(y1, c)
    # ... and raw float32 inputs x scaled down into y (all finite bit patterns, subnormals too)
    bits = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    bits = bits[(bits & 0x7F800000) != 0x7F800000]
    x2 = np.concatenate([bits.view(np.float32), subnormal_inputs(rng, 500)]).astype(np.float64)
    y2 = np.ldexp(x2, -c)
    x = np.concatenate([x1, x2])
    y = np.concatenate([y1, y2])
    with np.errstate(over="ignore"):
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
    ok = (np.isfinite(x32) & np.isfinite(y32) & (x32.astype(np.float64) == x)
          & (y32.astype(np.float64) == y))
    return x32[ok], y32[ok]


@pytest.mark.parametrize("type_name", ALL_ENCODE_TYPES)
def test_encode_scale_shift(mxq, type_name):
    rng = np.random.default_rng(1234)
    for s in SCALES:
        x, y = scale_cases(type_name, s, rng)
        assert x.size > 1000, (s, x.size)
        got = mxq.encode(type_name, x, scale=s)
        assert_codes_equal(type_name, x, got, ref_encode(type_name, y),
                           f"--scale {s} (x / 2^{s - 127})")


# ---- CLI error paths ---------------------------------------------------------------------

@pytest.mark.parametrize("type_name", ["e2m1", "e2m3", "e3m2", "int8"])
def test_nan_inf_rejected_without_fp8(mxq, type_name):
    p = mxq.run("codes", "encode", type_name, "--saturation", "nan_inf", stdin="3f800000\n")
    assert p.returncode != 0
    assert "nan_inf" in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_unknown_type_lists_names(mxq, command):
    p = mxq.run("codes", command, "e9m9", stdin="3f800000\n")
    assert p.returncode != 0
    assert "e9m9" in p.stderr, p.stderr
    for name in ["e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8"]:
        assert name in p.stderr, (name, p.stderr)


@pytest.mark.parametrize("bad", ["zz", "3f80000g", "1.0", "123456789"])
def test_bad_stdin_line_names_line_number(mxq, bad):
    p = mxq.run("codes", "encode", "e4m3", stdin=f"3f800000\n40000000\n{bad}\n3f800000\n")
    assert p.returncode != 0
    assert "line 3" in p.stderr, p.stderr


def test_non_finite_input_rejected(mxq):
    p = mxq.run("codes", "encode", "e4m3", stdin="3f800000\n7f800000\n")
    assert p.returncode != 0
    assert "line 2" in p.stderr, p.stderr


def test_scale_out_of_range_rejected(mxq):
    p = mxq.run("codes", "encode", "e4m3", "--scale", "255", stdin="3f800000\n")
    assert p.returncode != 0
