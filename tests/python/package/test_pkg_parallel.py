"""mxq.torch's tensor- and expert-parallel modules (issue 21) over torch.distributed with gloo
on the CPU: world sizes 2 and 4 in processes spawned by torch.multiprocessing (init_method
file:// in a temp dir), each rank building its module from the same weights (or the same
checkpoint layer) and the same inputs; the parent compares every rank's result with the one-rank
layer (mxq.torch.MXLinear / MXMoE on the same weights).

What is compared, and how tight:
- column parallel (gathered or not): bitwise, every rank.
- row parallel, expert / tensor parallel MoE: the ranks' partial sums are float32 and added in
  another association than the one-rank layer's own float32 sums (over K, or over a token's
  top-k experts), so the float32 results differ by float32 rounding: relative L2 <= 1e-6 for
  float32 outputs; bf16 outputs at most 1 bf16 ulp apart element-wise with >= 99% of them
  bitwise equal. With top-1 routing only one rank contributes to a token and the expert
  parallel result is bitwise the one-rank layer's.
- every rank returns the same tensor (all-reduced / all-gathered results), bitwise; a second
  forward gives the same bits (ordered and the collective's own reduction alike).

Skipped, with the reason, where torch (or its gloo backend) is not installed: CI has no torch.
Here: tests/python/run_parallel.sh installs CPU torch into a venv and runs this file.
"""

import os
import pathlib
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the parallel module tests "
                                            "need torch.distributed: tests/python/run_parallel.sh)")
import torch.distributed as dist  # noqa: E402

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("this torch build has no torch.distributed gloo backend", allow_module_level=True)

import mxq  # noqa: E402
import mxq.torch as mt  # noqa: E402

BF16 = torch.bfloat16
N, K, M = 64, 256, 8           # linear: N and K split over 4 ranks in whole 32-blocks
E, H, I = 8, 64, 128           # MoE: I / 4 = 32


# ---- deterministic weights and inputs, identical in the parent and in every rank ----------

def _q(shape, seed, fmt):
    return mxq.quantize(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), fmt)


def _x(shape, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32)).to(BF16)


def linear_weights(fmt):
    w = _q((N, K), 1, fmt)
    bias = np.linspace(-1, 1, N).astype(np.float32)
    return w, bias


def moe_weights(fmt, layout, e=E):
    d = {}
    w2 = _q((e * H, I), 3, fmt)
    d["w2_packed"], d["w2_scales"] = w2.packed.reshape(e, H, -1), w2.scales.reshape(e, H, -1)
    d["bias2"] = np.random.default_rng(4).standard_normal((e, H)).astype(np.float32) * 0.1
    if layout == "separate":
        for name, seed in (("w1", 5), ("w3", 6)):
            t = _q((e * I, H), seed, fmt)
            d[f"{name}_packed"], d[f"{name}_scales"] = t.packed.reshape(e, I, -1), t.scales.reshape(e, I, -1)
    else:
        t = _q((e * 2 * I, H), 7, fmt)
        d["w13_packed"], d["w13_scales"] = t.packed.reshape(e, 2 * I, -1), t.scales.reshape(e, 2 * I, -1)
        d["bias13"] = np.random.default_rng(8).standard_normal((e, 2 * I)).astype(np.float32) * 0.1
    return d


def moe_options(layout, topk):
    if layout == "interleaved":  # gpt-oss
        return dict(topk=topk, layout=layout, activation="swigluoai", routing="topk-softmax")
    return dict(topk=topk, layout=layout)


# ---- the cases: one spawn per world size runs all of them --------------------------------

