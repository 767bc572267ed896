/* Private to the library build: the public header plus const-qualified aliases.
 *
 * cgo declares every //export itself from the Go parameter types and has no way to say const, so a
 * parameter written *C.mq_config would be declared `mq_config*` and clash with the public
 * `const mq_config*`. Go parameters use these aliases instead, which cgo prints by name, so the
 * generated declarations are exactly the public ones. */
#ifndef MONOQUANT_CAPI_H
#define MONOQUANT_CAPI_H
#include <stdlib.h>
#include "monoquant.h"

typedef const mq_config mq_cconfig;
typedef const mq_observer_config mq_cobserver_config;
typedef const mq_tensor mq_ctensor;
typedef const void mq_cvoid;
typedef const float mq_cfloat;
typedef const int32_t mq_cint32;
typedef const int64_t mq_cint64;

/* Copies msg (not NUL-terminated, n bytes) into the calling thread's error buffer. */
void mq__set_last_error(const char* msg, size_t n) __attribute__((visibility("hidden")));

/* Handles are integer ids that C sees as opaque pointers; the conversion happens on the C side
 * so no integer is ever turned into a Go pointer. */
static inline mq_observer* mq__observer_from_id(uintptr_t id) { return (mq_observer*)id; }
static inline uintptr_t mq__id_from_observer(mq_observer* h) { return (uintptr_t)h; }
#endif
