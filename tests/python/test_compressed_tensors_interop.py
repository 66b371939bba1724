"""Interop: the `compressed-tensors` package (PyPI, the library vLLM loads MX checkpoints with)
decompresses mxq's output to exactly the values mxq decodes.

For each scheme compressed-tensors knows (MXFP4, MXFP6 E2M3, MXFP8 E4M3): `mxq sample` writes the
embedded BF16 model, `mxq quantize` turns it into compressed-tensors, `mxq dequantize` decodes it
with mxq's own decoder, and compressed-tensors' registered compressor for the checkpoint's
`format` decompresses every quantized module from the same files. The two must be bit-identical.

compressed-tensors needs torch. Where torch (or the package) is missing the test is skipped with
the reason printed; tests/python/run_interop.sh runs it on a host that has torch and records
the output under tests/python/results/.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: interop test needs it")
ct = pytest.importorskip(
    "compressed_tensors", reason="compressed-tensors is not installed (pip install compressed-tensors)"
)
safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")

from compressed_tensors.compressors import BaseCompressor  # noqa: E402
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def mxq_cli() -> str:
    path = os.environ.get("MXQ_CLI") or str(REPO / "build" / "release" / "mxq")
    if not Path(path).exists():
        pytest.fail(f"mxq CLI not found at {path}; build it or set MXQ_CLI")
    return path


def run(*args):
    subprocess.run([mxq_cli(), *map(str, args)], check=True, capture_output=True, text=True)


def load_dir(d: Path):
    tensors = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(safetensors_torch.load_file(str(f)))
    return tensors


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("interop")
    run("sample", d / "bf16")
    return d


@pytest.mark.parametrize("scheme", ["mxfp4", "mxfp6-e2m3", "mxfp8"])
def test_compressed_tensors_decompresses_mxq_output_exactly(sample, scheme):
    q, deq = sample / f"q-{scheme}", sample / f"d-{scheme}"
    run("quantize", sample / "bf16", "-o", q, "--scheme", scheme, "--scale-rule", "even_fp4_mantissa")
    run("dequantize", q, "-o", deq, "--dtype", "bf16")
    qcfg = json.loads((q / "config.json").read_text())["quantization_config"]
    group = qcfg["config_groups"]["group_0"]
    weights_args = dict(group["weights"])
    weights_args["scale_dtype"] = torch.uint8
    qscheme = QuantizationScheme(
        targets=group["targets"], weights=QuantizationArgs(**weights_args), input_activations=None
    )
    compressor = BaseCompressor.get_value_from_registry(qcfg["format"])
    packed, ours = load_dir(q), load_dir(deq)
    modules = sorted(n[: -len(".weight_scale")] for n in packed if n.endswith(".weight_scale"))
    assert len(modules) == 20, modules
    checked = 0
    for m in modules:
        elem_key = "weight" if scheme == "mxfp8" else "weight_packed"
        elems, scales = packed[f"{m}.{elem_key}"], packed[f"{m}.weight_scale"]
        lead = elems.shape[:-1]
        # compressed-tensors' compressors take 2-D Linear weights: fold expert stacks into rows.
        state = {elem_key: elems.reshape(-1, elems.shape[-1]), "weight_scale": scales.reshape(-1, scales.shape[-1])}
        theirs = compressor.decompress(state, qscheme)["weight"].to(torch.bfloat16)
        theirs = theirs.reshape(*lead, -1)
        mine = ours[f"{m}.weight"]
        assert theirs.shape == mine.shape, (m, theirs.shape, mine.shape)
        diff = (theirs.view(torch.int16) != mine.view(torch.int16)).sum().item()
        assert diff == 0, f"{scheme} {m}: {diff} of {mine.numel()} values differ"
        checked += mine.numel()
    print(f"{scheme}: compressed-tensors {ct.__version__} == mxq on {len(modules)} modules, "
          f"{checked} values, bit-exact (torch {torch.__version__})", file=sys.stderr)
