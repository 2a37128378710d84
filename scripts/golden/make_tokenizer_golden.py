#!/usr/bin/env python3
"""tests/fixtures/tokenizer-golden.json: token ids for SmolLM2's tokenizer.

Oracle: Hugging Face `tokenizers` (Rust) configured exactly like SmolLM2's tokenizer.json,
with vocab and merges read from the GGUF (tokenizer.ggml.tokens / .merges) by gguf's GGUFReader:
  BPE(vocab, merges), pre_tokenizer Sequence([Digits(individual_digits=True),
  ByteLevel(add_prefix_space=False, use_regex=True)]), ByteLevel decoder, and every
  token_type 3 (control) / 4 (user-defined) token added as a special token. No BOS.
Cross-check: a minimal pure-Python GPT-2 BPE written here (regex module for \\p{..} classes).
Disagreements are reported in "notes"; no case is dropped.
"""
import sys

import regex
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

import _common

# ---------------------------------------------------------------- cases
LONG = (
    "The history of computing is a story of abstraction layered upon abstraction. "
    "In 1837, Charles Babbage described the Analytical Engine, a mechanical device that could, "
    "in principle, execute any calculation expressed as a sequence of operations on punched cards. "
    "Ada Lovelace's notes on the engine (published in 1843) included what many regard as the first "
    "algorithm intended for a machine: a procedure for computing Bernoulli numbers. Nearly a century "
    "later, Alan Turing formalised the idea of a universal machine, and by the 1940s engineers were "
    "building electronic computers such as ENIAC, which weighed about 27 tonnes and consumed roughly "
    "150 kW of power.\n\nThe transistor (1947) and the integrated circuit (1958-1959) shrank those "
    "machines by orders of magnitude. Gordon Moore observed in 1965 that the number of components per "
    "chip doubled approximately every year, later revised to every two years; this \"law\" held, more "
    "or less, for five decades. Software evolved alongside: FORTRAN (1957), COBOL (1959), C (1972), "
    "and eventually languages like Python, whose creator, Guido van Rossum, released version 0.9.0 in "
    "February 1991.\n\nToday a typical smartphone contains billions of transistors, runs at clock "
    "speeds above 3 GHz, and can perform more than 10^12 operations per second on its neural "
    "accelerator. Yet the fundamental questions remain remarkably similar to those Babbage and "
    "Lovelace asked: What can be computed? How efficiently? And what, if anything, distinguishes "
    "calculation from understanding? Researchers in artificial intelligence continue to debate these "
    "questions, while engineers quietly keep making the machines smaller, faster and cheaper - "
    "sometimes by 2x, sometimes by 100x, and occasionally, as with the move from vacuum tubes to "
    "silicon, by a factor of a million or more. It's a remarkable journey; we're still on it, and "
    "nobody knows where it'll end."
)

