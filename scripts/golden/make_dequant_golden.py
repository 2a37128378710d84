#!/usr/bin/env python3
"""tests/fixtures/dequant-golden.json: dequantised values of real tensors of the test model.

Oracle: gguf-py's pure-numpy dequantiser (gguf.quants.dequantize) on the raw blocks that
gguf.GGUFReader exposes. For each tensor: first 96 values of row 0, row 1 and the last row
(row = ggml ne[0] contiguous values, i.e. PyTorch W[out][:]), plus the raw bytes of the first
block of row 0 (hex) for a bit-level check. Values are exact float32 (JSON doubles that
round-trip to the same float32).
"""
import sys

import numpy as np
from gguf import GGUFReader, GGML_QUANT_SIZES
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
N = 96


def main():
    path = _common.model_path()
    r = GGUFReader(path)
    by_name = {t.name: t for t in r.tensors}
    out = []
    for name in TENSORS:
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
    fixture = {
        "source": ("gguf.quants.dequantize (pure numpy, gguf-py) applied to the raw tensor blocks read by "
                   "gguf.GGUFReader; scripts/golden/make_dequant_golden.py"),
        "model": _common.model_info(path),
        "versions": _common.versions("gguf", "numpy"),
        "schema": {"tensors[].ne": "ggml dims, ne[0] contiguous (row length)",
                   "tensors[].rows": "product of ne[1:] (1 for 1-D tensors)",
                   "tensors[].row_values[].values": "first 96 dequantised float32 values of that row (exact)",
                   "tensors[].row_values[].row_sum_f64": "float64 sum of the whole dequantised row",
                   "tensors[].first_block_row0_hex": "raw bytes of the first block of row 0"},
        "notes": ["Q4_1 in gguf-py is d*q+m evaluated in float32 without FMA; a C version using FMA "
                  "may differ by 1 ulp. Q8_0 is d*q (exact product of f16 and int8 in float32); F32 is a copy."],
        "tensors": out,
    }
    _common.write_json("dequant-golden.json", fixture)


if __name__ == "__main__":
    main()
