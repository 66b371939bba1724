"""mxq.shard_linear / mxq.shard_moe (the C++ sharding, include/mxq/shard.h, issue 21): the
ranks' layers, prepared from the returned arrays and joined as the collectives would (column:
concatenation, bit for bit; row, expert and tensor parallel: a sum), give the full layer's
result; bad splits are ValueErrors naming the rule."""

import numpy as np
import pytest

import mxq

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 numpy arrays need ml_dtypes")
BF16 = ml_dtypes.bfloat16


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def q(shape, seed, fmt="mxfp4"):
    return mxq.quantize(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), fmt)


@pytest.mark.parametrize("ranks", [2, 4])
def test_linear_shards_join_to_the_layer(ranks):
    w = q((64, 256), 0)
    bias = np.linspace(-1, 1, 64).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((5, 256)).astype(BF16)
    full = mxq.Linear.prepare(w.packed, w.scales, "mxfp4", bias=bias, backend="cpu-reference",
                              out_dtype="f32")(x)
    cols, total = [], np.zeros_like(full)
    for r in range(ranks):
        c = mxq.shard_linear(w.packed, w.scales, "mxfp4", how="column", rank=r, ranks=ranks, bias=bias)
        assert c["n0"] == r * 64 // ranks and c["packed"].shape == (64 // ranks, 128)
        cols.append(mxq.Linear.prepare(c["packed"], c["scales"], "mxfp4", bias=c["bias"],
                                       backend="cpu-reference", out_dtype="f32")(x))
        s = mxq.shard_linear(w.packed, w.scales, "mxfp4", how="row", rank=r, ranks=ranks, bias=bias)
        assert (s["bias"] is None) == (r != 0), "the bias on rank 0 only"
        assert s["k0"] == r * 256 // ranks and "row parallel" in s["describe"]
        total += mxq.Linear.prepare(s["packed"], s["scales"], "mxfp4", bias=s["bias"],
                                    backend="cpu-reference", out_dtype="f32")(x[:, s["k0"]:s["k1"]])
    np.testing.assert_array_equal(np.concatenate(cols, axis=1).view(np.uint32), full.view(np.uint32))
    assert rel(total, full) < 1e-6


def moe_weights(layout, e=4, h=64, i=128):
    d = {"w2_packed": None}
    w2 = q((e * h, i), 3)
    d = {"w2_packed": w2.packed.reshape(e, h, -1), "w2_scales": w2.scales.reshape(e, h, -1),
         "bias2": np.random.default_rng(4).standard_normal((e, h)).astype(np.float32) * 0.1}
    if layout == "separate":
        for n, seed in (("w1", 5), ("w3", 6)):
            t = q((e * i, h), seed)
            d[f"{n}_packed"], d[f"{n}_scales"] = t.packed.reshape(e, i, -1), t.scales.reshape(e, i, -1)
    else:
        t = q((e * 2 * i, h), 7)
        d["w13_packed"], d["w13_scales"] = t.packed.reshape(e, 2 * i, -1), t.scales.reshape(e, 2 * i, -1)
        d["bias13"] = np.random.default_rng(8).standard_normal((e, 2 * i)).astype(np.float32) * 0.1
    return d


@pytest.mark.parametrize("layout", ["chunked", "interleaved", "separate"])
@pytest.mark.parametrize("how", ["expert", "tensor"])
def test_moe_shards_sum_to_the_layer(layout, how):
    e, h, ranks = 4, 64, 2
    w = moe_weights(layout)
    x = np.random.default_rng(9).standard_normal((6, h)).astype(BF16)
    logits = np.random.default_rng(10).standard_normal((6, e)).astype(np.float32)
    kw = dict(topk=2, layout=layout, backend="cpu-reference", out_dtype="f32")
    full = mxq.MoE.prepare(fmt="mxfp4", **w, **kw)(x, logits)
    total = np.zeros_like(full)
    for r in range(ranks):
        s = mxq.shard_moe("mxfp4", how=how, rank=r, ranks=ranks, topk=2, layout=layout, **w)
        arrays = {k: s[k] for k in w if s.get(k) is not None}
        if how == "expert":
            assert (s["e0"], s["e1"]) == (2 * r, 2 * r + 2) and s["w2_packed"].shape[0] == 2
            assert list(s["expert_map"]) == [j - s["e0"] if s["e0"] <= j < s["e1"] else -1 for j in range(e)]
            layer = mxq.MoE.prepare(fmt="mxfp4", expert_map=True, experts=e, **arrays, **kw)
            total += layer(x, logits, expert_map=s["expert_map"])
        else:
            assert (s["i0"], s["i1"]) == (64 * r, 64 * r + 64)
            assert (s.get("bias2") is None) == (r != 0)
            total += mxq.MoE.prepare(fmt="mxfp4", **arrays, **kw)(x, logits)
    assert rel(total, full) < 1e-6, (layout, how)


def test_bad_splits_name_the_rule():
    w = q((48, 96), 11)
    with pytest.raises(ValueError, match="multiple of 32 x 2 = 64"):
        mxq.shard_linear(w.packed, w.scales, "mxfp4", how="row", rank=0, ranks=2)
    with pytest.raises(ValueError, match="N = 48 does not split into 5"):
        mxq.shard_linear(w.packed, w.scales, "mxfp4", how="column", rank=0, ranks=5)
    with pytest.raises(ValueError, match="fp8-dynamic-token"):
        mxq.shard_linear(q((48, 128), 12).packed, q((48, 128), 12).scales, "mxfp4", how="row",
                         rank=0, ranks=2, act="fp8-dynamic-token")
    with pytest.raises(ValueError, match="how must be"):
        mxq.shard_linear(w.packed, w.scales, "mxfp4", how="diagonal", rank=0, ranks=2)
    m = moe_weights("chunked", e=3, i=96)
    with pytest.raises(ValueError, match="4 ranks for 3 experts"):
        mxq.shard_moe("mxfp4", how="expert", rank=0, ranks=4, topk=2, **m)
    with pytest.raises(ValueError, match="I = 96 does not split"):
        mxq.shard_moe("mxfp4", how="tensor", rank=0, ranks=2, topk=2, **m)
