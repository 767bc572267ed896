/* The search ABI: ask/tell over a space of the bundled tiny transformer's layers, every candidate
 * checked by planning it on the real model, determinism for a seed, save/resume, bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "monoquant_debug.h"

#ifndef MQ_SOURCE_DIR
#error "MQ_SOURCE_DIR must name the source tree (set by CMake)"
#endif

static const char* SPACE =
    "{\"layers\": ["
    "{\"name\": \"encoder.layers.0.linear1\", \"params\": 32768, \"row\": 128, \"sensitivity\": 0.2},"
    "{\"name\": \"encoder.layers.0.linear2\", \"params\": 32768, \"row\": 256, \"sensitivity\": 0.5},"
    "{\"name\": \"encoder.layers.0.self_attn.out_proj\", \"params\": 16384, \"row\": 128},"
    "{\"name\": \"encoder.layers.1.linear1\", \"params\": 32768, \"row\": 128, \"sensitivity\": 0.1},"
    "{\"name\": \"encoder.layers.1.linear2\", \"params\": 32768, \"row\": 256, \"sensitivity\": 0.9},"
    "{\"name\": \"encoder.layers.1.self_attn.out_proj\", \"params\": 16384, \"row\": 128},"
    "{\"name\": \"lm_head\", \"params\": 8192, \"row\": 128}],"
    " \"objectives\": [{\"name\": \"metric\", \"goal\": \"max\"}, {\"name\": \"size\", \"goal\": \"min\"}],"
    " \"group_sizes\": [32, 64], \"population\": 8,"
    " \"limits\": [{\"match\": \"lm_head\", \"min_bits\": 8}]}";

static size_t count(const char* s, const char* what) {
    size_t n = 0;
    for (const char* p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

/* A stand-in for a measured metric: each INT4 layer costs 1 point, INT8 0.1, a kept layer 0. */
static void score(const char* recipe, double out[2]) {
    size_t i4 = count(recipe, "\"bits\":4"), i8 = count(recipe, "\"bits\":8"), f16 = count(recipe, "\"bits\":16");
    size_t skip = count(recipe, "\"skip\":true") - 1; /* the final "*" rule */
    out[0] = 100.0 - 1.0 * (double)i4 - 0.1 * (double)i8;
    out[1] = 4.0 * (double)i4 + 8.0 * (double)i8 + 16.0 * (double)f16 + 32.0 * (double)skip;
}

static char* ask(mq_search* s, int64_t* trial) {
    size_t len = 0;
    int rc = mq_search_ask(s, trial, NULL, 0, &len);
    CHECK(rc == MQ_EBUFFER, "length query: %d", rc);
    int64_t again = -1;
    char* buf = malloc(len + 1);
    CHECK_RC(mq_search_ask(s, &again, buf, len + 1, &len), MQ_OK);
    CHECK(again == *trial, "a short buffer lost the candidate: trial %lld then %lld", (long long)*trial, (long long)again);
    return buf;
}

static char* get_json(int (*fn)(mq_search*, char*, size_t, size_t*), mq_search* s) {
    size_t len = 0;
    fn(s, NULL, 0, &len);
    char* buf = malloc(len + 1);
    CHECK_RC(fn(s, buf, len + 1, &len), MQ_OK);
    return buf;
}

