/* Quantizes a 64x256 float32 matrix per-channel INT8 and group-wise INT4 (groups of 32) through
 * libmonoquant, dequantizes it back, and prints scales, sizes and SQNR; then does the same as a
 * one-layer model (mq_model_*) and prints its report. Uses only monoquant.h.
 *
 *   make example && build/c-example        (or: cmake -B build/cmake && cmake --build build/cmake)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "monoquant.h"

#define ROWS 64
#define COLS 256

/* Prints the failed call and the library's reason, then exits. */
static void must(int rc, const char* what) {
    if (rc != MQ_OK) {
        fprintf(stderr, "%s failed: %s (%d): %s\n", what, mq_status_string(rc), rc, mq_last_error());
        exit(1);
    }
}

static void run(const char* name, const mq_config* cfg, const mq_tensor* w, const float* values) {
    size_t data_bytes, n_params;
    must(mq_quantized_size(cfg, w, &data_bytes, &n_params), "mq_quantized_size");
    void* q = malloc(data_bytes);
    float* scales = malloc(n_params * sizeof *scales);
    int32_t* zps = malloc(n_params * sizeof *zps);
    float* back = malloc((size_t)ROWS * COLS * sizeof *back);
    if (!q || !scales || !zps || !back) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    must(mq_quantize_tensor(cfg, w, q, data_bytes, scales, zps, n_params, NULL), "mq_quantize_tensor");
    must(mq_dequantize_tensor(cfg, q, data_bytes, w->ndim, w->shape, scales, zps, n_params, back,
                              (size_t)ROWS * COLS), "mq_dequantize_tensor");
    double sqnr;
    must(mq_sqnr(values, back, (size_t)ROWS * COLS, &sqnr), "mq_sqnr");
    mq_size_info size;
    must(mq_size_report(cfg, w, &size), "mq_size_report");

    printf("%s\n", name);
    printf("  scales (%zu): %.6g %.6g %.6g %.6g ...\n", n_params, scales[0], scales[1], scales[2], scales[3]);
    printf("  size: %llu -> %llu bytes (%.3f bits per weight)\n", (unsigned long long)size.original_bytes,
           (unsigned long long)size.quantized_bytes, size.bits_per_weight);
    printf("  SQNR: %.2f dB\n", sqnr);
    free(q);
    free(scales);
    free(zps);
    free(back);
}

static int on_progress(uint64_t done, uint64_t total, uint64_t bytes, uint64_t bytes_total, void* user) {
    (void)user;
    printf("  quantized %llu/%llu tensors (%llu/%llu bytes)\n", (unsigned long long)done, (unsigned long long)total,
           (unsigned long long)bytes, (unsigned long long)bytes_total);
    return 0; /* non-zero would cancel */
}

/* The same matrix as the weight of a Linear layer: quantize the model, read the report, and
 * dequantize it back. The model borrows `values` until mq_model_free. */
static void run_model(const mq_tensor* w, const float* values) {
    mq_model *m, *q, *back;
    mq_model_config cfg;
    must(mq_model_new(&m), "mq_model_new");
    must(mq_model_add_tensor(m, "fc.weight", w), "mq_model_add_tensor");
    must(mq_model_set_module_type(m, "fc", "torch.nn.modules.linear.Linear"), "mq_model_set_module_type");
    must(mq_model_config_init(&cfg), "mq_model_config_init"); /* INT8 per-channel, weight only */
    printf("model INT8 (mq_model_quantize)\n");
    must(mq_model_quantize(m, &cfg, on_progress, NULL, &q), "mq_model_quantize");
    size_t len;
    if (mq_model_report_json(q, NULL, 0, &len) != MQ_EBUFFER) must(MQ_EINTERNAL, "mq_model_report_json size");
    char* report = malloc(len + 1);
    if (!report) exit(1);
    must(mq_model_report_json(q, report, len + 1, &len), "mq_model_report_json");
    printf("  report: %.120s...\n", report);
    free(report);
    must(mq_model_dequantize(q, &back), "mq_model_dequantize");
    float* deq = malloc((size_t)ROWS * COLS * sizeof *deq);
    if (!deq) exit(1);
    must(mq_model_tensor_read(back, "fc.weight", deq, (size_t)ROWS * COLS * sizeof *deq), "mq_model_tensor_read");
    double sqnr;
    must(mq_sqnr(values, deq, (size_t)ROWS * COLS, &sqnr), "mq_sqnr");
    printf("  SQNR: %.2f dB\n", sqnr);
    free(deq);
    mq_model_free(back);
    mq_model_free(q);
    mq_model_free(m);
}

int main(void) {
    if (mq_version_number() / 10000 != MQ_VERSION_MAJOR) {
        fprintf(stderr, "libmonoquant %s does not match monoquant.h %s\n", mq_version_string(), MQ_VERSION_STRING);
        return 1;
    }
    printf("libmonoquant %s\n", mq_version_string());

    /* A deterministic "weight matrix": smooth rows of different magnitude plus a little noise. */
    float* values = malloc((size_t)ROWS * COLS * sizeof *values);
    if (!values) return 1;
    unsigned seed = 1;
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
            seed = seed * 1103515245u + 12345u;
            float noise = (float)((seed >> 16) & 0x7fff) / 32768.0f - 0.5f;
            values[r * COLS + c] = (0.1f + 0.05f * (float)(r % 8)) * (sinf(0.05f * (float)(c + r)) + 0.3f * noise);
        }
    const int64_t shape[2] = {ROWS, COLS};
    mq_tensor w = {values, MQ_DTYPE_F32, 2, shape, NULL};

    mq_config cfg;
    must(mq_config_init(&cfg), "mq_config_init"); /* INT8, symmetric, per-channel along axis 0 */
    run("INT8 per-channel (symmetric, axis 0)", &cfg, &w, values);

    cfg.format = MQ_INT4;
    cfg.granularity = MQ_PER_GROUP;
    cfg.group_size = 32;
    run("INT4 group-wise (symmetric, groups of 32)", &cfg, &w, values);

    run_model(&w, values);
    free(values);
    return 0;
}
