#!/usr/bin/env python3
"""Loop-level SASS counts of one kernel (`cuobjdump -sass -fun NAME obj > k.sass`), to compare two
builds of a kernel without a GPU: for each loop (a backward branch) with more than --min
instructions, its instruction count, HGMMA count (and how many are ptxas' dummy
`HGMMA.64x8x16 RZ, gdesc[URZ]` ones, which a wgmma group gets around a branch ptxas cannot
resolve), WARPGROUP.ARRIVE / DEPBAR count, branches and the most common opcodes.

Usage: scripts/sass_loops.py k.sass [k2.sass ...] [--min 20] [--hgmma-only]
(scripts/sass_tools.sh installs cuobjdump on the build machine.)
"""
import argparse
import collections
import re


def parse(path):
    """[(address, opcode, text)] of the SASS listing's instructions."""
    out = []
    for line in open(path):
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if not m:
            continue
        text = m.group(2).strip()
        body = text.split(None, 1)[1] if text.startswith("@") else text
        out.append((int(m.group(1), 16), body.split()[0], text))
    return out


def loops(ins):
    """(first, last) instruction indices of every backward branch's range."""
    at = {a: i for i, (a, _, _) in enumerate(ins)}
    found = []
    for i, (a, op, text) in enumerate(ins):
        if op.startswith("BRA"):
            m = re.search(r"0x([0-9a-f]+)", text.split("BRA", 1)[1])
            if m and int(m.group(1), 16) <= a and int(m.group(1), 16) in at:
                found.append((at[int(m.group(1), 16)], i))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sass", nargs="+")
    ap.add_argument("--min", type=int, default=20)
    ap.add_argument("--hgmma-only", action="store_true", help="only loops with an HGMMA")
    args = ap.parse_args()
    for path in args.sass:
        ins = parse(path)
        print(f"{path}: {len(ins)} instructions, "
              f"{sum(op.startswith('HGMMA') for _, op, _ in ins)} HGMMA")
        for s, e in loops(ins):
            body = ins[s:e + 1]
            hg = [t for _, op, t in body if op.startswith("HGMMA")]
            if len(body) <= args.min or (args.hgmma_only and not hg):
                continue
            ops = collections.Counter(op.split(".")[0] for _, op, _ in body)
            print(f"  loop {ins[s][0]:#x}-{ins[e][0]:#x}: {len(body)} instructions, "
                  f"HGMMA {len(hg)} (dummy {sum('gdesc[URZ]' in t for t in hg)}), "
                  f"WARPGROUP.ARRIVE {sum(op == 'WARPGROUP.ARRIVE' for _, op, _ in body)}, "
                  f"DEPBAR {sum(op.startswith('WARPGROUP.DEPBAR') for _, op, _ in body)}, "
                  f"BRA {ops['BRA']}; " + " ".join(f"{k} {v}" for k, v in ops.most_common(10)))


if __name__ == "__main__":
    main()
