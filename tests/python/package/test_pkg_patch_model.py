"""mxq.torch.patch_model on tiny random transformers models (no downloads: built from configs).

For each architecture (Llama dense, Qwen3-MoE, Mixtral, DeepSeek-V3, gpt-oss as its own MXFP4
format, gpt-oss as compressed-tensors with the attention quantized too): the BF16 model is saved,
quantized by the C++ pipeline (mxq.quantize_model == `mxq quantize`; gpt-oss's own format is
written with mxq.quantize), decoded back with mxq.dequantize_model (== `mxq dequantize`). The
reference is the same transformers model with the dequantized weights; the patched model is the
original BF16 model with its modules swapped by patch_model(model, checkpoint). Asserted:

- the report: every checkpoint layer replaced a module (names and kinds checked against the
  checkpoint's layers), lm_head / routers / dense layers left alone with their reason, no dense
  expert weights remain;
- logits, per token (relative L2 over the vocabulary): median below TOKEN_TOL and at least
  CLOSE_FRACTION of the tokens below it (bf16 rounding of intermediate results differs between
  transformers' bf16 ops and mxq's float32-accumulating kernels; the few tokens above it hit a
  near-tie of the router's top-k and take another expert), and the median below a tenth of
  the quantization error itself (dequantized vs original), so a module silently left with its
  dense weights fails;
- greedy generate: the same tokens as the reference for GEN_TOKENS steps, on prompts where the
  reference's own decode is decisive (chosen from the reference alone, see decisive_prompts);
- torch.compile(fullgraph=True) of the patched model (test_compile; on CUDA, and on CPU with
  MXQ_PATCH_COMPILE_CPU=1): no graph break, deterministic, logits vs eager by the same criterion.

Runs where torch and transformers are installed (tests/python/run_patch_model.sh on CPU,
tests/python/run_patch_model_gpu.sh on the GPU host); skipped with the reason elsewhere.
"""

import json
import os
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (tests/python/run_patch_model.sh installs it into a venv)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (tests/python/run_patch_model.sh installs it into a venv)")
import mxq  # noqa: E402
import mxq.torch as mt  # noqa: E402

HAS_CUDA = torch.cuda.is_available() and mxq.cuda_built
CUDA_BACKEND = HAS_CUDA and any(b["device"] == "cuda" and b["supported"] for b in mxq.backends())
DEVICES = ["cpu"] + (["cuda"] if CUDA_BACKEND else [])
if os.environ.get("MXQ_PATCH_DEVICES"):
    DEVICES = os.environ["MXQ_PATCH_DEVICES"].split(",")

# Per-token relative L2 error of the logits vs the dequantized model. Most tokens differ by
# bf16 rounding of intermediate results only (measured on CPU: medians 0 (Llama: bitwise) to
# 8e-3); a few hit a near-tie of the router's top-k and pick another expert (error up to ~0.4).
TOKEN_TOL = 1.5e-2
CLOSE_FRACTION = 0.75   # at least this fraction of tokens within TOKEN_TOL
QUANT_FRACTION = 0.1    # median error at most this fraction of the quantization error's median
GEN_TOKENS = 6
PROMPT_LEN = 12
NEAR_TIE = 0.1          # reference top-1 minus top-2 logit at every greedy step (decisive prompts)
ARCHS = ["llama", "qwen3_moe", "mixtral", "deepseek_v3", "gpt_oss", "gpt_oss_ct"]


def _config(arch):
    from transformers import (DeepseekV3Config, GptOssConfig, LlamaConfig, MixtralConfig,
                              Qwen3MoeConfig)
    # Larger than default init so that random logits are spread out (greedy argmax margins).
    common = dict(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                  initializer_range=0.08, tie_word_embeddings=False, eos_token_id=None,
                  bos_token_id=None, pad_token_id=0)
    if arch == "llama":
        return LlamaConfig(intermediate_size=192, **common)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(intermediate_size=192, moe_intermediate_size=64, num_experts=8,
                              num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[],
                              norm_topk_prob=True, **common)
    if arch == "mixtral":
        return MixtralConfig(intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
                             **common)
    if arch == "deepseek_v3":
        c = dict(common)
        c.pop("head_dim")
        c["num_key_value_heads"] = c["num_attention_heads"]  # MLA: one K/V per head
        return DeepseekV3Config(intermediate_size=192, moe_intermediate_size=64, n_routed_experts=8,
                                num_experts_per_tok=2, n_shared_experts=1, n_group=2,
                                topk_group=1, first_k_dense_replace=1, q_lora_rank=64,
                                kv_lora_rank=64, qk_rope_head_dim=32, qk_nope_head_dim=32,
                                v_head_dim=32, routed_scaling_factor=2.5, rope_scaling=None,
                                **c)
    if arch.startswith("gpt_oss"):
        return GptOssConfig(intermediate_size=64, num_local_experts=4, num_experts_per_tok=2,
                            sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                            **common)
    raise ValueError(arch)


