// Compiles the public header as C++11 (-Wall -Wextra -Werror -pedantic) and links against the
// library, which proves the extern "C" guards give unmangled names.
#include "monoquant.h"

int main() {
    mq_config c;
    mq_observer* obs = nullptr;
    if (mq_config_init(&c) != MQ_OK) return 1;
    return mq_observer_free(obs) == MQ_OK && mq_version_number() == MQ_VERSION_NUMBER ? 0 : 1;
}
