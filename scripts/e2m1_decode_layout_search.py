#!/usr/bin/env python3
"""Is there an E2M1 lane layout whose decode costs 2 instructions per BF16x2 register?

The cuda-hopper decode (gemm_kernel.cuh) turns 32-bit words of E2M1 codes into BF16x2 wgmma A
registers: each 16-bit half needs its code's sign at bit 15 and its 3 magnitude bits at 8..6
(then one HMUL2 by the scale multiplier fixes the exponent bias and applies the E8M0 scale).
The repack may store the codes' bits anywhere in a lane's words. If every output register could
be made by ONE shift (a rotation of one word, or a funnel shift of two) followed by ONE AND
with 0x81C081C0, the decode would cost 2 + 1 instructions per register instead of ~4 + 1 now.

This is an exact-cover search (Algorithm X) over the 32 x W bits of W words: each candidate
placement covers the 8 source bits one output register takes through one rotation or funnel
shift. It prints whether a cover exists (2026-12-03: no, for 1, 2 and 4 words), and with
--mixed the cheapest per-word mix of one-shift outputs and two-shift outputs (11 instructions
per 4 registers against ~16 today, ~15% of the M = 1 step).
Usage: python3 scripts/e2m1_decode_layout_search.py [--words 1|2|4] [--mixed]
"""
import argparse
import itertools

TARGET = [6, 7, 8, 15, 22, 23, 24, 31]  # one BF16x2 register: mag bits 6..8 + sign 15, twice


def exact_cover(words):
    cands = {}
    for a in range(words):
        for r in range(32):  # rotate word a: target bit t <- bit (t + r) % 32
            cands.setdefault(frozenset(a * 32 + (t + r) % 32 for t in TARGET), ("rot", a, r))
        for b in range(words):
            if a == b:
                continue
            for n in range(1, 32):  # funnel shift (b:a) >> n
                s = frozenset(a * 32 + t + n if t + n < 32 else b * 32 + t + n - 32 for t in TARGET)
                cands.setdefault(s, ("funnel", a, b, n))
    sets = list(cands.items())
    bits = 32 * words
    by_bit = {i: [k for k, (s, _) in enumerate(sets) if i in s] for i in range(bits)}
    chosen = []

    def search(covered):
        if len(covered) == bits:
            return True
        best = None
        for i in range(bits):
            if i in covered:
                continue
            opts = [k for k in by_bit[i] if not (sets[k][0] & covered)]
            if not opts:
                return False
            if best is None or len(opts) < len(best):
                best = opts
        for k in best:
            chosen.append(sets[k][1])
            if search(covered | sets[k][0]):
                return True
            chosen.pop()
        return False

    return chosen if search(frozenset()) else None


def cheapest_mix():
    """Per 16-bit half (both halves alike): 4 codes, magnitude at m..m+2, sign at s. Cost per
    register: 1 AND, +1 shift unless m == 6; a sign 9 bits above m comes along, else +1 shift
    (unless s == 15) and +1 merge."""
    best = None
    for ms in itertools.permutations(range(16), 4):
        used = set()
        ok = True
        for m in ms:
            b = {m % 16, (m + 1) % 16, (m + 2) % 16}
            if b & used:
                ok = False
                break
            used |= b
        if not ok:
            continue
        rest = sorted(set(range(16)) - used)
        for ss in itertools.permutations(rest):
            cost = 0
            for m, s in zip(ms, ss):
                cost += (m != 6) + 1
                if (s - m) % 16 != 9:
                    cost += (s != 15) + 1
            if best is None or cost < best[0]:
                best = (cost, ms, ss)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=4)
    ap.add_argument("--mixed", action="store_true")
    args = ap.parse_args()
    cover = exact_cover(args.words)
    print(f"{args.words} word(s): " + ("one-shift cover: " + str(cover) if cover else
                                       "no layout gives every register in one shift + one AND"))
    if args.mixed:
        cost, ms, ss = cheapest_mix()
        print(f"cheapest mix: {cost} instructions (shifts + masks + merges) per 4 registers; "
              f"magnitudes at bits {ms}, signs at {ss} of each half")


if __name__ == "__main__":
    main()
