#!/usr/bin/env python3
"""Writes the safetensors fuzz seed corpus (tests/fuzz/corpus/safetensors/).

File names say what the reader must do with them: valid_* parse, invalid_* are rejected
(tests/io/safetensors_malformed_test.cc checks that). Deterministic: rerunning rewrites the
same bytes. Everything stays far below the fuzzer's -max_len=4096.
"""
import json
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "U32": 32, "I32": 32, "U64": 64,
        "I64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "F8_E4M3": 8, "F8_E5M2": 8,
        "F8_E8M0": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4}


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * BITS[dtype] // 8


def raw(header: bytes, data: bytes = b"", n=None) -> bytes:
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def st(tensors, metadata=None, pad=True, sep=(",", ":")):
    """A valid file: tensors = [(name, dtype, shape)], laid out in order, data 0,1,2,..."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        size = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header, separators=sep, ensure_ascii=False).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return raw(h, bytes(i * 37 % 256 for i in range(off)))


def hdr(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    seeds = {
        "valid_empty": st([]),
        "valid_empty_unpadded": raw(b"{}"),
        "valid_scalar_f32": st([("x", "F32", [])]),
        "valid_all_dtypes": st([(f"t.{d}", d, [2, 4]) for d in BITS]),
        "valid_zero_size": st([("a", "U8", [0]), ("b", "BF16", [3, 0]), ("c", "I32", [2])]),
        "valid_metadata": st([("w", "BF16", [2, 2])], {"format": "pt", "note": "ünï"}),
        "valid_mx_layout": st([("l.weight_packed", "U8", [4, 16]), ("l.weight_scale", "F8_E8M0", [4, 1]),
                               ("l.fp4", "F4", [4, 8]), ("l.fp6", "F6_E2M3", [4, 4])]),
        "valid_unaligned_spaced": st([("b", "U16", [3]), ("a", "I8", [1])], pad=False, sep=(", ", ": ")),
        "invalid_short": b"\x02\x00\x00",
        "invalid_header_too_long": raw(b"{}", n=100_000_001),
        "invalid_header_beyond_file": raw(b"{}", n=64),
        "invalid_not_utf8": raw(b'{"\xff":{}}'),
        "invalid_not_brace": raw(b' {}'),
        "invalid_not_json": raw(b'{"a":}'),
        "invalid_duplicate_key": raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                     b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x01"),
        "invalid_missing_dtype": raw(hdr({"a": {"shape": [1], "data_offsets": [0, 1]}}), b"\x01"),
        "invalid_unknown_dtype": raw(hdr({"a": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}}), b"\x01"),
        "invalid_negative_dim": raw(hdr({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}})),
        "invalid_offsets_reversed": raw(hdr({"a": {"dtype": "U8", "shape": [0], "data_offsets": [2, 0]}}), b"\0\0"),
        "invalid_gap": raw(hdr({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}), bytes(6)),
        "invalid_overlap": raw(hdr({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}), bytes(12)),
        "invalid_length_mismatch": raw(hdr({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}), bytes(8)),
        "invalid_fp4_odd": raw(hdr({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}), bytes(2)),
        "invalid_overflow": raw(hdr({"a": {"dtype": "F32", "shape": [2**62, 4], "data_offsets": [0, 0]}})),
        "invalid_trailing": st([("a", "U8", [2])]) + b"\x00",
        "invalid_metadata_value": raw(hdr({"__metadata__": {"k": 1}})),
    }
    for name, data in seeds.items():
        assert len(data) <= 4096, name
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
