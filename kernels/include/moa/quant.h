/* moa/quant.h - public header of moa_kernels (kernels/; op family of kernels/cpu/quant*.c; the
 * device interface is moa/backend.h): ggml tensor types: block layouts, f16/bf16 conversion,
 * dequantisation, and matrix products with quantised weights: a streaming matrix-vector kernel
 * for decode and a batched product for prefill, each with int8 activations where the type and
 * CPU allow it (integer dot products on the weights' codes, f32 scales) and f32 activations
 * otherwise (moa_matmul_q_set_act(F32) forces those).
 *
 * Layout: a weight W of ggml shape ne = [n_in, n_out] is n_out rows of n_in values; each row
 * is a sequence of blocks along n_in. y[o] = sum_i W[o][i] x[i].
 *
 * Ownership: the caller owns every input and output buffer; the kernels keep no pointer past
 * the call, except a moa_qpack (its own repacked copy, freed with moa_qpack_free); a
 * moa_weight is a view (its filler, model/, owns the rows, copies and pack it points at).
 * Threading: as stated per function; the path-forcing setters are process-wide (main thread,
 * while no kernel runs).
 */
#ifndef MOA_QUANT_H
#define MOA_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml tensor type ids (append-only; values as in ggml). */
typedef enum {
    MOA_GGML_F32 = 0, MOA_GGML_F16 = 1, MOA_GGML_Q4_0 = 2, MOA_GGML_Q4_1 = 3,
    MOA_GGML_Q5_0 = 6, MOA_GGML_Q5_1 = 7, MOA_GGML_Q8_0 = 8,
    MOA_GGML_Q4_K = 12, MOA_GGML_Q5_K = 13, MOA_GGML_Q6_K = 14, MOA_GGML_BF16 = 30,
} moa_ggml_type;

const char *moa_ggml_type_name(moa_ggml_type t);   /* "Q4_1"; "?" if unknown */
/* Elements and bytes per block; returns 0 for unknown types (outputs set to 0). */
int moa_ggml_type_info(moa_ggml_type t, uint32_t *block_elems, uint32_t *block_bytes);
/* Bytes of one row of n elements (n a multiple of the block size). */
size_t moa_ggml_row_bytes(moa_ggml_type t, int64_t n);

float moa_f16_to_f32(uint16_t h);     /* IEEE binary16, subnormals included */
uint16_t moa_f32_to_f16(float f);     /* round to nearest even */
float moa_bf16_to_f32(uint16_t h);
uint16_t moa_f32_to_bf16(float f);    /* round to nearest even */

/* Dequantise n values (a multiple of the block size) from src to dst. Reference code. */
void moa_dequant_row(moa_ggml_type t, const void *src, float *dst, int64_t n);

/* y[v][o] = sum_i W[o][i] x[v][i] for v < n_vec.  W: n_out rows of type t, x: [n_vec][n_in],
 * y: [n_vec][n_out]. Uses the fastest kernel available, chosen per call from the CPU
 * (moa_matmul_q_path), OpenMP across rows:
 *  - int8 activations, "avx512-vnni-q8" (AVX512-VNNI), "avx-vnni-q8" (AVX-VNNI) or "avx2-q8"
 *    (AVX2 vpmaddubsw), for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K, unless
 *    moa_matmul_q_set_act(F32): each block of 32 activations (one per weight block or K-quant
 *    sub-block) gets the scale dx = max|x|/127 and xq = round(x/dx); integer dot products
 *    with the weights' integer codes, every term (offsets, mins) on the same xq, so the error is
 *    sum_i W[o][i] (x_i - dx xq_i): at most sum_b (dx_b/2) sum_{i in b} |W[o][i]| per output
 *    (tests: that bound, and agreement with an exact emulation of the arithmetic to 4e-6;
 *    ~1e-3 of sum_i |W[o][i] x[v][i]| on random data). Outliers (a value > 12x the mean |x| of
 *    its 256-value window, moa_q8_outlier_blocks in quant-impl.h): the 32-value blocks
 *    holding them are multiplied with f32 activations, the
 *    rest in int8; a product with more than half of a vector's blocks flagged runs in f32
 *    throughout (a "fallback");
 *  - "avx512" (F/BW/VL/DQ; Q4_0/Q4_1/Q8_0 run the AVX2 kernels, measured faster) and "avx2"
 *    (+FMA, F16C), every type, the types above too under moa_matmul_q_set_act(F32): f32
 *    activations, each weight block widened to f32 and multiplied with FMA: f32 rounding only
 *    (tests: <= 2e-6 of sum_i |W[o][i] x[v][i]|);
 *  - else the reference.
 * Streams W once per 16 vectors (4 on the int8 paths): meant for small n_vec (decode); use
 * moa_matmul_q_batch for batches. Thread-safe (no shared state besides the switches below);
 * n_in must be a multiple of the block size. */
