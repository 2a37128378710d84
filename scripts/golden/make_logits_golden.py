#!/usr/bin/env python3
"""tests/fixtures/logits-golden.json (+ logits-golden-<k>.f32): reference logits of the test model.

Oracle: an independent numpy forward pass of the Llama architecture written here, with weights
read by gguf.GGUFReader and dequantised by gguf.quants.dequantize (Q4_1, Q8_0, F32 -> float32).
The golden run computes everything in float64 (float32 weights cast exactly to float64;
activations, matmul accumulation, RMSNorm, RoPE, softmax all float64). A float32 run (same
weights, float32 activations/accumulation, numpy/OpenBLAS sgemm) and a float32 run with
ggml-style float RoPE angles are made only to measure how far an honest fp32 engine may drift;
their differences are recorded in "precision".
Prompt ids come from the tokenizer oracle of make_tokenizer_golden.py (HF tokenizers).
"""
import hashlib
import os
import sys
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

import _common
from make_tokenizer_golden import build_hf, load_vocab

CHAT_SYS = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat(user):
    return CHAT_SYS + "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n"


LONG_PROMPT = (
    "The history of computing is a story of abstraction layered upon abstraction. In 1837, Charles "
    "Babbage described the Analytical Engine, a mechanical device that could, in principle, execute any "
    "calculation expressed as a sequence of operations on punched cards. Ada Lovelace's notes on the "
    "engine (published in 1843) included what many regard as the first algorithm intended for a machine: "
    "a procedure for computing Bernoulli numbers. Nearly a century later, Alan Turing formalised the idea "
    "of a universal machine, and by the 1940s engineers were building electronic computers such as ENIAC, "
    "which weighed about 27 tonnes and consumed roughly 150 kW of power. The transistor (1947) and the "
    "integrated circuit (1958) shrank those machines by orders of magnitude. Gordon Moore observed in 1965 "
    "that the number of components per chip doubled approximately every year, later revised to every two "
    "years. Software evolved alongside: FORTRAN (1957), COBOL (1959), C (1972), and eventually"
)