def _moe_blocks(model):
    return {n: m for n, m in model.named_modules()
            if type(m).__name__ in ("Qwen3MoeSparseMoeBlock", "MixtralSparseMoeBlock",
                                    "DeepseekV3MoE", "GptOssMLP")}


def _st_dir(d):
    import safetensors.torch as st
    out = {}
    for f in sorted(pathlib.Path(d).glob("*.safetensors")):
        out.update(st.load_file(str(f)))
    return out


def _write_gpt_oss_mxfp4(dense_dir, out_dir):
    """gpt-oss's own checkpoint format (what openai/gpt-oss-* ship): experts as MXFP4
    *_blocks [E, N, K/32, 16] + *_scales [E, N, K/32] of the [N, K] (output-major) weights,
    everything else BF16; quantized with mxq.quantize (round_up, as gpt-oss tooling)."""
    import safetensors.torch as st
    sd = _st_dir(dense_dir)
    out = {}
    for name, t in sd.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            w = t.transpose(1, 2).contiguous()          # HF stores [E, K, N]
            q = mxq.quantize(w, "mxfp4", scale_rule="round_up")
            e, n, k = w.shape
            out[name + "_blocks"] = torch.from_numpy(np.asarray(q.packed)).reshape(e, n, k // 32, 16)
            out[name + "_scales"] = torch.from_numpy(np.asarray(q.scales)).reshape(e, n, k // 32)
        else:
            out[name] = t.contiguous()
    os.makedirs(out_dir, exist_ok=True)
    st.save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads(pathlib.Path(dense_dir, "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    pathlib.Path(out_dir, "config.json").write_text(json.dumps(cfg, indent=2))


def _gpt_oss_ct_input(dense_dir, out_dir):
    """The gpt-oss BF16 model with its experts as stacked output-major .weight tensors
    ([E, 2I, H] interleaved gate/up, [E, H, I]) so that `mxq quantize` quantizes them too."""
    import shutil
    import safetensors.torch as st
    sd = _st_dir(dense_dir)
    out = {}
    for name, t in sd.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            out[name + ".weight"] = t.transpose(1, 2).contiguous()
        elif name.endswith("experts.gate_up_proj_bias") or name.endswith("experts.down_proj_bias"):
            out[name[:-len("_bias")] + ".bias"] = t.contiguous()
        else:
            out[name] = t.contiguous()
    os.makedirs(out_dir, exist_ok=True)
    st.save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(dense_dir, "config.json"), out_dir)


def _load_gpt_oss_dequantized(dense_dir, deq_dir):
    """The gpt-oss model with the experts mxq dequantized (canonical [E, N, K] .weight names)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.bfloat16)
    deq = _st_dir(deq_dir)
    params = dict(model.named_parameters())
    n = 0
    for name, t in deq.items():
        if name.endswith("experts.gate_up_proj.weight") or name.endswith("experts.down_proj.weight"):
            p = params[name[:-len(".weight")]]
            with torch.no_grad():
                p.copy_(t.transpose(1, 2))
            n += 1
        elif name.endswith(".weight") and name in params and deq[name].dtype == torch.bfloat16:
            with torch.no_grad():
                params[name].copy_(t)
    assert n == 2 * model.config.num_hidden_layers, f"{n} dequantized expert tensors"
    return model


class Built:
    def __init__(self, arch, root):
        from transformers import AutoModelForCausalLM
        self.arch = arch
        root = pathlib.Path(root)
        self.dense, self.q, self.deq = root / "dense", root / "mx", root / "deq"
        torch.manual_seed(1234)
        model = AutoModelForCausalLM.from_config(_config(arch)).to(torch.bfloat16).eval()
        if arch == "deepseek_v3":  # a real correction bias (defaults to zeros), F32 as shipped
            for mod in model.modules():
                if hasattr(mod, "e_score_correction_bias"):
                    mod.e_score_correction_bias = torch.randn(mod.e_score_correction_bias.shape) * 0.05
        model.save_pretrained(self.dense)
        if arch == "gpt_oss":
            _write_gpt_oss_mxfp4(self.dense, self.q)
        else:
            src = self.dense
            if arch == "gpt_oss_ct":
                src = root / "dense-stacked"
                _gpt_oss_ct_input(self.dense, src)
            mxq.quantize_model(src, self.q, scheme="mxfp4")
        mxq.dequantize_model(self.q, self.deq, dtype="bf16")
        self.layers = mxq.load(self.q).layers()

    def original(self):
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM.from_pretrained(self.dense, dtype=torch.bfloat16).eval()

    def reference(self):
        from transformers import AutoModelForCausalLM
        if self.arch.startswith("gpt_oss"):
            return _load_gpt_oss_dequantized(self.dense, self.deq).eval()
        return AutoModelForCausalLM.from_pretrained(self.deq, dtype=torch.bfloat16).eval()


_BUILT = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    def get(arch):
        if arch not in _BUILT:
            _BUILT[arch] = Built(arch, tmp_path_factory.mktemp(arch))
        return _BUILT[arch]
    return get


def _prompt(vocab, device):
    g = torch.Generator().manual_seed(7)
    return torch.randint(1, vocab, (2, PROMPT_LEN), generator=g).to(device)


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


def _need(device):
    if device == "cuda" and not CUDA_BACKEND:
        pytest.skip("no CUDA device, or mxq built without a CUDA backend")


def _patched(b, device):
    model = b.original().to(device)
    report = mt.patch_model(model, b.q, device=device)
    return model, report


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_patch_report(built, arch, device):
    _need(device)
    b = built(arch)
    ref_params = sum(p.numel() for p in b.original().parameters())
    model, report = _patched(b, device)
    print(report)
    assert report.ok, report.unmatched
    assert report.device == device
    # One replacement per checkpoint layer, with its kind.
    want = {l["name"]: l["op"] for l in b.layers}
    got = {r.checkpoint: r.kind for r in report.replaced}
    assert got == want
    assert all(r.backend.startswith(device) for r in report.replaced), [r.backend for r in report.replaced]
    mods = dict(model.named_modules())
    for r in report.replaced:
        cls = mt.MXMoEBlock if r.kind == "moe" else mt.PatchedLinear
        assert isinstance(mods[r.name], cls), (r.name, type(mods[r.name]))
    moe_names = report.names("moe")
    n_layers = model.config.num_hidden_layers
    expect_moe = {"llama": 0, "deepseek_v3": n_layers - 1}.get(arch, n_layers)
    assert len(moe_names) == expect_moe
    if arch == "mixtral":  # checkpoint block_sparse_moe -> module mlp (transformers 5)
        assert all(r.checkpoint.endswith("block_sparse_moe") for r in report.replaced if r.kind == "moe")
    # What stays dense, and why.
    left = {l.name: l for l in report.left}
    assert "lm_head" in left and "ignore list" in left["lm_head"].reason
    if arch == "gpt_oss":  # gpt-oss's format quantizes only the experts
        assert left["model.layers.0.self_attn.q_proj"].reason == "the checkpoint stores this weight dense (not MX)"
        assert not report.names("linear")
    else:
        remaining = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
        assert set(remaining) <= set(left), set(remaining) - set(left)
        assert all(n == "lm_head" or ".gate" in n or ".router" in n for n in remaining), remaining
    if arch == "deepseek_v3":  # first_k_dense_replace = 1: a dense MLP, patched as linear layers
        assert "model.layers.0.mlp.gate_proj" in report.names("linear")
        assert "model.layers.1.mlp.shared_experts.down_proj" in report.names("linear")
    # The dense expert weights are gone (only routers, norms, embeddings, ... remain).
    if expect_moe:
        after = sum(p.numel() for p in model.parameters())
        assert after < ref_params
        assert not any("experts" in n and "shared" not in n for n, _ in model.named_parameters())
    assert str(report).startswith("patch_model ")


def per_token_rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm(dim=-1) / b.norm(dim=-1)).flatten()


def decisive_prompts(ref, device, rows=2, candidates=64, seed=7):
    """Prompts on which the reference's own greedy decode is decisive: top-1 minus top-2 logit
    >= NEAR_TIE at every generated step (chosen from the reference alone, never from the
    patched model), so that a token difference is an error and not a near-tie (bf16 logits
    often tie exactly) broken the other way by rounding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, ref.config.vocab_size, (candidates, PROMPT_LEN), generator=g).to(device)
    with torch.no_grad():
        gen = ref.generate(ids, max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS, do_sample=False)
        top2 = ref(gen).logits.float().topk(2, dim=-1).values
    margin = (top2[..., 0] - top2[..., 1])[:, PROMPT_LEN - 1:-1].min(dim=-1).values
    order = margin.argsort(descending=True)[:rows]
    assert bool((margin[order] >= NEAR_TIE).all()), (
        f"fewer than {rows} of {candidates} prompts decode decisively in the reference "
        f"(min margins {margin.sort(descending=True).values[:rows + 2].tolist()})")
    return ids[order], margin[order]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_dequantized(built, arch, device):
    _need(device)
    b = built(arch)
    orig = b.original().to(device)
    ref = b.reference().to(device)
    model, report = _patched(b, device)
    assert report.ok
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, model.config.vocab_size, (8, 16), generator=g).to(device)
    with torch.no_grad():
        lo = orig(ids).logits.float()
        lr = ref(ids).logits.float()
        lp = model(ids).logits.float()
    assert torch.isfinite(lp).all()
    e, q = per_token_rel(lp, lr), per_token_rel(lr, lo)
    close = float((e < TOKEN_TOL).double().mean())
    print(f"{arch} {device}: per-token logits rel err vs dequantized: median {e.median():.2e}, "
          f"max {e.max():.2e}, {close:.0%} below {TOKEN_TOL}; quantization error median "
          f"{q.median():.2e}; overall {rel(lp, lr):.2e}")
    assert float(e.median()) < TOKEN_TOL, f"median per-token error {e.median():.3e}"
    assert close >= CLOSE_FRACTION, f"only {close:.0%} of tokens within {TOKEN_TOL}"
    assert float(e.median()) < QUANT_FRACTION * float(q.median()), (
        f"error vs dequantized {e.median():.3e} not << quantization error {q.median():.3e}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generate_matches_dequantized(built, arch, device):
    _need(device)
    b = built(arch)
    ref = b.reference().to(device)
    model, report = _patched(b, device)
    assert report.ok
    ids, margin = decisive_prompts(ref, device)
    kw = dict(max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS, do_sample=False)
    with torch.no_grad():
        gr = ref.generate(ids, **kw)
        gp = model.generate(ids, **kw)
    print(f"{arch} {device}: prompts' reference margins {margin.tolist()}, tokens {gp[:, PROMPT_LEN:].tolist()}")
    assert gp.shape == (ids.shape[0], PROMPT_LEN + GEN_TOKENS)
    assert torch.equal(gp.cpu(), gr.cpu()), (
        f"greedy tokens differ:\n{gp[:, PROMPT_LEN:]}\n{gr[:, PROMPT_LEN:]}")


COMPILE_DEVICES = [d for d in DEVICES if d == "cuda" or os.environ.get("MXQ_PATCH_COMPILE_CPU") == "1"]


@pytest.mark.parametrize("device", COMPILE_DEVICES or ["cpu"])
@pytest.mark.parametrize("arch", ARCHS)
def test_compile(built, arch, device):
    """torch.compile(fullgraph=True) of the patched model: the mxq ops trace as custom ops (no
    graph break), and the logits agree with eager by the per-token criterion above (inductor
    rounds the model's own bf16 ops, norms, RoPE, attention, differently from eager: the same
    size of difference as vs the reference)."""
    if not COMPILE_DEVICES:
        pytest.skip("torch.compile of the patched models runs on CUDA (set MXQ_PATCH_COMPILE_CPU=1 "
                    "for CPU, about a minute on 2 cores)")
    _need(device)
    b = built(arch)
    model, report = _patched(b, device)
    assert report.ok
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, model.config.vocab_size, (8, 16), generator=g).to(device)
    with torch.no_grad():
        eager = model(ids).logits.float()
        compiled = torch.compile(model, fullgraph=True, dynamic=False)
        lc = compiled(ids).logits.float()
        lc2 = compiled(ids).logits.float()
    e = per_token_rel(lc, eager)
    close = float((e < TOKEN_TOL).double().mean())
    print(f"{arch} {device}: torch.compile vs eager patched logits: per-token median "
          f"{e.median():.2e}, max {e.max():.2e}, {close:.0%} below {TOKEN_TOL}")
    assert torch.equal(lc, lc2), "compiled model not deterministic"
    assert float(e.median()) < TOKEN_TOL
    assert close >= CLOSE_FRACTION


def test_patch_leaves_mismatched_modules_alone(built):
    """A module whose shape disagrees with the checkpoint is left with the reason; a checkpoint
    layer with no module is reported unmatched, and an error with require_all."""
    b = built("llama")
    model = b.original()
    model.model.layers[0].mlp.down_proj = torch.nn.Linear(192, 128, bias=True, dtype=torch.bfloat16)
    del model.model.layers[1].self_attn.o_proj
    report = mt.patch_model(model, b.q)
    left = {l.name: l.reason for l in report.left}
    assert "checkpoint lacks" in left["model.layers.0.mlp.down_proj"]
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear
    assert [u.name for u in report.unmatched] == ["model.layers.1.self_attn.o_proj"]
    assert not report.ok
    fresh = b.original()
    del fresh.model.layers[1].self_attn.o_proj
    with pytest.raises(LookupError, match="model.layers.1.self_attn.o_proj"):
        mt.patch_model(fresh, b.q, require_all=True)


def test_patched_float32_model_casts(built):
    """A float32 model: PatchedLinear / MXMoEBlock cast the activations to bf16 and the output
    back; logits close to the float32 dequantized reference."""
    b = built("qwen3_moe")
    m32 = b.original().float()
    r = mt.patch_model(m32, b.q)
    assert r.ok
    ref32 = b.reference().float()
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, m32.config.vocab_size, (8, 16), generator=g)
    with torch.no_grad():
        l32 = m32(ids).logits
        lr = ref32(ids).logits
    assert l32.dtype == torch.float32
    e = per_token_rel(l32, lr)
    print(f"float32 qwen3_moe: per-token median {e.median():.2e}")
    assert float(e.median()) < TOKEN_TOL


