#!/usr/bin/env python3
"""tests/fixtures/influence-golden.json: reference attention influence of one real sample.

Oracle: torch autograd (Debian's python3-torch, CPU) over a hand-written Llama forward of the
test model, written from the architecture description (not from moa): weights read by
gguf.GGUFReader and dequantised by gguf.quants.dequantize (float32); RMSNorm with eps from the
metadata; RoPE on adjacent pairs (x[2i], x[2i+1]) with theta_i = pos * base^(-2i/hd); GQA with
query head h -> KV head h // 3; SwiGLU; tied output head. The attention probabilities A of every
layer ([heads, T, T], softmax with the causal mask) are kept with retain_grad(); the loss is the
mean cross-entropy over the response tokens tokens[rb..re) (each predicted from the previous
position); backward gives G = dL/dA. Then per layer and head, on the causal triangle (j <= i):
    E_ij = -A_ij (G_ij - sum_n G_in A_in) / (1 - A_ij + eps)   for i >= 1,   E_0j = -A_0j G_0j
with eps = 1e-6, and the histograms: for j >= sink, bin b = floor((i - j) / block):
abs[l][h][b] += |E_ij|, sgn[l][h][b] += E_ij; for j < sink: sink_abs/sink_sgn[l][h].
The golden values come from a float64 run (float32 weights cast exactly); a float32 run of the same
code is compared with it and the differences are recorded under "precision".

Runs with /usr/bin/python3 (Debian torch 1.13 + numpy 1.24) and gguf/tokenizers installed with
--no-deps into a target dir outside the repo (see README.md); PYTHONPATH must point there.
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize

import _common
from make_tokenizer_golden import build_hf, load_vocab

torch.set_num_threads(int(os.environ.get("MOA_TORCH_THREADS", "2")))

SINK, BLOCK, EPS = 64, 64, 1e-6
N_RESP_MAX = 32
CHAT_SYS = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

PASSAGE = (
    "The lighthouse on Grey Point was built in 1871 by a team of eleven masons who had travelled from "
    "Aberdeen. Its lamp was first lit on the night of 14 October, and for the next sixty years it was "
    "kept by three generations of the same family. The first keeper, Thomas Reid, kept a careful log of "
    "every ship that passed, every storm, and every repair. In the winter of 1893 a gale tore the copper "
    "roof from the lantern room, and Reid's son, William, climbed the tower in the dark to keep the lamp "
    "burning with a hand-held oil lantern until morning. The village later gave him a silver watch, which "
    "is now displayed in the small museum next to the harbour. The secret password for the museum's "
    "archive room is amber-falcon-42. In 1931 the lamp was electrified, and the last keeper, Margaret "
    "Reid, left the tower in 1936. Today the lighthouse is automatic, and its beam can be seen from "
    "twenty-two nautical miles away on a clear night. Visitors can climb the 143 steps to the gallery "
    "in the summer months, when the museum also opens its collection of ship models, charts and the "
    "original log books, which record more than four thousand passing vessels."
)
QUESTION = "What is the secret password for the museum's archive room? Answer briefly."


def chat(user):
    return CHAT_SYS + "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n"


class Llama:
    def __init__(self, reader):
        f = reader.fields
        g = lambda k: f[k].contents()
        self.n_layer = int(g("llama.block_count"))
        self.n_embd = int(g("llama.embedding_length"))
        self.n_head = int(g("llama.attention.head_count"))
        self.n_kv = int(g("llama.attention.head_count_kv"))
        self.hd = self.n_embd // self.n_head
        self.eps = float(np.float32(g("llama.attention.layer_norm_rms_epsilon")))
        self.base = float(np.float32(g("llama.rope.freq_base")))
        assert int(g("llama.rope.dimension_count")) == self.hd
        names = {t.name: t for t in reader.tensors}
        assert "output.weight" not in names, "expected tied embeddings"
        self.w32 = {}
        for name, t in names.items():
            w = dequantize(t.data, t.tensor_type)
            assert w.dtype == np.float32
            self.w32[name] = torch.from_numpy(np.ascontiguousarray(w))
        self._w = {}

    def weights(self, dt):
        if dt not in self._w:
            self._w = {dt: {k: v.to(dt) for k, v in self.w32.items()}}
        return self._w[dt]

    def rmsnorm(self, x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, T, dt, neox=False):
        # x: (heads, T, hd); adjacent pairs (x[2i], x[2i+1]) rotated by pos * base^(-2i/hd)
        half = self.hd // 2
        inv = self.base ** (-2.0 * torch.arange(half, dtype=torch.float64) / self.hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).to(dt), torch.sin(ang).to(dt)
        if neox:
            a, b = x[..., :half], x[..., half:]
            return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, ids, dt, keep=None, neox=False):
        W = self.weights(dt)
        T = len(ids)
        H, KV, hd = self.n_head, self.n_kv, self.hd
        grp = H // KV
        E = W["token_embd.weight"]
        x = E[torch.tensor(ids, dtype=torch.long)]
        if keep is not None:
            x = x.clone().requires_grad_(True)                # a graph to differentiate A in
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        kvmap = torch.tensor([h // grp for h in range(H)])   # GQA: query head h -> kv head h // 3
        for l in range(self.n_layer):
            p = "blk.%d." % l
            h = self.rmsnorm(x, W[p + "attn_norm.weight"])
            q = (h @ W[p + "attn_q.weight"].T).view(T, H, hd).transpose(0, 1)
            k = (h @ W[p + "attn_k.weight"].T).view(T, KV, hd).transpose(0, 1)
            v = (h @ W[p + "attn_v.weight"].T).view(T, KV, hd).transpose(0, 1)
            q = self.rope(q, T, dt, neox)
            k = self.rope(k, T, dt, neox)[kvmap]
            v = v[kvmap]
            s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
            s = s.masked_fill(mask, float("-inf"))
            A = torch.softmax(s, -1)                          # (H, T, T)
            if keep is not None:
                A.retain_grad()
                keep.append(A)
            o = (A @ v).transpose(0, 1).reshape(T, H * hd)
            x = x + o @ W[p + "attn_output.weight"].T
            h = self.rmsnorm(x, W[p + "ffn_norm.weight"])
            g = h @ W[p + "ffn_gate.weight"].T
            u = h @ W[p + "ffn_up.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ W[p + "ffn_down.weight"].T
        x = self.rmsnorm(x, W["output_norm.weight"])
        return x @ E.T


def response_loss(logits, ids, rb, re):
    tgt = torch.tensor(ids[rb:re], dtype=torch.long)
    return torch.nn.functional.cross_entropy(logits[rb - 1:re - 1], tgt, reduction="mean")


def influence(model, ids, rb, re, dt):
    keep = []
    logits = model.forward(ids, dt, keep)
    loss = response_loss(logits, ids, rb, re)
    loss.backward()
    T = len(ids)
    nb = (T + BLOCK - 1) // BLOCK
    L, H = model.n_layer, model.n_head
    ab = np.zeros((L, H, nb))
    sg = np.zeros((L, H, nb))
    sk_a = np.zeros((L, H))
    sk_s = np.zeros((L, H))
    ii, jj = np.tril_indices(T)
    dist = ii - jj
    is_sink = jj < SINK
    bins = dist // BLOCK
    for l, A_t in enumerate(keep):
        A = A_t.detach().double().numpy()
        G = A_t.grad.double().numpy()
        D = (G * A).sum(-1, keepdims=True)                   # D_i = sum_n G_in A_in
        E = -A * (G - D) / (1.0 - A + EPS)
        E[:, 0, :] = -A[:, 0, :] * G[:, 0, :]
        Ec = E[:, ii, jj]                                     # causal entries only
        for h in range(H):
            e = Ec[h]
            sk_a[l, h] = np.abs(e[is_sink]).sum()
            sk_s[l, h] = e[is_sink].sum()
            ab[l, h] = np.bincount(bins[~is_sink], np.abs(e[~is_sink]), minlength=nb)[:nb]
            sg[l, h] = np.bincount(bins[~is_sink], e[~is_sink], minlength=nb)[:nb]
    return float(loss.item()), ab, sg, sk_a, sk_s


def greedy(model, ids, n):
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(torch.argmax(model.forward(ids + out, torch.float32)[-1]))
            out.append(nxt)
            if nxt in (0, 2):
                break
    return out


def compare(ref, got):
    """The C test's metrics: per (layer, head) sum over bins + sink of |got - ref| (abs and signed
    histograms separately; the worse of the two) over the head's total reference |E| (bins + sink),
    and the same summed over all heads."""
    ab_r, sg_r, sk_r, sks_r = ref
    ab_g, sg_g, sk_g, sks_g = got
    tot = ab_r.sum(-1) + sk_r
    d_abs = np.abs(ab_g - ab_r).sum(-1) + np.abs(sk_g - sk_r)
    d_sgn = np.abs(sg_g - sg_r).sum(-1) + np.abs(sks_g - sks_r)
    per = np.maximum(d_abs, d_sgn) / tot
    agg_abs = d_abs.sum() / tot.sum()
    agg_sgn = d_sgn.sum() / tot.sum()
    w = np.unravel_index(np.argmax(per), per.shape)
    return {"per_head_worst": float(per.max()), "per_head_worst_at": [int(w[0]), int(w[1])],
            "per_head_median": float(np.median(per)), "aggregate_abs": float(agg_abs),
            "aggregate_sgn": float(agg_sgn)}


def main():
    t0 = time.time()
    path = _common.model_path()
    reader = GGUFReader(path)
    tokens, ttype, merges = load_vocab(path)
    tok = build_hf(tokens, ttype, merges)
    model = Llama(reader)
    print("loaded in %.1fs" % (time.time() - t0), file=sys.stderr)

    prompt = chat(PASSAGE + "\n\n" + QUESTION)
    pids = tok.encode(prompt, add_special_tokens=False).ids
    assert tok.decode(pids, skip_special_tokens=False) == prompt
    # the greedy answer is cached outside the repo (keyed by the prompt ids) to save minutes on reruns
    cache = os.path.join(os.environ.get("MOA_CACHE_DIR", os.path.expanduser("~/.cache/moa")),
                         "influence-golden-greedy.json")
    try:
        with open(cache) as fh:
            c = json.load(fh)
        resp = c["resp"] if c["prompt_ids"] == pids else None
    except (OSError, ValueError, KeyError):
        resp = None
    if resp is None:
        resp = greedy(model, pids, N_RESP_MAX)
        with open(cache, "w") as fh:
            json.dump({"prompt_ids": pids, "resp": resp}, fh)
    ids = pids + resp
    rb, re = len(pids), len(ids)
    print("T=%d prompt %d response %d: %r (%.1fs)" % (len(ids), rb, re - rb,
          tok.decode(resp, skip_special_tokens=False), time.time() - t0), file=sys.stderr)

    # sanity: adjacent-pair RoPE must beat the NEOX control clearly on the prompt
    with torch.no_grad():
        def nll(neox):
            lg = model.forward(pids, torch.float64, neox=neox)
            return float(response_loss(lg, pids, 1, len(pids)))
        nll_ok, nll_neox = nll(False), nll(True)
    print("prompt mean NLL: normal %.3f, NEOX control %.3f" % (nll_ok, nll_neox), file=sys.stderr)
    assert nll_ok < nll_neox - 0.5

    t1 = time.time()
    loss64, ab, sg, ska, sks = influence(model, ids, rb, re, torch.float64)
    t2 = time.time()
    loss32, ab32, sg32, ska32, sks32 = influence(model, ids, rb, re, torch.float32)
    t3 = time.time()
    prec = compare((ab, sg, ska, sks), (ab32, sg32, ska32, sks32))
    prec["loss_rel"] = abs(loss32 - loss64) / abs(loss64)
    print("f64 %.1fs f32 %.1fs; loss %.6f (f32 %.6f); f32 vs f64: %s" % (t2 - t1, t3 - t2, loss64, loss32, prec),
          file=sys.stderr)

    r = lambda a: [[[float("%.10g" % v) for v in row] for row in lay] for lay in a] if a.ndim == 3 else \
        [[float("%.10g" % v) for v in row] for row in a]
    fixture = {
        "source": ("torch autograd over a hand-written Llama forward (scripts/golden/make_influence_golden.py): "
                   "weights gguf.quants.dequantize (float32) computed in float64; RoPE adjacent pairs, "
                   "theta_i = pos*base^(-2i/hd); GQA h -> h // 3; SwiGLU; tied head; A = softmax with causal "
                   "mask, retain_grad; loss = mean CE over tokens[rb..re); G = dL/dA"),
        "model": _common.model_info(path),
        "versions": dict(_common.versions("gguf", "numpy", "tokenizers"), torch=torch.__version__),
        "precision_of_golden": "float64 activations over float32-dequantised weights",
        "schema": {
            "ids": "token ids (no BOS): ChatML prompt (passage + question) then the model's own greedy answer",
            "rb, re": "loss = mean cross-entropy of tokens[rb..re), each predicted from the previous position",
            "E": "E_ij = -A_ij (G_ij - sum_n G_in A_in) / (1 - A_ij + eps) for i >= 1; E_0j = -A_0j G_0j; j <= i",
            "abs, sgn": "[n_layer][n_head][n_bins] sum |E| / sum E over j >= sink, bin floor((i-j)/block)",
            "sink_abs, sink_sgn": "[n_layer][n_head] same over j < sink",
            "precision": "float32 run of the same oracle vs this float64 golden, with the C test's metrics",
        },
        "text": tok.decode(ids, skip_special_tokens=False),
        "response_text": tok.decode(resp, skip_special_tokens=False),
        "ids": [int(i) for i in ids], "n": len(ids), "rb": rb, "re": re,
        "sink": SINK, "block": BLOCK, "eps": EPS, "n_bins": int(ab.shape[-1]),
        "n_layer": model.n_layer, "n_head": model.n_head,
        "loss": loss64, "loss_f32": loss32,
        "prompt_nll": nll_ok, "prompt_nll_wrong_neox_rope": nll_neox,
        "precision": prec,
        "abs": r(ab), "sgn": r(sg), "sink_abs": r(ska), "sink_sgn": r(sks),
    }
    _common.write_json("influence-golden.json", fixture)
    print("done in %.1fs" % (time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