void moa_matmul_q(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                  const float *x, int64_t n_vec, float *y);
/* Several products of the same activations: for each job k, y_k[v][o] = sum_i W_k[o][i] x[v][i]
 * (W_k: n_out_k rows of type_k, all of n_in values; y_k: [n_vec][n_out_k], not aliasing x).
 * Same paths, results (bit for bit) and contract as moa_matmul_q on each job, but when all of
 * them take the same int8 path (at most 8 jobs) the activations are checked for outliers and
 * quantised once and the rows of every job share one OpenMP loop (q/k/v, gate/up: fewer
 * parallel regions per token). */
typedef struct {
    moa_ggml_type type;
    const void *W;
    int64_t n_out;
    float *y;
} moa_matmul_q_job;
void moa_matmul_q_multi(const moa_matmul_q_job *jobs, int n, int64_t n_in, const float *x, int64_t n_vec);
/* A weight matrix repacked once for the int8 kernels (CPUs with AVX512-VNNI and -BITALG; Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K): rows in groups of 16, each block (32 values; a
 * 256-value super-block for the K-quants) of a group stored as the vectors the 16-row x token
 * micro-kernel multiplies (codes of 16 rows interleaved 4 bytes a row, then the 16 rows'
 * scales), so that a 16-row block of 32 values costs 4 loads and ~12 logic ops instead of a
 * load, unpack and scale per row-block; the same bytes as the GGUF rows (Q4_K/Q5_K: 3% more,
 * their 6-bit scales unpacked), plus the zero rows that pad the last group. NULL when not
 * supported (CPU, type, n_in % 32) or out of memory.
 * The pack keeps W's address (not a copy): W must outlive it. Immutable, shareable. */
typedef struct moa_qpack moa_qpack;
moa_qpack *moa_qpack_create(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in);
void moa_qpack_free(moa_qpack *p);
size_t moa_qpack_bytes(const moa_qpack *p);
/* ys[k][t][o] = sum_i W_k[o][i] x[t][i] for n_jobs <= 8 packs of the same n_in, t < n (decode
 * or batches alike; ys[k]: [n][n_out_k], not aliasing x). With int8 activations (unless
 * moa_matmul_q_set_act(F32)): per token the outliers (|x| > 12x the mean |x| of their
 * 256-value window, at most 32 a token) are multiplied in f32, the rest is quantised per 32
 * values (dx = max|x|/127), integer dot products on the packed codes: error
 * sum_i W[o][i] (x_i - dx xq_i) <= sum_b (dx_b/2) sum_{i in b, not outliers} |W[o][i]| (tests:
 * the bound, an exact emulation). Counted in moa_matmul_q_q8act_stats / _mixed for n < 8, in
 * moa_matmul_q_batch_q8_stats for batches. Under moa_matmul_q_set_act(F32), the force
 * switches, or with a token of more outliers: moa_matmul_q / moa_matmul_q_batch on the GGUF
 * rows (their own paths and counts). */
void moa_matmul_qpack(const moa_qpack *const *packs, float *const *ys, int n_jobs, const float *x, int64_t n);
/* The plain C reference of moa_matmul_q (dequantise a row, dot in double). */
void moa_matmul_q_ref(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                      const float *x, int64_t n_vec, float *y);

