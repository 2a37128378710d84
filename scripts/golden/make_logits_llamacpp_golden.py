#!/usr/bin/env python3
"""tests/fixtures/logits-golden-llamacpp.json: llama.cpp's logits on the SmolLM2 golden prompts,
summarised per position, as the yardstick of an engine that quantises activations to 8 bits.

The prompts (ids) are those of tests/fixtures/logits-golden.json (make_logits_golden.py, the
float64 numpy forward). llama.cpp (llama-cpp-python 0.3.36 sdist, scripts/build-llamacpp.sh)
runs them through llamacpp_oracle.c exactly as make_qwen_logits_golden.py does (CPU, 2 threads,
F32 KV cache, flash attention off, one batch with logits for every position): ggml quantises the
activations of its quantised matmuls to 8 bits (Q8_1 for the Q4_1 blocks, Q8_0 for the Q8_0 head).
Per prompt and position the fixture keeps llama.cpp's log-sum-exp, argmax and the logits of the
float64 top-10 ids, and a summary against the float64 golden: |lse diff| (mean, worst),
worst |top-10 logit diff|, and argmax mismatches where the float64 top1-top2 margin exceeds 0.5.
tests/model/test_engine_golden.c bounds moa's int8-activation decode path by these numbers.

Usage: scripts/golden/run.sh logits_llamacpp   (model from $MOA_MODEL or scripts/fetch-model.sh)
"""
import json
import os
import sys
import tempfile

import numpy as np

import _common
import make_qwen_logits_golden as mq

MARGIN = 0.5


def main():
    path = _common.model_path()
    golden = json.load(open(os.path.join(_common.FIXTURES, "logits-golden.json"), encoding="utf-8"))
    sha = _common.sha256(path)
    if golden["model"]["sha256"] != sha:
        sys.exit("logits-golden.json is for another model file")
    _, exe, info = mq.llamacpp_build()
    prompts = golden["prompts"]
    out = {"source": "scripts/golden/make_logits_llamacpp_golden.py", "model": _common.model_info(path),
           "versions": _common.versions("numpy"), "llamacpp": info,
           "schema": "prompts[k]: label, lse[i], argmax[i], top10_logits[i] (llama.cpp's logits of the float64 "
                     "top-10 ids of logits-golden.json, same order); summary: against the float64 golden",
           "margin": MARGIN, "prompts": []}
    n_pos = n_marg = am_bad = 0
    lse_d, top_d = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for k, p in enumerate(prompts):
            with open(os.path.join(tmp, "p%d.ids" % k), "w") as f:
                f.write("\n".join(map(str, p["ids"])) + "\n")
            jobs.append("logits %s %s" % (os.path.join(tmp, "p%d.ids" % k), os.path.join(tmp, "p%d.f32" % k)))
        with open(os.path.join(tmp, "jobs"), "w") as f:
            f.write("\n".join(jobs) + "\n")
        import subprocess
        with open(os.path.join(tmp, "log"), "w") as logf:
            r = subprocess.run(["nice", exe, path, os.path.join(tmp, "jobs"), str(mq.N_CTX), str(mq.N_THREADS)],
                               stderr=logf)
        if r.returncode:
            sys.exit("llama.cpp oracle failed")
        for k, p in enumerate(prompts):
            L = np.fromfile(os.path.join(tmp, "p%d.f32" % k), dtype=np.float32)
            L = L.reshape(len(p["ids"]), -1).astype(np.float64)
            rec = {"label": p["label"], "lse": [], "argmax": [], "top10_logits": []}
            for i, pos in enumerate(p["positions"]):
                row = L[i]
                mx = row.max()
                lse = float(mx + np.log(np.exp(row - mx).sum()))
                rec["lse"].append(lse)
                rec["argmax"].append(int(row.argmax()))
                rec["top10_logits"].append([float(np.float32(row[t])) for t, _ in pos["top10"]])
                lse_d.append(abs(lse - pos["lse"]))
                top_d.append(max(abs(row[t] - v) for t, v in pos["top10"]))
                n_pos += 1
                if pos["top10"][0][1] - pos["top10"][1][1] > MARGIN:
                    n_marg += 1
                    am_bad += int(row.argmax() != pos["argmax"])
            out["prompts"].append(rec)
    out["summary"] = {"positions": n_pos, "mean_abs_lse_diff": float(np.mean(lse_d)),
                      "max_abs_lse_diff": float(np.max(lse_d)), "max_abs_top10_diff": float(np.max(top_d)),
                      "argmax_positions_margin_gt_0_5": n_marg, "argmax_mismatches_margin_gt_0_5": am_bad}
    print(json.dumps(out["summary"]), file=sys.stderr)
    _common.write_json("logits-golden-llamacpp.json", out)


if __name__ == "__main__":
    main()
