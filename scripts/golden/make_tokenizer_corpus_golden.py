"""Golden token ids for a large, varied, seeded corpus, from llama.cpp (the reference) and
cross-checked with Hugging Face `tokenizers`, for the Qwen2 vocabulary and SmolLM2's.

Writes
  tests/fixtures/tokenizer-corpus.txt   texts and llama.cpp's ids (format below)
  tests/fixtures/tokenizer-corpus.json  versions, models, agreement figures, every
                                        llama.cpp/HF disagreement, end-of-generation sets,
                                        chat renderings (jinja2) of the Qwen template

Oracles
  * llama.cpp: libllama (llama-cpp-python 0.3.36's vendored llama.cpp, built by
    scripts/build-llamacpp.sh) through the sdist's own ctypes bindings, vocab_only model,
    llama_tokenize(add_special=False, parse_special=False). REFERENCE: the C test requires
    these ids. llama.cpp is the runtime GGUF files are made for; its Qwen2 pre-tokenizer is
    a hand-written splitter of the pattern below, like ours.
  * HF tokenizers (Rust): BPE(vocab, merges) from the GGUF's own tokenizer.ggml.tokens /
    merges, no normaliser; Qwen2: Split(Regex(P), "isolated") + ByteLevel(use_regex=False)
    with P = Qwen2's tokenizer.json pattern
      (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
    SmolLM2: Digits(individual_digits=True) + ByteLevel(use_regex=True) (its tokenizer.json).
    User-defined tokens (type 4, Qwen's <tool_call>, </tool_call>) are added tokens (always
    matched, as llama.cpp does with parse_special=False); control tokens are not added, so
    "<|im_start|>" is plain text, as in llama.cpp with parse_special=False.

Fixture format (tokenizer-corpus.txt), UTF-8, one record per line, '#' lines are comments:
  M <tag> <gguf file name>     the models, in the order of the id lines of every text
  T <text>                     a text: its UTF-8 bytes, with '\\', DEL and every byte < 0x20
                               written as \\xHH (two upper-case hex digits)
  I <tag> <id> <id> ...        llama.cpp's ids for the preceding text, one line per model
Run: scripts/golden/run.sh tokenizer-corpus (needs MOA_MODEL_QWEN or fetches the model).
"""
import ctypes
import json
import os
import random
import sys
import time
import types

from gguf import GGUFReader
import jinja2
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from _common import FIXTURES, REPO, model_path, sha256, versions

SEED = 20261207
N_TEXTS = 10800
LLAMA_VERSION = "0.3.36"
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# ------------------------------------------------------------------------------ the corpus
WORDS = """the of and to in is was for on that with as it by at from his her this be are an
or which have had not but were they one all their has been there more when who will would
time people year new first some could them than other into only its over also after most
made many between being under both state city world school during through house system
program government number country before every while where water history music thought
quick brown fox jumps lazy dog river mountain window garden library yellow morning evening
question answer model token language compute memory kernel attention sparse dense matrix
vector tensor cache window budget profile density plan layer head gradient softmax""".split()
CONTRACTIONS = ["don't", "I'm", "you're", "we've", "they'll", "she'd", "it's", "can't",
                "won't", "isn't", "I'M", "YOU'RE", "WE'VE", "THEY'LL", "SHE'D", "IT'S",
                "DON'T", "CAN'T", "We'Re", "i'D", "O'Neil", "rock'n'roll", "'twas", "'S",
                "'ll", "y'all", "ma'am", "'re'", "''s", "'Ve", "'lL", "'ſ", "'K"]
PUNCT = list("!?.,;:-_=+*/\\|@#$%^&~`'\"()[]{}<>") + ["...", "--", "->", "=>", "::", "!=",
                                                     "<=", "/*", "*/", "//", "#!", "&&", "||"]
CJK = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读"
JA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴー日本語東京大学先生学生会社電車時間今日明日天気"
KO_WORDS = ["안녕하세요", "감사합니다", "한국어", "서울", "사랑", "컴퓨터", "프로그램", "토큰",
            "학교", "친구", "오늘", "내일", "날씨가", "좋네요", "입니다", "했습니다"]
