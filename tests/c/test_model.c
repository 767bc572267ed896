/* Model handles: build from caller tensors, quantize (INT8, INT4, static) with a progress callback
 * and cancellation, cross-check against the tensor-level ABI, save/load .safetensors and .pt,
 * dequantize, JSON, the bundled example checkpoint and every error path. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "monoquant.h"
#include "monoquant_debug.h"

#ifndef MQ_SOURCE_DIR
#error "MQ_SOURCE_DIR must name the source tree (set by CMake)"
#endif

/* A small Linear + Conv2d state_dict. fc's rows are two INT4 groups of 128. */
#define FC_OUT 16
#define FC_IN 256
#define CV_OUT 8
#define CV_IN 4
static float fc_w[FC_OUT * FC_IN], fc_b[FC_OUT], cv_w[CV_OUT * CV_IN * 3 * 3], cv_b[CV_OUT];
/* conv.weight is handed over transposed in memory (strides), so the library must copy it. */
static float cv_w_t[CV_OUT * CV_IN * 3 * 3];
static const int64_t FC_W_SHAPE[2] = {FC_OUT, FC_IN}, FC_B_SHAPE[1] = {FC_OUT};
static const int64_t CV_W_SHAPE[4] = {CV_OUT, CV_IN, 3, 3}, CV_B_SHAPE[1] = {CV_OUT};
/* cv_w_t is laid out [3][3][CV_IN][CV_OUT]: element (o, i, y, x) lives at ((y*3+x)*CV_IN+i)*CV_OUT+o. */
static const int64_t CV_W_T_STRIDES[4] = {1, CV_OUT, 3 * CV_IN * CV_OUT, CV_IN * CV_OUT};

static char tmpdir[256];

static void fill(void) {
    /* deterministic, varied per row so per-channel scales differ */
    for (int i = 0; i < FC_OUT * FC_IN; i++) fc_w[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i / FC_IN) * 0.25f);
    for (int i = 0; i < FC_OUT; i++) fc_b[i] = 0.01f * (float)i;
    for (int o = 0; o < CV_OUT; o++)
        for (int i = 0; i < CV_IN; i++)
            for (int k = 0; k < 9; k++) {
                float v = cosf(0.11f * (float)(o * 36 + i * 9 + k)) * (0.5f + 0.1f * (float)o);
                cv_w[(o * CV_IN + i) * 9 + k] = v;
                cv_w_t[(k * CV_IN + i) * CV_OUT + o] = v;
            }
    for (int i = 0; i < CV_OUT; i++) cv_b[i] = -0.02f * (float)i;
}

static mq_tensor tens(const void* data, int32_t dtype, int32_t ndim, const int64_t* shape, const int64_t* strides) {
    mq_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim;
    t.shape = shape;
    t.strides = strides;
    return t;
}

static mq_model* build(void) {
    mq_model* m = NULL;
    CHECK_RC(mq_model_new(&m), MQ_OK);
    mq_tensor a = tens(fc_w, MQ_DTYPE_F32, 2, FC_W_SHAPE, NULL), b = tens(fc_b, MQ_DTYPE_F32, 1, FC_B_SHAPE, NULL);
    mq_tensor c = tens(cv_w_t, MQ_DTYPE_F32, 4, CV_W_SHAPE, CV_W_T_STRIDES), d = tens(cv_b, MQ_DTYPE_F32, 1, CV_B_SHAPE, NULL);
    CHECK_RC(mq_model_add_tensor(m, "fc.weight", &a), MQ_OK);
    CHECK_RC(mq_model_add_tensor(m, "fc.bias", &b), MQ_OK);
    CHECK_RC(mq_model_add_tensor(m, "conv.weight", &c), MQ_OK);
    CHECK_RC(mq_model_add_tensor(m, "conv.bias", &d), MQ_OK);
    CHECK_RC(mq_model_set_module_type(m, "fc", "torch.nn.modules.linear.Linear"), MQ_OK);
    CHECK_RC(mq_model_set_module_type(m, "conv", "Conv2d"), MQ_OK);
    CHECK_RC(mq_model_set_metadata(m, "author", "test_model.c"), MQ_OK);
    return m;
}

/* Reads a tensor into a fresh malloc'd buffer (NULL on failure), checking info and read agree. */
static void* read_tensor(mq_model* m, const char* name, size_t* nbytes) {
    size_t n = 0;
    *nbytes = 0;
    CHECK_RC(mq_model_tensor_count(m, &n), MQ_OK);
    for (size_t i = 0; i < n; i++) {
        mq_tensor_info info;
        if (mq_model_tensor_info(m, i, &info) != MQ_OK || strcmp(info.name, name) != 0) continue;
        void* buf = malloc(info.nbytes ? info.nbytes : 1);
        if (!buf) return NULL;
        int rc = mq_model_tensor_read(m, name, buf, info.nbytes);
        CHECK(rc == MQ_OK, "read %s = %d: %s", name, rc, mq_last_error());
        *nbytes = info.nbytes;
        return buf;
    }
    CHECK(0, "tensor %s not found among %zu", name, n);
    return NULL;
}

static char* json_of(mq_model* m, int report) {
    size_t len = 12345;
    int rc = report ? mq_model_report_json(m, NULL, 0, &len) : mq_model_metadata_json(m, NULL, 0, &len);
    CHECK(rc == MQ_EBUFFER && len > 2 && len != 12345, "size query = %d, len %zu; want MQ_EBUFFER and a length", rc, len);
    char* buf = malloc(len + 1);
    if (!buf) return NULL;
    size_t len2 = 0;
    /* one byte short of the NUL */
    rc = report ? mq_model_report_json(m, buf, len, &len2) : mq_model_metadata_json(m, buf, len, &len2);
    CHECK(rc == MQ_EBUFFER && len2 == len, "cap = len gave %d (len %zu), want MQ_EBUFFER (%zu)", rc, len2, len);
    rc = report ? mq_model_report_json(m, buf, len + 1, &len2) : mq_model_metadata_json(m, buf, len + 1, &len2);
    CHECK(rc == MQ_OK && len2 == len && strlen(buf) == len, "json = %d, len %zu strlen %zu, want OK and %zu", rc, len2, strlen(buf), len);
    return buf;
}

/* ---- progress callbacks ---- */
typedef struct progress_log {
    int calls;
    int cancel_at;      /* cancel on this call (1-based); 0 never */
    uint64_t last_td, last_tt, last_bd, last_bt;
    int monotonic;
    mq_model* self;     /* the model being quantized, to try a reentrant call */
    int reentrant_rc;
} progress_log;

static int on_progress(uint64_t td, uint64_t tt, uint64_t bd, uint64_t bt, void* user) {
    progress_log* p = user;
    if (td < p->last_td || bd < p->last_bd) p->monotonic = 0;
    p->calls++;
    p->last_td = td, p->last_tt = tt, p->last_bd = bd, p->last_bt = bt;
    if (p->self) {
        size_t n;
        p->reentrant_rc = mq_model_tensor_count(p->self, &n);
    }
    return p->cancel_at && p->calls == p->cancel_at;
}

/* The stored scales of `name` must be the tensor-level ABI's for the same weights and spec. */
static void check_against_tensor_api(mq_model* q, const char* name, const float* w, int32_t ndim, const int64_t* shape, const mq_config* cfg) {
    mq_tensor in = tens(w, MQ_DTYPE_F32, ndim, shape, NULL);
    size_t data_bytes = 0, np = 0;
    CHECK_RC(mq_quantized_size(cfg, &in, &data_bytes, &np), MQ_OK);
    uint8_t* want_q = malloc(data_bytes);
    float* want_s = malloc(np * sizeof(float));
    int32_t* want_z = malloc(np * sizeof(int32_t));
    if (!want_q || !want_s || !want_z) goto out;
    CHECK_RC(mq_quantize_tensor(cfg, &in, want_q, data_bytes, want_s, want_z, np, NULL), MQ_OK);
    char sname[128];
    snprintf(sname, sizeof sname, "%s.scale", name);
    size_t qb = 0, sb = 0;
    uint8_t* got_q = read_tensor(q, name, &qb);
    float* got_s = read_tensor(q, sname, &sb);
    CHECK(qb == data_bytes, "%s: %zu quantized bytes, tensor API says %zu", name, qb, data_bytes);
    CHECK(sb == np * sizeof(float), "%s: %zu scale bytes, tensor API says %zu scales", name, sb, np);
    if (got_q && got_s && qb == data_bytes && sb == np * sizeof(float)) {
        size_t bad = 0;
        for (size_t i = 0; i < np; i++)
            if (got_s[i] != want_s[i]) {
                if (!bad) CHECK(0, "%s scale[%zu] = %.9g, tensor API gives %.9g", name, i, got_s[i], want_s[i]);
                bad++;
            }
        CHECK(memcmp(got_q, want_q, data_bytes) == 0, "%s: quantized values differ from mq_quantize_tensor's", name);
    }
    free(got_q);
    free(got_s);
out:
    free(want_q);
    free(want_s);
    free(want_z);
}

