#!/usr/bin/env python3
"""End-to-end decode tokens/s of a random-weight gpt-oss model with real layer sizes (issue 15,
deliverable 5): the BF16 transformers model vs the same model after mxq.torch.patch_model with
its experts MXFP4 (gpt-oss's own checkpoint format, written here with mxq.quantize).

  PYTHONPATH=<build>/python python3 scripts/patch_model_bench.py --layers 4 --json out.json

Defaults are gpt-oss-20b's dimensions (hidden 2880, 32 experts x intermediate 2880, top-4, 64
query / 8 KV heads of 64, vocab 201088, alternating sliding / full attention) with --layers of
its 24 layers; --tiny runs a toy size (a CPU smoke test). Batch 1 (--batch), greedy; decode
tokens/s = (T - 1) / (time of the last new token - time of the first), timed inside one generate
call (a streamer), the median of --reps.
--compile additionally times both models with a static KV cache and torch.compile of forward
(mode reduce-overhead: CUDA graphs on CUDA). Prints one line per model and writes --json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def config(args):
    from transformers import GptOssConfig
    if args.tiny:
        dims = dict(hidden_size=128, intermediate_size=128, num_local_experts=8,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=512)
    else:
        dims = dict(hidden_size=2880, intermediate_size=2880, num_local_experts=32,
                    num_attention_heads=64, num_key_value_heads=8, head_dim=64, vocab_size=201088)
    return GptOssConfig(num_hidden_layers=args.layers, num_experts_per_tok=4, sliding_window=128,
                        layer_types=["sliding_attention", "full_attention"] * (args.layers // 2)
                        + ["sliding_attention"] * (args.layers % 2),
                        max_position_embeddings=4096, initializer_range=0.02,
                        eos_token_id=None, bos_token_id=None, pad_token_id=0, **dims)


def write_checkpoint(model, out):
    """The MoE layers as gpt-oss ships them: *_blocks / *_scales MXFP4 of the output-major
    [E, N, K] expert weights, BF16 biases and router (the rest is not needed by patch_model)."""
    import mxq
    import safetensors.torch as st
    tensors = {}
    for name, p in model.named_parameters():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            w = p.detach().transpose(1, 2).contiguous()        # HF keeps [E, K, N]
            q = mxq.quantize(w, "mxfp4", scale_rule="round_up")
            e, n, k = w.shape
            packed = torch.as_tensor(q.packed, device=w.device).reshape(e, n, k // 32, 16)
            scales = torch.as_tensor(q.scales, device=w.device).reshape(e, n, k // 32)
            tensors[name + "_blocks"] = packed.cpu()
            tensors[name + "_scales"] = scales.cpu()
        elif ".mlp." in name:   # expert biases, router weight + bias
            tensors[name] = p.detach().to(torch.bfloat16).cpu().contiguous()
    os.makedirs(out, exist_ok=True)
    st.save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, default=str)


class _Clock:
    """A generate() streamer recording when each new token arrives (generate moves each token
    to the host before put(), so the time includes the step's GPU work)."""

    def __init__(self):
        self.t = []

    def put(self, value):
        self.t.append(time.perf_counter())

    def end(self):
        pass


def timed_generate(model, ids, tokens):
    clock = _Clock()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             streamer=clock)
    # put() #0 is the prompt, #1 the first new token (after prefill), then one per decode step.
    assert len(clock.t) == tokens + 1, len(clock.t)
    return clock.t[1] - t0, (tokens - 1) / (clock.t[-1] - clock.t[1]), out


def decode_rate(model, ids, args):
    for _ in range(2):  # warm-up (and compilation, with --compile)
        timed_generate(model, ids, args.tokens)
    runs = [timed_generate(model, ids, args.tokens) for _ in range(args.reps)]
    return (statistics.median(r[1] for r in runs), statistics.median(r[0] for r in runs),
            runs[-1][2])


def compiled(model):
    model.generation_config.cache_implementation = "static"
    model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per generate")
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="toy dimensions (CPU smoke test)")
    ap.add_argument("--compile", action="store_true", help="also static cache + torch.compile")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import mxq
    import mxq.torch as mt
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = config(args)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, cfg.vocab_size, (args.batch, args.prompt), generator=g).to(args.device)
    res = {"what": "decode tokens/s, random-weight gpt-oss, BF16 vs mxq.torch.patch_model (MXFP4 experts)",
           "config": {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size",
                                                    "num_local_experts", "num_experts_per_tok",
                                                    "num_attention_heads", "num_key_value_heads",
                                                    "head_dim", "vocab_size", "num_hidden_layers")},
           "batch": args.batch, "prompt": args.prompt, "new_tokens": args.tokens, "reps": args.reps,
           "device": args.device, "torch": torch.__version__, "transformers": transformers.__version__,
           "mxq_version": mxq.__version__, "mxq_commit": mxq.__commit__, "argv": sys.argv[1:]}
    if args.device == "cuda":
        res["gpu"] = torch.cuda.get_device_name()
    try:
        res["repo_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                            text=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        pass

    rate, pre, out_bf16 = decode_rate(model, ids, args)
    res["bf16"] = {"decode_tok_s": rate, "prefill_s": pre}
    print(f"bf16      decode {rate:9.1f} tok/s  (prefill + first token {pre * 1e3:.1f} ms)", flush=True)

    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "mx")
        write_checkpoint(model, ck)
        report = mt.patch_model(model, ck, device=args.device)
    if not report.ok or len(report.names("moe")) != args.layers:
        print(report)
        sys.exit("patch_model did not replace every MoE block")
    if args.device == "cuda":
        torch.cuda.empty_cache()
    res["backends"] = sorted({r.backend for r in report.replaced})
    rate, pre, out_mx = decode_rate(model, ids, args)
    res["mxq"] = {"decode_tok_s": rate, "prefill_s": pre}
    res["same_tokens_as_bf16"] = bool(torch.equal(out_mx, out_bf16))  # random weights: info only
    print(f"mxq       decode {rate:9.1f} tok/s  (prefill + first token {pre * 1e3:.1f} ms; "
          f"MoE backend {', '.join(res['backends'])})", flush=True)
    print(f"speedup   {res['mxq']['decode_tok_s'] / res['bf16']['decode_tok_s']:.2f}x")

    if args.compile:
        # The BF16 model is gone (patched in place): rebuild it with the same seed.
        torch.manual_seed(0)
        with torch.device(args.device):
            ref = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
        for name, m in (("bf16_compiled", ref), ("mxq_compiled", model)):
            rate, pre, _ = decode_rate(compiled(m), ids, args)
            res[name] = {"decode_tok_s": rate, "prefill_s": pre}
            print(f"{name:<13} decode {rate:9.1f} tok/s", flush=True)
            del m
        del ref
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