AR_WORDS = ["مرحبا", "العالم", "كتاب", "اللغة", "العربية", "مدرسة", "شكرا", "جميل", "في",
            "من", "إلى", "على", "هذا", "٠١٢٣٤٥٦٧٨٩"]
OTHER_WORDS = ["Привет", "мир", "язык", "Ελληνικά", "γλώσσα", "नमस्ते", "दुनिया", "हिन्दी",
               "שלום", "עולם", "สวัสดี", "ภาษาไทย", "Ünïcödé", "naïve", "café", "Zürich",
               "e\u0301", "a\u0308o\u0308", "ﬁnance", "Straße", "İstanbul", "ǅemal", "Ⅻ",
               "½", "²³", "١٢٣", "１２３", "ｆｕｌｌｗｉｄｔｈ"]
EMOJI = ["😀", "👍", "👍🏽", "❤️", "🔥", "🚀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "#️⃣",
         "🤖", "✨", "🧑🏿‍💻", "👋", "🙂", "😂", "☕", "⚡"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", " \n",
          "\n ", "  \n  ", "\u00a0", "\u3000", "\u2003", "\u200b", "\u2028", "\u0085",
          "\x0b", "\x0c", " \t \n"]


def words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def gen_prose(r):
    out = []
    for _ in range(r.randint(1, 3)):
        s = words(r, r.randint(3, 14))
        if r.random() < 0.5:
            k = s.split(" ")
            k.insert(r.randint(0, len(k)), r.choice(CONTRACTIONS))
            s = " ".join(k)
        s = s[0].upper() + s[1:]
        out.append(s + r.choice([".", "!", "?", "...", ";", ":", ",", " —", "?!"]))
    return r.choice([" ", "  ", "\n", "\n\n"]).join(out)


def ident(r):
    return r.choice(["x", "i", "n", "buf", "count", "tokenIds", "max_len", "_tmp", "self",
                     "HTTPServer", "getValue", "k2", "__init__", "λ", "données", "变量"])


def gen_code(r):
    ind = r.choice(["  ", "    ", "\t", "        ", "\t\t", " \t"])
    nl = r.choice(["\n", "\n", "\r\n"])
    a, b = ident(r), ident(r)
    num = str(r.randint(0, 10 ** r.randint(1, 9)))
    snippets = [
        f"def {a}({b}):{nl}{ind}return {b} ** {num}  # comment{nl}",
        f"int {a}(int {b}) {{{nl}{ind}if ({b} > {num}) return {b};{nl}{ind}return -1;{nl}}}{nl}",
        f"for (let {a} = 0; {a} < {num}; {a}++) {{{nl}{ind}console.log(`{b}=${{{a}}}`);{nl}}}",
        f"fn {a}(&mut self, {b}: u32) -> Result<(), Error> {{{nl}{ind}Ok(()){nl}}}",
        f"func {a}({b} []byte) error {{{nl}{ind}if err != nil {{{nl}{ind}{ind}return err{nl}{ind}}}{nl}}}",
        f"SELECT {a}, COUNT(*) FROM {b} WHERE id >= {num} GROUP BY {a};",
        f"<div class=\"{a}\">{nl}{ind}<a href='https://example.com/{b}?q={num}&x=1'>{b}</a>{nl}</div>",
        f"#!/bin/sh{nl}{a}=$(ls -la | grep '{b}' | wc -l){nl}echo \"${{{a}}}\" >&2{nl}",
        f"{{\"{a}\": [{num}, 3.14, null, true], \"{b}\": \"\\u00e9\\n\"}}",
        f"class {a.capitalize()}({b}):{nl}{ind}def __repr__(self):{nl}{ind}{ind}return f'<{{self.x!r}}>'{nl}",
        f"#include <stdio.h>{nl}{nl}int main(void) {{{nl}{ind}printf(\"%d\\n\", {num});{nl}}}{nl}",
        f"    {a} = {b}[{num}:] + {b}[:-1]    {nl}",
        f"if {a} != {b} and not {a}:{nl}{ind}pass{ind}{nl}",
    ]
    s = r.choice(snippets)
    if r.random() < 0.3:
        s += r.choice(snippets)
    return s


