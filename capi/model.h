/* Private to the library build: what the model exports need besides capi.h (const aliases for
 * cgo, handle conversions, and a trampoline for the caller's progress callback, which Go cannot
 * call directly). */
#ifndef MONOQUANT_CAPI_MODEL_H
#define MONOQUANT_CAPI_MODEL_H
#include <pthread.h>
#include "capi.h"

typedef const mq_model_config mq_cmodel_config;
typedef const volatile int32_t mq_ccancel_flag;
typedef const mq_output mq_coutput;
typedef const char mq_cchar;

static inline mq_model* mq__model_from_id(uintptr_t id) { return (mq_model*)id; }
static inline uintptr_t mq__id_from_model(mq_model* h) { return (uintptr_t)h; }
static inline mq_report* mq__report_from_id(uintptr_t id) { return (mq_report*)id; }
static inline uintptr_t mq__id_from_report(mq_report* r) { return (uintptr_t)r; }

static inline int mq__call_progress(mq_progress_fn fn, uint64_t td, uint64_t tt, uint64_t bd,
                                    uint64_t bt, void* user) {
    return fn(td, tt, bd, bt, user);
}
static inline int mq__call_stream(mq_stream_fn fn, int32_t event, const char* name, void* user) {
    return fn(event, name, user);
}
/* The calling OS thread, to recognise a call made from inside a progress callback. */
static inline uint64_t mq__thread_id(void) { return (uint64_t)pthread_self(); }
#endif