PROMPTS = [
    ("capital", "The capital of France is"),
    ("story", "Once upon a time, there was a little robot who loved to"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"),
    ("chat", chat("What is the capital of France?")),
    ("arith", "Question: what is 17 + 25?\nAnswer: 17 + 25 ="),
    ("long", LONG_PROMPT),
]
GREEDY = [("capital", "The capital of France is"), ("chat", chat("What is the capital of France?"))]
N_GREEDY = 16
TOPK = 10
EOS_IDS = (0, 2)


class Llama:
    def __init__(self, reader):
        f = {k: v for k, v in reader.fields.items()}
        g = lambda k: f[k].contents()
        self.n_layer = int(g("llama.block_count"))
        self.n_embd = int(g("llama.embedding_length"))
        self.n_head = int(g("llama.attention.head_count"))
        self.n_kv = int(g("llama.attention.head_count_kv"))
        self.hd = self.n_embd // self.n_head
        self.eps = float(np.float32(g("llama.attention.layer_norm_rms_epsilon")))
        self.base = float(np.float32(g("llama.rope.freq_base")))
        self.n_rot = int(g("llama.rope.dimension_count"))
        assert self.n_rot == self.hd
        self.hparams = {"n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head,
                        "n_head_kv": self.n_kv, "head_dim": self.hd, "rms_eps": self.eps,
                        "rope_freq_base": self.base, "n_ff": int(g("llama.feed_forward_length"))}
        names = {t.name: t for t in reader.tensors}
        assert "output.weight" not in names, "expected tied embeddings"
        self.w32 = {}
        for name, t in names.items():
            w = dequantize(t.data, t.tensor_type)
            assert w.dtype == np.float32
            self.w32[name] = np.ascontiguousarray(w)
        self.types = {n: t.tensor_type.name for n, t in names.items()}
        self._cache_dt = {}

    def weights(self, dt):
        if dt not in self._cache_dt:
            self._cache_dt = {dt: {k: v.astype(dt) for k, v in self.w32.items()}}
        return self._cache_dt[dt]

    def rope_tables(self, positions, dt, mode):
        half = self.hd // 2
        if mode == "f64":
            inv = self.base ** (-2.0 * np.arange(half, dtype=np.float64) / self.hd)
            ang = positions.astype(np.float64)[:, None] * inv[None, :]
            return np.cos(ang).astype(dt), np.sin(ang).astype(dt)
        # ggml-style: theta_scale = powf(base, -2/n_dims); theta = pos; theta *= theta_scale (float32)
        ts = np.float32(np.power(np.float32(self.base), np.float32(-2.0) / np.float32(self.hd)))
        cos = np.empty((len(positions), half), np.float32)
        sin = np.empty((len(positions), half), np.float32)
        for r, p in enumerate(positions):
            th = np.float32(p)
            for i in range(half):
                cos[r, i] = np.cos(th)
                sin[r, i] = np.sin(th)
                th = np.float32(th * ts)
        return cos.astype(dt), sin.astype(dt)

    @staticmethod
    def rope_neox(x, cos, sin):
        # WRONG for GGUF llama weights (half-split pairs (x[i], x[i+hd/2])); used only as a negative control
        h = x.shape[-1] // 2
        c = cos[:, None, :]
        s = sin[:, None, :]
        return np.concatenate([x[..., :h] * c - x[..., h:] * s, x[..., :h] * s + x[..., h:] * c], -1)

    @staticmethod
    def rope(x, cos, sin):
        # x: (T, H, hd); "normal" llama RoPE on adjacent pairs (x[2i], x[2i+1])
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        c = cos[:, None, :]
        s = sin[:, None, :]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def rmsnorm(self, x, w):
        dt = x.dtype
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + dt.type(self.eps))) * w

    def new_cache(self):
        return {"pos": 0, "k": [None] * self.n_layer, "v": [None] * self.n_layer}

    def forward(self, ids, cache, dt=np.float64, rope_mode="f64", neox=False):
        """Process ids after whatever is in cache; returns logits (T, n_vocab) in dt."""
        W = self.weights(dt)
        T = len(ids)
        p0 = cache["pos"]
        pos = np.arange(p0, p0 + T)
        cos, sin = self.rope_tables(pos, dt, rope_mode)
        E = W["token_embd.weight"]
        x = E[np.asarray(ids)].copy()
        H, KV, hd = self.n_head, self.n_kv, self.hd
        grp = H // KV
        scale = dt(1.0 / np.sqrt(hd))
        for l in range(self.n_layer):
            p = "blk.%d." % l
            h = self.rmsnorm(x, W[p + "attn_norm.weight"])
            q = (h @ W[p + "attn_q.weight"].T).reshape(T, H, hd)
            k = (h @ W[p + "attn_k.weight"].T).reshape(T, KV, hd)
            v = (h @ W[p + "attn_v.weight"].T).reshape(T, KV, hd)
            rope = self.rope_neox if neox else self.rope
            q = rope(q, cos, sin)
            k = rope(k, cos, sin)
            K = k if cache["k"][l] is None else np.concatenate([cache["k"][l], k], 0)
            V = v if cache["v"][l] is None else np.concatenate([cache["v"][l], v], 0)
            cache["k"][l], cache["v"][l] = K, V
            S = K.shape[0]
            mask = np.arange(S)[None, :] > pos[:, None]          # (T, S) True = masked
            att = np.empty((T, H, hd), dt)
            for hh in range(H):
                kh = hh // grp                                    # GQA: query head hh -> kv head hh // grp
                sc = (q[:, hh, :] @ K[:, kh, :].T) * scale        # (T, S)
                sc = np.where(mask, -np.inf, sc)
                sc = sc - sc.max(axis=1, keepdims=True)
                e = np.exp(sc)
                a = e / e.sum(axis=1, keepdims=True)
                att[:, hh, :] = a @ V[:, kh, :]
            x = x + att.reshape(T, H * hd) @ W[p + "attn_output.weight"].T
            h = self.rmsnorm(x, W[p + "ffn_norm.weight"])
            g = h @ W[p + "ffn_gate.weight"].T
            u = h @ W[p + "ffn_up.weight"].T
            x = x + ((g / (dt(1) + np.exp(-g))) * u) @ W[p + "ffn_down.weight"].T
        cache["pos"] = p0 + T
        x = self.rmsnorm(x, W["output_norm.weight"])
        return x @ E.T                                            # tied embeddings


def lse(row):
    r = row.astype(np.float64)
    m = r.max()
    return float(m + np.log(np.exp(r - m).sum()))