/* Batched product for prefill, same contract as moa_matmul_q (y[v][o] = sum_i W[o][i] x[v][i],
 * x: [n][n_in], y: [n][n_out], row-major, y must not alias x or W), by moa_matmul_q_batch_path:
 *  - "avx512-vnni-q8" (the types with an int8 path, on AVX512-VNNI CPUs, unless
 *    moa_matmul_q_set_act(F32)): activations quantised to int8 per token and 32 values
 *    (dx = max|x|/127, after taking out each token's outliers, which are multiplied in f32:
 *    at most 32 a token, else this path declines), weights unpacked per call to 8-bit codes
 *    in groups of 16 rows, a 16-row x 16-token vpdpbusd micro-kernel (quant-gemm-vnni512.c).
 *    Error: the activation rounding, <= sum_b (dx_b/2) sum_{i in b} |W[o][i]| per output
 *    (tests: that bound and an exact emulation); no f32 copy of W;
 *  - "sgemm": panels of moa_matmul_q_batch_panel_rows() weight rows are dequantised (SIMD,
 *    OpenMP, bit-identical to moa_dequant_row) into one scratch buffer of at most
 *    max(MOA_MATMUL_Q_PANEL_BYTES, 16 rows) bytes, then cblas_sgemm multiplies x by each
 *    panel (BLAS threads; call it from outside OpenMP parallel regions for full speed). F32
 *    weights go to sgemm directly. Accuracy: f32 sgemm accumulation (tests: <= 1e-5 of max |y|
 *    against moa_matmul_q_ref).
 * n < MOA_MATMUL_Q_BATCH_MIN, or a failed scratch allocation, falls back to moa_matmul_q
 * (never fails). Allocates and frees its scratch per call. */
#define MOA_MATMUL_Q_BATCH_MIN 8
#define MOA_MATMUL_Q_PANEL_BYTES ((size_t)8 << 20)
void moa_matmul_q_batch(moa_ggml_type t, const void *W, int64_t n_out, int64_t n_in,
                        const float *x, int64_t n, float *y);
/* moa_matmul_q_batch for several matrices (at most 8 on the int8 path) of the same x, as
 * moa_matmul_q_multi: when every job has the int8 path the activations are checked and
 * quantised once and all rows share one parallel loop; results equal to one
 * moa_matmul_q_batch per job. */
void moa_matmul_q_batch_multi(const moa_matmul_q_job *jobs, int n_jobs, int64_t n_in, const float *x, int64_t n);
/* "avx512-vnni-q8" or "sgemm": the path moa_matmul_q_batch takes now for type t (for n >= 8;
 * "none" for an unknown type). */
const char *moa_matmul_q_batch_path(moa_ggml_type t);
/* Calls of moa_matmul_q_batch that took the int8 path's dispatch, and those of them that it
 * declined (too many outliers in a token, or no memory: sgemm then); approximate counts. */
void moa_matmul_q_batch_q8_stats(unsigned long long *calls, unsigned long long *declined);
/* Weight rows per panel of moa_matmul_q_batch (a multiple of 16, at least 16, at most n_out). */
int64_t moa_matmul_q_batch_panel_rows(int64_t n_out, int64_t n_in);

/* CPU features (cached; the force switches below apply). */
int moa_cpu_has_avx2(void);
int moa_cpu_has_avx512(void);
/* Force the portable paths (tests compare paths; 0 = auto). Not thread-safe: set it from the
 * main thread while no kernel runs. */
void moa_cpu_force_reference(int on);
/* Cap the ISA at AVX2 on an AVX-512 machine (moa_cpu_has_avx512() returns 0; tests and
 * benchmarks; 0 = auto). Same threading rule. */
void moa_cpu_force_avx2(int on);
/* AVX512-VNNI (and AVX-512 F/BW/VL/DQ), AVX-VNNI (and AVX2); the force switches apply. */
int moa_cpu_has_avx512_vnni(void);
int moa_cpu_has_avx_vnni(void);
/* Hide AVX512-VNNI and AVX-VNNI (the int8 path then runs its AVX2 vpmaddubsw variant; tests
 * and benchmarks; 0 = auto). Same threading rule. */
void moa_cpu_force_no_vnni(int on);
/* Activation precision of moa_matmul_q: AUTO (default) takes the int8-activation path where
 * it exists (see moa_matmul_q); F32 keeps f32 activations on every path (golden tests that
 * need f32 accuracy). Process-wide: set it from the main thread while no kernel runs. */
