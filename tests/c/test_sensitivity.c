/* gptq's Hessians (mq_hessian, mq_model_set_hessian), the sensitivity table (mq_sensitivity_*)
 * and the knapsack (mq_recipe_for_json) from C: a caller that runs its own "model" (here, the
 * bundled tiny transformer's first layer applied to fixed inputs) gets the table and a recipe. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "monoquant_debug.h"

#ifndef MQ_SOURCE_DIR
#error "MQ_SOURCE_DIR must name the source tree (set by CMake)"
#endif

#define ROWS 16
#define K 64
static float w[ROWS * K], x[128 * K], hess[K * K];
static const int64_t W_SHAPE[2] = {ROWS, K}, H_SHAPE[2] = {K, K}, H_BAD[2] = {K / 2, K / 2};

static mq_tensor tens(const void* data, int32_t ndim, const int64_t* shape) {
    mq_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = MQ_DTYPE_F32;
    t.ndim = ndim;
    t.shape = shape;
    return t;
}

static char* model_json(int (*fn)(mq_sensitivity*, char*, size_t, size_t*), mq_sensitivity* s) {
    size_t len = 0;
    CHECK_RC(fn(s, NULL, 0, &len), MQ_EBUFFER);
    char* buf = malloc(len + 1);
    CHECK_RC(fn(s, buf, len + 1, &len), MQ_OK);
    return buf;
}

/* y = x · wᵀ for the 128 rows of x, with weights w (ROWS x K) */
static void layer(const float* wt, float* y) {
    for (int n = 0; n < 128; n++)
        for (int r = 0; r < ROWS; r++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)x[n * K + k] * wt[r * K + k];
            y[n * ROWS + r] = (float)acc;
        }
}

static void read_dequantized(mq_model* q, float* out) {
    mq_model* d = NULL;
    CHECK_RC(mq_model_dequantize(q, &d), MQ_OK);
    CHECK_RC(mq_model_tensor_read(d, "fc.weight", out, sizeof(float) * ROWS * K), MQ_OK);
    mq_model_free(d);
}

static double sqnr_of(const float* a, const float* b, size_t n) {
    double s = 0;
    CHECK_RC(mq_sqnr(a, b, n, &s), MQ_OK);
    return s;
}

