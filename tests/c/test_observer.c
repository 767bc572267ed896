/* Observer handles: torch parity through the ABI, every handle misuse, and two threads on one
 * observer. Golden values from testdata/gen_golden.py. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "monoquant.h"
#include "monoquant_debug.h"
#include "testdata/golden.h"

static const int64_t SHAPE[2] = {4, 16};

static mq_tensor f32(const float* data) {
    mq_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = MQ_DTYPE_F32;
    t.ndim = 2;
    t.shape = SHAPE;
    return t;
}

static void test_minmax(void) {
    mq_observer_config oc;
    CHECK_RC(mq_observer_config_init(NULL), MQ_EINVAL);
    CHECK_RC(mq_observer_config_init(&oc), MQ_OK);
    mq_observer* obs = (mq_observer*)1;
    CHECK_RC(mq_observer_new(NULL, &oc), MQ_EINVAL);
    CHECK_RC(mq_observer_new(&obs, NULL), MQ_EINVAL);
    CHECK(obs == NULL, "mq_observer_new failure left *out = %p, want NULL", (void*)obs);
    mq_observer_config bad = oc;
    bad.version = 0;
    CHECK_RC(mq_observer_new(&obs, &bad), MQ_EINVAL);
    bad = oc;
    bad.kind = 42;
    CHECK_RC(mq_observer_new(&obs, &bad), MQ_EINVAL);
    bad = oc;
    bad.averaging_constant = 2.0f;
    bad.kind = MQ_OBSERVER_MOVING_AVERAGE;
    CHECK_RC(mq_observer_new(&obs, &bad), MQ_EINVAL);
    CHECK(mq_debug_live_handles() == 0, "failed constructors left %lld live handles", (long long)mq_debug_live_handles());

    CHECK_RC(mq_observer_new(&obs, &oc), MQ_OK);
    CHECK(mq_debug_live_handles() == 1, "live handles = %lld after one new, want 1", (long long)mq_debug_live_handles());
    mq_tensor x = f32(G_X), x2 = f32(G_X2);
    CHECK_RC(mq_observer_update(obs, &x), MQ_OK);
    CHECK_RC(mq_observer_update(obs, &x2), MQ_OK);
    float s[4], mn[4], mx[4];
    int32_t z[4];
    size_t n = 99;
    CHECK_RC(mq_observer_qparams(obs, NULL, NULL, 0, &n), MQ_EBUFFER);
    CHECK(n == 1, "qparams count = %zu, want 1", n);
    CHECK_RC(mq_observer_qparams(obs, s, z, 4, NULL), MQ_EINVAL);
    CHECK_RC(mq_observer_qparams(obs, s, z, 4, &n), MQ_OK);
    CHECK(n == 1 && s[0] == G_OBS_SCALE[0] && z[0] == G_OBS_ZP[0], "MinMaxObserver qparams = (%.9g, %d) x%zu, want (%.9g, %d) (torch)", s[0], z[0], n, G_OBS_SCALE[0], G_OBS_ZP[0]);
    CHECK_RC(mq_observer_minmax(obs, mn, mx, 4, &n), MQ_OK);
    CHECK(n == 1 && mn[0] == G_OBS_MIN[0] && mx[0] == G_OBS_MAX[0], "range = [%g, %g], want [%g, %g]", mn[0], mx[0], G_OBS_MIN[0], G_OBS_MAX[0]);

    /* bad input leaves the state alone */
    mq_tensor bad_t = x;
    bad_t.dtype = MQ_DTYPE_I32;
    CHECK_RC(mq_observer_update(obs, &bad_t), MQ_EDTYPE);
    CHECK_RC(mq_observer_update(obs, NULL), MQ_EINVAL);
    float nan[64];
    memcpy(nan, G_X, sizeof nan);
    nan[5] = NAN;
    bad_t = f32(nan);
    /* NaN fails with MQ_ENONFINITE, says where, and leaves the state alone. */
    {
        int rc = mq_observer_update(obs, &bad_t);
        CHECK(rc == MQ_ENONFINITE && strstr(mq_last_error(), "NaN") && strstr(mq_last_error(), "5"),
              "mq_observer_update(NaN at 5) = %d (%s), want MQ_ENONFINITE naming the NaN at index 5", rc, mq_last_error());
    }
    CHECK_RC(mq_observer_qparams(obs, s, z, 4, &n), MQ_OK);
    CHECK(s[0] == G_OBS_SCALE[0] && z[0] == G_OBS_ZP[0], "qparams after refused inputs = (%.9g, %d), want unchanged (%.9g, %d)", s[0], z[0], G_OBS_SCALE[0], G_OBS_ZP[0]);

    CHECK_RC(mq_observer_reset(obs), MQ_OK);
    CHECK_RC(mq_observer_minmax(obs, mn, mx, 4, &n), MQ_OK);
    CHECK(n == 1 && isinf(mn[0]) && mn[0] > 0 && isinf(mx[0]) && mx[0] < 0, "range after reset = [%g, %g], want [inf, -inf]", mn[0], mx[0]);

    CHECK_RC(mq_observer_free(obs), MQ_OK);
    /* stale handle everywhere */
    CHECK_RC(mq_observer_update(obs, &x), MQ_EHANDLE);
    CHECK_RC(mq_observer_qparams(obs, s, z, 4, &n), MQ_EHANDLE);
    CHECK_RC(mq_observer_minmax(obs, mn, mx, 4, &n), MQ_EHANDLE);
    CHECK_RC(mq_observer_reset(obs), MQ_EHANDLE);
    CHECK_RC(mq_observer_free(obs), MQ_EHANDLE);
    CHECK(strstr(mq_last_error(), "freed") != NULL, "double free message %s, want it to say freed", mq_last_error());
    CHECK_RC(mq_observer_free(NULL), MQ_OK);
    CHECK_RC(mq_observer_update(NULL, &x), MQ_EHANDLE);
    /* a forged handle is refused, not dereferenced */
    mq_observer* forged = (mq_observer*)(uintptr_t)0xdeadbeef;
    CHECK_RC(mq_observer_reset(forged), MQ_EHANDLE);
    CHECK_RC(mq_observer_free(forged), MQ_EHANDLE);
}

