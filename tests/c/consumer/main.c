/* Links against an installed libmonoquant and quantizes a tiny tensor. */
#include <stdio.h>
#include <string.h>

#include "monoquant.h"

int main(void) {
    const float v[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
    const int64_t shape[1] = {4};
    mq_tensor t = {v, MQ_DTYPE_F32, 1, shape, NULL};
    mq_config c;
    int8_t q[4];
    float s;
    int32_t z;
    mq_config_init(&c);
    c.granularity = MQ_PER_TENSOR;
    int rc = mq_quantize_tensor(&c, &t, q, sizeof q, &s, &z, 1, NULL);
    if (rc != MQ_OK || strcmp(mq_version_string(), MQ_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: rc %d (%s), library %s, header %s\n", rc, mq_last_error(), mq_version_string(), MQ_VERSION_STRING);
        return 1;
    }
    /* symmetric qint8: scale = 2/127.5: -1 -> -63.75 -> -64, 0.5 -> 31.875 -> 32, 2 -> 127 */
    if (q[0] != -64 || q[1] != 0 || q[2] != 32 || q[3] != 127) {
        fprintf(stderr, "consumer: q = %d %d %d %d, want -64 0 32 127\n", q[0], q[1], q[2], q[3]);
        return 1;
    }
    printf("consumer ok: libmonoquant %s\n", mq_version_string());
    return 0;
}
