/*
 * monoquant_debug.h — hooks for the library's own tests. Not installed and not a published API
 * (include/monoquant.h is); they may change in any release.
 */
#ifndef MONOQUANT_DEBUG_H
#define MONOQUANT_DEBUG_H

#include "monoquant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of live handles of every kind. Tests assert it is 0 once everything is freed. */
MQ_API int64_t mq_debug_live_handles(void);

/* Makes the engine panic inside an export so tests can check that panics become MQ_EPANIC with
 * the message in mq_last_error. Always returns MQ_EPANIC. */
MQ_API int mq_debug_panic(void);

#ifdef __cplusplus
}
#endif

#endif /* MONOQUANT_DEBUG_H */
