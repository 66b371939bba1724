"""bench/provenance.py without a GPU (ctest bench_provenance, label "script").

Checks that the module imports and fills every provenance field on a machine without torch or a
GPU (torch is hidden in a child process, so the check holds whether or not torch is installed
here), that the fields are well formed, that sha256 is right (known vectors, a file larger than
its read block, sha256sum where installed), the vLLM peers' PROVENANCE.json record, MXQ_COMMIT,
the CLI, and that the GPU benchmarks still compile.

usage: provenance_test.py [REPO_ROOT]
"""
import hashlib
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)
import provenance  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL {what}")


def is_sha(s):
    return isinstance(s, str) and re.fullmatch(r"[0-9a-f]{64}", s) is not None


def text_field(env, key):
    """A non-empty string (a value, or "unavailable: ..." / "unknown: ..." with a reason)."""
    v = env.get(key)
    check(isinstance(v, str) and v.strip() != "", f"{key} = {v!r}: not a non-empty string")
    if isinstance(v, str) and v.startswith(("unavailable", "unknown")):
        check(re.match(r"(unavailable|unknown): \S", v) is not None, f"{key} = {v!r}: no reason")


tmp = tempfile.mkdtemp(prefix="mxq-provenance-")
try:
    # sha256: known vectors, and a file of 3.5 read blocks against hashlib in one piece.
    for data, want in ((b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                       (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")):
        p = os.path.join(tmp, "v.bin")
        with open(p, "wb") as f:
            f.write(data)
        check(provenance.sha256(p) == want, f"sha256({data!r}) = {provenance.sha256(p)}")
    big = os.path.join(tmp, "big.bin")
    blob = bytes(range(256)) * (14 * 1024)  # 3.5 MiB
    with open(big, "wb") as f:
        f.write(blob)
    check(provenance.sha256(big) == hashlib.sha256(blob).hexdigest(), "sha256 of a 3.5 MiB file")
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", big], capture_output=True, text=True).stdout.split()[0]
        check(provenance.sha256(big) == out, "sha256 differs from sha256sum")

    # A fake vLLM peers folder: its PROVENANCE.json is hashed and its sha256s carried over.
    peers = os.path.join(tmp, "peers")
    os.makedirs(os.path.join(peers, "vllm"))
    rec = {"wheel": {"name": "vllm-0.26.0-test.whl", "sha256": "a" * 64},
           "outputs": {"_C.so": {"sha256": "b" * 64, "match": True}}}
    pj = os.path.join(peers, "vllm", "PROVENANCE.json")
    with open(pj, "w") as f:
        json.dump(rec, f)
    os.environ.pop("VLLM_PEERS_DIR", None)
    info = provenance.vllm_peers_info(peers)
    check(isinstance(info, dict) and info.get("provenance_sha256") == provenance.sha256(pj)
          and info.get("wheel") == rec["wheel"]["name"] and info.get("wheel_sha256") == "a" * 64
          and info.get("outputs_sha256") == {"_C.so": "b" * 64}, f"vllm_peers_info: {info}")
    missing = provenance.vllm_peers_info(os.path.join(tmp, "nowhere"))
    check(isinstance(missing, str) and missing.startswith("unavailable: "),
          f"missing peers dir: {missing!r}")
    check(provenance.vllm_peers_info("").startswith("not used"), "no --vllm-peers")

    # The environment in a child process where torch and triton cannot be imported.
    shim = os.path.join(tmp, "libshim.so")
    with open(shim, "wb") as f:
        f.write(b"abc")
    child = (
        "import json, sys\n"
        "sys.modules['torch'] = None\n"  # import torch raises ImportError
        "sys.modules['triton'] = None\n"
        f"sys.path.insert(0, {BENCH!r})\n"
        "import provenance\n"
        f"env = provenance.environment({shim!r}, {peers!r}, {{'humming': 'not available: x'}})\n"
        "env['measured'] = provenance.measure(lambda fn: 1.0)\n"
        "env['provenance_keys'] = provenance.provenance(" + repr(shim) + ")\n"
        "print(json.dumps(env))\n")
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "MXQ_COMMIT"})
    check(run.returncode == 0, f"child failed: {run.stderr[-2000:]}")
    env = json.loads(run.stdout) if run.returncode == 0 else {}
    for key in ("commit", "device", "sms", "capability", "device_memory_bytes", "driver",
                "torch", "cuda_runtime", "triton", "python", "host"):
        text_field(env, key)
    check(env.get("shim_sha256") ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "shim_sha256")
    # binary_commit asks the shim itself (mxq_shim_build_commit); this "shim" is no library.
    bc = str(env.get("binary_commit", ""))
    check(bc.startswith("unavailable: "), f"binary_commit of a file that is no library: {bc!r}")
    c = env.get("commit", "")
    check(re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", c) is not None or c == "unknown",
          f"commit {c!r}: not a git hash")
    for key in ("torch", "cuda_runtime", "device", "triton"):
        check(str(env.get(key, "")).startswith("unavailable: "), f"{key} without torch: "
              f"{env.get(key)!r}")
    drv = env.get("driver", "")
    check(re.fullmatch(r"\d+\.\d+(\.\d+)?", drv) is not None or drv.startswith("unknown: "),
          f"driver {drv!r}")
    api = env.get("cuda_driver_api")
    check((isinstance(api, int) and api > 0) or str(api).startswith("unknown: "),
          f"cuda_driver_api {api!r}")
    p = env.get("peers", {})
    check(p.get("humming") == "not available: x", f"peers.humming {p.get('humming')!r}")
    check(isinstance(p.get("vllm_peers"), dict) and
          p["vllm_peers"].get("provenance_sha256") == provenance.sha256(pj), "peers.vllm_peers")
    m = env.get("measured", {})
    for key in ("copy_bandwidth_Bps", "bf16_peak_flops"):
        check(key in m and m[key] is None, f"measured {key} without torch: {m.get(key)!r}")
    for key in ("copy_bandwidth_source", "bf16_peak_source"):
        check(str(m.get(key, "")).startswith("unavailable: "), f"{key}: {m.get(key)!r}")
    check(set(env.get("provenance_keys", {})) == {"commit", "shim_sha256"}, "provenance() keys")

    # MXQ_COMMIT wins over git; the CLI prints the same environment as JSON.
    os.environ["MXQ_COMMIT"] = "0123abc-test"
    check(provenance.commit() == "0123abc-test", "MXQ_COMMIT not used")
    cli = subprocess.run([sys.executable, os.path.join(BENCH, "provenance.py"), "--shim", shim],
                         capture_output=True, text=True)
    check(cli.returncode == 0, f"CLI failed: {cli.stderr[-1000:]}")
    if cli.returncode == 0:
        out = json.loads(cli.stdout)
        check(out.get("commit") == "0123abc-test" and is_sha(out.get("shim_sha256")),
              f"CLI output {out}")

    # The GPU benchmarks and reports still compile (they need torch and a GPU to run).
    for name in ("cuda_gemm_bench.py", "cuda_moe_bench.py", "cuda_gemm_report.py",
                 "cuda_moe_report.py", "cuda_ab_report.py", "provenance.py"):
        try:
            py_compile.compile(os.path.join(BENCH, name), cfile=os.path.join(tmp, name + "c"),
                               doraise=True)
        except py_compile.PyCompileError as ex:
            check(False, f"{name}: {ex}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    sys.exit(f"{len(failures)} check(s) failed")
print("ok: provenance fields present and well formed without torch / a GPU")
