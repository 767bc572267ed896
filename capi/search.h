/* Private to the library build: handle conversions for the search exports. */
#ifndef MONOQUANT_CAPI_SEARCH_H
#define MONOQUANT_CAPI_SEARCH_H
#include "capi.h"

typedef const double mq_cdouble;

static inline mq_search* mq__search_from_id(uintptr_t id) { return (mq_search*)id; }
static inline uintptr_t mq__id_from_search(mq_search* h) { return (uintptr_t)h; }
#endif
