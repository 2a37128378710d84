/* llama.cpp as a second, independent oracle for make_qwen_logits_golden.py (not part of the moa build).
 * Compiled by that script against the llama.cpp built by scripts/build-llamacpp.sh (include/llama.h,
 * libllama.so). Low-level API only: one model, one context, jobs read from a command file.
 *
 * Usage: llamacpp_oracle MODEL.gguf CMDFILE N_CTX N_THREADS
 * CMDFILE, one job a line (paths without spaces):
 *   tok  IN.txt OUT.ids           llama_tokenize(add_special=false, parse_special=true); ids one a line
 *   chat SYS.txt USER.txt OUT.txt the model's own chat template (llama_model_chat_template) applied by
 *                                 llama_chat_apply_template to [system, user], add_ass=true
 *   logits IN.ids OUT.f32         one batch, logits requested for every position; T*n_vocab float32
 *   greedy IN.ids N OUT.ids       prefill, then N steps of argmax + single-token decode (KV cache)
 * Context: fresh KV memory per logits/greedy job, KV cache in F32, flash attention off, CPU only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void die(const char *m) { fprintf(stderr, "llamacpp_oracle: %s\n", m); exit(1); }

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) die("short read");
    b[n] = 0;
    fclose(f);
    if (len) *len = n;
    return b;
}

static int read_ids(const char *path, llama_token *out, int max) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    int n = 0, v;
    while (n < max && fscanf(f, "%d", &v) == 1) out[n++] = v;
    fclose(f);
    return n;
}

static void write_ids(const char *path, const llama_token *ids, int n) {
    FILE *f = fopen(path, "w");
    if (!f) die(path);
    for (int i = 0; i < n; i++) fprintf(f, "%d\n", ids[i]);
    fclose(f);
}

/* decode ids[0..n) at positions p0.. into seq 0; logits for every position if all, else only the last */
static void decode(struct llama_context *ctx, const llama_token *ids, int n, int p0, int all) {
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i];
        b.pos[i] = p0 + i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = (int8_t)(all || i == n - 1);
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) die("llama_decode failed");
    llama_batch_free(b);
}

static int argmax(const float *r, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (r[i] > r[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) die("usage: llamacpp_oracle MODEL CMDFILE N_CTX N_THREADS");
    int n_ctx = atoi(argv[3]), n_threads = atoi(argv[4]);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) die("model load failed");
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) die("context init failed");

    llama_token *ids = malloc(sizeof(llama_token) * (size_t)(n_ctx + 64));
    char line[4096], a[1024], b[1024], c[1024];
    FILE *cmd = fopen(argv[2], "r");
    if (!cmd) die(argv[2]);
    while (fgets(line, sizeof line, cmd)) {
        char op[16];
        int k = sscanf(line, "%15s %1023s %1023s %1023s", op, a, b, c);
        if (k < 1) continue;
        if (!strcmp(op, "tok") && k == 3) {
            long len;
            char *text = slurp(a, &len);
            int n = llama_tokenize(vocab, text, (int32_t)len, ids, n_ctx, false, true);
            if (n < 0) die("tokenize: too many tokens");
            write_ids(b, ids, n);
            free(text);
        } else if (!strcmp(op, "chat") && k == 4) {
            char *sys = slurp(a, NULL), *usr = slurp(b, NULL);
            const char *tmpl = llama_model_chat_template(model, NULL);
            if (!tmpl) die("model has no chat template");
            struct llama_chat_message msg[2] = {{"system", sys}, {"user", usr}};
            int cap = 1 << 16;
            char *out = malloc((size_t)cap);
            int n = llama_chat_apply_template(tmpl, msg, 2, true, out, cap);
            if (n < 0 || n > cap) die("chat template failed");
            FILE *f = fopen(c, "wb");
            fwrite(out, 1, (size_t)n, f);
            fclose(f);
            free(out); free(sys); free(usr);
        } else if (!strcmp(op, "logits") && k == 3) {
            int n = read_ids(a, ids, n_ctx);
            llama_memory_clear(llama_get_memory(ctx), true);
            decode(ctx, ids, n, 0, 1);
            FILE *f = fopen(b, "wb");
            for (int i = 0; i < n; i++) {
                const float *r = llama_get_logits_ith(ctx, i);
                if (!r) die("no logits");
                fwrite(r, sizeof(float), (size_t)n_vocab, f);
            }
            fclose(f);
        } else if (!strcmp(op, "greedy") && k == 4) {
            int n = read_ids(a, ids, n_ctx);
            int steps = atoi(b);
            llama_token gen[1024];
            llama_memory_clear(llama_get_memory(ctx), true);
            decode(ctx, ids, n, 0, 0);
            for (int s = 0; s < steps; s++) {
                gen[s] = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
                decode(ctx, &gen[s], 1, n + s, 1);
            }
            write_ids(c, gen, steps);
        } else {
            die(line);
        }
        fprintf(stderr, "llamacpp_oracle: done %s %s\n", op, a);
    }
    fclose(cmd);
    free(ids);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
