/* Private to the library build: handle conversions for the sensitivity exports. */
#ifndef MONOQUANT_CAPI_SENSITIVITY_H
#define MONOQUANT_CAPI_SENSITIVITY_H
#include "capi.h"

static inline mq_sensitivity* mq__sensitivity_from_id(uintptr_t id) { return (mq_sensitivity*)id; }
static inline uintptr_t mq__id_from_sensitivity(mq_sensitivity* h) { return (uintptr_t)h; }
#endif