static void test_build_and_errors(void) {
    mq_model* m = build();
    mq_tensor a = tens(fc_w, MQ_DTYPE_F32, 2, FC_W_SHAPE, NULL);
    CHECK_RC(mq_model_new(NULL), MQ_EINVAL);
    CHECK_RC(mq_model_add_tensor(m, "fc.weight", &a), MQ_EINVAL); /* duplicate */
    CHECK_RC(mq_model_add_tensor(m, NULL, &a), MQ_EINVAL);
    CHECK_RC(mq_model_add_tensor(m, "", &a), MQ_EINVAL);
    CHECK_RC(mq_model_add_tensor(m, "x", NULL), MQ_EINVAL);
    mq_tensor bad = a;
    bad.dtype = 77;
    CHECK_RC(mq_model_add_tensor(m, "x", &bad), MQ_EDTYPE);
    bad = a;
    bad.ndim = MQ_MAX_DIMS + 1;
    CHECK_RC(mq_model_add_tensor(m, "x", &bad), MQ_ESHAPE);
    bad = a;
    bad.data = NULL;
    CHECK_RC(mq_model_add_tensor(m, "x", &bad), MQ_EINVAL);
    CHECK_RC(mq_model_add_tensor(NULL, "x", &a), MQ_EHANDLE);
    CHECK_RC(mq_model_set_module_type(m, "fc", ""), MQ_EINVAL);
    CHECK_RC(mq_model_set_module_type(m, NULL, "Linear"), MQ_EINVAL);
    CHECK_RC(mq_model_set_metadata(m, "monoquant", "x"), MQ_EINVAL);
    CHECK_RC(mq_model_set_metadata(m, "k", NULL), MQ_EINVAL);

    size_t n = 0;
    CHECK_RC(mq_model_tensor_count(m, NULL), MQ_EINVAL);
    CHECK_RC(mq_model_tensor_count(m, &n), MQ_OK);
    CHECK(n == 4, "tensor count = %zu, want 4", n);
    mq_tensor_info info;
    CHECK_RC(mq_model_tensor_info(m, 4, &info), MQ_EINVAL);
    CHECK_RC(mq_model_tensor_info(m, 0, NULL), MQ_EINVAL);
    CHECK_RC(mq_model_tensor_info(m, 2, &info), MQ_OK);
    CHECK(strcmp(info.name, "conv.weight") == 0 && info.dtype == MQ_DTYPE_F32 && info.ndim == 4 && info.shape[0] == CV_OUT &&
              info.shape[3] == 3 && info.shape[4] == 0 && info.nbytes == sizeof cv_w,
          "info(2) = %s dtype %d ndim %d shape[0] %lld nbytes %llu, want conv.weight F32 4 %d %zu", info.name, info.dtype,
          info.ndim, (long long)info.shape[0], (unsigned long long)info.nbytes, CV_OUT, sizeof cv_w);
    const char* first_name = info.name;
    CHECK_RC(mq_model_tensor_info(m, 2, &info), MQ_OK);
    CHECK(info.name == first_name, "tensor name pointer changed between calls (%p, %p)", (const void*)first_name, (const void*)info.name);
    /* a tensor added after the listing shows in the next one (the engine caches the listing) */
    {
        float extra[3] = {1, 2, 3};
        int64_t ex_shape[1] = {3};
        mq_tensor ex = {extra, MQ_DTYPE_F32, 1, ex_shape, NULL};
        CHECK_RC(mq_model_add_tensor(m, "extra", &ex), MQ_OK);
        CHECK_RC(mq_model_tensor_count(m, &n), MQ_OK);
        CHECK(n == 5, "tensor count after adding one = %zu, want 5", n);
        CHECK_RC(mq_model_tensor_info(m, 4, &info), MQ_OK);
        CHECK(strcmp(info.name, "extra") == 0 && info.nbytes == sizeof extra, "info(4) = %s, want extra", info.name);
        size_t enb = 0;
        float* eg = read_tensor(m, "extra", &enb);
        CHECK(eg && enb == sizeof extra && eg[2] == 3.0f, "extra read back differs");
        free(eg);
    }

    /* strided input was gathered into row-major order */
    size_t nb = 0;
    float* got = read_tensor(m, "conv.weight", &nb);
    CHECK(got && nb == sizeof cv_w && memcmp(got, cv_w, sizeof cv_w) == 0, "conv.weight read back differs from the row-major original");
    free(got);
    /* contiguous input is borrowed: the model sees the caller's later writes */
    float saved = fc_b[3];
    fc_b[3] = 42.0f;
    got = read_tensor(m, "fc.bias", &nb);
    CHECK(got && got[3] == 42.0f, "fc.bias[3] = %g after the caller wrote 42, want 42 (borrowed, not copied)", got ? got[3] : -1.0f);
    free(got);
    fc_b[3] = saved;

    float small[4];
    CHECK_RC(mq_model_tensor_read(m, "fc.bias", small, sizeof small), MQ_EBUFFER);
    CHECK(strstr(mq_last_error(), "needs 64") != NULL, "short-buffer message %s does not say the size", mq_last_error());
    CHECK_RC(mq_model_tensor_read(m, "nope", small, sizeof small), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "nope") != NULL, "unknown-tensor message %s does not name it", mq_last_error());
    CHECK_RC(mq_model_tensor_read(m, NULL, small, sizeof small), MQ_EINVAL);
    CHECK_RC(mq_model_tensor_read(m, "fc.bias", NULL, 1 << 20), MQ_EINVAL);

    char* md = json_of(m, 0);
    CHECK(md && strstr(md, "\"author\":\"test_model.c\""), "metadata JSON %s lacks the author entry", md ? md : "(null)");
    free(md);
    CHECK_RC(mq_model_metadata_json(m, NULL, 0, NULL), MQ_EINVAL);
    size_t len;
    CHECK_RC(mq_model_report_json(m, NULL, 0, &len), MQ_EINVAL); /* float model: no report */
    mq_model* d = (mq_model*)1;
    CHECK_RC(mq_model_dequantize(m, &d), MQ_EINVAL);
    CHECK(d == NULL, "failed dequantize left *out = %p", (void*)d);

    /* a handle of another kind is refused */
    mq_observer_config oc;
    mq_observer* obs = NULL;
    CHECK_RC(mq_observer_config_init(&oc), MQ_OK);
    CHECK_RC(mq_observer_new(&obs, &oc), MQ_OK);
    CHECK_RC(mq_model_tensor_count((mq_model*)obs, &n), MQ_EHANDLE);
    CHECK_RC(mq_model_free((mq_model*)obs), MQ_EHANDLE);
    CHECK_RC(mq_observer_free(obs), MQ_OK);
    CHECK_RC(mq_observer_free((mq_observer*)m), MQ_EHANDLE);

    CHECK_RC(mq_model_free(m), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_EHANDLE);
    CHECK_RC(mq_model_free(NULL), MQ_OK);
    CHECK_RC(mq_model_tensor_count(m, &n), MQ_EHANDLE);
    CHECK_RC(mq_model_tensor_count((mq_model*)(uintptr_t)0x7fffffff, &n), MQ_EHANDLE);
}

