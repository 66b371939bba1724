"""What a benchmark JSON records about the run (issue 18), shared by bench/cuda_gemm_bench.py and
bench/cuda_moe_bench.py:

- the commit (MXQ_COMMIT when set, since a tree copied to the GPU host may carry stale git
  metadata; else git, with "+dirty" for uncommitted changes to tracked files), the commit the
  binary that ran was built from as the binary itself says it (binary_commit: the shim's
  mxq_shim_build_commit, "-dirty" marked) and that binary's sha256 (the shim);
- the environment: device, driver, CUDA runtime, torch / triton / Python versions, the peers'
  versions (humming-kernels, the vLLM peers' PROVENANCE.json);
- two rates measured in the same process with the benchmark's own timer: the device-to-device
  copy bandwidth and the cuBLAS BF16 peak (never a datasheet number).

For the CPU tools' results (bench/quantize_pipeline.py, scripts/wheel_record.py),
host_environment(build_dir) gives the machine (CPU model and flags, count, memory, kernel, load)
and the compiler and build type of a CMake build.

Nothing here needs torch to import: on a machine without torch or a GPU every such field is a
string "unavailable: <why>" (the measurements None with their *_source saying why), so the
module can be checked on CPU (tests/scripts/provenance_test.py). `python3 bench/provenance.py
[--shim PATH] [--vllm-peers DIR]` prints the environment as JSON (no measurement).
"""
import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _why(ex):
    msg = str(ex).strip().splitlines()
    return f"{type(ex).__name__}: {msg[0][:200] if msg else ''}".rstrip(": ")


def git_commit(here):
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001  (a copied tree without .git)
        return "unknown"


def commit():
    return os.environ.get("MXQ_COMMIT") or git_commit(HERE)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def binary_commit(shim_path):
    """The git commit the shim at shim_path was built from, as the binary says it
    (mxq_shim_build_commit: mxq::build_commit() of its CMake build, `git rev-parse --short=7`
    plus "-dirty", the string `mxq --version` prints). `commit` says which tree the run saw; this
    says which source the binary that ran was built from (they differ when the binary is stale or
    the tree was copied). "unknown: ..." for a shim built outside a git checkout,
    "unavailable: ..." when the shim cannot be loaded or predates the function."""
    import ctypes
    try:
        lib = ctypes.CDLL(os.path.abspath(shim_path))
    except OSError as ex:
        return f"unavailable: {_why(ex)}"
    try:
        fn = lib.mxq_shim_build_commit
    except AttributeError:
        return "unavailable: the shim has no mxq_shim_build_commit (built before it existed)"
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    got = (fn() or b"").decode("utf-8", "replace")
    return got or "unknown: the shim was built outside a git checkout"


def provenance(shim_path):
    """{"commit", "shim_sha256"} for the shim at shim_path."""
    return {"commit": commit(), "shim_sha256": sha256(shim_path)}


# ------------------------------------------------------------------------------- environment

def _torch():
    """(torch module, None) or (None, why)."""
    try:
        import torch
        return torch, None
    except Exception as ex:  # noqa: BLE001  (ImportError, or a broken install)
        return None, _why(ex)


def module_version(name):
    """The version of an importable package, else "unavailable: <why>"."""
    try:
        mod = __import__(name)
        return str(getattr(mod, "__version__", "unknown: no __version__"))
    except Exception as ex:  # noqa: BLE001
        return f"unavailable: {_why(ex)}"


def driver_version():
    """The NVIDIA driver version ("580.159.04"): nvidia-smi, else /proc/driver/nvidia/version,
    else "unknown: <why>" (never raises)."""
    whys = []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        v = out.stdout.strip().splitlines()
        if out.returncode == 0 and v and v[0].strip():
            return v[0].strip()
        whys.append(f"nvidia-smi exit {out.returncode}")
    except Exception as ex:  # noqa: BLE001
        whys.append(f"nvidia-smi: {_why(ex)}")
    try:
        with open("/proc/driver/nvidia/version") as f:
            m = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", f.read())
        if m:
            return m.group(1)
        whys.append("/proc/driver/nvidia/version: no version found")
    except Exception as ex:  # noqa: BLE001
        whys.append(f"/proc/driver/nvidia/version: {_why(ex)}")
    return "unknown: " + "; ".join(whys)


def cuda_driver_api():
    """cuDriverGetVersion of libcuda (e.g. 13000 for CUDA 13.0), else "unknown: <why>"."""
    try:
        import ctypes
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        rc = lib.cuDriverGetVersion(ctypes.byref(v))
        return v.value if rc == 0 else f"unknown: cuDriverGetVersion returned {rc}"
    except Exception as ex:  # noqa: BLE001
        return f"unknown: {_why(ex)}"