@pytest.mark.parametrize("arch", ["qwen3_moe", "deepseek_v3", "gpt_oss"])
def test_mxmoe_from_checkpoint_equals_patched_block(built, arch):
    """MXMoE.from_checkpoint (router, router bias and DeepSeek's correction bias from the
    checkpoint) computes what the patched block's MXMoE does with the model's own router."""
    b = built(arch)
    model, report = _patched(b, "cpu")
    r = next(r for r in report.replaced if r.kind == "moe")
    block = dict(model.named_modules())[r.name]
    moe = mt.MXMoE.from_checkpoint(b.q, r.checkpoint)
    cb = None
    if arch == "deepseek_v3":  # the checkpoint's F32 bias, exactly (transformers 4.x loads it
        # into the model as bf16, 5.x keeps it F32: the model's agrees to bf16 precision)
        cb_name = r.checkpoint + ".gate.e_score_correction_bias"
        want_cb = torch.from_numpy(np.array(mxq.load(b.q).tensor(cb_name), dtype=np.float32))
        assert moe.correction_bias is not None and moe.correction_bias.dtype == torch.float32
        torch.testing.assert_close(moe.correction_bias, want_cb, rtol=0, atol=0)
        torch.testing.assert_close(moe.correction_bias, block.gate.e_score_correction_bias.float(),
                                   rtol=1e-2, atol=0)
        cb = moe.correction_bias
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, moe.hidden, generator=g).to(torch.bfloat16)
    router = getattr(block, block.router_name)
    bias = getattr(router, "bias", None)
    with torch.no_grad():
        y = moe(x)  # router logits in float32 from the checkpoint's router tensors
        logits = torch.nn.functional.linear(x.float(), router.weight.float(),
                                            None if bias is None else bias.float())
        torch.testing.assert_close(moe.route(x), logits, rtol=0, atol=0)
        want = torch.ops.mxq.moe(x, logits, block.moe.handle, cb, None, block.moe.out_dtype)
    assert torch.equal(y, want), float((y.float() - want.float()).abs().max())