def mean_nll(L, ids):
    """Mean next-token negative log-likelihood (nats) of ids[1:] under rows L[:-1]."""
    L = L[:-1].astype(np.float64)
    t = np.asarray(ids[1:])
    m = L.max(axis=1)
    lse_ = m + np.log(np.exp(L - m[:, None]).sum(axis=1))
    return float(np.mean(lse_ - L[np.arange(len(t)), t]))


def f32(v):
    return float(np.float32(v))


def topk(row, k=TOPK):
    idx = np.argsort(-row, kind="stable")[:k]
    return [[int(i), f32(row[i])] for i in idx]


def greedy(model, ids, n, dt=np.float64):
    cache = model.new_cache()
    logits = model.forward(ids, cache, dt)[-1]
    out, margins = [], []
    for _ in range(n):
        srt = np.sort(logits)[::-1]
        nxt = int(np.argmax(logits))
        out.append(nxt)
        margins.append(float(srt[0] - srt[1]))
        logits = model.forward([nxt], cache, dt)[-1]
    return out, margins


def main():
    t0 = time.time()
    path = _common.model_path()
    reader = GGUFReader(path)
    tokens, ttype, merges = load_vocab(path)
    tok = build_hf(tokens, ttype, merges)
    model = Llama(reader)
    print("loaded in %.1fs" % (time.time() - t0), file=sys.stderr)

    prompts_out, prec = [], []
    worst = {"fp32": {"max_abs": 0.0, "max_rel_to_row_absmax": 0.0, "max_lse": 0.0, "argmax_mismatch": 0},
             "fp32_ggml_rope": {"max_abs": 0.0, "max_rel_to_row_absmax": 0.0, "max_lse": 0.0,
                                "argmax_mismatch": 0}}
    total_positions = 0
    for k, (label, text) in enumerate(PROMPTS):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
        t1 = time.time()
        L64 = model.forward(ids, model.new_cache(), np.float64)
        L32 = model.forward(ids, model.new_cache(), np.float32)
        L32g = model.forward(ids, model.new_cache(), np.float32, rope_mode="ggml_f32")
        # consistency of the KV-cache path: prefill all-but-last then one step
        c = model.new_cache()
        model.forward(ids[:-1], c, np.float64)
        last_inc = model.forward(ids[-1:], c, np.float64)[-1]
        inc_diff = float(np.abs(last_inc - L64[-1]).max())
        assert inc_diff < 1e-9, inc_diff
        positions = []
        for i in range(len(ids)):
            row = L64[i]
            positions.append({"pos": i, "token": int(ids[i]), "argmax": int(np.argmax(row)),
                              "top10": topk(row), "lse": lse(row)})
        stats = {"label": label, "n_tokens": len(ids)}
        for name, L in (("fp32", L32), ("fp32_ggml_rope", L32g)):
            d = np.abs(L.astype(np.float64) - L64)
            rel = (d.max(axis=1) / np.abs(L64).max(axis=1)).max()
            lses = max(abs(lse(L[i]) - positions[i]["lse"]) for i in range(len(ids)))
            mism = int((L.argmax(axis=1) != L64.argmax(axis=1)).sum())
            s = {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
                 "max_rel_to_row_absmax": float(rel), "max_lse": float(lses), "argmax_mismatch": mism}
            stats[name] = s
            w = worst[name]
            w["max_abs"] = max(w["max_abs"], s["max_abs"])
            w["max_rel_to_row_absmax"] = max(w["max_rel_to_row_absmax"], s["max_rel_to_row_absmax"])
            w["max_lse"] = max(w["max_lse"], s["max_lse"])
            w["argmax_mismatch"] += mism
        prec.append(stats)
        total_positions += len(ids)
        fname = "logits-golden-%d.f32" % k
        blob = L64[-1].astype("<f4").tobytes()
        with open(os.path.join(_common.FIXTURES, fname), "wb") as fh:
            fh.write(blob)
        nll = mean_nll(L64, ids)
        nll_neox = mean_nll(model.forward(ids, model.new_cache(), np.float64, neox=True), ids)
        stats["mean_nll_wrong_neox_rope"] = nll_neox
        prompts_out.append({"index": k, "label": label, "text": text, "ids": [int(i) for i in ids],
                            "n_tokens": len(ids), "mean_nll": nll,
                            "last_logits_file": fname, "last_logits_sha256": hashlib.sha256(blob).hexdigest(),
                            "positions": positions})
        print("prompt %d %-8s T=%3d  %.1fs  fp32 maxabs %.2e  ggml-rope maxabs %.2e  argmax(last)=%d %r"
              % (k, label, len(ids), time.time() - t1, stats["fp32"]["max_abs"],
                 stats["fp32_ggml_rope"]["max_abs"], positions[-1]["argmax"],
                 tok.decode([positions[-1]["argmax"]])), file=sys.stderr)

    greedy_out = []
    for label, text in GREEDY:
        ids = tok.encode(text, add_special_tokens=False).ids
        g64, marg = greedy(model, ids, N_GREEDY, np.float64)
        g32, _ = greedy(model, ids, N_GREEDY, np.float32)
        until = []
        for t in g64:
            if t in EOS_IDS:
                break
            until.append(t)
        greedy_out.append({"label": label, "prompt_text": text, "prompt_ids": [int(i) for i in ids],
                           "n_new": N_GREEDY, "ids": g64,
                           "text": tok.decode(g64, skip_special_tokens=False),
                           "ids_until_eos": until,
                           "text_until_eos": tok.decode(until, skip_special_tokens=False),
                           "top1_top2_margin": margins_round(marg),
                           "fp32_run_identical": g32 == g64})
        print("greedy %s: %r (fp32 identical: %s) min margin %.3f"
              % (label, tok.decode(g64, skip_special_tokens=False), g32 == g64, min(marg)), file=sys.stderr)
    assert "Paris" in greedy_out[0]["text"], "forward pass failed the Paris check"
    # The Paris check alone does not catch a wrong (NEOX) RoPE pairing; perplexity on the long prompt does.
    lp = [p for p in prompts_out if p["label"] == "long"][0]
    lneox = [s for s in prec if s["label"] == "long"][0]["mean_nll_wrong_neox_rope"]
    print("long prompt mean NLL: normal %.3f, NEOX control %.3f" % (lp["mean_nll"], lneox), file=sys.stderr)
    assert lp["mean_nll"] < lneox - 1.0, "adjacent-pair RoPE is not clearly better than the NEOX control"

    fixture = {
        "source": ("independent numpy Llama forward (scripts/golden/make_logits_golden.py): weights from "
                   "gguf.GGUFReader + gguf.quants.dequantize (float32), computed entirely in float64; "
                   "RoPE normal/adjacent pairs (x[2i],x[2i+1]) with theta_i = pos*base^(-2i/hd); GQA "
                   "(query head h uses kv head h // (n_head/n_head_kv)); SwiGLU; tied embeddings; "
                   "prompt ids from HF tokenizers (see tokenizer-golden.json), no BOS"),
        "model": _common.model_info(path),
        "versions": _common.versions("gguf", "numpy", "tokenizers"),
        "hparams": model.hparams,
        "precision_of_golden": "float64 activations and accumulation over float32-dequantised weights",
        "schema": {
            "prompts[].ids": "input token ids (no BOS); prompts[].text decodes to them",
            "prompts[].positions[]": "one per input position i: token = ids[i]; logits predict position i+1",
            "positions[].argmax": "argmax of the logit row (float64 run)",
            "positions[].top10": "[[id, logit], ...] 10 largest logits, descending (logits rounded to float32)",
            "positions[].lse": "log(sum(exp(logits))) of the full row, float64",
            "prompts[].mean_nll": "mean next-token NLL (nats) of ids[1:] given the prefix, float64",
            "prompts[].last_logits_file": "tests/fixtures/<file>: n_vocab little-endian float32 logits of the "
                                          "last position (float64 run rounded to float32)",
            "greedy[]": "16 greedy tokens after prompt_ids, no stopping (ids); ids_until_eos stops before the "
                        "first id in (0, 2); top1_top2_margin per step",
            "precision": "differences of this forward run in float32 (and float32 with ggml-style float32 "
                         "RoPE angles) vs the float64 golden, per prompt and worst case",
        },
        "precision": {"per_prompt": prec, "worst_over_all_positions": worst,
                      "positions_compared": total_positions},
        "prompts": prompts_out,
        "greedy": greedy_out,
    }
    _common.write_json("logits-golden.json", fixture)
    print("done in %.1fs" % (time.time() - t0), file=sys.stderr)


def margins_round(m):
    return [float("%.6g" % x) for x in m]


if __name__ == "__main__":
    main()