def gen_numbers(r):
    k = r.randrange(9)
    if k == 0:
        return "".join(r.choice("0123456789") for _ in range(r.randint(1, 80)))
    if k == 1:
        return f"{r.randint(0, 10**9):,}"
    if k == 2:
        return f"{r.uniform(-1e6, 1e6):.{r.randint(0, 8)}f}"
    if k == 3:
        return f"{r.random():.3e} {r.randint(1, 99)}% 0x{r.getrandbits(32):08X}"
    if k == 4:
        return f"+1 ({r.randint(100, 999)}) {r.randint(100, 999)}-{r.randint(1000, 9999)}"
    if k == 5:
        return f"v{r.randint(0, 20)}.{r.randint(0, 99)}.{r.randint(0, 999)}-rc{r.randint(1, 9)}"
    if k == 6:
        return " ".join(str(r.randint(0, 10 ** r.randint(1, 12))) for _ in range(r.randint(2, 8)))
    if k == 7:
        return f"{words(r, 2)} {r.randint(0, 9999)}x{r.randint(0, 9999)} = {r.randint(0, 10**8)}"
    return f"$ {r.randint(0, 999)}.{r.randint(0, 99):02d} / €{r.randint(0, 99)},{r.randint(0, 99)}"


def gen_dates(r):
    y, mo, d = r.randint(1900, 2100), r.randint(1, 12), r.randint(1, 28)
    h, mi, s = r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)
    forms = [f"{y}-{mo:02d}-{d:02d}", f"{d}/{mo}/{y}", f"{mo:02d}.{d:02d}.{y % 100:02d}",
             f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z", f"{h}:{mi:02d} {r.choice(['AM', 'PM'])}",
             f"{y}年{mo}月{d}日", f"On {d} March {y}, at {h:02d}h{mi:02d}",
             f"[{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{r.randint(0, 999):03d}] INFO"]
    return " ".join(r.choice(forms) for _ in range(r.randint(1, 3)))


def gen_cjk(r):
    k = r.randrange(4)
    if k == 0:
        s = "".join(r.choice(CJK) for _ in range(r.randint(2, 40)))
        return s + r.choice(["。", "，", "！", "？", "「引用」", "", "：", "（注）"])
    if k == 1:
        return "".join(r.choice(JA) for _ in range(r.randint(2, 40))) + r.choice(["。", "、", "！", ""])
    if k == 2:
        return " ".join(r.choice(KO_WORDS) for _ in range(r.randint(1, 8))) + r.choice([".", "?", ""])
    return "".join(chr(r.randint(0xAC00, 0xD7A3)) for _ in range(r.randint(1, 20)))


def gen_scripts(r):
    pool = AR_WORDS if r.random() < 0.4 else OTHER_WORDS
    sep = r.choice([" ", " ", "، ", ", ", "\n", ""])
    return sep.join(r.choice(pool) for _ in range(r.randint(1, 10)))


def gen_emoji(r):
    parts = []
    for _ in range(r.randint(1, 8)):
        parts.append(r.choice(EMOJI) if r.random() < 0.6 else r.choice(WORDS))
    return r.choice(["", " "]).join(parts)


def gen_whitespace(r):
    parts = []
    for _ in range(r.randint(1, 8)):
        parts.append(r.choice(SPACES) if r.random() < 0.55 else
                     r.choice(WORDS + PUNCT + CONTRACTIONS + ["1", "23", "é", "中"]))
    s = "".join(parts)
    if r.random() < 0.3:
        s += " " * r.randint(1, 5)
    return s


def gen_contractions(r):
    out = []
    for _ in range(r.randint(1, 8)):
        c = r.choice(CONTRACTIONS)
        out.append(c.upper() if r.random() < 0.4 else c)
    return r.choice([" ", "", "  ", "\n"]).join(out)


def gen_punct(r):
    s = "".join(r.choice(PUNCT) for _ in range(r.randint(1, 20)))
    if r.random() < 0.5:
        s = r.choice(WORDS) + s + r.choice(["\n", "\r\n", "", " ", "\n\n"]) + r.choice(WORDS)
    return s


