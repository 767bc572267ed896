/* A deliberate bug for the sanitizer setup to catch: the caller says its output buffer has 64
 * bytes but allocated 60, so the engine (Go code) writes past it. ctest expects this program to be
 * stopped by AddressSanitizer with a heap-buffer-overflow inside core/quant. If it ever exits
 * cleanly, the ASan runs of the real tests have stopped checking the Go side. */
#include <stdint.h>
#include <stdlib.h>

#include "monoquant.h"

int main(void) {
    float x[64] = {0};
    const int64_t shape[2] = {4, 16};
    mq_tensor t = {x, MQ_DTYPE_F32, 2, shape, NULL};
    mq_config c;
    float s[4];
    int32_t z[4];
    int8_t* q = malloc(60);
    mq_config_init(&c);
    int rc = mq_quantize_tensor(&c, &t, q, 64, s, z, 4, NULL);
    free(q);
    return rc;
}