def device_info():
    """device, sms, capability, memory of GPU 0 through torch, else "unavailable: <why>"."""
    torch, why = _torch()
    if torch is None:
        why = f"unavailable: torch not importable ({why})"
        return {"device": why, "sms": why, "capability": why, "device_memory_bytes": why}
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        p = torch.cuda.get_device_properties(0)
        return {"device": p.name, "sms": p.multi_processor_count,
                "capability": f"{p.major}.{p.minor}", "device_memory_bytes": p.total_memory}
    except Exception as ex:  # noqa: BLE001
        why = f"unavailable: {_why(ex)}"
        return {"device": why, "sms": why, "capability": why, "device_memory_bytes": why}


def vllm_peers_info(peers_dir):
    """What identifies the vLLM peers build (../shared/peers/fetch_vllm_peers.sh): the sha256 of
    its vllm/PROVENANCE.json and the wheel and extension sha256s recorded in it."""
    if not peers_dir:
        return "not used (no --vllm-peers)"
    vdir = os.environ.get("VLLM_PEERS_DIR") or os.path.join(os.path.abspath(peers_dir), "vllm")
    path = os.path.join(vdir, "PROVENANCE.json")
    try:
        with open(path) as f:
            rec = json.load(f)
        wheel = rec.get("wheel", {})
        return {"dir": os.path.abspath(peers_dir), "provenance_json": path,
                "provenance_sha256": sha256(path), "wheel": wheel.get("name", "unknown"),
                "wheel_sha256": wheel.get("sha256", "unknown"),
                "outputs_sha256": {n: o.get("sha256", "unknown")
                                   for n, o in rec.get("outputs", {}).items()}}
    except Exception as ex:  # noqa: BLE001
        return f"unavailable: {path}: {_why(ex)}"


def environment(shim_path=None, vllm_peers="", peer_notes=None):
    """Every provenance field that needs no measurement. peer_notes: the bench's notes on its
    peers ({"humming": humming_peer.probe's version or why not, ...}), recorded as given in
    "peers" next to "vllm_peers" (vllm_peers_info of the --vllm-peers folder)."""
    torch, twhy = _torch()
    env = {"commit": commit()}
    if shim_path is not None:
        env["binary_commit"] = binary_commit(shim_path)
        try:
            env["shim_sha256"] = sha256(shim_path)
        except OSError as ex:
            env["shim_sha256"] = f"unavailable: {_why(ex)}"
    env.update(device_info())
    env["driver"] = driver_version()
    env["cuda_driver_api"] = cuda_driver_api()
    if torch is None:
        env["torch"] = env["cuda_runtime"] = f"unavailable: torch not importable ({twhy})"
    else:
        env["torch"] = str(torch.__version__)
        env["cuda_runtime"] = str(torch.version.cuda) if torch.version.cuda else \
            "unavailable: torch built without CUDA"
    env["triton"] = module_version("triton")
    env["python"] = platform.python_version()
    env["host"] = platform.node()
    env["peers"] = {**(peer_notes or {}), "vllm_peers": vllm_peers_info(vllm_peers)}
    return env


# --------------------------------------------------------------------------- CPU host / build

def _first_line(cmd):
    """The first output line of cmd, else "unavailable: <why>"."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        lines = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and lines:
            return lines[0].strip()
        return f"unavailable: {' '.join(cmd)} exit {out.returncode}"
    except Exception as ex:  # noqa: BLE001
        return f"unavailable: {_why(ex)}"


def cpu_model():
    """/proc/cpuinfo's "model name" (what lscpu prints), else "unknown: <why>"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        return "unknown: no model name in /proc/cpuinfo"
    except OSError as ex:
        return f"unknown: {_why(ex)}"


SIMD_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")


def cpu_id():
    """"family F model M stepping S; flags ..." (the SIMD flags of SIMD_FLAGS it has) from
    /proc/cpuinfo's first processor, else "unknown: <why>"."""
    try:
        info = {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
        flags = set(info.get("flags", "").split())
        return (f"family {info.get('cpu family', '?')} model {info.get('model', '?')} stepping "
                f"{info.get('stepping', '?')}; flags {' '.join(x for x in SIMD_FLAGS if x in flags)}")
    except OSError as ex:
        return f"unknown: {_why(ex)}"


def cmake_cache(build_dir):
    """{name: value} of build_dir/CMakeCache.txt ({} when there is none)."""
    vals = {}
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"([A-Za-z0-9_]+):[A-Z]+=(.*)$", line.rstrip("\n"))
                if m:
                    vals[m.group(1)] = m.group(2)
    except OSError:
        pass
    return vals