def rand_cp(r):
    while True:
        k = r.random()
        if k < 0.25:
            cp = r.randint(0x20, 0x7FF)
        elif k < 0.6:
            cp = r.randint(0x800, 0xFFFF)
        elif k < 0.85:
            cp = r.randint(0x10000, 0x2FFFF)
        elif k < 0.9:
            cp = r.randint(0, 0x1F)
        else:
            cp = r.randint(0x30000, 0x10FFFF)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def gen_random_unicode(r):
    s = "".join(rand_cp(r) for _ in range(r.randint(1, 24)))
    if r.random() < 0.3:
        s = r.choice(WORDS) + r.choice(["", " ", "'"]) + s
    return s


def gen_specials_as_text(r):
    toks = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|fim_prefix|>", "<|file_sep|>",
            "<tool_call>", "</tool_call>", "<|im_start", "im_end|>", "</s>", "<repo_name>"]
    return "".join(r.choice(toks) + r.choice(["", "user\n", " ", "\n", words(r, 2)])
                   for _ in range(r.randint(1, 4)))


def gen_long(r):
    gens = [gen_prose, gen_code, gen_numbers, gen_cjk, gen_scripts, gen_whitespace]
    return "".join(r.choice(gens)(r) for _ in range(r.randint(6, 14)))


GENERATORS = [  # (name, weight)
    (gen_prose, 14), (gen_code, 14), (gen_numbers, 8), (gen_dates, 5), (gen_cjk, 9),
    (gen_scripts, 8), (gen_emoji, 6), (gen_whitespace, 12), (gen_contractions, 7),
    (gen_punct, 6), (gen_random_unicode, 8), (gen_specials_as_text, 2), (gen_long, 1),
]


def make_corpus():
    r = random.Random(SEED)
    fns = [g for g, w in GENERATORS for _ in range(w)]
    texts = ["", " ", "\n", "\r\n", "a", "'s", "'S", "  ", " \n ", "1", "12345678901234567890"]
    while len(texts) < N_TEXTS:
        k = r.random()
        if k < 0.15:   # a mix of two or three kinds
            t = "".join(r.choice(fns)(r) for _ in range(r.randint(2, 3)))
        else:
            t = r.choice(fns)(r)
        texts.append(t)
    return texts


# ------------------------------------------------------------------------------ llama.cpp
def load_llama():
    """The sdist's ctypes bindings, without the package __init__ (which needs extra deps)."""
    root = os.path.join(cache_dir(), f"llama.cpp-{LLAMA_VERSION}")
    libdir = os.path.join(root, "build", "bin")
    if not os.path.exists(os.path.join(libdir, "libllama.so")):
        sys.exit(f"golden: no libllama.so in {libdir}: run scripts/build-llamacpp.sh first")
    os.environ["LLAMA_CPP_LIB_PATH"] = libdir
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [os.path.join(root, "src", "llama_cpp")]
    sys.modules["llama_cpp"] = pkg
    import llama_cpp.llama_cpp as L   # noqa: E402
    global _LOG_CB   # keep the callback alive as long as the library may call it
    _LOG_CB = L.llama_log_callback(lambda level, text, data: None)
    L.llama_log_set(_LOG_CB, ctypes.c_void_p())
    L.llama_backend_init()
    return L, root


def cache_dir():
    """${MOA_CACHE_DIR:-$XDG_CACHE_HOME/moa}, as scripts/build-llamacpp.sh uses."""
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.environ.get("MOA_CACHE_DIR", os.path.join(xdg, "moa"))