static void test_config_errors(void) {
    mq_model* m = build();
    mq_model* q = (mq_model*)1;
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(NULL), MQ_EINVAL);
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    CHECK(cfg.bits == 8 && cfg.layers == MQ_LAYER_DEFAULT && cfg.mode == MQ_MODE_WEIGHT_ONLY && cfg.spec.format == MQ_INT8,
          "defaults: bits %d layers %#x mode %d format %d", cfg.bits, cfg.layers, cfg.mode, cfg.spec.format);
    CHECK_RC(mq_model_quantize(m, NULL, NULL, NULL, &q), MQ_EINVAL);
    CHECK(q == NULL, "failed quantize left *out = %p", (void*)q);
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, NULL), MQ_EINVAL);
    mq_model_config c;
    c = cfg; c.version = 0;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.size = 8;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.bits = 7;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "bits") != NULL, "bits message: %s", mq_last_error());
    c = cfg; c.layers = 0;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.layers = 1u << 20;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.n_skip = 1;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    const char* null_skip[1] = {NULL};
    c = cfg; c.skip = null_skip; c.n_skip = 1;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    const char* bad_glob[1] = {"fc["};
    c = cfg; c.skip = bad_glob; c.n_skip = 1;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.mode = 9;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.spec.scheme = 99;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    c = cfg; c.spec.version = 0;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    /* nothing to quantize: every layer skipped, or only embeddings selected */
    const char* skip_all[2] = {"fc", "conv"};
    c = cfg; c.skip = skip_all; c.n_skip = 2;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "nothing to quantize") != NULL, "skip-all message: %s", mq_last_error());
    c = cfg; c.layers = MQ_LAYER_EMBEDDING;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    /* static mode needs calibration */
    c = cfg; c.mode = MQ_MODE_STATIC;
    CHECK_RC(mq_model_quantize(m, &c, NULL, NULL, &q), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "calibrat") != NULL, "static-without-calibration message: %s", mq_last_error());
    c.observer = "bogus";
    CHECK_RC(mq_model_calibrate_begin(m, &c), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "bogus") != NULL, "bad observer message: %s", mq_last_error());
    CHECK(q == NULL, "failed quantize left *out = %p", (void*)q);
    /* NaN in a weight */
    float saved = fc_w[5];
    fc_w[5] = NAN;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_ENONFINITE);
    fc_w[5] = saved;
    CHECK(mq_debug_live_handles() == 1, "live handles = %lld after failed quantizes, want 1", (long long)mq_debug_live_handles());
    CHECK_RC(mq_model_free(m), MQ_OK);
}

static void test_quantize(int bits) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    cfg.bits = bits;
    mq_model* q = NULL;

    /* cancel on the first and on the last progress call: no model either way */
    for (int at = 1; at <= 4; at += 3) {
        progress_log p = {0};
        p.cancel_at = at;
        p.monotonic = 1;
        CHECK_RC(mq_model_quantize(m, &cfg, on_progress, &p, &q), MQ_ECANCELED);
        CHECK(q == NULL && p.calls == at, "cancel at call %d: out %p, %d calls", at, (void*)q, p.calls);
    }
    CHECK(mq_debug_live_handles() == 1, "canceled quantize left %lld handles, want 1", (long long)mq_debug_live_handles());

    progress_log p = {0};
    p.monotonic = 1;
    p.self = m;
    CHECK_RC(mq_model_quantize(m, &cfg, on_progress, &p, &q), MQ_OK);
    CHECK(p.calls == 4 && p.last_td == 4 && p.last_tt == 4 && p.last_bd == p.last_bt &&
              p.last_bt == sizeof fc_w + sizeof fc_b + sizeof cv_w + sizeof cv_b && p.monotonic,
          "progress: %d calls, last (%llu/%llu tensors, %llu/%llu bytes), monotonic %d; want 4 calls ending at 4/4 and all bytes",
          p.calls, (unsigned long long)p.last_td, (unsigned long long)p.last_tt, (unsigned long long)p.last_bd,
          (unsigned long long)p.last_bt, p.monotonic);
    CHECK(p.reentrant_rc == MQ_EINVAL, "a call on the model from its own progress callback = %d, want MQ_EINVAL", p.reentrant_rc);

    /* compare with the tensor-level ABI */
    mq_config tc;
    CHECK_RC(mq_config_init(&tc), MQ_OK);
    if (bits == 8) {
        check_against_tensor_api(q, "fc.weight", fc_w, 2, FC_W_SHAPE, &tc);
        check_against_tensor_api(q, "conv.weight", cv_w, 4, CV_W_SHAPE, &tc);
    } else {
        /* a model's INT4 is asymmetric by default (mq_defaults_json), the tensor functions'
         * symmetric: ask for the same scheme */
        tc.format = MQ_INT4;
        tc.scheme = MQ_ASYMMETRIC;
        tc.granularity = MQ_PER_GROUP;
        tc.group_size = 128;
        check_against_tensor_api(q, "fc.weight", fc_w, 2, FC_W_SHAPE, &tc);
    }
    size_t n = 0;
    CHECK_RC(mq_model_tensor_count(q, &n), MQ_OK);
    size_t want_n = bits == 8 ? 6 : 8; /* INT4: the zero points too (conv's rows of 36 fall back to groups of 18) */
    CHECK(n == want_n, "quantized model has %zu tensors, want %zu (two weights + scales (+ INT4 zero points), two biases)", n, want_n);

    char* rep = json_of(q, 1);
    if (rep) {
        CHECK(strstr(rep, "\"tensors_quantized\":2") && strstr(rep, "\"sqnr_db\":") && strstr(rep, "\"name\":\"fc.weight\"") &&
                  strstr(rep, bits == 8 ? "\"format\":\"int8\"" : "\"format\":\"int4\""),
              "report JSON lacks expected fields: %.300s", rep);
    }
    free(rep);
    char* md = json_of(q, 0);
    CHECK(md && strstr(md, "\"monoquant\":") && strstr(md, "\"author\":"), "quantized metadata %.200s lacks monoquant/author", md ? md : "");
    free(md);

    /* quantized models are read-only */
    mq_tensor a = tens(fc_b, MQ_DTYPE_F32, 1, FC_B_SHAPE, NULL);
    mq_model* q2 = NULL;
    CHECK_RC(mq_model_add_tensor(q, "extra", &a), MQ_EINVAL);
    CHECK_RC(mq_model_set_metadata(q, "k", "v"), MQ_EINVAL);
    CHECK_RC(mq_model_quantize(q, &cfg, NULL, NULL, &q2), MQ_EINVAL);

    /* in memory: dequantize and measure */
    mq_model* d = NULL;
    CHECK_RC(mq_model_dequantize(q, &d), MQ_OK);
    size_t nb = 0;
    float* w = read_tensor(d, "fc.weight", &nb);
    double sqnr = 0;
    if (w && nb == sizeof fc_w) CHECK_RC(mq_sqnr(fc_w, w, FC_OUT * FC_IN, &sqnr), MQ_OK);
    double floor_db = bits == 8 ? 35.0 : 15.0;
    CHECK(sqnr > floor_db, "INT%d fc.weight SQNR after dequantize = %.2f dB, want > %.0f", bits, sqnr, floor_db);

    /* files: save both kinds, load back, the dequantized weights are identical */
    const char* suffixes[2] = {".safetensors", ".pt"};
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/q%d%s", tmpdir, bits, suffixes[k]);
        CHECK_RC(mq_model_save(q, path), MQ_OK);
        mq_model* l = NULL;
        CHECK_RC(mq_model_load(&l, path), MQ_OK);
        size_t ln = 0;
        CHECK_RC(mq_model_tensor_count(l, &ln), MQ_OK);
        CHECK(ln == n, "%s: %zu tensors loaded, %zu saved", path, ln, n);
        mq_model* ld = NULL;
        CHECK_RC(mq_model_dequantize(l, &ld), MQ_OK);
        size_t lnb = 0;
        float* lw = ld ? read_tensor(ld, "fc.weight", &lnb) : NULL;
        CHECK(w && lw && lnb == nb && memcmp(w, lw, nb) == 0, "%s: dequantized fc.weight differs from the in-memory one", path);
        free(lw);
        char* lmd = json_of(l, 0);
        CHECK(lmd && strstr(lmd, "\"author\":\"test_model.c\""), "%s: metadata lost: %.200s", path, lmd ? lmd : "");
        free(lmd);
        size_t len;
        CHECK_RC(mq_model_report_json(l, NULL, 0, &len), MQ_EINVAL); /* loaded: no report */
        CHECK_RC(mq_model_free(ld), MQ_OK);
        CHECK_RC(mq_model_free(l), MQ_OK);
    }
    /* the float model saves too, and reloads value-exact */
    char path[512];
    snprintf(path, sizeof path, "%s/float%d.safetensors", tmpdir, bits);
    CHECK_RC(mq_model_save(m, path), MQ_OK);
    mq_model* lf = NULL;
    CHECK_RC(mq_model_load(&lf, path), MQ_OK);
    float* lw = lf ? read_tensor(lf, "conv.weight", &nb) : NULL;
    CHECK(lw && nb == sizeof cv_w && memcmp(lw, cv_w, nb) == 0, "float save/load changed conv.weight");
    free(lw);
    mq_model* dd = NULL;
    CHECK_RC(mq_model_dequantize(lf, &dd), MQ_EINVAL);
    CHECK_RC(mq_model_free(lf), MQ_OK);

    free(w);
    CHECK_RC(mq_model_free(d), MQ_OK);
    CHECK_RC(mq_model_free(q), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
}

