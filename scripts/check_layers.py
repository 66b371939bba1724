#!/usr/bin/env python3
"""The include rule of docs/architecture.md, checked: src/ and include/mxq/ are layered, and a
file may include headers of its own layer and of the layers LAYERS allows it only: nothing
includes upwards, and no backend includes another.

    scripts/check_layers.py [--root DIR]   exit 1 naming every offending file, line and include
    scripts/check_layers.py --self-test    the checker on a small tree with known violations

Run by ctest (include_layers, include_layers_self_test). A new folder under src/ (or a new
public header) must be added to LAYERS, else the check fails naming the file.
"""
import argparse
import os
import re
import sys
import tempfile

# (layer, path prefixes relative to the repository root, the layers it may include besides
# itself). Longest prefix wins. Listed bottom-up; a layer names only layers above it in this
# list, so no include runs back up.
BELOW_BACKENDS = ["core", "io", "contract"]
LAYERS = [
    ("core", ["src/core/", "include/mxq/status.h", "include/mxq/formats.h",
              "include/mxq/numerics.h", "include/mxq/packing.h", "include/mxq/quantize.h",
              "include/mxq/version.h"], []),
    ("io", ["src/io/", "include/mxq/safetensors.h", "include/mxq/model.h",
            "include/mxq/pipeline.h"], ["core"]),
    # The ground floor of the backends: the contract every backend includes.
    ("contract", ["src/contract/", "include/mxq/problem.h", "include/mxq/views.h",
                  "include/mxq/backend.h", "include/mxq/device.h"], ["core", "io"]),
    # Shared by the CPU backends (activation quantization, routing, their factories).
    ("cpu-common", ["src/cpu/common/", "src/cpu/backends.h"], BELOW_BACKENDS),
    # The backends: none includes another.
    ("cpu-reference", ["src/cpu/reference/"], BELOW_BACKENDS + ["cpu-common"]),
    ("cpu", ["src/cpu/fast/"], BELOW_BACKENDS + ["cpu-common"]),
    ("cuda", ["src/cuda/"], BELOW_BACKENDS),
    # MX-aware tensor / expert parallel splits of a layer's weights (the contract's views).
    ("shard", ["src/shard/", "include/mxq/shard.h"], BELOW_BACKENDS),
    # Above the backends: the registry, the oracle, a model's layers.
    ("select", ["src/select/", "include/mxq/select.h", "include/mxq/layers.h"],
     BELOW_BACKENDS + ["cpu-common", "cpu-reference", "cpu", "cuda"]),
]

SCANNED = ("src/", "include/mxq/")
EXTENSIONS = (".h", ".hpp", ".cc", ".cpp", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def layer_of(path):
    best = None
    for name, prefixes, may in LAYERS:
        for p in prefixes:
            if (path == p or (p.endswith("/") and path.startswith(p))) and (
                    best is None or len(p) > best[2]):
                best = (name, may, len(p))
    return None if best is None else (best[0], best[1])


def resolve(root, including, spelled, quoted):
    """The repository path an include names, or None when it is not one of ours."""
    if spelled.startswith("mxq/"):
        return "include/" + spelled
    if not quoted:
        return None
    here = os.path.dirname(including)
    for cand in (os.path.join(here, spelled), os.path.join("src", spelled)):
        cand = os.path.normpath(cand)
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def check(root):
    errors = []
    for top in SCANNED:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith(EXTENSIONS):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                own = layer_of(path)
                if own is None:
                    errors.append(f"{path}: not in the layer table (scripts/check_layers.py LAYERS)")
                    continue
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
                    for lineno, line in enumerate(fh, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = resolve(root, path, m.group(2), m.group(1) == '"')
                        if target is None:
                            continue
                        theirs = layer_of(target.replace(os.sep, "/"))
                        if theirs is None:
                            errors.append(f"{path}:{lineno}: includes \"{m.group(2)}\", which is "
                                          "in no layer (scripts/check_layers.py LAYERS)")
                            continue
                        if theirs[0] == own[0] or theirs[0] in own[1]:
                            continue
                        errors.append(
                            f"{path}:{lineno}: includes \"{m.group(2)}\" (layer {theirs[0]}); "
                            f"layer {own[0]} may include only itself and "
                            f"{', '.join(own[1]) or 'nothing'}")
    return errors


def self_test():
    tree = {
        "src/contract/ok.h": '#include "mxq/status.h"\n',
        "src/contract/up.cc": '#include "cpu/reference/reference_backend.h"\n',
        "src/cpu/reference/reference_backend.h": '#include "contract/ok.h"\n',
        "src/cuda/moe/moe_layer.cc": '#include "cpu/reference/reference_backend.h"\n'
                                     '#include "contract/ok.h"\n#include <vector>\n',
        "src/select/registry.cc": '#include "cuda/moe/moe_layer.cc"\n#include "mxq/select.h"\n',
        "src/newfolder/x.cc": "\n",
        "include/mxq/backend.h": '#include "mxq/layers.h"\n',
    }
    expect = [
        'src/contract/up.cc:1: includes "cpu/reference/reference_backend.h" (layer cpu-reference',
        'src/cuda/moe/moe_layer.cc:1: includes "cpu/reference/reference_backend.h" (layer '
        'cpu-reference); layer cuda may include only itself and core, io, contract',
        "src/newfolder/x.cc: not in the layer table",
        'include/mxq/backend.h:1: includes "mxq/layers.h" (layer select',
    ]
    with tempfile.TemporaryDirectory() as root:
        for path, text in tree.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as fh:
                fh.write(text)
        errors = check(root)
    ok = len(errors) == len(expect) and all(any(e.startswith(x) for e in errors) for x in expect)
    print("\n".join(errors))
    print("self-test", "passed" if ok else f"FAILED: expected {len(expect)} errors starting {expect}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    errors = check(os.path.abspath(a.root))
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"{len(errors)} include(s) break the layer rule (docs/architecture.md)",
              file=sys.stderr)
        return 1
    print("include layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
