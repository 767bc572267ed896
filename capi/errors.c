/* The parts of the ABI that need no engine: version, status strings and the per-thread error
 * buffer. They are in C because the error buffer must be thread-local for the OS thread that
 * called in (a Go goroutine may move between threads, the C caller does not), and because strings
 * returned to C must live in C memory. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "capi.h"

#define MQ_ERRBUF 2048

/* The buffer is per thread but lives on the heap behind a pthread key, not in a __thread array:
 * a Go c-shared library is marked STATIC_TLS, so all of its thread-local data must fit in the
 * small surplus glibc reserves for libraries loaded with dlopen (Python's ctypes loads it that
 * way). A 2 KiB __thread array does not fit there ("cannot allocate memory in static TLS block");
 * a key costs no TLS at all, and its destructor frees the buffer when the thread exits. */
static pthread_key_t mq__errkey;
static pthread_once_t mq__erronce = PTHREAD_ONCE_INIT;
static int mq__errkey_ok;

static void mq__errkey_init(void) { mq__errkey_ok = pthread_key_create(&mq__errkey, free) == 0; }

static char* mq__errbuf(int create) {
    pthread_once(&mq__erronce, mq__errkey_init);
    if (!mq__errkey_ok) return NULL;
    char* buf = pthread_getspecific(mq__errkey);
    if (!buf && create) {
        buf = calloc(1, MQ_ERRBUF);
        if (buf && pthread_setspecific(mq__errkey, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

void mq__set_last_error(const char* msg, size_t n) {
    char* buf = mq__errbuf(1);
    if (!buf) return; /* out of memory: keep the previous message rather than crash */
    if (n >= MQ_ERRBUF) n = MQ_ERRBUF - 1;
    memcpy(buf, msg, n);
    buf[n] = '\0';
}

const char* mq_last_error(void) {
    const char* buf = mq__errbuf(0);
    return buf ? buf : "";
}

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
    case MQ_ECANCELED: return "canceled";
    }
    return "unknown status";
}