/* bits 16 (BF16 casts, no scales) and bits 0 (the spec used whole: INT8 per-tensor asymmetric,
 * so zero points are stored and match the tensor-level ABI's). */
static void test_other_formats(void) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    cfg.bits = 16;
    cfg.bf16 = 1;
    mq_model *q = NULL, *d = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    size_t n = 0, nb = 0;
    CHECK_RC(mq_model_tensor_count(q, &n), MQ_OK);
    CHECK(n == 4, "BF16 model has %zu tensors, want 4 (no scales)", n);
    mq_tensor_info info;
    CHECK_RC(mq_model_tensor_info(q, 0, &info), MQ_OK);
    CHECK(info.dtype == MQ_DTYPE_BF16 && info.nbytes == sizeof fc_w / 2, "BF16 fc.weight: dtype %d, %llu bytes; want BF16, %zu",
          info.dtype, (unsigned long long)info.nbytes, sizeof fc_w / 2);
    CHECK_RC(mq_model_dequantize(q, &d), MQ_OK);
    float* w = d ? read_tensor(d, "fc.weight", &nb) : NULL;
    double sqnr = 0;
    if (w && nb == sizeof fc_w) CHECK_RC(mq_sqnr(fc_w, w, FC_OUT * FC_IN, &sqnr), MQ_OK);
    CHECK(sqnr > 40, "BF16 fc.weight SQNR = %.2f dB, want > 40", sqnr);
    free(w);
    mq_model_free(d);
    mq_model_free(q);

    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    cfg.bits = 0;
    cfg.spec.scheme = MQ_ASYMMETRIC;
    cfg.spec.granularity = MQ_PER_TENSOR;
    cfg.spec.qdtype = MQ_QUINT8;
    q = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    check_against_tensor_api(q, "fc.weight", fc_w, 2, FC_W_SHAPE, &cfg.spec);
    check_against_tensor_api(q, "conv.weight", cv_w, 4, CV_W_SHAPE, &cfg.spec);
    size_t zb = 0;
    int32_t* z = read_tensor(q, "fc.weight.zero_point", &zb);
    mq_tensor in = tens(fc_w, MQ_DTYPE_F32, 2, FC_W_SHAPE, NULL);
    uint8_t* qv = malloc(sizeof fc_w / 4);
    float s1;
    int32_t z1 = -1;
    if (qv) CHECK_RC(mq_quantize_tensor(&cfg.spec, &in, qv, sizeof fc_w / 4, &s1, &z1, 1, NULL), MQ_OK);
    CHECK(z && zb == 4 && z[0] == z1, "fc.weight.zero_point = %d (%zu bytes), tensor API gives %d", z ? z[0] : -1, zb, z1);
    free(qv);
    free(z);
    mq_model_free(q);
    mq_model_free(m);
}

static void test_static(void) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    float act[4 * FC_IN];
    for (int i = 0; i < 4 * FC_IN; i++) act[i] = (float)(i % 17) * 0.1f - 0.3f;
    const int64_t act_shape[2] = {4, FC_IN};
    mq_tensor x = tens(act, MQ_DTYPE_F32, 2, act_shape, NULL);

    CHECK_RC(mq_model_calibrate(m, "fc", &x), MQ_EINVAL); /* before begin */
    cfg.activations = "none";
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_EINVAL); /* weight-only: no layer to calibrate */
    CHECK(strstr(mq_last_error(), "static") != NULL, "weight-only calibrate_begin message %s does not say why", mq_last_error());
    cfg.activations = NULL;
    CHECK_RC(mq_model_calibrate_begin(m, NULL), MQ_EINVAL);
    cfg.mode = MQ_MODE_STATIC;
    cfg.observer = "minmax";
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_OK);
    CHECK_RC(mq_model_calibrate(m, "fc", &x), MQ_OK);
    CHECK_RC(mq_model_calibrate(m, "nope", &x), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "nope") != NULL, "unknown layer message %s does not name it", mq_last_error());
    CHECK_RC(mq_model_calibrate(m, NULL, &x), MQ_EINVAL);
    CHECK_RC(mq_model_calibrate(m, "fc", NULL), MQ_EINVAL);
    int32_t ints[4] = {1, 2, 3, 4};
    const int64_t four[1] = {4};
    mq_tensor xi = tens(ints, MQ_DTYPE_I32, 1, four, NULL);
    CHECK_RC(mq_model_calibrate(m, "fc", &xi), MQ_EDTYPE);
    float nan4[4] = {0, NAN, 1, 2};
    mq_tensor xn = tens(nan4, MQ_DTYPE_F32, 1, four, NULL);
    /* NaN: refused as non-finite, the batch not observed */
    CHECK_RC(mq_model_calibrate(m, "fc", &xn), MQ_ENONFINITE);
    CHECK(strstr(mq_last_error(), "NaN") != NULL, "NaN activation message %s does not say NaN", mq_last_error());

    mq_model* q = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    char* rep = q ? json_of(q, 1) : NULL;
    CHECK(rep && strstr(rep, "\"activations\":") && strstr(rep, "\"fc\":"), "static report lacks fc's activation qparams: %.400s", rep ? rep : "");
    free(rep);
    char* md = q ? json_of(q, 0) : NULL;
    CHECK(md && strstr(md, "static"), "static metadata does not say the mode: %.300s", md ? md : "");
    free(md);
    CHECK_RC(mq_model_calibrate_begin(q, &cfg), MQ_EINVAL); /* quantized: read-only */
    CHECK_RC(mq_model_free(q), MQ_OK);

    /* An activation observer with torch's constructor arguments: its qparams must be those of a
     * standalone observer with the same config fed the same batch. */
    mq_observer_config oc;
    CHECK_RC(mq_observer_config_init(&oc), MQ_OK);
    oc.kind = MQ_OBSERVER_PER_CHANNEL_MINMAX;
    cfg.activation_observer = &oc;
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "per-tensor") != NULL, "per-channel activation observer message %s does not say why", mq_last_error());
    oc.kind = MQ_OBSERVER_HISTOGRAM;
    oc.bins = -3;
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "bins") != NULL, "bad bins message %s does not name bins", mq_last_error());
    oc.bins = 256;
    oc.reduce_range = 1;
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_OK);
    CHECK_RC(mq_model_calibrate(m, "fc", &x), MQ_OK);
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    mq_observer* obs = NULL;
    CHECK_RC(mq_observer_new(&obs, &oc), MQ_OK);
    CHECK_RC(mq_observer_update(obs, &x), MQ_OK);
    float want_scale = 0;
    int32_t want_zp = -1;
    size_t n = 0;
    CHECK_RC(mq_observer_qparams(obs, &want_scale, &want_zp, 1, &n), MQ_OK);
    rep = q ? json_of(q, 1) : NULL;
    const char* fc = rep ? strstr(rep, "\"activations\":") : NULL;
    fc = fc ? strstr(fc, "\"fc\":") : NULL;
    const char* sc = fc ? strstr(fc, "\"scale\":[") : NULL;
    const char* zp = fc ? strstr(fc, "\"zero_point\":[") : NULL;
    CHECK(sc && zp && strtof(sc + strlen("\"scale\":["), NULL) == want_scale &&
              strtol(zp + strlen("\"zero_point\":["), NULL, 10) == want_zp,
          "fc activation qparams in %.300s, want scale %.9g zero point %d (a histogram observer, bins 256, reduce_range)",
          fc ? fc : "(none)", want_scale, want_zp);
    free(rep);
    CHECK_RC(mq_observer_free(obs), MQ_OK);
    CHECK_RC(mq_model_free(q), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
}


