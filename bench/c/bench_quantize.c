/* Throughput of mq_quantize_tensor on a 4096x4096 float32 matrix: INT8 per-channel and INT4
 * group-wise (g128), best of N runs, in GB/s of float32 input (10^9 bytes per second).
 *
 *   bench_quantize [runs]     prints one line per scheme: best wall time and GB/s, and the
 *                             process CPU time of that run
 *
 * The CPU time (all threads of the process, the engine's workers included) is reported because
 * wall time on a shared machine measures the neighbours too: CPU seconds per run barely move
 * with load, and cores / CPU seconds is what the run would reach with the machine to itself.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "monoquant.h"

#define ROWS 4096
#define COLS 4096

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(const char* name, const mq_config* cfg, const mq_tensor* x, int runs) {
    size_t data_bytes, n_params;
    if (mq_quantized_size(cfg, x, &data_bytes, &n_params) != MQ_OK) {
        fprintf(stderr, "%s: %s\n", name, mq_last_error());
        return 1;
    }
    void* q = malloc(data_bytes);
    float* s = malloc(n_params * sizeof *s);
    int32_t* z = malloc(n_params * sizeof *z);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < runs + 1; r++) { /* run 0 warms up pages and the Go runtime's threads */
        double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_s(CLOCK_MONOTONIC);
        int rc = mq_quantize_tensor(cfg, x, q, data_bytes, s, z, n_params, NULL);
        double t = clock_s(CLOCK_MONOTONIC) - t0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (rc != MQ_OK) {
            fprintf(stderr, "%s: %s\n", name, mq_last_error());
            return 1;
        }
        if (r > 0 && t < best) best = t;
        if (r > 0 && cpu < best_cpu) best_cpu = cpu;
    }
    double bytes = 4.0 * ROWS * COLS;
    printf("%-24s %.6f s  %.2f GB/s  cpu %.6f s  %.2f GB/s per core-second\n", name, best,
           bytes / best / 1e9, best_cpu, bytes / best_cpu / 1e9);
    free(q);
    free(s);
    free(z);
    return 0;
}

int main(int argc, char** argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 10;
    float* data = malloc(sizeof(float) * ROWS * COLS);
    if (!data) return 1;
    uint32_t seed = 42;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
        seed = seed * 1664525u + 1013904223u;
        data[i] = (float)(int32_t)seed * (1.0f / 2147483648.0f);
    }
    const int64_t shape[2] = {ROWS, COLS};
    mq_tensor x = {data, MQ_DTYPE_F32, 2, shape, NULL};
    mq_config c;
    mq_config_init(&c);
    int rc = bench("engine int8 per-channel", &c, &x, runs);
    c.format = MQ_INT4;
    c.granularity = MQ_PER_GROUP;
    c.group_size = 128;
    rc |= bench("engine int4 g128", &c, &x, runs);
    free(data);
    return rc;
}