static void test_gptq(void) {
    /* correlated inputs: x = z · A with z of rank 8, so XᵀX is far from diagonal */
    unsigned seed = 1;
    float a[8 * K];
    for (int i = 0; i < 8 * K; i++) a[i] = (float)((rand_r(&seed) % 2001) - 1000) / 1000.0f;
    for (int n = 0; n < 128; n++)
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int j = 0; j < 8; j++) v += (double)((int)((n * 31 + j * 17) % 13) - 6) * a[j * K + k];
            x[n * K + k] = (float)(v / 8.0) + 0.01f * (float)((rand_r(&seed) % 201) - 100) / 100.0f;
        }
    for (int i = 0; i < ROWS * K; i++) w[i] = sinf(0.7f * (float)i) * 0.1f + 0.02f * cosf(0.13f * (float)(i * i % 97));
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double h = 0;
            for (int n = 0; n < 128; n++) h += (double)x[n * K + i] * x[n * K + j];
            hess[i * K + j] = (float)h;
        }
    mq_model* m = NULL;
    CHECK_RC(mq_model_new(&m), MQ_OK);
    mq_tensor wt = tens(w, 2, W_SHAPE);
    CHECK_RC(mq_model_add_tensor(m, "fc.weight", &wt), MQ_OK);
    CHECK_RC(mq_model_set_module_type(m, "fc", "Linear"), MQ_OK);
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    cfg.options_json = "{\"bits\": 4, \"group_size\": 32, \"method\": \"gptq\"}";
    mq_model* q = NULL;
    /* no Hessian: refused, naming the layer and the size it needs */
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "input Hessian H = XᵀX of layer \"fc\", a [64, 64]") != NULL, "message: %s", mq_last_error());
    mq_hessian h;
    CHECK_RC(mq_hessian_init(NULL), MQ_EINVAL);
    CHECK_RC(mq_hessian_init(&h), MQ_OK);
    CHECK(h.size == sizeof h && h.version == MQ_HESSIAN_VERSION, "init: size %u version %u", h.size, h.version);
    h.matrix = tens(hess, 2, H_BAD);
    CHECK_RC(mq_model_set_hessian(m, "fc", &h), MQ_OK); /* the size is checked against the layer when quantizing */
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "its 64 inputs need [64, 64]") != NULL, "message: %s", mq_last_error());
    h.matrix = tens(hess, 2, H_SHAPE);
    h.version = 99;
    CHECK_RC(mq_model_set_hessian(m, "fc", &h), MQ_EINVAL);
    h.version = MQ_HESSIAN_VERSION;
    CHECK_RC(mq_model_set_hessian(m, "", &h), MQ_EINVAL);
    CHECK_RC(mq_model_set_hessian(NULL, "fc", &h), MQ_EHANDLE);
    CHECK_RC(mq_model_set_hessian(m, "fc", &h), MQ_OK);
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &q), MQ_OK);
    /* rtn for comparison */
    mq_model* r = NULL;
    cfg.options_json = "{\"bits\": 4, \"group_size\": 32}";
    CHECK_RC(mq_model_quantize(m, &cfg, NULL, NULL, &r), MQ_OK);
    static float wq[ROWS * K], wr[ROWS * K], y[128 * ROWS], yq[128 * ROWS], yr[128 * ROWS];
    read_dequantized(q, wq);
    read_dequantized(r, wr);
    layer(w, y);
    layer(wq, yq);
    layer(wr, yr);
    double sg = sqnr_of(y, yq, 128 * ROWS), sr = sqnr_of(y, yr, 128 * ROWS);
    CHECK(sg > sr + 2, "layer output SQNR: gptq %.2f dB, rtn %.2f dB", sg, sr);
    /* a quantized model takes no Hessian */
    CHECK_RC(mq_model_set_hessian(q, "fc", &h), MQ_EINVAL);
    mq_model_free(q);
    mq_model_free(r);
    mq_model_free(m);
}