/* LLM.int8() outliers through the struct: static calibration finds input feature 7 of fc
 * (planted at 40), the output stores it in float next to the INT8 weight, and a threshold <= 0
 * is refused naming the option. */
static void test_outliers(void) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    CHECK(cfg.outliers == 0 && cfg.outlier_threshold == 0, "config_init: outliers %d threshold %g, want off and 0", (int)cfg.outliers, cfg.outlier_threshold);
    float act[4 * FC_IN];
    for (int i = 0; i < 4 * FC_IN; i++) act[i] = (i % FC_IN == 7) ? 40.0f : (float)(i % 17) * 0.1f - 0.8f;
    const int64_t act_shape[2] = {4, FC_IN};
    mq_tensor x = tens(act, MQ_DTYPE_F32, 2, act_shape, NULL);
    cfg.mode = MQ_MODE_STATIC;
    cfg.observer = "minmax";
    cfg.outlier_threshold = -1;
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "outlier_threshold -1 must be") != NULL, "negative threshold message %s does not give the rule", mq_last_error());
    cfg.outlier_threshold = 0;
    cfg.outliers = 1;
    CHECK_RC(mq_model_calibrate_begin(m, &cfg), MQ_OK);
    CHECK_RC(mq_model_calibrate(m, "fc", &x), MQ_OK);
    mq_model* q = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    char* rep = q ? json_of(q, 1) : NULL;
    CHECK(rep && strstr(rep, "\"outlier_columns\":1") && strstr(rep, "\"outlier_threshold\":6"), "report lacks fc's one outlier column at 6: %.600s", rep ? rep : "");
    free(rep);
    int64_t cols[1] = {-1};
    CHECK_RC(q ? mq_model_tensor_read(q, "fc.weight.outlier_columns", cols, sizeof cols) : MQ_EINVAL, MQ_OK);
    CHECK(cols[0] == 7, "stored outlier column %lld, want 7", (long long)cols[0]);
    float ow[FC_OUT];
    CHECK_RC(q ? mq_model_tensor_read(q, "fc.weight.outlier_weight", ow, sizeof ow) : MQ_EINVAL, MQ_OK);
    CHECK(ow[3] == fc_w[3 * FC_IN + 7], "stored outlier weight [3] = %g, want the float weight %g", ow[3], fc_w[3 * FC_IN + 7]);
    CHECK_RC(mq_model_free(q), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
}

/* Per-layer recipes through the ABI: the plan as JSON, file to file with mq_quantize_file, the
 * report handle, the defaults, and a version 1 config struct from an older caller. */
