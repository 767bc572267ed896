/* A minimal test harness: each failed check prints what was called, what came back and what was
 * expected, and the test binary exits non-zero if any failed. */
#ifndef MQ_TEST_CHECK_H
#define MQ_TEST_CHECK_H
#include <stdio.h>
#include "monoquant.h"

static int mq_test_failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            mq_test_failures++;                                            \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

/* CHECK_RC(call, want): the status of call, with mq_last_error when it differs. */
#define CHECK_RC(call, want)                                                                   \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        CHECK(rc_ == (want), "%s = %d (%s), want %d (%s); last error: %s", #call, rc_,         \
              mq_status_string(rc_), (int)(want), mq_status_string(want), mq_last_error());    \
    } while (0)

#define TEST_EXIT()                                                                  \
    do {                                                                             \
        if (mq_test_failures) {                                                      \
            fprintf(stderr, "%d check(s) failed\n", mq_test_failures);               \
            return 1;                                                                \
        }                                                                            \
        printf("ok\n");                                                              \
        return 0;                                                                    \
    } while (0)
#endif
