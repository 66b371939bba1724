#!/usr/bin/env python3
"""Counts the CUDA kernels in a built library per architecture image and checks the counts
that src/cuda/CMakeLists.txt declares (mxq_cuda_kernels; ctest cuda_kernel_counts).

Usage: scripts/cuda_kernel_count.py [--list] NAME=COUNT:PATH ...

Reads the device code embedded in the objects (nvcc's fatbinary holds one ELF cubin per
architecture; this build does not compress them) without any CUDA tool: every ELF with
e_machine EM_CUDA (190) is parsed, its architecture taken from e_flags (bits 8..15: 80 for
sm_80, 90 for sm_90; the raw flags are printed too) and its kernels are the .nv.info.<kernel>
sections (one per __global__ function, none for device functions).
A library with no cubin at all is an error (compressed or missing device code), as is any
image whose count differs from the declared one. Exit 0 when every count matches.
"""
import collections
import struct
import sys

EM_CUDA = 190


def cubins(data):
    i = 0
    while True:
        i = data.find(b"\x7fELF\x02\x01", i)
        if i < 0:
            return
        yield i
        i += 4


def parse(data, off):
    """(e_flags, {kernel names}) of the ELF at off, or None if it is not a CUDA cubin."""
    if off + 64 > len(data):
        return None
    (_type, machine, _ver, _entry, _phoff, shoff, flags, _ehsize, _phentsize, _phnum, shentsize,
     shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, off + 16)
    if machine != EM_CUDA or shentsize != 64 or shstrndx >= shnum:
        return None
    secs = []
    for k in range(shnum):
        so = off + shoff + k * shentsize
        if so + 64 > len(data):
            return None
        name, _typ, _fl, _addr, offset, _size, _link, _info, _al, _es = struct.unpack_from(
            "<IIQQQQIIQQ", data, so)
        secs.append((name, offset))
    strtab = off + secs[shstrndx][1]
    kernels = set()
    for name, _ in secs:
        s = strtab + name
        end = data.find(b"\0", s)
        n = data[s:end].decode("ascii", "replace")
        if n.startswith(".nv.info."):
            kernels.add(n[len(".nv.info."):])
    return flags, kernels


def arch_name(flags):
    sm = (flags >> 8) & 0xFF
    return f"sm_{sm} (e_flags {flags:#x})"


def count(path):
    with open(path, "rb") as f:
        data = f.read()
    per = collections.defaultdict(set)
    for off in cubins(data):
        r = parse(data, off)
        if r:
            per[arch_name(r[0])] |= r[1]
    return per


def main(argv):
    listing = "--list" in argv
    specs = [a for a in argv if a != "--list"]
    if not specs:
        print(__doc__)
        return 2
    bad = 0
    for spec in specs:
        try:
            name, rest = spec.split("=", 1)
            want, path = rest.split(":", 1)
            want = int(want)
        except ValueError:
            print(f"bad argument {spec!r}: want NAME=COUNT:PATH")
            return 2
        per = count(path)
        if not per:
            print(f"FAIL {name}: no CUDA cubin found in {path} (compressed fatbinary? no device code?)")
            bad += 1
            continue
        for arch, ks in sorted(per.items()):
            ok = len(ks) == want
            bad += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name} {arch}: {len(ks)} kernels (declared {want})")
            if listing or not ok:
                for k in sorted(ks):
                    print(f"       {k}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
