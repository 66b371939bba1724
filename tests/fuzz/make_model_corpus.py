#!/usr/bin/env python3
"""Writes the model fuzz seed corpus (tests/fuzz/corpus/model/) for tests/fuzz/model_fuzz.cc.

A seed is a config.json (minified), a line "%%", then "name dtype d0,d1,.." per tensor. Seeds
come from the real-producer fixtures (tests/fixtures/producers/: their config.json and the
tensors of layer 0 plus the model-level ones) and from hand-written configs for the expert
namings no fixture has (Mixtral w1/w3/w2, DeepSeek-V3 with a BF16 e_score_correction_bias,
stacked gpt-oss). Deterministic: rerunning rewrites the same bytes.
"""
import json
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "model")
FIX = os.path.join(HERE, "..", "fixtures", "producers")
FIXTURES = ["llmc-mxfp4a16-qwen3moe", "llmc-mxfp4-gptoss", "quark-mxfp4-gptoss",
            "quark-mxfp4-qwen3moe", "quark-mxfp4-fp8-llama", "modelopt-w4a8-mxfp4-fp8-llama",
            "quark-mxfp6e2m3-llama", "llmc-mxfp8-llama", "ct020-mxfp4xfp8-llama",
            "ct020-mxfp6a8-llama", "modelopt-mxfp4-qwen3moe"]


def seed(config, tensors):
    lines = [f"{n} {d} {','.join(str(v) for v in s)}" for n, d, s in tensors]
    return (json.dumps(config, separators=(",", ":"), sort_keys=True) + "\n%%\n" +
            "\n".join(lines) + "\n").encode()


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def from_fixture(name):
    d = os.path.join(FIX, name)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    tensors = []
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors") or fn.startswith("reference"):
            continue
        for t, v in sorted(header(os.path.join(d, fn)).items()):
            if t == "__metadata__":
                continue
            m = re.search(r"\.layers\.(\d+)\.", t)
            if m and m.group(1) != "0":
                continue
            tensors.append((t, v["dtype"], v["shape"]))
    config["num_hidden_layers"] = 1
    return seed(config, tensors)


def per_expert(block, leaves, e, n_i, h, router=".gate"):
    """MXFP4 per-expert tensors (compressed-tensors names), [n, k] packed + scales."""
    t = []
    for x in range(e):
        for leaf, (n, k) in zip(leaves, [(n_i, h), (n_i, h), (h, n_i)]):
            p = f"{block}.experts.{x}.{leaf}"
            t += [(p + ".weight_packed", "U8", [n, k // 2]), (p + ".weight_scale", "U8", [n, k // 32])]
    t.append((block + router + ".weight", "BF16", [e, h]))
    return t


CT_MXFP4 = {"quant_method": "compressed-tensors", "format": "mxfp4-pack-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "format": "mxfp4-pack-quantized",
                                          "weights": {"num_bits": 4, "type": "float", "group_size": 32,
                                                      "strategy": "group", "symmetric": True,
                                                      "scale_dtype": "torch.uint8"}}},
            "ignore": ["lm_head"]}


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for name in FIXTURES:
        if os.path.isdir(os.path.join(FIX, name)):
            seeds[f"fixture_{name}"] = from_fixture(name)
    mixtral = {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2,
               "quantization_config": CT_MXFP4}
    seeds["mixtral_w1_w3_w2"] = seed(mixtral, per_expert("model.layers.0.block_sparse_moe",
                                                         ["w1", "w3", "w2"], 4, 32, 64))
    ds = {"model_type": "deepseek_v3", "n_routed_experts": 4, "num_experts_per_tok": 2,
          "n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
          "quantization_config": CT_MXFP4}
    t = per_expert("model.layers.1.mlp", ["gate_proj", "up_proj", "down_proj"], 4, 32, 64)
    t.append(("model.layers.1.mlp.gate.e_score_correction_bias", "BF16", [4]))
    t += [("model.layers.1.mlp.shared_experts.down_proj.weight_packed", "U8", [64, 16]),
          ("model.layers.1.mlp.shared_experts.down_proj.weight_scale", "U8", [64, 1])]
    seeds["deepseek_v3_bf16_correction_bias"] = seed(ds, t)
    gpt = {"model_type": "gpt_oss", "num_local_experts": 4, "num_experts_per_tok": 2,
           "swiglu_limit": 7.0, "quantization_config": {"quant_method": "mxfp4",
                                                         "modules_to_not_convert": ["lm_head"]}}
    p = "model.layers.0.mlp.experts."
    seeds["gpt_oss_stacked"] = seed(gpt, [
        (p + "gate_up_proj_blocks", "U8", [4, 64, 2, 16]), (p + "gate_up_proj_scales", "U8", [4, 64, 2]),
        (p + "gate_up_proj_bias", "BF16", [4, 64]), (p + "down_proj_blocks", "U8", [4, 64, 1, 16]),
        (p + "down_proj_scales", "U8", [4, 64, 1]), (p + "down_proj_bias", "BF16", [4, 64]),
        ("model.layers.0.mlp.router.weight", "BF16", [4, 64]),
        ("model.layers.0.mlp.router.bias", "BF16", [4])])
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name + ".txt"), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