CASES = [
    ("ascii prose", "Hello world"),
    ("ascii prose", "The quick brown fox jumps over the lazy dog."),
    ("ascii prose leading space", " Hello"),
    ("digits", "12345"),
    ("digits decimal", "3.14159"),
    ("digits date leading space", " 2024-11-22"),
    ("digits long number", "The population was 1234567890 in 2020, up 3.5%."),
    ("digits mixed alnum", "abc123def 4x4 v2.0.1 0xFF"),
    ("unicode numerics", "\u00bd \u00b2 \u2167 \u0663\u0664 \uff11\uff12"),
    ("whitespace double space", "a  b"),
    ("whitespace many spaces", "x     y"),
    ("whitespace tabs", "\tindented\t\ttext\t"),
    ("whitespace newlines", "line one\nline two\n\n\nline five"),
    ("whitespace only newlines", "\n\n\n"),
    ("whitespace trailing spaces", "trailing spaces   "),
    ("whitespace mixed", " \t \n  x \r\n"),
    ("contractions", "I'm sure they'll come, don't worry."),
    ("contractions upper", "WE'RE HERE AND YOU'VE GOT IT"),
    ("contractions misc", "it's we've she'd you're o'clock"),
    ("punctuation runs", "Wait... what?!?! (really) [yes] {no} <maybe> --- ***"),
    ("url", "See https://example.com/path?q=1&r=two#frag for details."),
    ("code c", "int main(void) {\n    return printf(\"%d\\n\", x[i] + 42);\n}\n"),
    ("code python", "def f(x):\n\treturn x**2  # square\n"),
    ("chinese", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002"),
    ("japanese", "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3082\u3042\u308a\u307e\u3059\u3002"),
    ("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645"),
    ("hindi", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"),
    ("russian", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?"),
    ("greek", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5"),
    ("korean", "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4"),
    ("emoji", "I love pizza \U0001F355\U0001F355!"),
    ("emoji zwj", "family: \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 ok"),
    ("emoji flags skin tone", "\U0001F1EB\U0001F1F7 \U0001F1EF\U0001F1F5 \U0001F44D\U0001F3FD"),
    ("accented latin", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber se\u00f1or \u00c5ngstr\u00f6m"),
    ("combining marks", "e\u0301 vs \u00e9"),
    ("mixed", "Price: \u20ac12.50 (~$13) \u2014 \u201cquoted\u201d \u2018text\u2019 \u00a9 2024 \u2122"),
    ("special chatml", "<|im_start|>user\nHi<|im_end|>\n"),
    ("special chat full",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
     "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
    ("special adjacent", "<|endoftext|><|im_start|><|im_end|>x<|im_end|>"),
    ("special partial (not special)", "<|im_start|x <|im_end <|im_start>"),
    ("empty", ""),
    ("single space", " "),
    ("single newline", "\n"),
    ("long paragraph", LONG),
]

# ---------------------------------------------------------------- oracle (HF tokenizers)
def load_vocab(path):
    r = GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    ttype = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    return tokens, ttype, merges


def build_hf(tokens, ttype, merges):
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate token strings"
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False,
                           single_word=False)
                for t, ty in zip(tokens, ttype) if ty in (3, 4)]
    tok.add_special_tokens(specials)
    for t in specials:
        assert tok.token_to_id(t.content) == vocab[t.content]
    return tok


# ---------------------------------------------------------------- cross-check (pure Python)
def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2_PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
DIGIT_PAT = regex.compile(r"\p{N}")


class PyBPE:
    def __init__(self, tokens, ttype, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        sp = sorted((t for t, ty in zip(tokens, ttype) if ty in (3, 4)), key=len, reverse=True)
        self.special_re = regex.compile("(" + "|".join(regex.escape(s) for s in sp) + ")") if sp else None
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        sym = list(word)
        while len(sym) > 1:
            best, bi = None, -1
            for i in range(len(sym) - 1):
                r = self.ranks.get((sym[i], sym[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = sym[bi], sym[bi + 1]
            out, i = [], 0
            while i < len(sym):
                if i < len(sym) - 1 and sym[i] == a and sym[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            sym = out
        ids = []
        for s in sym:
            if s in self.vocab:
                ids.append(self.vocab[s])
            else:  # fall back to per-byte symbols
                ids.extend(self.vocab[c] for c in s)
        self.cache[word] = ids
        return ids

    def pretokenize(self, text):
        pieces = []
        # step 1: isolate every \p{N} codepoint
        pos = 0
        for m in DIGIT_PAT.finditer(text):
            if m.start() > pos:
                pieces.append(text[pos:m.start()])
            pieces.append(m.group())
            pos = m.end()
        if pos < len(text):
            pieces.append(text[pos:])
        # step 2: GPT-2 regex within each piece
        out = []
        for p in pieces:
            out.extend(GPT2_PAT.findall(p))
        return out

    def encode(self, text):
        frags = self.special_re.split(text) if self.special_re else [text]
        ids = []
        for i, f in enumerate(frags):
            if not f:
                continue
            if i % 2 == 1:  # captured special token
                ids.append(self.vocab[f])
                continue
            for w in self.pretokenize(f):
                ids.extend(self.bpe("".join(self.b2u[b] for b in w.encode("utf-8"))))
        return ids


def main():
    path = _common.model_path()
    tokens, ttype, merges = load_vocab(path)
    hf = build_hf(tokens, ttype, merges)
    py = PyBPE(tokens, ttype, merges)
    cases, notes = [], []
    for label, text in CASES:
        ids = hf.encode(text, add_special_tokens=False).ids
        alt = py.encode(text)
        if ids != alt:
            notes.append({"label": label, "text": text, "hf_tokenizers": ids, "pure_python_bpe": alt,
                          "note": "oracles disagree; 'ids' holds the HF tokenizers result"})
        dec = hf.decode(ids, skip_special_tokens=False)
        if dec != text:
            notes.append({"label": label, "text": text, "decoded": dec,
                          "note": "decode(ids) != text"})
        cases.append({"label": label, "text": text, "ids": ids,
                      "pieces": [tokens[i] for i in ids]})
    agree = sum(1 for c in cases) - sum(1 for n in notes if "pure_python_bpe" in n)
    fixture = {
        "source": ("HF tokenizers (Rust) BPE built from the GGUF's tokenizer.ggml.tokens/merges "
                   "(read with gguf.GGUFReader); pre_tokenizer Sequence([Digits(individual_digits=True), "
                   "ByteLevel(add_prefix_space=False, use_regex=True)]), ByteLevel decoder; token_type 3/4 "
                   "tokens added as special tokens (matched literally in text); no BOS. "
                   "Cross-checked against a pure-Python GPT-2 BPE (scripts/golden/make_tokenizer_golden.py)."),
        "model": _common.model_info(path),
        "versions": _common.versions("tokenizers", "gguf", "numpy", "regex"),
        "schema": {"cases[].text": "input string (UTF-8)",
                   "cases[].ids": "expected token ids, no BOS, special tokens parsed",
                   "cases[].pieces": "vocab strings of ids (byte-level, informational)",
                   "cases[].label": "category (informational)"},
        "cross_check": {"pure_python_bpe_agrees": agree, "cases": len(cases)},
        "notes": notes,
        "cases": cases,
    }
    _common.write_json("tokenizer-golden.json", fixture)
    print("cases", len(cases), "agree", agree, "notes", len(notes), file=sys.stderr)
    for n in notes:
        print("NOTE", n, file=sys.stderr)


if __name__ == "__main__":
    main()
