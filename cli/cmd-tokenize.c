/* cmd-tokenize.c - `moa tokenize`: a text's token ids with the model's tokenizer, printed
 * as llama.cpp's llama-tokenize prints them ("[1, 2, 3]" with --ids, else "id -> 'piece'"). */
#include "cli.h"
#include "args.h"
#include "moa/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp) {
    fprintf(fp,
        "usage: moa tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--special] [--no-bos]\n\n"
        "  -m, --model PATH   GGUF model; only its tokenizer is read (default: $MOA_MODEL)\n"
        "  -p, --prompt TEXT  the text\n"
        "  -f, --file PATH    read the text from a file (bytes as they are)\n"
        "      --ids          print one list \"[id, id, ...]\" instead of \"id -> 'piece'\" lines\n"
        "      --special      parse special tokens written in the text (<|im_start|>, ...);\n"
        "                     without it they are ordinary text (user-defined tokens such as\n"
        "                     <tool_call> are always parsed, as llama.cpp does)\n"
        "      --no-bos       do not prepend BOS even if the model's add_bos_token says so\n"
        "Like llama.cpp's llama-tokenize; pieces are printed as their raw bytes.\n");
}

int moa_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *file = NULL;
    int ids_only = 0, special = 0, no_bos = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (arg_flag(argv, i, "-h", "--help")) { usage(stdout); return 0; }
        if (arg_flag(argv, i, NULL, "--ids")) { ids_only = 1; continue; }
        if (arg_flag(argv, i, NULL, "--special")) { special = 1; continue; }
        if (arg_flag(argv, i, NULL, "--no-bos")) { no_bos = 1; continue; }
        if ((r = arg_str(argc, argv, &i, "-m", "--model", &model)) ||
            (r = arg_str(argc, argv, &i, "-p", "--prompt", &prompt)) ||
            (r = arg_str(argc, argv, &i, "-f", "--file", &file))) {
            if (r < 0) return 2;
            continue;
        }
        return cli_unknown_arg("tokenize", argv[i], usage);
    }
    if (!prompt == !file) {
        fprintf(stderr, "moa tokenize: give exactly one of -p TEXT or -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (!(model = cli_model_path(model))) return 2;

    int rc = 0;
    char *text = NULL;
    size_t len;
    moa_gguf *g = NULL;
    moa_tokenizer *tok = NULL;
    int32_t *ids = NULL, n = 0;
    moa_status st;
    if (file) {
        if ((st = moa_read_file(file, &text, &len)) < 0) { rc = cli_fail("reading text", st); goto out; }
    } else {
        len = strlen(prompt);
    }
    if ((st = moa_gguf_open(model, &g)) < 0) { rc = cli_fail("reading model", st); goto out; }
    if ((st = moa_tokenizer_from_gguf(g, &tok)) < 0) { rc = cli_fail("loading tokenizer", st); goto out; }
    if ((st = moa_tokenizer_encode(tok, file ? text : prompt, len, special, &ids, &n)) < 0) {
        rc = cli_fail("tokenizing", st);
        goto out;
    }
    /* The model's add_bos_token is honoured by encode; --no-bos drops that BOS. */
    int32_t first = no_bos && moa_tokenizer_add_bos(tok) && n > 0 ? 1 : 0;
    if (ids_only) {
        printf("[");
        for (int32_t i = first; i < n; i++) printf(i > first ? ", %d" : "%d", (int)ids[i]);
        printf("]\n");
    } else {
        for (int32_t i = first; i < n; i++) {
            size_t pl;
            const char *piece = moa_tokenizer_token_bytes(tok, ids[i], &pl);
            printf("%6d -> '", (int)ids[i]);
            fwrite(piece, 1, pl, stdout);
            printf("'\n");
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "moa tokenize: writing to stdout failed\n");
        rc = 1;
    }
out:
    free(ids);
    moa_tokenizer_free(tok);
    if (g) moa_gguf_close(g);
    free(text);
    return rc;
}