def host_environment(build_dir=None):
    """What a CPU result records about the machine and, with build_dir (a CMake build), the
    compiler and build type it was built with: cpu_model, cpu_id, num_cpus, memory_bytes, host, kernel,
    python, loadavg, and compiler (its --version line) / build_type / cxx_flags / mxq_options (the MXQ_*
    cache entries) / cuda_architectures (with the CUDA part)."""
    env = {"cpu_model": cpu_model(), "cpu_id": cpu_id(), "num_cpus": os.cpu_count(),
           "host": platform.node(),
           "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1))
        env["memory_bytes"] = kb * 1024
    except (OSError, AttributeError) as ex:
        env["memory_bytes"] = f"unknown: {_why(ex)}"
    try:
        with open("/proc/loadavg") as f:
            env["loadavg"] = f.read().split()[:3]
    except OSError as ex:
        env["loadavg"] = f"unknown: {_why(ex)}"
    if build_dir is not None:
        cache = cmake_cache(build_dir)
        cxx = cache.get("CMAKE_CXX_COMPILER")
        if cxx:
            env["compiler"] = f"{cxx}: {_first_line([cxx, '--version'])}"
        else:
            env["compiler"] = f"unknown: no CMAKE_CXX_COMPILER in {build_dir}/CMakeCache.txt"
        bt = cache.get("CMAKE_BUILD_TYPE", "")
        env["build_type"] = bt or f"unknown: no CMAKE_BUILD_TYPE in {build_dir}/CMakeCache.txt"
        if bt:
            env["cxx_flags"] = (cache.get("CMAKE_CXX_FLAGS", "") + " " +
                                cache.get(f"CMAKE_CXX_FLAGS_{bt.upper()}", "")).strip()
        env["mxq_options"] = {k: v for k, v in sorted(cache.items()) if k.startswith("MXQ_")}
        if cache.get("CMAKE_CUDA_ARCHITECTURES"):
            env["cuda_architectures"] = cache["CMAKE_CUDA_ARCHITECTURES"]
    return env


# ------------------------------------------------------------------------------- measurements

def copy_bandwidth(median_us):
    """Device-to-device copy of 1 GiB timed by median_us(fn) -> us: bytes read + written per
    second."""
    import torch
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src))
    del src, dst
    return 2 * (1 << 30) / (us * 1e-6)


# Square-ish GEMMs large enough to be compute-bound; the best rate is the peak.
PEAK_SHAPES = [(8192, 8192, 8192), (16384, 8192, 8192), (8192, 16384, 16384)]


def bf16_peak(median_us):
    """(FLOP/s, source) of cuBLAS BF16 (torch.matmul, BF16 in/out, FP32 accumulation) at its
    best over PEAK_SHAPES, timed by median_us(fn) -> us in this process."""
    import torch
    best, where = 0.0, ""
    for m, n, k in PEAK_SHAPES:
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
        us = median_us(lambda: torch.matmul(a, b))
        rate = 2 * m * n * k / (us * 1e-6)
        if rate > best:
            best, where = rate, f"{m}x{n}x{k}"
        del a, b
    torch.cuda.empty_cache()
    return best, (f"measured: cuBLAS BF16 torch.matmul, best of {len(PEAK_SHAPES)} GEMMs "
                  f"(M x N x K {where}), median of CUDA-event timings in this process")


def measure(median_us):
    """{"copy_bandwidth_Bps", "bf16_peak_flops", "bf16_peak_source"} measured with the bench's
    timer; without torch or a GPU the rates are None and the sources say why."""
    torch, why = _torch()
    if torch is not None and not torch.cuda.is_available():
        torch, why = None, "torch.cuda.is_available() is False"
    if torch is None:
        why = f"unavailable: {why}"
        return {"copy_bandwidth_Bps": None, "copy_bandwidth_source": why,
                "bf16_peak_flops": None, "bf16_peak_source": why}
    bw = copy_bandwidth(median_us)
    peak, source = bf16_peak(median_us)
    return {"copy_bandwidth_Bps": bw,
            "copy_bandwidth_source": "measured: device-to-device copy of 1 GiB (read + write), "
                                     "median of CUDA-event timings in this process",
            "bf16_peak_flops": peak, "bf16_peak_source": source}


def main():
    ap = argparse.ArgumentParser(description="print this run's environment as JSON")
    ap.add_argument("--shim", default=None)
    ap.add_argument("--vllm-peers", default="")
    args = ap.parse_args()
    json.dump(environment(args.shim, args.vllm_peers), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
