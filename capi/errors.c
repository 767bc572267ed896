/* The parts of the ABI that need no engine: version, status strings and the per-thread error
 * buffer. They are in C because the error buffer must be thread-local for the OS thread that
 * called in (a Go goroutine may move between threads, the C caller does not), and because strings
 * returned to C must live in C memory. */
#include <string.h>
#include "capi.h"

#define MQ_ERRBUF 2048

static __thread char mq__errbuf[MQ_ERRBUF];

void mq__set_last_error(const char* msg, size_t n) {
    if (n >= MQ_ERRBUF) n = MQ_ERRBUF - 1;
    memcpy(mq__errbuf, msg, n);
    mq__errbuf[n] = '\0';
}

const char* mq_last_error(void) { return mq__errbuf; }

unsigned mq_version_number(void) { return MQ_VERSION_NUMBER; }

const char* mq_version_string(void) { return MQ_VERSION_STRING; }

const char* mq_status_string(int status) {
    switch (status) {
    case MQ_OK: return "ok";
    case MQ_EINVAL: return "invalid argument";
    case MQ_EHANDLE: return "invalid or stale handle";
    case MQ_EDTYPE: return "unsupported element type";
    case MQ_ESHAPE: return "invalid shape";
    case MQ_EBUFFER: return "buffer too short";
    case MQ_ENONFINITE: return "input holds NaN or Inf";
    case MQ_EIO: return "I/O error";
    case MQ_EFORMAT: return "corrupt or unrecognised data";
    case MQ_EUNSUPPORTED: return "unsupported";
    case MQ_EINTERNAL: return "internal error";
    case MQ_EPANIC: return "internal error (panic)";
    }
    return "unknown status";
}