static void test_per_channel(void) {
    mq_observer_config oc;
    mq_observer_config_init(&oc);
    oc.kind = MQ_OBSERVER_PER_CHANNEL_MINMAX;
    oc.qdtype = MQ_QINT8;
    oc.scheme = MQ_SYMMETRIC;
    oc.ch_axis = 1;
    mq_observer* obs = NULL;
    CHECK_RC(mq_observer_new(&obs, &oc), MQ_OK);
    mq_tensor x = f32(G_X), x2 = f32(G_X2);
    CHECK_RC(mq_observer_update(obs, &x), MQ_OK);
    CHECK_RC(mq_observer_update(obs, &x2), MQ_OK);
    float s[16];
    int32_t z[16];
    size_t n = 0;
    /* refused shapes: 1-D (no axis 1), and a batch with 8 channels after 16 */
    const int64_t flat[1] = {64}, narrow[2] = {8, 8};
    mq_tensor bad_t = x;
    bad_t.ndim = 1;
    bad_t.shape = flat;
    CHECK_RC(mq_observer_update(obs, &bad_t), MQ_EINVAL);
    bad_t.ndim = 2;
    bad_t.shape = narrow;
    CHECK_RC(mq_observer_update(obs, &bad_t), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "channels") != NULL, "channel-count message %s, want it to mention channels", mq_last_error());
    CHECK_RC(mq_observer_qparams(obs, s, z, 8, &n), MQ_EBUFFER);
    CHECK(n == 16, "per-channel count = %zu, want 16", n);
    CHECK_RC(mq_observer_qparams(obs, s, z, 16, &n), MQ_OK);
    for (int i = 0; i < 16; i++)
        CHECK(s[i] == G_OBSPC_SCALE[i] && z[i] == G_OBSPC_ZP[i], "per-channel qparams[%d] = (%.9g, %d), want (%.9g, %d) (torch)", i, s[i], z[i], G_OBSPC_SCALE[i], G_OBSPC_ZP[i]);
    CHECK_RC(mq_observer_free(obs), MQ_OK);
}

/* Two threads feeding one observer: the handle's lock serialises them, so the result is the
 * same as feeding every batch from one thread (min/max are order-independent). */
static mq_observer* shared;
static void* feed(void* arg) {
    mq_tensor x = f32((const float*)arg);
    for (int i = 0; i < 200; i++)
        if (mq_observer_update(shared, &x) != MQ_OK) return (void*)1;
    return NULL;
}

static void test_shared_handle(void) {
    mq_observer_config oc;
    mq_observer_config_init(&oc);
    CHECK_RC(mq_observer_new(&shared, &oc), MQ_OK);
    pthread_t a, b;
    void *ra, *rb;
    pthread_create(&a, NULL, feed, (void*)G_X);
    pthread_create(&b, NULL, feed, (void*)G_X2);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    CHECK(ra == NULL && rb == NULL, "concurrent updates failed: %s", mq_last_error());
    float s;
    int32_t z;
    size_t n;
    CHECK_RC(mq_observer_qparams(shared, &s, &z, 1, &n), MQ_OK);
    CHECK(s == G_OBS_SCALE[0] && z == G_OBS_ZP[0], "qparams after concurrent updates = (%.9g, %d), want (%.9g, %d)", s, z, G_OBS_SCALE[0], G_OBS_ZP[0]);
    CHECK_RC(mq_observer_free(shared), MQ_OK);
}

int main(void) {
    test_minmax();
    test_per_channel();
    test_shared_handle();
    CHECK(mq_debug_live_handles() == 0, "mq_debug_live_handles() = %lld at exit, want 0", (long long)mq_debug_live_handles());
    TEST_EXIT();
}
