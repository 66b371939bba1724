"""tests/cases/cases.json, the one list of shapes for the tests and the benchmarks (issue 18).

bench/cuda_gemm_bench.py and bench/cuda_moe_bench.py take their default shapes and token counts
from its "sets"; tests/cases/cases.cc and bench/gemv_bench.cc embed the same file. A missing
file or entry is an error that names it (no built-in fallback list).
"""
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cases",
                    "cases.json")


def load(path=PATH):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as ex:
        raise SystemExit(f"{path}: cannot read the case list: {ex}")


def _get(d, key, where):
    if not isinstance(d, dict) or key not in d:
        raise SystemExit(f"{PATH}: {where}: missing \"{key}\"")
    return d[key]


def linear_set(name, data=None):
    """(shapes [(N, K)], ms, quick_ms) of sets.<name>."""
    data = data or load()
    s = _get(_get(data, "sets", "top level"), name, "sets")
    table = _get(data, "linear_shapes", "top level")
    shapes = []
    for n in _get(s, "shapes", f"sets.{name}"):
        e = _get(table, n, "linear_shapes")
        shapes.append((int(e["n"]), int(e["k"])))
    return shapes, list(_get(s, "ms", f"sets.{name}")), list(_get(s, "quick_ms", f"sets.{name}"))


MOE_FIELDS = ("h", "i", "e", "k", "layout", "act", "routing", "n_group", "topk_group")


def moe_set(name, data=None):
    """({layer: {h, i, e, k, layout, act, routing, n_group, topk_group}}, ms, quick_ms) of
    sets.<name>, layers in the set's order (the fields a benchmark's shim takes)."""
    data = data or load()
    s = _get(_get(data, "sets", "top level"), name, "sets")
    table = _get(data, "moe_layers", "top level")
    layers = {}
    for n in _get(s, "layers", f"sets.{name}"):
        e = _get(table, n, "moe_layers")
        layers[n] = {f: _get(e, f, f"moe_layers.{n}") for f in MOE_FIELDS}
    return layers, list(_get(s, "ms", f"sets.{name}")), list(_get(s, "quick_ms", f"sets.{name}"))