class LlamaVocab:
    def __init__(self, L, path):
        self.L = L
        p = L.llama_model_default_params()
        p.vocab_only = True
        self.model = L.llama_model_load_from_file(path.encode(), p)
        if not self.model:
            sys.exit(f"golden: llama.cpp could not load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n = L.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text):
        b = text.encode("utf-8")
        cap = len(b) + 16
        buf = (self.L.llama_token * cap)()
        k = self.L.llama_tokenize(self.vocab, b, len(b), buf, cap, False, False)
        assert k >= 0, "buffer too small"
        return list(buf[:k])

    def eog(self):
        return [i for i in range(self.n) if self.L.llama_vocab_is_eog(self.vocab, i)]

    def add_bos(self):
        return bool(self.L.llama_vocab_get_add_bos(self.vocab))

    def chat(self, tmpl, msgs, add_ass):
        arr = (self.L.llama_chat_message * len(msgs))()
        keep = []
        for i, (role, content) in enumerate(msgs):
            keep += [role.encode(), content.encode()]
            arr[i].role, arr[i].content = keep[-2], keep[-1]
        buf = ctypes.create_string_buffer(1 << 16)
        k = self.L.llama_chat_apply_template(tmpl.encode(), arr, len(msgs), add_ass, buf, len(buf))
        return buf.raw[:k].decode() if k >= 0 else None


# ------------------------------------------------------------------------------ HF oracle
def load_gguf_vocab(path):
    r = GGUFReader(path)
    f = r.fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    ttype = f["tokenizer.ggml.token_type"].contents()
    merges = f["tokenizer.ggml.merges"].contents()
    pre = f["tokenizer.ggml.pre"].contents()
    tmpl = f["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in f else None
    return tokens, ttype, merges, pre, tmpl


def build_hf(tokens, ttype, merges, pre):
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate token strings"
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    if pre == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
    elif pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    else:
        raise SystemExit(f"golden: no HF configuration for pre-tokenizer {pre}")
    tok.decoder = decoders.ByteLevel()
    user = [AddedToken(t, special=False, normalized=False, lstrip=False, rstrip=False,
                       single_word=False) for t, ty in zip(tokens, ttype) if ty == 4]
    if user:
        tok.add_tokens(user)
        for t in user:
            assert tok.token_to_id(t.content) == vocab[t.content]
    return tok


# ------------------------------------------------------------------------------ chat
CHAT_CASES = [
    ("system+user+assistant, generation prompt",
     [("system", "You are terse."), ("user", "What is 2+2?"), ("assistant", "4."),
      ("user", "And 3+3?")], True),
    ("user only (default system), generation prompt", [("user", "Write a haiku about tabs.")], True),
    ("user only (default system), no generation prompt", [("user", "Hi <|im_end|> there\n")], False),
    ("user, assistant, user (default system)",
     [("user", "def f():\n\treturn 1"), ("assistant", "ok"), ("user", "again")], True),
]


def render_jinja(tmpl, msgs, add_gen):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)   # as transformers does
    t = env.from_string(tmpl)
    return t.render(messages=[{"role": r, "content": c} for r, c in msgs],
                    add_generation_prompt=add_gen, tools=None)


# ------------------------------------------------------------------------------ output
def escape(text):
    """UTF-8 bytes of text, with '\\', DEL and bytes < 0x20 as \\xHH."""
    raw = bytearray()
    for b in text.encode("utf-8"):
        if b < 0x20 or b == 0x5C or b == 0x7F:
            raw += b"\\x%02X" % b
        else:
            raw.append(b)
    return bytes(raw)


def main():
    qwen_path = os.environ.get("MOA_MODEL_QWEN")
    if not qwen_path:
        import subprocess
        qwen_path = subprocess.run(["bash", os.path.join(REPO, "scripts", "fetch-model.sh"),
                                    "qwen2.5-coder-0.5b"], check=True, stdout=subprocess.PIPE,
                                   text=True).stdout.strip().splitlines()[-1]
    smol_path = model_path()
    L, llroot = load_llama()
    texts = make_corpus()
    n_bytes = sum(len(t.encode()) for t in texts)
    print(f"golden: {len(texts)} texts, {n_bytes} bytes", file=sys.stderr)

    models_meta, ids_by_model, summary, disagreements = [], {}, {}, {}
    chat = {}
    for tag, path in (("qwen", qwen_path), ("smollm", smol_path)):
        tokens, ttype, merges, pre, tmpl = load_gguf_vocab(path)
        lv = LlamaVocab(L, path)
        t0 = time.perf_counter()
        ll = [lv.tokenize(t) for t in texts]
        t_ll = time.perf_counter() - t0
        hf = build_hf(tokens, ttype, merges, pre)
        t0 = time.perf_counter()
        hfi = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
        t_hf = time.perf_counter() - t0
        diff = [i for i in range(len(texts)) if ll[i] != hfi[i]]
        print(f"golden: {tag}: llama.cpp {t_ll:.2f} s, HF {t_hf:.2f} s, "
              f"{len(texts) - len(diff)}/{len(texts)} agree", file=sys.stderr)
        ids_by_model[tag] = ll
        n_tok = sum(len(x) for x in ll)
        summary[tag] = {"texts": len(texts), "tokens_llamacpp": n_tok,
                        "llamacpp_equals_hf": len(texts) - len(diff),
                        "llamacpp_differs_from_hf": len(diff)}
        disagreements[tag] = [{"index": i, "text": texts[i], "llamacpp": ll[i], "hf": hfi[i]}
                              for i in diff]
        models_meta.append({"tag": tag, "file": os.path.basename(path), "sha256": sha256(path),
                            "pre": pre, "n_vocab": lv.n, "add_bos": lv.add_bos(),
                            "eog_llamacpp": lv.eog()})
        if tmpl is not None:
            cases = []
            for label, msgs, add_gen in CHAT_CASES:
                cases.append({"label": label, "messages": [{"role": r, "content": c} for r, c in msgs],
                              "add_generation_prompt": add_gen,
                              "jinja2": render_jinja(tmpl, msgs, add_gen),
                              "llamacpp_chat_apply_template": lv.chat(tmpl, msgs, add_gen)})
            chat[tag] = cases

    # data file
    out = os.path.join(FIXTURES, "tokenizer-corpus.txt")
    with open(out + ".tmp", "wb") as f:
        f.write(b"# moa tokenizer corpus golden v1: see tokenizer-corpus.json and "
                b"scripts/golden/make_tokenizer_corpus_golden.py\n")
        f.write(b"# reference ids: llama.cpp (llama-cpp-python " + LLAMA_VERSION.encode() +
                b"), add_special=false, parse_special=false\n")
        for m in models_meta:
            f.write(f"M {m['tag']} {m['file']}\n".encode())
        for i, t in enumerate(texts):
            f.write(b"T " + escape(t) + b"\n")
            for m in models_meta:
                f.write(("I " + m["tag"] + "".join(" %d" % x for x in ids_by_model[m["tag"]][i])
                         + "\n").encode())
    os.replace(out + ".tmp", out)
    print("wrote", out, os.path.getsize(out), "bytes", file=sys.stderr)

    meta = {
        "source": "scripts/golden/make_tokenizer_corpus_golden.py",
        "data": "tokenizer-corpus.txt",
        "seed": SEED,
        "n_texts": len(texts),
        "n_bytes": n_bytes,
        "versions": dict(versions("gguf", "tokenizers", "Jinja2"),
                         **{"llama-cpp-python (vendored llama.cpp)": LLAMA_VERSION}),
        "reference": ("llama.cpp: libllama built from llama-cpp-python " + LLAMA_VERSION +
                      "'s sdist, llama_tokenize(add_special=false, parse_special=false) on a "
                      "vocab_only model"),
        "cross_check": ("HF tokenizers BPE from the GGUF vocab/merges; qwen2: Split(Regex(" +
                        QWEN2_PATTERN + "), isolated) + ByteLevel(use_regex=false); smollm: "
                        "Digits(individual_digits) + ByteLevel(use_regex=true); user-defined "
                        "tokens added (always matched), control tokens not added"),
        "models": models_meta,
        "agreement": summary,
        "notes": [
            "Where llama.cpp and HF disagree the fixture keeps llama.cpp's ids: GGUF files are "
            "made for llama.cpp, which is what a user of these files compares against, and its "
            "Unicode tables and pre-tokenizer are what we re-implement. Every disagreement is "
            "listed under 'disagreements' with both id lists.",
            "chat: 'jinja2' is the template rendered with jinja2 (trim_blocks, lstrip_blocks, as "
            "transformers' apply_chat_template), the reference for moa_chat_render. "
            "'llamacpp_chat_apply_template' is llama.cpp's built-in ChatML, recorded for "
            "comparison: it does not run the Jinja and so has no default system turn.",
        ],
        "disagreements": disagreements,
        "chat": chat,
    }
    jout = os.path.join(FIXTURES, "tokenizer-corpus.json")
    with open(jout + ".tmp", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(jout + ".tmp", jout)
    print("wrote", jout, os.path.getsize(jout), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