static void test_sensitivity(void) {
    mq_model* m = NULL;
    CHECK_RC(mq_model_load(&m, MQ_SOURCE_DIR "/examples/tiny_transformer.safetensors"), MQ_OK);
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    mq_sensitivity* s = NULL;
    CHECK_RC(mq_sensitivity_new(&s, m, &cfg, "[\"int3\"]"), MQ_EINVAL);
    CHECK(s == NULL && strstr(mq_last_error(), "int3"), "bad format: %s", mq_last_error());
    CHECK_RC(mq_sensitivity_new(NULL, m, &cfg, NULL), MQ_EINVAL);
    CHECK_RC(mq_sensitivity_new(&s, m, &cfg, NULL), MQ_OK);
    char* cands = model_json(mq_sensitivity_candidates_json, s);
    CHECK(strstr(cands, "\"layer\":\"lm_head\",\"format\":\"int4\"") != NULL, "candidates: %.400s", cands);
    CHECK(strstr(cands, "{\"match\":\"*\",\"skip\":true}") != NULL, "candidate recipes: %.400s", cands);
    free(cands);
    /* weight SQNR of every candidate: quantize the layers alone */
    const char* layers[] = {"encoder.layers.0.linear1", "encoder.layers.0.linear2", "encoder.layers.0.self_attn",
                            "encoder.layers.0.self_attn.out_proj", "encoder.layers.1.linear1", "encoder.layers.1.linear2",
                            "encoder.layers.1.self_attn", "encoder.layers.1.self_attn.out_proj", "lm_head"};
    const char* formats[] = {"int8", "int4"};
    for (int i = 0; i < 9; i++)
        for (int f = 0; f < 2; f++) {
            mq_model* q = NULL;
            CHECK_RC(mq_sensitivity_quantize(s, m, layers[i], formats[f], &q), MQ_OK);
            size_t n = 0;
            CHECK_RC(mq_model_tensor_count(q, &n), MQ_OK);
            CHECK(n == (f == 0 ? 2u : 3u), "%s as %s stores %zu tensors", layers[i], formats[f], n);
            mq_model_free(q);
        }
    mq_model* q = NULL;
    CHECK_RC(mq_sensitivity_quantize(s, m, "nope", "int8", &q), MQ_EINVAL);
    CHECK(q == NULL && strstr(mq_last_error(), "layer \"nope\" is not in the table"), "unknown layer: %s", mq_last_error());
    char* table = model_json(mq_sensitivity_table_json, s);
    CHECK(strstr(table, "\"metric\":\"weight_sqnr\"") && strstr(table, "\"rank\":9"), "table: %.400s", table);
    /* outputs of the caller's own model */
    float ref[4] = {3, 4, 0, 5}, out[4] = {3, 3, 2, 5}, bad[4] = {NAN, 0, 0, 0};
    const int64_t shp[2] = {2, 2};
    mq_tensor tr = tens(ref, 2, shp), to = tens(out, 2, shp), tb = tens(bad, 2, shp);
    CHECK_RC(mq_sensitivity_add_output(s, "lm_head", "int4", &tr, &to), MQ_OK);
    CHECK_RC(mq_sensitivity_add_output(s, "lm_head", "int4", &tr, &tb), MQ_ENONFINITE);
    CHECK_RC(mq_sensitivity_add_output(s, "lm_head", "int5", &tr, &to), MQ_EINVAL);
    char* t2 = model_json(mq_sensitivity_table_json, s);
    CHECK(strstr(t2, "\"metric\":\"output_sqnr\"") && strstr(t2, "\"output_sqnr_db\":10"), "output table: %.600s", t2);
    free(t2);
    /* a user metric needs the float model's value */
    CHECK_RC(mq_sensitivity_set_metric(s, "lm_head", "int4", 0.5), MQ_OK);
    size_t len = 0;
    CHECK_RC(mq_sensitivity_table_json(s, NULL, 0, &len), MQ_EINVAL);
    CHECK_RC(mq_sensitivity_set_metric(s, NULL, NULL, NAN), MQ_ENONFINITE);
    CHECK_RC(mq_sensitivity_set_metric(s, NULL, NULL, 0.9), MQ_OK);
    CHECK_RC(mq_sensitivity_table_json(s, NULL, 0, &len), MQ_EBUFFER);

    /* the knapsack, from the weight table */
    char rec[65536];
    CHECK_RC(mq_recipe_for_json(table, "{\"max_bits_per_weight\": 6}", rec, sizeof rec, &len), MQ_OK);
    CHECK(strstr(rec, "\"bits_per_weight\":5.9") && strstr(rec, "{\"match\":\"*\",\"skip\":true}"), "choice: %.600s", rec);
    CHECK_RC(mq_recipe_for_json(table, "{\"max_bits_per_weight\": 2}", rec, sizeof rec, &len), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "cannot be met") != NULL, "message: %s", mq_last_error());
    CHECK_RC(mq_recipe_for_json(table, "{}", rec, sizeof rec, &len), MQ_EINVAL);
    CHECK_RC(mq_recipe_for_json("{\"layers\": []}", "{\"max_size\": 10}", rec, sizeof rec, &len), MQ_EINVAL);
    CHECK_RC(mq_recipe_for_json(NULL, "{}", rec, sizeof rec, &len), MQ_EINVAL);
    free(table);

    CHECK_RC(mq_sensitivity_free(s), MQ_OK);
    CHECK_RC(mq_sensitivity_free(s), MQ_EHANDLE);
    CHECK_RC(mq_sensitivity_free(NULL), MQ_OK);
    CHECK_RC(mq_sensitivity_table_json((mq_sensitivity*)m, NULL, 0, &len), MQ_EHANDLE);
    mq_model_free(m);
}

int main(void) {
    test_gptq();
    test_sensitivity();
    CHECK(mq_debug_live_handles() == 0, "live handles at the end = %lld, want 0", (long long)mq_debug_live_handles());
    TEST_EXIT();
}
