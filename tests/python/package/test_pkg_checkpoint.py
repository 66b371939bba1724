"""Checkpoints through the package: load / inspect (== `mxq inspect --json`), convert,
dequantize, verify, explain; errors name the path / tensor."""

import json

import numpy as np
import pytest

import mxq


def test_inspect_equals_cli_json(sample, cli):
    got = mxq.inspect(sample / "mxfp4")
    want = json.loads(cli("inspect", "--json", sample / "mxfp4"))
    got["path"] = want["path"]
    assert got == want


def test_model_views_and_tensors(sample):
    m = mxq.load(sample / "mxfp4")
    assert m.format == "compressed-tensors" and m.scheme == "mxfp4-pack-quantized"
    assert m.activations == "none" and m.config["model_type"]
    w = m.weight("model.layers.0.self_attn.q_proj")
    assert w.format == "mxfp4" and list(w.shape) == [256, 256]
    assert w.packed.shape == (256, 128) and w.scales.shape == (256, 8)
    assert not w.packed.flags.writeable  # views into the read-only mapping
    # the canonical view is the checkpoint's own bytes
    np.testing.assert_array_equal(w.packed.reshape(-1), np.asarray(m.tensor(w.packed_name)).view(np.uint8).reshape(-1))
    dense = mxq.load(sample / "dense")
    t = dense.tensor("model.embed_tokens.weight")
    assert str(t.dtype) == "bfloat16"
    with pytest.raises(LookupError, match="tensor 'nope' is not in"):
        m.tensor("nope")
    with pytest.raises(KeyError):
        m.weight("nope")
    del m  # weights keep the model's mapping alive
    assert int(w.packed.sum()) >= 0


def test_dequantized_weights_match_dequantize_model(sample, tmp_path):
    r = mxq.dequantize_model(sample / "mxfp4", tmp_path / "deq", dtype="f32")
    assert r["quantized"] == 20
    m, d = mxq.load(sample / "mxfp4"), mxq.load(tmp_path / "deq")
    assert d.format == "unquantized"
    for w in m.weights[:5]:
        got = mxq.dequantize(w.packed, w.scales, w.format)
        np.testing.assert_array_equal(got.reshape(-1), d.tensor(w.module + ".weight").reshape(-1))


def test_convert_is_lossless_and_atomic(sample, tmp_path):
    out = tmp_path / "ct"
    r = mxq.convert(sample / "mxfp4", out)
    assert r["quantized"] == 20
    a, b = mxq.load(sample / "mxfp4"), mxq.load(out)
    for wa, wb in zip(a.weights, b.weights):
        assert wa.module == wb.module
        pa, sa = wa.packed, wa.scales
        if wa.gate_up_layout == "interleaved":  # rows gate0, up0, gate1, ... -> gates, then ups
            assert wb.gate_up_layout == "chunked"
            order = np.r_[0:pa.shape[-2]:2, 1:pa.shape[-2]:2]
            pa, sa = pa[..., order, :], sa[..., order, :]
        np.testing.assert_array_equal(pa, wb.packed, err_msg=wa.module)
        np.testing.assert_array_equal(sa, wb.scales, err_msg=wa.module)
    with pytest.raises(ValueError, match="exists"):
        mxq.convert(sample / "mxfp4", out)
    mxq.convert(sample / "mxfp4", out, overwrite=True)
    with pytest.raises(ValueError, match="only compressed-tensors"):
        mxq.convert(sample / "mxfp4", tmp_path / "x", to="gpt-oss")
    assert not (tmp_path / "x").exists()


def test_verify_and_quantize_model_schemes(sample, tmp_path):
    v = mxq.verify(sample / "mxfp4", sample / "dense")
    assert v["ok"] and all(l["bit_exact"] for l in v["layers"])
    r = mxq.quantize_model(sample / "dense", tmp_path / "fp8", scheme="mxfp8", activations="mxfp8")
    m = mxq.load(tmp_path / "fp8")
    assert r["quantized"] == 20 and m.activations == "mxfp8"
    assert {w.format for w in m.weights} == {"mxfp8"}
    # fp6 activation schemes are read (Quark) but compressed-tensors cannot record them.
    with pytest.raises(ValueError, match="no MXFP6 activation preset"):
        mxq.quantize_model(sample / "dense", tmp_path / "fp6", scheme="mxfp6-e2m3",
                           activations="mxfp6-e2m3")
    assert not (tmp_path / "fp6").exists()


def test_explain(sample):
    t = mxq.explain(op="linear", weights="mxfp4", n=4096, k=4096)
    assert "linear mxfp4 x bf16 -> bf16, M=1 N=4096 K=4096" in t and "chosen" in t
    t = mxq.explain(mxq.make_problem(op="moe", n=256, k=128, experts=8, topk=2, activation="swigluoai"))
    assert "moe mxfp4" in t
    t = mxq.explain(sample / "mxfp4", tokens=4)
    assert "model.layers.2.mlp" in t and " cpu " in t
    with pytest.raises(ValueError, match="op 'conv'"):
        mxq.explain(op="conv")
    names = {b["name"]: b for b in mxq.backends()}
    assert {"cpu", "cpu-reference"} <= set(names) and names["cpu"]["device"] == "cpu"
    assert "cpu:" in mxq.device()


def test_load_errors(tmp_path):
    with pytest.raises((LookupError, ValueError), match=str(tmp_path / "missing")):
        mxq.load(tmp_path / "missing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match="bad.safetensors"):
        mxq.load(bad)