static void test_recipes(void) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    CHECK(cfg.version == MQ_MODEL_CONFIG_VERSION && cfg.version == 2, "config version %u", cfg.version);
    cfg.recipe_json = "{\"rules\": [{\"match\": \"fc\", \"bits\": 4, \"group_size\": 64}, {\"match\": \"conv\", \"dtype\": \"bf16\"}]}";
    char buf[16384];
    size_t len = 0;
    CHECK_RC(mq_model_plan_json(m, &cfg, NULL, 0, &len), MQ_EBUFFER);
    CHECK(len > 0 && len < sizeof buf, "plan JSON length %zu", len);
    CHECK_RC(mq_model_plan_json(m, &cfg, buf, sizeof buf, &len), MQ_OK);
    CHECK(strstr(buf, "\"name\":\"fc.weight.scale\",\"dtype\":\"F32\",\"shape\":[16,4]") != NULL, "plan lacks fc's INT4 g64 scales: %.600s", buf);
    CHECK(strstr(buf, "\"format\":\"bf16\"") != NULL, "plan lacks conv's BF16: %.600s", buf);
    CHECK(strstr(buf, "\"match\":\"*\"") != NULL, "plan's resolved recipe lacks the base rule: %.600s", buf);

    /* a bad recipe names the rule; nothing is planned */
    cfg.recipe_json = "{\"rules\": [{\"match\": \"fc\", \"bits\": 3}]}";
    CHECK_RC(mq_model_plan_json(m, &cfg, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "rule 1 (\"fc\")") && strstr(mq_last_error(), "bits 3"), "bad recipe message: %s", mq_last_error());
    cfg.recipe_json = "{\"rules\": [{\"match\": \"fc\", \"bits\": 4, \"group_size\": 48}]}";
    CHECK_RC(mq_model_plan_json(m, &cfg, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "group_size 48 does not divide the row length 256"), "misfit group message: %s", mq_last_error());
    cfg.recipe_json = NULL;
    cfg.group_fallback = 7;
    CHECK_RC(mq_model_plan_json(m, &cfg, buf, sizeof buf, &len), MQ_EINVAL);
    cfg.group_fallback = MQ_GROUP_FALLBACK_DEFAULT;
    cfg.activations = "sometimes";
    CHECK_RC(mq_model_plan_json(m, &cfg, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "sometimes") != NULL, "bad activations message: %s", mq_last_error());
    cfg.activations = NULL;

    /* A version 1 struct (what an older header's mq_model_config_init filled) is accepted: its
     * size ends before recipe_json. */
    mq_model_config old = cfg;
    old.version = 1;
    old.size = (uint32_t)offsetof(mq_model_config, recipe_json);
    old.recipe_json = "not read";
    CHECK_RC(mq_model_plan_json(m, &old, buf, sizeof buf, &len), MQ_OK);
    old.size = (uint32_t)sizeof(mq_model_config);
    CHECK_RC(mq_model_plan_json(m, &old, buf, sizeof buf, &len), MQ_EINVAL);

    /* file to file: save the float model, then quantize it under a recipe */
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/float.safetensors", tmpdir);
    snprintf(dst, sizeof dst, "%s/recipe.safetensors", tmpdir);
    CHECK_RC(mq_model_save(m, src), MQ_OK);
    cfg.recipe_json = "{\"rules\": [{\"match\": \"fc\", \"bits\": 4, \"group_size\": 64}, {\"match\": \"conv\", \"dtype\": \"bf16\"}]}";
    mq_report* rep = NULL;
    CHECK_RC(mq_quantize_file(src, dst, &cfg, NULL, NULL, NULL, &rep), MQ_OK);
    CHECK(rep != NULL, "no report");
    CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
    CHECK(strstr(buf, "\"rule\":\"rule 1 (\\\"fc\\\")\"") != NULL, "report does not name fc's rule: %.500s", buf);
    CHECK_RC(mq_report_free(rep), MQ_OK);
    CHECK(strstr(buf, "\"validation\"") == NULL, "an unvalidated run's report has a validation: %.300s", buf);
    /* validate: dst is reopened and checked, the report says what was checked */
    cfg.validate = 1;
    CHECK_RC(mq_quantize_file(src, dst, &cfg, NULL, NULL, NULL, &rep), MQ_OK);
    CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
    CHECK(strstr(buf, "\"validation\":{\"tensors_checked\":") && strstr(buf, "\"config_checked\":true"), "validated report: %.2000s", buf);
    CHECK_RC(mq_report_free(rep), MQ_OK);
    cfg.validate = 0;
    CHECK_RC(mq_report_free(rep), MQ_EHANDLE);
    CHECK_RC(mq_report_free(NULL), MQ_OK);
    CHECK_RC(mq_report_json((mq_report*)m, buf, sizeof buf, &len), MQ_EHANDLE);
    mq_model* q = NULL;
    CHECK_RC(mq_model_load(&q, dst), MQ_OK);
    char* md = q ? json_of(q, 0) : NULL;
    CHECK(md && strstr(md, "\\\"recipe\\\"") && strstr(md, "\\\"mode\\\":\\\"none\\\""), "file config lacks the recipe or the weight-only mode: %.400s", md ? md : "");
    free(md);
    mq_model_free(q);
    /* a Hugging Face model folder in gives a folder out, which mq_model_load reads back */
    char hf[512], hfq[512], cj[600];
    snprintf(hf, sizeof hf, "%s/hf", tmpdir);
    snprintf(hfq, sizeof hfq, "%s/hf-q", tmpdir);
    CHECK(mkdir(hf, 0755) == 0, "mkdir %s", hf);
    snprintf(cj, sizeof cj, "%s/model.safetensors", hf);
    CHECK_RC(mq_model_save(m, cj), MQ_OK);
    snprintf(cj, sizeof cj, "%s/config.json", hf);
    FILE* cf = fopen(cj, "w");
    if (cf) {
        fputs("{\"model_type\": \"bert\"}", cf);
        fclose(cf);
    }
    cfg.recipe_json = NULL;
    CHECK_RC(mq_quantize_file(hf, hfq, &cfg, NULL, NULL, NULL, NULL), MQ_OK);
    snprintf(cj, sizeof cj, "%s/config.json", hfq);
    CHECK(access(cj, F_OK) == 0, "the output folder lacks config.json");
    CHECK_RC(mq_model_load(&q, hfq), MQ_OK);
    md = q ? json_of(q, 0) : NULL;
    CHECK(md && strstr(md, "format_version"), "folder model has no quantization config: %.300s", md ? md : "");
    free(md);
    mq_model_free(q);
    /* one FP16 overflow rule in files: saturated, never Inf; NaN fails naming the C option and
     * leaves no output (issue 12) */
    {
        static float big[2 * 8];
        static const int64_t big_shape[2] = {2, 8};
        for (int i = 0; i < 16; i++) big[i] = 0.01f * (float)i;
        big[3] = 1e6f;
        mq_model* bm = NULL;
        CHECK_RC(mq_model_new(&bm), MQ_OK);
        mq_tensor bt = tens(big, MQ_DTYPE_F32, 2, big_shape, NULL);
        CHECK_RC(mq_model_add_tensor(bm, "fc.weight", &bt), MQ_OK);
        char bsrc[512], bdst[512];
        snprintf(bsrc, sizeof bsrc, "%s/big.safetensors", tmpdir);
        snprintf(bdst, sizeof bdst, "%s/big.fp16.safetensors", tmpdir);
        CHECK_RC(mq_model_save(bm, bsrc), MQ_OK);
        mq_model_config hc;
        CHECK_RC(mq_model_config_init(&hc), MQ_OK);
        hc.bits = 16;
        CHECK_RC(mq_quantize_file(bsrc, bdst, &hc, NULL, NULL, NULL, &rep), MQ_OK);
        CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
        CHECK(strstr(buf, "\"fp16_overflow\"") != NULL, "fp16 report lacks the overflow warning: %.600s", buf);
        CHECK_RC(mq_report_free(rep), MQ_OK);
        mq_model* hq = NULL;
        CHECK_RC(mq_model_load(&hq, bdst), MQ_OK);
        mq_model* hd = NULL;
        CHECK_RC(mq_model_dequantize(hq, &hd), MQ_OK);
        float back[16];
        CHECK_RC(mq_model_tensor_read(hd, "fc.weight", back, sizeof back), MQ_OK);
        CHECK(back[3] == 65504.0f, "fp16 file holds %g for 1e6, want 65504 (saturated, never Inf)", (double)back[3]);
        mq_model_free(hd);
        mq_model_free(hq);
        big[5] = NAN;
        mq_model_free(bm);
        bm = NULL;
        CHECK_RC(mq_model_new(&bm), MQ_OK);
        CHECK_RC(mq_model_add_tensor(bm, "fc.weight", &bt), MQ_OK);
        CHECK_RC(mq_model_save(bm, bsrc), MQ_OK);
        mq_model_free(bm);
        snprintf(bdst, sizeof bdst, "%s/nan.int8.safetensors", tmpdir);
        hc.bits = 8;
        CHECK_RC(mq_quantize_file(bsrc, bdst, &hc, NULL, NULL, NULL, NULL), MQ_ENONFINITE);
        CHECK(strstr(mq_last_error(), "MQ_NONFINITE_CLAMP") != NULL, "NaN message names no C option: %s", mq_last_error());
        CHECK(access(bdst, F_OK) != 0, "a refused NaN file left %s behind", bdst);
    }
    /* errors: the output is never the input, a bad source is named, no output appears */
    CHECK_RC(mq_quantize_file(src, src, &cfg, NULL, NULL, NULL, NULL), MQ_EINVAL);
    snprintf(dst, sizeof dst, "%s/never.safetensors", tmpdir);
    CHECK_RC(mq_quantize_file("/nonexistent/x.safetensors", dst, &cfg, NULL, NULL, NULL, NULL), MQ_EIO);
    CHECK(access(dst, F_OK) != 0, "a failed mq_quantize_file left %s behind", dst);
    CHECK_RC(mq_quantize_file(NULL, dst, &cfg, NULL, NULL, NULL, NULL), MQ_EINVAL);
    cfg.recipe_json = "[{\"match\": \"fc\", \"bitz\": 4}]";
    CHECK_RC(mq_quantize_file(src, dst, &cfg, NULL, NULL, NULL, NULL), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "bitz") != NULL, "unknown key message: %s", mq_last_error());
    CHECK(access(dst, F_OK) != 0, "a refused recipe left %s behind", dst);

    CHECK_RC(mq_defaults_json(buf, sizeof buf, &len), MQ_OK);
    CHECK(strstr(buf, "\"group_size\":128") && strstr(buf, "\"version\":\"" MQ_VERSION_STRING "\""), "defaults: %s", buf);
    /* the names of a quantized tensor's stored parts (docs/FORMAT.md) */
    CHECK(strstr(buf, "\"suffixes\":{\"outlier_columns\":\".outlier_columns\",\"outlier_weight\":\".outlier_weight\",\"scale\":\".scale\",\"zero_point\":\".zero_point\"}"),
          "defaults' suffixes: %s", buf);
    mq_model_free(m);
}

static void check_manifest(const char* dir);