int main(void) {
    mq_model* m = NULL;
    CHECK_RC(mq_model_load(&m, MQ_SOURCE_DIR "/examples/tiny_transformer.safetensors"), MQ_OK);

    mq_search *a = NULL, *b = NULL;
    CHECK_RC(mq_search_new(SPACE, 7, &a), MQ_OK);
    CHECK_RC(mq_search_new(SPACE, 7, &b), MQ_OK);
    char* last = NULL;
    for (int i = 0; i < 40; i++) {
        int64_t ta = -1, tb = -1;
        char* ra = ask(a, &ta);
        char* rb = ask(b, &tb);
        CHECK(ta == i && tb == i, "trial ids %lld %lld, want %d", (long long)ta, (long long)tb, i);
        CHECK(strcmp(ra, rb) == 0, "same seed, different candidates at trial %d", i);
        CHECK(strstr(ra, "{\"match\":\"*\",\"skip\":true}]") != NULL, "no final \"*\" skip rule: %s", ra);
        /* lm_head is never below INT8 */
        const char* head = strstr(ra, "\"match\":\"lm_head\"");
        CHECK(head != NULL, "no lm_head rule: %s", ra);
        CHECK(head && !(strstr(head, "\"bits\":4") && strstr(head, "\"bits\":4") < strstr(head, "}")),
              "lm_head below INT8: %s", ra);
        /* every candidate is a recipe the engine plans on the real model */
        mq_model_config cfg;
        mq_model_config_init(&cfg);
        cfg.recipe_json = ra;
        size_t len = 0;
        CHECK_RC(mq_model_plan_json(m, &cfg, NULL, 0, &len), MQ_EBUFFER);
        double obj[2];
        score(ra, obj);
        CHECK_RC(mq_search_tell(a, ta, obj, 2), MQ_OK);
        CHECK_RC(mq_search_tell(b, tb, obj, 2), MQ_OK);
        free(rb);
        free(last);
        last = ra;
    }
    free(last);

    /* bad tells leave the trial pending */
    int64_t t = -1;
    char* r = ask(a, &t);
    double nan_obj[2] = {NAN, 1.0};
    CHECK_RC(mq_search_tell(a, t, nan_obj, 2), MQ_ENONFINITE);
    CHECK(strstr(mq_last_error(), "\"metric\"") != NULL, "NaN error does not name the objective: %s", mq_last_error());
    double one[1] = {1.0};
    CHECK_RC(mq_search_tell(a, t, one, 1), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "1 objective values for 2") != NULL, "count error: %s", mq_last_error());
    CHECK_RC(mq_search_tell(a, 9999, one, 1), MQ_EINVAL);
    CHECK_RC(mq_search_fail(a, t, "evaluate raised"), MQ_OK);
    CHECK_RC(mq_search_fail(a, t, "twice"), MQ_EINVAL);
    free(r);

    /* the front holds results with objectives by name */
    char* front = get_json(mq_search_front_json, a);
    CHECK(front[0] == '[' && strstr(front, "\"objectives\":{\"metric\":") != NULL, "front: %.200s", front);
    free(front);
    char* trials = get_json(mq_search_trials_json, a);
    CHECK(strstr(trials, "\"error\":\"evaluate raised\"") != NULL, "failed trial not recorded");
    free(trials);

    /* save, resume: the resumed search proposes what the original does */
    char* state = get_json(mq_search_save_json, a);
    mq_search* c = NULL;
    CHECK_RC(mq_search_load(state, &c), MQ_OK);
    int64_t t1 = -1, t2 = -2;
    char* r1 = ask(a, &t1);
    char* r2 = ask(c, &t2);
    CHECK(t1 == t2 && strcmp(r1, r2) == 0, "resumed search differs: trial %lld vs %lld", (long long)t1, (long long)t2);
    free(r1);
    free(r2);
    free(state);
    mq_search* d = (mq_search*)1;
    CHECK_RC(mq_search_load("{\"version\": 3}", &d), MQ_EINVAL);
    CHECK(d == NULL, "out not cleared on failure");

    /* bad spaces name the problem */
    mq_search* bad = NULL;
    CHECK_RC(mq_search_new("{\"layers\": [{\"name\": \"lm_head\"}], \"objectives\": [{\"name\": \"m\", \"goal\": \"max\"}],"
                           " \"formats\": [\"int4\"], \"limits\": [{\"match\": \"lm_head\", \"min_bits\": 8}]}", 0, &bad),
             MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "no valid recipe") && strstr(mq_last_error(), "lm_head"), "error: %s", mq_last_error());
    CHECK_RC(mq_search_new("{\"layers\": [{\"name\": \"fc\"}], \"objectives\": [], \"colour\": 1}", 0, &bad), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "colour") != NULL, "error: %s", mq_last_error());
    CHECK_RC(mq_search_new(NULL, 0, &bad), MQ_EINVAL);
    CHECK_RC(mq_search_new(SPACE, 0, NULL), MQ_EINVAL);
    CHECK(bad == NULL, "out set on failure");

    /* structured pruning: fc1 [4, 2] -> fc2 [3, 4]; unit 2 carries nothing out, unit 0 little */
    {
        const float w1[8] = {1, 0, 0.1f, 0.1f, 5, 5, 1, 1};
        const float w2[12] = {1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1};
        const int64_t s1[2] = {4, 2}, s2[2] = {3, 4}, s3[2] = {3, 5};
        mq_tensor t1 = {w1, MQ_DTYPE_F32, 2, s1, NULL}, t2 = {w2, MQ_DTYPE_F32, 2, s2, NULL};
        int64_t keep[4] = {-1, -1, -1, -1};
        size_t nk = 0;
        CHECK_RC(mq_prune_units(&t1, NULL, &t2, 0.5, keep, 1, &nk), MQ_EBUFFER);
        CHECK(nk == 2, "n_keep %zu on MQ_EBUFFER, want 2", nk);
        CHECK_RC(mq_prune_units(&t1, NULL, &t2, 0.5, keep, 4, &nk), MQ_OK);
        CHECK(nk == 2 && keep[0] == 0 && keep[1] == 3, "kept %zu units: %lld %lld, want 0 3", nk, (long long)keep[0], (long long)keep[1]);
        mq_tensor t3 = {w2, MQ_DTYPE_F32, 2, s3, NULL}; /* 5 inputs: not fc1's 4 outputs */
        CHECK_RC(mq_prune_units(&t1, NULL, &t3, 0.5, keep, 4, &nk), MQ_ESHAPE);
        CHECK(strstr(mq_last_error(), "not coupled") != NULL, "error: %s", mq_last_error());
        CHECK_RC(mq_prune_units(&t1, NULL, &t2, 1.0, keep, 4, &nk), MQ_EINVAL);
        CHECK(strstr(mq_last_error(), "prune_units 1") != NULL, "error: %s", mq_last_error());
        CHECK_RC(mq_prune_units(&t1, NULL, &t2, 0.5, keep, 4, NULL), MQ_EINVAL);
    }

    /* the A/B/n decision (mq_abtest_json): a clear latency gap names a winner, equal samples do not */
    {
        const char* gap =
            "{\"objective\": \"latency\", \"samples\": ["
            "{\"name\": \"slow\", \"values\": [10.1, 9.8, 10.3, 10.0, 9.9, 10.2, 10.1, 9.7]},"
            "{\"name\": \"fast\", \"values\": [5.1, 4.9, 5.2, 5.0, 4.8, 5.3, 5.0, 5.1]}]}";
        size_t n = 0;
        CHECK_RC(mq_abtest_json(gap, NULL, 0, &n), MQ_EBUFFER);
        char* out = malloc(n + 1);
        CHECK_RC(mq_abtest_json(gap, out, n + 1, &n), MQ_OK);
        CHECK(strstr(out, "\"winner\":\"fast\"") != NULL, "decision: %s", out);
        free(out);
        const char* same =
            "{\"objective\": \"latency\", \"samples\": ["
            "{\"name\": \"A\", \"values\": [1, 2, 3, 4, 5, 6]}, {\"name\": \"B\", \"values\": [6, 5, 4, 3, 2, 1]}]}";
        char small[4096];
        CHECK_RC(mq_abtest_json(same, small, sizeof small, &n), MQ_OK);
        CHECK(strstr(small, "\"winner\":\"\"") != NULL && strstr(small, "no significant difference in latency") != NULL, "decision: %s", small);
        CHECK_RC(mq_abtest_json("{\"samples\": [{\"name\": \"A\", \"values\": [1, 2]}]}", small, sizeof small, &n), MQ_EINVAL);
        CHECK(strstr(mq_last_error(), "at least two candidates") != NULL, "error: %s", mq_last_error());
        CHECK_RC(mq_abtest_json(NULL, small, sizeof small, &n), MQ_EINVAL);
    }

    /* handles */
    size_t len = 0;
    CHECK_RC(mq_search_front_json((mq_search*)m, NULL, 0, &len), MQ_EHANDLE);
    CHECK_RC(mq_search_free(a), MQ_OK);
    CHECK_RC(mq_search_free(a), MQ_EHANDLE);
    CHECK_RC(mq_search_free(b), MQ_OK);
    CHECK_RC(mq_search_free(c), MQ_OK);
    CHECK_RC(mq_search_free(NULL), MQ_OK);
    CHECK_RC(mq_model_free(m), MQ_OK);
    CHECK(mq_debug_live_handles() == 0, "%lld live handles", (long long)mq_debug_live_handles());
    TEST_EXIT();
}