typedef enum { MOA_MATMUL_ACT_AUTO = 0, MOA_MATMUL_ACT_F32 = 1 } moa_matmul_act;
void moa_matmul_q_set_act(moa_matmul_act a);
moa_matmul_act moa_matmul_q_get_act(void);
/* Products that took the int8 path's dispatch, and those of them that ran with f32
 * activations throughout (too many outlier blocks); approximate counts (not synchronised),
 * for tests and benchmarks. */
void moa_matmul_q_q8act_stats(unsigned long long *calls, unsigned long long *fallbacks);
/* Of those, the products that multiplied some outlier blocks with f32 activations (the rest
 * in int8). Same caveat. */
void moa_matmul_q_q8act_mixed(unsigned long long *mixed);
/* "avx512-vnni-q8", "avx-vnni-q8", "avx2-q8", "avx512", "avx2" or "reference": the path
 * moa_matmul_q takes now for type t ("none" for an unknown type). */
const char *moa_matmul_q_path(moa_ggml_type t);

/* The OPENBLAS_CORETYPE to run with, or NULL: "SkylakeX" (AVX-512 F/BW/VL/DQ/CD) or "Haswell"
 * (AVX2+FMA) when the linked OpenBLAS reports its SSE3 fallback "Prescott" (a CPU model newer
 * than the library: its sgemm then runs ~3x slower). OpenBLAS reads the variable when it
 * loads, so only a new process can use it (the `moa` command re-executes itself). */
const char *moa_blas_coretype_hint(void);

/* ---- a weight matrix and its products (weight.c) ------------------------------------------ */
/* A matrix of a model (moa_model's weights, model/include/moa/model.h): n_out rows of n_in
 * values. The engine's CPU backend multiplies by it (moa/backend.h, matmul). */
typedef struct {
    moa_ggml_type type;
    const void *data;      /* quantised rows in the mmapped file: [n_out] rows of n_in */
    int64_t n_in, n_out;
    float *f32;            /* [n_out][n_in] dequantised copy for BLAS, or NULL */
    moa_qpack *pack;       /* repacked for the int8 kernels (moa_qpack_create), or NULL */
    float *bias;           /* [n_out] added to every product (q/k/v of qwen2), or NULL */
    int exact_f32;         /* appended: 1 = every product is one BLAS sgemm on the f32 copy,
                              at any n (no pack, int8 or quantised kernel): the profiler's
                              handles (moa/backend.h, matmul); f32 must be set */
} moa_weight;

/* Products: x and y are caller-owned (y must not overlap x). Reentrant: the weight is only
 * read and scratch is per call, so concurrent calls on one weight are fine; OpenMP inside.
 *
 * y[n][out] = x[n][in] W^T (+ bias): BLAS on the f32 copy when exact_f32 is set, else the
 * packed int8 kernels when the weight has a pack (any n; unless activations are f32 and an
 * f32 copy exists), else the quantised kernel for n <= 4,
 * else the batched product on int8 activations where it exists (moa_matmul_q_batch_path
 * "avx512-vnni-q8"), else BLAS on the f32 copy, or (without one) BLAS on dequantised panels
 * of rows (moa_matmul_q_batch). */
void moa_weight_matmul(const moa_weight *w, const float *x, int64_t n, float *y);
/* moa_weight_matmul for n_w weights of the same n_in on the same x (q/k/v, gate/up): one
 * product per weight if one is exact_f32, else for n <= 4 one moa_matmul_q_multi, for batches on the int8 path one moa_matmul_q_batch_multi
 * (activations quantised once, one parallel loop), else one product per weight. */
void moa_weight_matmul_multi(const moa_weight *const *ws, int n_w, const float *x, int64_t n, float *const *ys);
/* The activation backward of the product: dx[n][in] = beta dx + dy[n][out] W (one BLAS sgemm
 * on the f32 copy; the bias does not enter it). Needs w->f32 (the caller checks). */
void moa_weight_matmul_bwd(const moa_weight *w, const float *dy, int64_t n, float *dx, float beta);
/* y[t][o] += bias[o] for n rows (no-op without a bias). */
void moa_weight_add_bias(const moa_weight *w, float *y, int64_t n);

#endif