static void test_files(void) {
    mq_model* m = (mq_model*)1;
    char path[1024];
    CHECK_RC(mq_model_load(NULL, "x.pt"), MQ_EINVAL);
    CHECK_RC(mq_model_load(&m, NULL), MQ_EINVAL);
    CHECK(m == NULL, "failed load left *out = %p", (void*)m);
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", tmpdir);
    CHECK_RC(mq_model_load(&m, path), MQ_EIO);
    CHECK(strstr(mq_last_error(), "does-not-exist") != NULL, "missing-file message %s does not name the file", mq_last_error());
    /* garbage and truncated content */
    snprintf(path, sizeof path, "%s/garbage.safetensors", tmpdir);
    FILE* f = fopen(path, "wb");
    if (f) {
        fputs("\xff\xff\xff\xff\xff\xff\x00\x00{not json", f);
        fclose(f);
    }
    CHECK_RC(mq_model_load(&m, path), MQ_EFORMAT);
    snprintf(path, sizeof path, "%s/garbage.pt", tmpdir);
    f = fopen(path, "wb");
    if (f) {
        fputs("PK\x03\x04 this is not a zip", f);
        fclose(f);
    }
    CHECK_RC(mq_model_load(&m, path), MQ_EFORMAT);
    /* a pickle that would call eval is refused, naming the global */
    snprintf(path, sizeof path, "%s/testdata/malicious/eval.pt", MQ_SOURCE_DIR);
    CHECK_RC(mq_model_load(&m, path), MQ_EFORMAT);
    CHECK(strstr(mq_last_error(), "eval") != NULL, "malicious pickle message %s does not name eval", mq_last_error());
    CHECK(m == NULL && mq_debug_live_handles() == 0, "failed loads left a handle");
    check_manifest("testdata/malicious");
    check_manifest("testdata/checkpoints/safetensors/bad");
    CHECK_RC(mq_model_load(&m, tmpdir), MQ_EIO); /* a folder */
    CHECK(mq_debug_live_handles() == 0, "refused files left %lld handles", (long long)mq_debug_live_handles());
    /* a sharded checkpoint loads through its index */
    snprintf(path, sizeof path, "%s/testdata/checkpoints/safetensors/sharded/model.safetensors.index.json", MQ_SOURCE_DIR);
    CHECK_RC(mq_model_load(&m, path), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);

    /* the bundled example: a torch.save state_dict of a small CNN */
    snprintf(path, sizeof path, "%s/examples/digits_cnn.pt", MQ_SOURCE_DIR);
    CHECK_RC(mq_model_load(&m, path), MQ_OK);
    size_t n = 0;
    CHECK_RC(mq_model_tensor_count(m, &n), MQ_OK);
    CHECK(n == 8, "digits_cnn.pt has %zu tensors, want 8", n);
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    mq_model* q = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    char* rep = q ? json_of(q, 1) : NULL;
    CHECK(rep && strstr(rep, "\"tensors_quantized\":4") && strstr(rep, "classifier.1.weight") && strstr(rep, "features.2.weight"),
          "digits_cnn report: %.300s", rep ? rep : "");
    free(rep);
    /* save errors: unknown suffix, missing folder */
    snprintf(path, sizeof path, "%s/out.txt", tmpdir);
    CHECK_RC(mq_model_save(q, path), MQ_EINVAL);
    snprintf(path, sizeof path, "%s/no/such/dir/out.safetensors", tmpdir);
    CHECK_RC(mq_model_save(q, path), MQ_EIO);
    CHECK_RC(mq_model_save(q, NULL), MQ_EINVAL);
    CHECK_RC(mq_model_free(q), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
}

/* Two threads quantize the same model at once: calls on one handle are serialised, and a thread
 * waiting for the handle while the other is inside its progress callback is not mistaken for a
 * call from inside the callback. */
typedef struct worker {
    mq_model* m;
    int failures;
    int reentrant_seen;
} worker;

static void* quantize_loop(void* arg) {
    worker* w = arg;
    mq_model_config cfg;
    if (mq_model_config_init(&cfg) != MQ_OK) w->failures++;
    for (int i = 0; i < 5; i++) {
        progress_log p = {0};
        p.monotonic = 1;
        p.self = w->m;
        mq_model* q = NULL;
        if (mq_model_quantize(w->m, &cfg, on_progress, &p, &q) != MQ_OK || p.calls != 4) w->failures++;
        if (p.reentrant_rc == MQ_EINVAL) w->reentrant_seen++;
        size_t n = 0;
        if (mq_model_tensor_count(w->m, &n) != MQ_OK || n != 4) w->failures++;
        if (mq_model_free(q) != MQ_OK) w->failures++;
    }
    return NULL;
}

static void test_threads(void) {
    mq_model* m = build();
    worker w[2] = {{m, 0, 0}, {m, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, quantize_loop, &w[i]) == 0, "pthread_create %d", i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(w[i].failures == 0 && w[i].reentrant_seen == 5, "thread %d: %d failed calls, %d/5 reentrant calls refused", i,
              w[i].failures, w[i].reentrant_seen);
    CHECK_RC(mq_model_free(m), MQ_OK);
}

/* Every fixture of a manifest (testdata/malicious, testdata/checkpoints/safetensors/bad) must be
 * refused by mq_model_load with MQ_EFORMAT or MQ_EUNSUPPORTED and a message holding the
 * manifest's expected text (the refused global, or the problem). The manifests are flat JSON
 * written one key per line by the fixture generators, so a line scanner reads them. */
static void check_manifest(const char* dir) {
    char path[1024], line[512], name[256] = "";
    snprintf(path, sizeof path, "%s/%s/manifest.json", MQ_SOURCE_DIR, dir);
    FILE* f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        char* p = line;
        while (*p == ' ') p++;
        size_t indent = (size_t)(p - line);
        if (*p != '"') continue;
        char* end = strchr(p + 1, '"');
        if (!end) continue;
        if (indent == 1) {
            snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
            continue;
        }
        if (strncmp(p, "\"refused\"", 9) && strncmp(p, "\"error\"", 7) && strncmp(p, "\"want\"", 6)) continue;
        char* v = strchr(end + 1, '"');
        if (!v) continue;
        /* the value up to its closing quote, with \" unescaped */
        char want[256];
        size_t n = 0;
        for (v++; *v && *v != '"' && n + 1 < sizeof want; v++) {
            if (*v == '\\' && v[1]) v++;
            want[n++] = *v;
        }
        want[n] = '\0';
        snprintf(path, sizeof path, "%s/%s/%s", MQ_SOURCE_DIR, dir, name);
        mq_model* m = (mq_model*)1;
        int rc = mq_model_load(&m, path);
        CHECK((rc == MQ_EFORMAT || rc == MQ_EUNSUPPORTED) && m == NULL && strstr(mq_last_error(), want) != NULL,
              "mq_model_load(%s/%s) = %d (%s), message \"%s\"; want MQ_EFORMAT or MQ_EUNSUPPORTED naming \"%s\"", dir, name,
              rc, mq_status_string(rc), mq_last_error(), want);
        if (rc == MQ_OK) mq_model_free(m);
        seen++;
    }
    fclose(f);
    CHECK(seen >= 20, "%s: only %d fixtures checked, want the whole manifest", dir, seen);
}

static void rm_tmpdir(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* mq_model_quantize_into: the layout names every output; the engine writes the model into the
 * caller's buffers (the same bytes as mq_model_quantize) and the new model reads them in place;
 * a wrong count, name or size is refused. */
static void test_quantize_into(void) {
    mq_model* m = build();
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    mq_model* ref = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &ref), MQ_OK);
    size_t len = 0;
    CHECK_RC(mq_model_output_layout_json(m, &cfg, NULL, 0, &len), MQ_EBUFFER);
    char* js = malloc(len + 1);
    CHECK_RC(mq_model_output_layout_json(m, &cfg, js, len + 1, &len), MQ_OK);
    CHECK(js && strstr(js, "\"fc.weight.scale\"") && strstr(js, "\"nbytes\""), "layout JSON: %s", js ? js : "(null)");
    free(js);

    size_t n = 0;
    CHECK_RC(mq_model_tensor_count(ref, &n), MQ_OK);
    mq_output outs[16];
    void* want[16];
    CHECK(n <= 16, "%zu outputs", n);
    for (size_t i = 0; i < n && i < 16; i++) {
        mq_tensor_info info;
        CHECK_RC(mq_model_tensor_info(ref, i, &info), MQ_OK);
        outs[i].name = info.name;
        outs[i].nbytes = info.nbytes;
        outs[i].data = malloc(info.nbytes ? info.nbytes : 1);
        memset(outs[i].data, 0xAB, info.nbytes);
        size_t got = 0;
        want[i] = read_tensor(ref, info.name, &got);
    }
    mq_model* q = NULL;
    CHECK_RC(mq_model_quantize_into(m, &cfg, NULL, NULL, outs, n - 1, &q), MQ_EINVAL);
    CHECK(q == NULL, "a refused call gave a model");
    uint64_t keep = outs[0].nbytes;
    outs[0].nbytes = keep + 1;
    CHECK_RC(mq_model_quantize_into(m, &cfg, NULL, NULL, outs, n, &q), MQ_EBUFFER);
    outs[0].nbytes = keep;
    const char* name1 = outs[1].name;
    outs[1].name = "nope";
    CHECK_RC(mq_model_quantize_into(m, &cfg, NULL, NULL, outs, n, &q), MQ_EINVAL);
    outs[1].name = name1;

    CHECK_RC(mq_model_quantize_into(m, &cfg, NULL, NULL, outs, n, &q), MQ_OK);
    for (size_t i = 0; i < n && i < 16; i++) {
        CHECK(want[i] && memcmp(outs[i].data, want[i], outs[i].nbytes) == 0, "output %s differs from mq_model_quantize's", outs[i].name);
        if (outs[i].nbytes == 0) continue;
        /* the model reads the caller's buffer: a change there shows through */
        unsigned char* b = outs[i].data;
        b[0] ^= 0xFF;
        size_t got = 0;
        unsigned char* seen = read_tensor(q, outs[i].name, &got);
        CHECK(seen && seen[0] == b[0], "%s: the model holds a copy, not the caller's buffer", outs[i].name);
        b[0] ^= 0xFF;
        free(seen);
    }
    CHECK_RC(mq_model_free(q), MQ_OK);
    for (size_t i = 0; i < n && i < 16; i++) {
        free(outs[i].data);
        free(want[i]);
    }
    CHECK_RC(mq_model_free(ref), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
}

/* mq_model_quantize_stream: the same bytes as mq_model_quantize, MQ_STREAM_WRITTEN for every
 * input tensor in order (each output final when told), MQ_STREAM_RELEASED for each input once;
 * the model is spent afterwards; a non-zero return cancels. */
struct stream_seen {
    int written, released, stop_at;
    char order[16][64];
};

static int on_stream(int32_t event, const char* name, void* user) {
    struct stream_seen* s = user;
    if (event == MQ_STREAM_WRITTEN) {
        if (s->written < 16) snprintf(s->order[s->written], sizeof s->order[0], "%s", name);
        s->written++;
    } else if (event == MQ_STREAM_RELEASED) {
        s->released++;
    }
    return s->stop_at > 0 && s->written >= s->stop_at;
}

static void test_quantize_stream(void) {
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    cfg.no_log = 1; /* the quantization is then the only reader: every tensor is given back during the call */
    mq_model* m = build();
    mq_model* ref = NULL;
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &ref), MQ_OK);
    size_t n = 0, nin = 0;
    CHECK_RC(mq_model_tensor_count(ref, &n), MQ_OK);
    CHECK_RC(mq_model_tensor_count(m, &nin), MQ_OK);
    mq_output outs[16];
    CHECK(n <= 16 && nin <= 16, "%zu outputs, %zu inputs", n, nin);
    for (size_t i = 0; i < n && i < 16; i++) {
        mq_tensor_info info;
        CHECK_RC(mq_model_tensor_info(ref, i, &info), MQ_OK);
        outs[i].name = info.name;
        outs[i].nbytes = info.nbytes;
        outs[i].data = calloc(1, info.nbytes ? info.nbytes : 1);
    }
    struct stream_seen seen = {0};
    mq_model* q = NULL;
    CHECK_RC(mq_model_quantize_stream(m, &cfg, NULL, &seen, outs, n, on_stream, &q), MQ_OK);
    CHECK(seen.written == (int)nin, "MQ_STREAM_WRITTEN told %d tensors, the model has %zu", seen.written, nin);
    CHECK(seen.released == (int)nin, "MQ_STREAM_RELEASED told %d tensors, the model has %zu", seen.released, nin);
    mq_tensor_info info;
    CHECK(seen.written > 0 && strcmp(seen.order[0], "fc.weight") == 0, "first tensor told: %s", seen.order[0]);
    for (size_t i = 0; i < n && i < 16; i++) {
        size_t got = 0;
        void* want = read_tensor(ref, outs[i].name, &got);
        CHECK(want && memcmp(outs[i].data, want, outs[i].nbytes) == 0, "stream output %s differs from mq_model_quantize's", outs[i].name);
        free(want);
    }
    /* the float model may have been freed by the caller: only mq_model_free is left */
    CHECK_RC(mq_model_tensor_info(m, 0, &info), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "mq_model_quantize_stream") != NULL, "message: %s", mq_last_error());
    CHECK_RC(mq_model_free(q), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);

    /* a callback that says stop cancels the run: no model */
    m = build();
    struct stream_seen stop = {0};
    stop.stop_at = 1;
    q = (mq_model*)1;
    CHECK_RC(mq_model_quantize_stream(m, &cfg, NULL, &stop, outs, n, on_stream, &q), MQ_ECANCELED);
    CHECK(q == NULL && stop.written == 1, "canceled stream: model %p after %d events", (void*)q, stop.written);
    CHECK_RC(mq_model_free(m), MQ_OK);
    for (size_t i = 0; i < n && i < 16; i++) free(outs[i].data);
    CHECK_RC(mq_model_free(ref), MQ_OK);
}

