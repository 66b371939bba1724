"""A/B of cuda-hopper launch configs inside one benchmark process.

A --backends entry "name@CONFIG" (e.g. "cuda-hopper@128:2:1": 128-token tiles, 2 consumer
warpgroups, no split) is
backend `name` with MXQ_HOPPER_CONFIG=CONFIG (src/cuda/hopper/gemm.cu, forced_config) set
around each of its prepare, plan and run calls, including the run captured into a CUDA graph,
so that it is measured beside the others on the same inputs. The config reads the variable at
every call; nothing else sees it.
"""
import contextlib
import os

VAR = "MXQ_HOPPER_CONFIG"


def split(backend):
    """'cuda-hopper@64:2:1' -> ('cuda-hopper', '64:2:1'); no '@' -> (backend, '')."""
    name, _, cfg = backend.partition("@")
    return name, cfg


def tag(backend):
    """A JSON-key-safe name: 'cuda-hopper@128:2:1' -> 'cuda_hopper_at_128_2_1'
    ('cuda-hopper+fp8-dynamic-token' -> 'cuda_hopper_with_fp8_dynamic_token')."""
    return backend.replace("-", "_").replace("@", "_at_").replace(":", "_").replace("+", "_with_").replace("/", "_")


@contextlib.contextmanager
def env(cfg, var=VAR):
    """var=cfg (MXQ_HOPPER_CONFIG by default) inside the block (nothing when cfg is empty),
    restored after."""
    if not cfg:
        yield
        return
    old = os.environ.get(var)
    os.environ[var] = cfg
    try:
        yield
    finally:
        if old is None:
            del os.environ[var]
        else:
            os.environ[var] = old
