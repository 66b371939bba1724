"""bench/case_list.py reads tests/cases/cases.json, the one shape list of the tests and the
benchmarks: the GPU benchmarks' default sets are the ones their results in bench/results were
measured with, and a missing entry is an error that names it (no fallback list)."""

import json
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import case_list  # noqa: E402


def test_gemm_bench_defaults():
    shapes, ms, quick = case_list.linear_set("cuda_gemm_bench")
    assert shapes == [(4096, 4096), (8192, 8192), (28672, 8192), (8192, 28672), (5760, 2880),
                      (2880, 2880)]
    assert ms == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 2048, 8192]
    assert quick == [1, 16, 128, 2048]


def test_moe_bench_defaults():
    layers, ms, quick = case_list.moe_set("cuda_moe_bench")
    assert list(layers) == ["gpt-oss-120b", "deepseek-v3", "qwen3-30b-a3b"]  # seeds use the order
    assert layers["gpt-oss-120b"] == dict(h=2880, i=2880, e=128, k=4, layout="interleaved",
                                          act="swigluoai", routing="topk-softmax", n_group=1,
                                          topk_group=1)
    assert layers["deepseek-v3"] == dict(h=7168, i=2048, e=256, k=8, layout="separate", act="silu",
                                         routing="sigmoid-grouped-topk", n_group=8, topk_group=4)
    assert layers["qwen3-30b-a3b"] == dict(h=2048, i=768, e=128, k=8, layout="chunked",
                                           act="silu", routing="softmax-topk", n_group=1,
                                           topk_group=1)
    assert ms == [1, 4, 16, 64, 128, 512, 2048, 8192]
    assert quick == [1, 2048]


def test_missing_entries_are_named():
    data = case_list.load()
    broken = json.loads(json.dumps(data))
    broken["sets"]["cuda_gemm_bench"]["shapes"].append("1x2")
    with pytest.raises(SystemExit, match='missing "1x2"'):
        case_list.linear_set("cuda_gemm_bench", broken)
    del broken["sets"]["cuda_moe_bench"]
    with pytest.raises(SystemExit, match='missing "cuda_moe_bench"'):
        case_list.moe_set("cuda_moe_bench", broken)