/* mq_model_open reads a quantized file lazily (the same tensors as mq_model_load), refuses a
 * float one; mq_model_set_config checks a caller's config against its tensors. */
static void test_open_and_set_config(void) {
    char path[512], fpath[512];
    snprintf(path, sizeof path, "%s/q8.safetensors", tmpdir); /* written by test_quantize(8) */
    snprintf(fpath, sizeof fpath, "%s/float8.safetensors", tmpdir);
    mq_model* o = (mq_model*)1;
    CHECK_RC(mq_model_open(NULL, path), MQ_EINVAL);
    CHECK_RC(mq_model_open(&o, NULL), MQ_EINVAL);
    CHECK(o == NULL, "mq_model_open left *out set on error");
    CHECK_RC(mq_model_open(&o, fpath), MQ_EFORMAT);
    CHECK_RC(mq_model_open(&o, tmpdir), MQ_EIO);
    mq_model* l = NULL;
    CHECK_RC(mq_model_load(&l, path), MQ_OK);
    CHECK_RC(mq_model_open(&o, path), MQ_OK);
    size_t ln = 0, on = 0;
    CHECK_RC(mq_model_tensor_count(l, &ln), MQ_OK);
    CHECK_RC(mq_model_tensor_count(o, &on), MQ_OK);
    CHECK(ln == on && on > 0, "mq_model_open: %zu tensors, mq_model_load %zu", on, ln);
    for (size_t i = 0; i < on; i++) {
        mq_tensor_info a, b;
        CHECK_RC(mq_model_tensor_info(l, i, &a), MQ_OK);
        CHECK_RC(mq_model_tensor_info(o, i, &b), MQ_OK);
        unsigned char* x = malloc(a.nbytes + 1);
        unsigned char* y = malloc(b.nbytes + 1);
        CHECK_RC(mq_model_tensor_read(l, a.name, x, a.nbytes), MQ_OK);
        CHECK_RC(mq_model_tensor_read(o, b.name, y, b.nbytes), MQ_OK);
        CHECK(strcmp(a.name, b.name) == 0 && a.nbytes == b.nbytes && memcmp(x, y, a.nbytes) == 0, "tensor %s differs between open and load", a.name);
        free(x);
        free(y);
    }
    mq_model* d = NULL;
    CHECK_RC(mq_model_dequantize(o, &d), MQ_OK);
    CHECK_RC(mq_model_free(d), MQ_OK);
    CHECK_RC(mq_model_set_config(o, "{}"), MQ_EINVAL); /* quantized: read-only */
    CHECK_RC(mq_model_free(o), MQ_OK);
    CHECK_RC(mq_model_free(l), MQ_OK);

    mq_model* m = build();
    CHECK_RC(mq_model_set_config(m, NULL), MQ_EINVAL);
    CHECK_RC(mq_model_set_config(m, "{"), MQ_EFORMAT);
    CHECK_RC(mq_model_set_config(m, "{\"format_version\":1,\"tensors\":{\"fc.weight\":{\"bits\":8,\"format\":\"int8\","
                                    "\"scheme\":\"symmetric\",\"granularity\":\"per_channel\",\"qdtype\":\"qint8\",\"dtype\":\"F32\","
                                    "\"shape\":[4,8],\"quant_shape\":[4,8]}}}"), MQ_EFORMAT); /* fc.weight is float, no scale */
    CHECK_RC(mq_model_save(m, fpath), MQ_OK); /* still a float model after the refusals */
    CHECK_RC(mq_model_free(m), MQ_OK);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mq_test_model_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    fill();
    test_build_and_errors();
    test_config_errors();
    test_quantize(8);
    test_quantize(4);
    test_quantize_into();
    test_quantize_stream();
    test_other_formats();
    test_static();
    test_outliers();
    test_files();
    test_open_and_set_config();
    test_recipes();
    test_threads();
    CHECK(mq_debug_live_handles() == 0, "live handles at the end = %lld, want 0", (long long)mq_debug_live_handles());
    rm_tmpdir();
    TEST_EXIT();
}
