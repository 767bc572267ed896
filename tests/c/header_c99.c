/* Compiles the public header alone as strict C99 (-Wall -Wextra -Werror -pedantic). */
#include "monoquant.h"

int main(void) {
    mq_config c;
    mq_tensor t = {0, MQ_DTYPE_F32, 0, 0, 0};
    (void)t;
    return mq_config_init(&c) == MQ_OK && mq_version_number() / 10000 == MQ_VERSION_MAJOR ? 0 : 1;
}
