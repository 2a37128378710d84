/* cmd-info.c - `moa info MODEL`: GGUF metadata, tensor table, sizes, hyperparameters. */
#include "cli.h"
#include "args.h"
#include "moa/model.h"

#include <stdio.h>
#include <string.h>

int moa_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int show_all = 0;
    for (int i = 1; i < argc; i++) {
        if (arg_flag(argv, i, "-h", "--help")) {
            printf("usage: moa info MODEL.gguf [--all]\n\n"
                   "Prints the model's hyperparameters (incl. its training context length), every\n"
                   "metadata key, and the tensor table with types, shapes and sizes.\n"
                   "  --all   print long arrays' first elements too\n");
            return 0;
        }
        if (arg_flag(argv, i, NULL, "--all")) { show_all = 1; continue; }
        if (argv[i][0] == '-' && strcmp(argv[i], "-m") && strcmp(argv[i], "--model")) {
            fprintf(stderr, "moa info: unknown option '%s'\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) { if (i + 1 >= argc) return 2; path = argv[++i]; continue; }
        path = argv[i];
    }
    if (!(path = cli_model_path(path))) return 2;
    moa_gguf *g;
    moa_status st = moa_gguf_open(path, &g);
    if (st < 0) return cli_fail("reading model", st);
    printf("file: %s\nGGUF version: %u, %llu bytes, alignment %u, %lld metadata keys, %lld tensors\n",
           path, moa_gguf_version(g), (unsigned long long)moa_gguf_file_size(g), moa_gguf_alignment(g),
           (long long)moa_gguf_n_kv(g), (long long)moa_gguf_n_tensors(g));

    /* hyperparameters as the engine reads them (validated through the model loader) */
    moa_model *m = NULL;
    moa_model_params mp = moa_model_default_params();
    mp.f32_weights = 0;
    mp.int8_pack = 0;
    mp.compute_sha256 = 1;
    moa_gguf *g2;
    if ((st = moa_gguf_open(path, &g2)) >= 0 && (st = moa_model_from_gguf(g2, &mp, &m)) >= 0) {
        const moa_llama_hparams *hp = &m->hp;
        printf("\n## model\narchitecture: %s\ncontext length (training): %d\nlayers: %d\n"
               "embedding: %d\nheads: %d (KV heads %d, GQA group %d)\nhead dim: %d\nFFN: %d\n"
               "vocab: %d\nRoPE base: %g (dims %d, %s pairing)\nq/k/v biases: %s\nRMS eps: %g\n"
               "tied embeddings: %s\nsha256: %s\n",
               hp->arch, hp->n_ctx_train, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv,
               hp->n_head / hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab, hp->rope_base,
               hp->rope_dim, hp->rope_pairing == MOA_ROPE_NEOX ? "NEOX (halves)" : "normal (adjacent)",
               m->layers[0].wq.bias ? "yes" : "no", hp->rms_eps, m->tied ? "yes" : "no", m->sha256);
        double kv_per_tok = 2.0 * hp->n_layer * hp->n_head_kv * hp->head_dim * sizeof(float);
        printf("dense KV cache (f32): %.1f KiB per token, %.1f MiB at %d tokens\n",
               kv_per_tok / 1024, kv_per_tok * hp->n_ctx_train / (1 << 20), hp->n_ctx_train);
        moa_model_free(m);
    } else {
        printf("\n## model\nnot loadable by the engine: %s\n", moa_last_error());
    }

    printf("\n## metadata\n");
    char buf[256];
    for (int64_t i = 0; i < moa_gguf_n_kv(g); i++) {
        moa_gguf_kv_format(g, i, buf, show_all ? sizeof buf : 100);
        printf("%-44s %s\n", moa_gguf_kv_key(g, i), buf);
    }
    printf("\n## tensors\n%-32s %-6s %-22s %12s\n", "name", "type", "shape", "bytes");
    uint64_t total = 0, params = 0;
    uint64_t by_type[64] = {0};
    for (int64_t i = 0; i < moa_gguf_n_tensors(g); i++) {
        const moa_gguf_tensor *t = moa_gguf_tensor_at(g, i);
        char shape[64];
        int o = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("%-32s %-6s %-22s %12llu\n", t->name, moa_ggml_type_name(t->type), shape,
               (unsigned long long)t->n_bytes);
        total += t->n_bytes;
        params += t->n_elements;
        if ((unsigned)t->type < 64) by_type[t->type] += t->n_bytes;
    }
    printf("\ntotal: %llu parameters, %.2f MiB of tensor data\n", (unsigned long long)params, total / 1048576.0);
    for (int t = 0; t < 64; t++)
        if (by_type[t]) printf("  %-5s %.2f MiB\n", moa_ggml_type_name((moa_ggml_type)t), by_type[t] / 1048576.0);
    moa_gguf_close(g);
    return 0;
}
