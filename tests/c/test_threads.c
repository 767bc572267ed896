/* 8 threads quantizing at once get exactly the bytes one thread gets, and each thread sees only
 * its own mq_last_error. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "monoquant.h"
#include "monoquant_debug.h"

#define NT 8
#define ROWS 256
#define COLS 1024
#define N (ROWS * COLS)

static float* input;
static const int64_t SHAPE[2] = {ROWS, COLS};

typedef struct result {
    int rc8, rc4;
    int8_t q8[N];
    float s8[ROWS];
    int32_t z8[ROWS];
    uint8_t q4[N / 2];
    float s4[N / 32];
    int32_t z4[N / 32];
    int err_ok;
    char err[256];
} result;

static void run(result* r, int id) {
    mq_tensor x;
    memset(&x, 0, sizeof x);
    x.data = input;
    x.dtype = MQ_DTYPE_F32;
    x.ndim = 2;
    x.shape = SHAPE;
    mq_config c;
    mq_config_init(&c);
    r->rc8 = mq_quantize_tensor(&c, &x, r->q8, sizeof r->q8, r->s8, r->z8, ROWS, NULL);
    c.format = MQ_INT4;
    c.granularity = MQ_PER_GROUP;
    c.group_size = 32;
    c.scheme = MQ_ASYMMETRIC;
    r->rc4 = mq_quantize_tensor(&c, &x, r->q4, sizeof r->q4, r->s4, r->z4, N / 32, NULL);
    if (id >= 0) {
        /* A thread-specific failure: the buffer is id bytes short. */
        char want[64];
        mq_config_init(&c);
        int rc = mq_quantize_tensor(&c, &x, r->q8, (size_t)(N - 1 - id), r->s8, r->z8, ROWS, NULL);
        snprintf(want, sizeof want, "has %d bytes", N - 1 - id);
        strncpy(r->err, mq_last_error(), sizeof r->err - 1);
        r->err_ok = rc == MQ_EBUFFER && strstr(mq_last_error(), want) != NULL;
    }
}

typedef struct job { result* r; int id; } job;

static void* worker(void* arg) {
    job* j = arg;
    for (int rep = 0; rep < 3; rep++) run(j->r, j->id);
    return NULL;
}

int main(void) {
    input = malloc(sizeof(float) * N);
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        input[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * (float)(1 + i / COLS % 7);
    }
    result* one = calloc(1, sizeof *one);
    result* rs = calloc(NT, sizeof *rs);
    run(one, -1);
    CHECK(one->rc8 == MQ_OK && one->rc4 == MQ_OK, "single thread: rc %d %d, want 0 0 (%s)", one->rc8, one->rc4, mq_last_error());

    pthread_t th[NT];
    job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i].r = &rs[i];
        jobs[i].id = i;
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) {
        result* r = &rs[i];
        CHECK(r->rc8 == MQ_OK && r->rc4 == MQ_OK, "thread %d: rc %d %d, want 0 0", i, r->rc8, r->rc4);
        CHECK(memcmp(r->q8, one->q8, sizeof r->q8) == 0 && memcmp(r->s8, one->s8, sizeof r->s8) == 0 && memcmp(r->z8, one->z8, sizeof r->z8) == 0,
              "thread %d: INT8 per-channel result differs from the single-thread one", i);
        CHECK(memcmp(r->q4, one->q4, sizeof r->q4) == 0 && memcmp(r->s4, one->s4, sizeof r->s4) == 0 && memcmp(r->z4, one->z4, sizeof r->z4) == 0,
              "thread %d: INT4 g32 result differs from the single-thread one", i);
        CHECK(r->err_ok, "thread %d: mq_last_error() = \"%s\", want its own short-buffer message (%d bytes)", i, r->err, N - 1 - i);
    }
    free(input);
    free(one);
    free(rs);
    CHECK(mq_debug_live_handles() == 0, "live handles %lld at exit, want 0", (long long)mq_debug_live_handles());
    TEST_EXIT();
}