LINEAR_CASES = {}
for fmt in ("mxfp4", "mxfp8"):
    LINEAR_CASES[f"column-gather-{fmt}"] = dict(how="column", fmt=fmt, kw={}, x=(2, 3, K))
    LINEAR_CASES[f"column-local-{fmt}"] = dict(how="column", fmt=fmt, kw=dict(gather_output=False), x=(M, K))
    LINEAR_CASES[f"column-f32-{fmt}"] = dict(how="column", fmt=fmt, kw=dict(out_dtype=torch.float32), x=(M, K))
    LINEAR_CASES[f"row-allreduce-{fmt}"] = dict(how="row", fmt=fmt, kw={}, x=(M, K))
    LINEAR_CASES[f"row-allreduce-ordered-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(ordered=True), x=(2, 4, K))
    LINEAR_CASES[f"row-allreduce-f32-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(out_dtype=torch.float32), x=(M, K))
    LINEAR_CASES[f"row-scatter-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(reduce="reduce_scatter"), x=(M, K))
    LINEAR_CASES[f"row-scatter-ordered-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(reduce="reduce_scatter", ordered=True), x=(M, K))
    LINEAR_CASES[f"row-parallel-input-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(input_is_parallel=True), x=(M, K))
    LINEAR_CASES[f"row-none-{fmt}"] = dict(how="row", fmt=fmt, kw=dict(reduce="none"), x=(M, K))
LINEAR_CASES["row-allreduce-mxfp8-dynamic"] = dict(how="row", fmt="mxfp4", act="mxfp8-dynamic", kw={}, x=(M, K))

MOE_CASES = {}
for fmt in ("mxfp4", "mxfp8"):
    for layout in ("chunked", "interleaved", "separate"):
        for how in ("expert", "tensor"):
            MOE_CASES[f"{how}-{layout}-{fmt}"] = dict(fmt=fmt, layout=layout, how=how, topk=2, kw={})
            MOE_CASES[f"{how}-{layout}-{fmt}-sharded"] = dict(fmt=fmt, layout=layout, how=how, topk=2,
                                                              kw=dict(sharded_tokens=True))
    MOE_CASES[f"expert-chunked-{fmt}-native"] = dict(fmt=fmt, layout="chunked", how="expert", topk=2,
                                                     kw=dict(ordered=False))
    MOE_CASES[f"expert-chunked-{fmt}-sharded-native"] = dict(fmt=fmt, layout="chunked", how="expert",
                                                             topk=2, kw=dict(sharded_tokens=True, ordered=False))
    MOE_CASES[f"expert-chunked-{fmt}-top1"] = dict(fmt=fmt, layout="chunked", how="expert", topk=1, kw={})
    MOE_CASES[f"expert-chunked-{fmt}-f32"] = dict(fmt=fmt, layout="chunked", how="expert", topk=2,
                                                  kw=dict(out_dtype=torch.float32))
for how in ("expert", "tensor"):  # DeepSeek routing with the router's correction bias
    MOE_CASES[f"{how}-chunked-mxfp8-deepseek"] = dict(
        fmt="mxfp8", layout="chunked", how=how, topk=2, kw=dict(sharded_tokens=how == "expert"),
        moe=dict(routing="sigmoid-grouped-topk", n_group=4, topk_group=2, routed_scaling=2.5),
        correction_bias=True)
MOE_CASES["expert-separate-mxfp4-6experts"] = dict(fmt="mxfp4", layout="separate", how="expert", topk=2,
                                                   kw={}, e=6)  # 4 ranks: 2, 2, 1, 1 experts

COMPILED = ["column-gather-mxfp4", "row-allreduce-ordered-mxfp8", "row-scatter-mxfp4",
            "expert-interleaved-mxfp4-sharded", "tensor-separate-mxfp8", "expert-chunked-mxfp4-native"]

MOE_M = 6          # tokens of a replicated-token call; a sharded call: 3 per rank


def moe_inputs(case, ranks, rank=None):
    """(x, logits) of the whole batch; with sharded tokens and a rank, that rank's rows."""
    e = case.get("e", E)
    sharded = case["kw"].get("sharded_tokens", False)
    m = 3 * ranks if sharded else MOE_M
    x = _x((m, H), 20)
    logits = torch.from_numpy(np.random.default_rng(21).standard_normal((m, e)).astype(np.float32))
    if sharded and rank is not None:
        return x[3 * rank:3 * rank + 3], logits[3 * rank:3 * rank + 3]
    return x, logits


def _linear_module(case, group):
    w, bias = linear_weights(case["fmt"])
    cls = mt.ColumnParallelMXLinear if case["how"] == "column" else mt.RowParallelMXLinear
    return cls.from_weights(w.packed, w.scales, case["fmt"], group=group, bias=bias,
                            act=case.get("act", "bf16"), **case["kw"])


def correction_bias(case):
    if not case.get("correction_bias"):
        return None
    e = case.get("e", E)
    return torch.from_numpy(np.random.default_rng(22).standard_normal(e).astype(np.float32) * 0.5)


def _moe_module(case, group):
    w = moe_weights(case["fmt"], case["layout"], case.get("e", E))
    kw = dict(case["kw"])
    return mt.ParallelMXMoE.from_weights(fmt=case["fmt"], group=group, how=case["how"],
                                         correction_bias=correction_bias(case),
                                         **moe_options(case["layout"], case["topk"]),
                                         **case.get("moe", {}), **w, **kw)


def _worker(rank, ranks, init_file, out_dir, ckpt):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=ranks)
    try:
        group = dist.new_group(list(range(ranks)))
        res = {}
        for name, case in LINEAR_CASES.items():
            mod = _linear_module(case, group)
            x = _x(case["x"], 10)
            if case["how"] == "row" and case["kw"].get("input_is_parallel"):
                x = x[..., mod.k0:mod.k1]
            y1, y2 = mod(x), mod(x)
            res[name] = dict(y=y1, again=y2, describe=mod.describe(), repr=repr(mod),
                             n0=mod.n0, n1=mod.n1, k0=mod.k0, k1=mod.k1, bytes=mod.shard["bytes"])
        for name, case in MOE_CASES.items():
            mod = _moe_module(case, group)
            x, logits = moe_inputs(case, ranks, rank)
            y1, y2 = mod(x, logits), mod(x, logits)
            res["moe:" + name] = dict(y=y1, again=y2, describe=mod.describe(), repr=repr(mod),
                                      e0=mod.e0, e1=mod.e1, i0=mod.i0, i1=mod.i1,
                                      expert_map=mod.expert_map, bytes=mod.shard["bytes"])
        # torch.compile(fullgraph=True) traces the op and the collectives without a graph break
        # (aot_eager: dynamo + AOTAutograd, no code generation; the same bits as eager).
        compiled = {}
        for name in COMPILED:
            if name in LINEAR_CASES:
                mod, args = _linear_module(LINEAR_CASES[name], group), (_x(LINEAR_CASES[name]["x"], 10),)
            else:
                mod = _moe_module(MOE_CASES[name], group)
                args = moe_inputs(MOE_CASES[name], ranks, rank)
            fn = torch.compile(mod, backend="aot_eager", fullgraph=True)
            compiled[name] = (fn(*args), mod(*args))
        res["compiled"] = compiled
        # Two groups of 2 inside the world of 4 ([0, 1] and [2, 3]): each module uses only the
        # group it was given (every rank creates both groups, as new_group requires).
        if ranks == 4:
            pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
            mine = pairs[rank // 2]
            row = _linear_module(dict(LINEAR_CASES["row-allreduce-ordered-mxfp4"]), mine)
            moe = _moe_module(MOE_CASES["expert-interleaved-mxfp4"], mine)
            x, logits = moe_inputs(MOE_CASES["expert-interleaved-mxfp4"], 2)
            res["subgroup"] = dict(row=row(_x((2, 4, K), 10)), row_describe=row.describe(),
                                   moe=moe(x, logits), moe_describe=moe.describe())
        # Errors raised before any collective (the same on every rank, so none hangs).
        row = _linear_module(LINEAR_CASES["row-scatter-mxfp4"], group)
        for key, shape in (("error:scatter-rows", (3, K)), ("error:x-shape", (2, K // 2))):
            try:
                row(_x(shape, 11))
                res[key] = None
            except ValueError as e:
                res[key] = str(e)
        # Checkpoint layers (the sample model quantized to MXFP4): a column / row pair and the
        # gpt-oss-shaped MoE block with its router, expert and tensor parallel.
        for fmt, path in sorted(ckpt.items()):
            x = _x((5, 256), 30)
            col = mt.ColumnParallelMXLinear.from_checkpoint(path, "model.layers.0.mlp.up_proj",
                                                            group=group)
            row = mt.RowParallelMXLinear.from_checkpoint(path, "model.layers.0.mlp.down_proj",
                                                         group=group, input_is_parallel=True,
                                                         ordered=True)
            local = mt.ColumnParallelMXLinear.from_checkpoint(path, "model.layers.0.mlp.up_proj",
                                                              group=group, gather_output=False)
            res[f"ckpt:{fmt}:column"] = dict(y=col(x), describe=col.describe())
            res[f"ckpt:{fmt}:row"] = dict(y=row(local(x)), describe=row.describe())
            for how in ("expert", "tensor"):
                moe = mt.ParallelMXMoE.from_checkpoint(path, "model.layers.2.mlp", group=group,
                                                       how=how)
                res[f"ckpt:{fmt}:moe-{how}"] = dict(y=moe(_x((5, 256), 31)),
                                                    describe=moe.describe(), repr=repr(moe))
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


_RUNS = {}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    mxq.write_sample_model(d / "bf16")
    out = {}
    for fmt in ("mxfp4", "mxfp8"):
        mxq.quantize_model(d / "bf16", d / fmt, scheme=fmt)
        out[fmt] = str(d / fmt)
    return out


def run_ranks(ranks, checkpoint):
    """Every case on `ranks` gloo processes; [rank] -> {case: results}. Once per world size."""
    if ranks not in _RUNS:
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_worker, args=(ranks, os.path.join(tmp, "init"), tmp, checkpoint),
                     nprocs=ranks, join=True)
            _RUNS[ranks] = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False)
                            for r in range(ranks)]
    return _RUNS[ranks]


# ---- comparisons ------------------------------------------------------------------------

def bits(t):
    return t.contiguous().view(torch.int16 if t.dtype == BF16 else torch.int32)


def assert_bitwise(a, b, what):
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    diff = int((bits(a) != bits(b)).sum())
    assert diff == 0, f"{what}: {diff} of {a.numel()} elements differ"


def assert_close(a, b, what):
    """float32: relative L2 <= 1e-6; bf16: <= 1 ulp everywhere, >= 99% bitwise equal."""
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    if a.dtype == torch.float32:
        r = float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))
        assert r <= 1e-6, f"{what}: relative L2 {r:.3g} > 1e-6"
        return
    def ordered(t):
        v = bits(t).int()
        return torch.where(v < 0, -(v & 0x7FFF), v)
    ulps = (ordered(a) - ordered(b)).abs()
    assert int(ulps.max()) <= 1, f"{what}: {int(ulps.max())} bf16 ulps apart"
    same = float((ulps == 0).double().mean())
    assert same >= 0.99, f"{what}: only {same:.3f} of the elements bitwise equal"


def full_linear(case):
    w, bias = linear_weights(case["fmt"])
    out = case["kw"].get("out_dtype")
    if case["how"] == "row" and case["kw"].get("reduce") == "none":
        out = torch.float32
    return mt.MXLinear.from_weights(w.packed, w.scales, case["fmt"], bias=bias,
                                    act=case.get("act", "bf16"),
                                    out_dtype={None: None, torch.float32: "f32"}[out])


def full_moe(case, out=None):
    w = moe_weights(case["fmt"], case["layout"], case.get("e", E))
    out = out or ("f32" if case["kw"].get("out_dtype") == torch.float32 else None)
    cb = correction_bias(case)
    return mt.MXMoE(mxq.MoE.prepare(fmt=case["fmt"], out_dtype=out, correction_bias=cb is not None,
                                    **moe_options(case["layout"], case["topk"]),
                                    **case.get("moe", {}), **w), correction_bias=cb)


WORLDS = [2, 4]


@pytest.mark.parametrize("ranks", WORLDS)
@pytest.mark.parametrize("name", sorted(LINEAR_CASES))
def test_tensor_parallel_linear_equals_the_layer(ranks, name, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    case = LINEAR_CASES[name]
    x = _x(case["x"], 10)
    ref = full_linear(case)(x)
    kw = case["kw"]
    for r in range(ranks):
        got = runs[r][name]
        y = got["y"]
        assert_bitwise(got["again"], y, f"{name} rank {r}: second forward")
        if case["how"] == "column":
            n0, n1 = N * r // ranks, N * (r + 1) // ranks
            assert (got["n0"], got["n1"], got["k0"], got["k1"]) == (n0, n1, 0, K)
            want = ref if kw.get("gather_output", True) else ref[..., n0:n1]
            assert_bitwise(y, want, f"{name} rank {r}")
            continue
        k0, k1 = K * r // ranks, K * (r + 1) // ranks
        assert (got["n0"], got["n1"], got["k0"], got["k1"]) == (0, N, k0, k1)
        if kw.get("reduce") == "none":
            continue  # the partials are summed below
        if kw.get("reduce") == "reduce_scatter":
            rows = ref.shape[0] // ranks
            assert_close(y, ref[r * rows:(r + 1) * rows], f"{name} rank {r}")
        else:
            assert_close(y, ref, f"{name} rank {r}")
            assert_bitwise(y, runs[0][name]["y"], f"{name}: rank {r} vs rank 0")
    if kw.get("reduce") == "none":
        total = sum(runs[r][name]["y"].double() for r in range(ranks))
        assert runs[0][name]["y"].dtype == torch.float32
        assert_close(total.float(), ref, f"{name}: the partials' sum")


@pytest.mark.parametrize("ranks", WORLDS)
@pytest.mark.parametrize("name", sorted(MOE_CASES))
def test_parallel_moe_equals_the_layer(ranks, name, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    case = MOE_CASES[name]
    e = case.get("e", E)
    x, logits = moe_inputs(case, ranks)
    ref = full_moe(case)(x, logits)
    sharded = case["kw"].get("sharded_tokens", False)
    for r in range(ranks):
        got = runs[r]["moe:" + name]
        y = got["y"]
        assert_bitwise(got["again"], y, f"{name} rank {r}: second forward")
        want = ref[3 * r:3 * r + 3] if sharded else ref
        if case["topk"] == 1:
            assert_bitwise(y, want, f"{name} rank {r} (top-1: one rank per token)")
        else:
            assert_close(y, want, f"{name} rank {r}")
        if not sharded:
            assert_bitwise(y, runs[0]["moe:" + name]["y"], f"{name}: rank {r} vs rank 0")
        if case["how"] == "expert":
            base, extra = divmod(e, ranks)
            e0 = r * base + min(r, extra)
            e1 = e0 + base + (1 if r < extra else 0)
            assert (got["e0"], got["e1"], got["i0"], got["i1"]) == (e0, e1, 0, I)
            assert got["expert_map"].tolist() == [j - e0 if e0 <= j < e1 else -1 for j in range(e)]
            assert f"experts [{e0}, {e1}) of {e}" in got["describe"]
        else:
            i0, i1 = I * r // ranks, I * (r + 1) // ranks
            assert (got["e0"], got["e1"], got["i0"], got["i1"]) == (0, e, i0, i1)
            assert got["expert_map"] is None
            assert f"I [{i0}, {i1}) of {I}" in got["describe"]
        assert got["describe"] in got["repr"]


@pytest.mark.parametrize("ranks", WORLDS)
def test_describe_is_the_cpp_shard_description(ranks, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    for name in ("column-gather-mxfp4", "row-allreduce-mxfp8"):
        case = LINEAR_CASES[name]
        w, bias = linear_weights(case["fmt"])
        for r in range(ranks):
            d = mxq.shard_linear(w.packed, w.scales, case["fmt"], how=case["how"], rank=r,
                                 ranks=ranks, bias=bias)
            got = runs[r][name]
            assert got["describe"] == d["describe"] and got["bytes"] == d["bytes"]
            assert got["describe"].startswith(f"rank {r} of {ranks}: {case['how']} parallel")
            assert got["describe"] in got["repr"]
    # the module's bytes are the shard's: 1/R of the layer's weight bytes (+ bias on rank 0
    # or the rank's columns of it)
    w, _ = linear_weights("mxfp4")
    wbytes = w.packed.nbytes + w.scales.nbytes
    for r in range(ranks):
        assert runs[r]["row-allreduce-mxfp4"]["bytes"] == wbytes // ranks + (N * 4 if r == 0 else 0)


@pytest.mark.parametrize("ranks", WORLDS)
@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp8"])
def test_checkpoint_layers_equal_the_one_rank_modules(ranks, fmt, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    path = checkpoint[fmt]
    assert mxq.load(path).layers()[0]["problem"].weights == fmt
    x = _x((5, 256), 30)
    up = mt.MXLinear.from_checkpoint(path, "model.layers.0.mlp.up_proj")
    down = mt.MXLinear.from_checkpoint(path, "model.layers.0.mlp.down_proj")
    moe = mt.MXMoE.from_checkpoint(path, "model.layers.2.mlp")
    xm = _x((5, 256), 31)
    for r in range(ranks):
        got = {k[len(f"ckpt:{fmt}:"):]: v for k, v in runs[r].items() if k.startswith(f"ckpt:{fmt}:")}
        assert_bitwise(got["column"]["y"], up(x), f"checkpoint column rank {r}")
        assert_close(got["row"]["y"], down(up(x)), f"checkpoint column -> row rank {r}")
        assert got["row"]["describe"].startswith(f"rank {r} of {ranks}: row parallel, N [0, 256) of 256, K [")
        for how in ("expert", "tensor"):
            assert_close(got[f"moe-{how}"]["y"], moe(xm), f"checkpoint moe {how} rank {r}")
            assert f"{how} parallel" in got[f"moe-{how}"]["describe"]
            assert got[f"moe-{how}"]["describe"] in got[f"moe-{how}"]["repr"]


@pytest.mark.parametrize("ranks", WORLDS)
def test_bad_calls_are_value_errors_on_every_rank(ranks, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    for r in range(ranks):
        assert "reduce-scatter of 3 rows over" in (runs[r]["error:scatter-rows"] or "")
        assert "first dimension must be a multiple of the ranks" in runs[r]["error:scatter-rows"]
        assert f"expected [..., K={K}]" in (runs[r]["error:x-shape"] or "")


@pytest.mark.parametrize("ranks", WORLDS)
def test_torch_compile_fullgraph_equals_eager(ranks, checkpoint):
    runs = run_ranks(ranks, checkpoint)
    for r in range(ranks):
        assert sorted(runs[r]["compiled"]) == sorted(COMPILED)
        for name, (compiled, eager) in runs[r]["compiled"].items():
            assert_bitwise(compiled, eager, f"{name} rank {r}: torch.compile vs eager")


def test_modules_use_the_group_they_are_given(checkpoint):
    runs = run_ranks(4, checkpoint)
    row_ref = full_linear(LINEAR_CASES["row-allreduce-ordered-mxfp4"])(_x((2, 4, K), 10))
    case = MOE_CASES["expert-interleaved-mxfp4"]
    moe_ref = full_moe(case)(*moe_inputs(case, 2))
    for r in range(4):
        got = runs[r]["subgroup"]
        assert got["row_describe"].startswith(f"rank {r % 2} of 2: row parallel, N [0, {N}) of {N}, "
                                              f"K [{K // 2 * (r % 2)}, {K // 2 * (r % 2 + 1)}) of {K}")
        assert got["moe_describe"].startswith(f"rank {r % 2} of 2: expert parallel, experts "
                                              f"[{4 * (r % 2)}, {4 * (r % 2 + 1)}) of {E}")
        assert_close(got["row"], row_ref, f"row parallel in a group of 2, world rank {r}")
        assert_close(got["moe"], moe_ref, f"expert parallel in a group of 2, world rank {r}")


def test_a_process_group_is_required():
    w, bias = linear_weights("mxfp4")
    with pytest.raises(ValueError, match="process group"):
        mt.ColumnParallelMXLinear.from_weights(w.packed, w.scales, "mxfp4", group=None)
    m = moe_weights("mxfp4", "chunked")
    with pytest.raises(ValueError, match="process group"):
        mt.ParallelMXMoE.from_weights(fmt="mxfp4", group=None, topk=2, **m)
