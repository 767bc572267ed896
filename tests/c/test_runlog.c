/* The run log through the C ABI: mq_quantize_file and mq_model_quantize record runs (and honour
 * no_log and MONOQUANT_LOG=0), list with filters, show, compare, log_metric, reproduce (identical
 * output hash; in-memory runs refused), mq_runlog_set_version, search trials recorded, and every
 * error path. The log lives in a temporary MONOQUANT_HOME, never the user's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "monoquant.h"
#include "monoquant_debug.h"

#ifndef MQ_SOURCE_DIR
#error "MQ_SOURCE_DIR must name the source tree (set by CMake)"
#endif

static char buf[1 << 20];

/* The JSON of a buffer-convention call into buf (NULL on failure, the check reported). */
#define JSON(call)                                           \
    do {                                                     \
        size_t len_ = 0;                                     \
        int rc_ = (call);                                    \
        CHECK(rc_ == MQ_OK, "%s = %d: %s", #call, rc_, mq_last_error()); \
        if (rc_ != MQ_OK) buf[0] = 0;                        \
        (void)len_;                                          \
    } while (0)

static size_t count(const char* s, const char* what) {
    size_t n = 0;
    for (const char* p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

/* The value of "key":"..." after the first occurrence of key in s, copied into out. */
static const char* str_field(const char* s, const char* key, char* out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char* p = strstr(s, pat);
    out[0] = 0;
    if (!p) return out;
    p += strlen(pat);
    size_t i = 0;
    while (p[i] && p[i] != '"' && i + 1 < cap) {
        out[i] = p[i];
        i++;
    }
    out[i] = 0;
    return out;
}

static long long int_field(const char* s, const char* key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char* p = strstr(s, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

static float w[32 * 64];

static int stop_at_first(uint64_t td, uint64_t tt, uint64_t bd, uint64_t bt, void* user) {
    (void)td, (void)tt, (void)bd, (void)bt;
    ++*(int*)user;
    return 1;
}

/* A float model of one Linear layer, quantized in memory with cfg; returns the report's run_id. */
static long long quantize_in_memory(const mq_model_config* cfg) {
    mq_model *m = NULL, *q = NULL;
    static const int64_t shape[2] = {32, 64};
    mq_tensor t = {w, MQ_DTYPE_F32, 2, shape, NULL};
    CHECK_RC(mq_model_new(&m), MQ_OK);
    CHECK_RC(mq_model_add_tensor(m, "fc.weight", &t), MQ_OK);
    CHECK_RC(mq_model_set_module_type(m, "fc", "Linear"), MQ_OK);
    CHECK_RC(mq_model_quantize(m, cfg, NULL, NULL, &q), MQ_OK);
    long long id = -1;
    size_t len = 0;
    if (q && mq_model_report_json(q, buf, sizeof buf, &len) == MQ_OK) id = int_field(buf, "run_id");
    mq_model_free(q);
    mq_model_free(m);
    return id;
}

int main(void) {
    char home[] = "/tmp/mq-runlog-XXXXXX";
    CHECK(mkdtemp(home) != NULL, "mkdtemp");
    setenv("MONOQUANT_HOME", home, 1);
    setenv("MONOQUANT_LOG", "1", 1);
    for (int i = 0; i < 32 * 64; i++) w[i] = sinf(0.1f * (float)i);
    size_t len = 0;

    /* No log yet: list is empty and creates nothing; show says there is none. */
    JSON(mq_runs_list_json(NULL, NULL, buf, sizeof buf, &len_));
    CHECK(strcmp(buf, "[]") == 0, "list of no log = %s", buf);
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/runs.sqlite", home);
    CHECK(access(logpath, F_OK) != 0, "listing created %s", logpath);
    CHECK_RC(mq_run_show_json(NULL, 1, buf, sizeof buf, &len), MQ_EIO);
    CHECK(strstr(mq_last_error(), "no run log at") != NULL, "error: %s", mq_last_error());

    /* Run 1: file to file. */
    mq_model_config cfg;
    CHECK_RC(mq_model_config_init(&cfg), MQ_OK);
    char src[512], dst[512], again[512];
    snprintf(src, sizeof src, "%s/examples/digits_cnn.safetensors", MQ_SOURCE_DIR);
    snprintf(dst, sizeof dst, "%s/q.safetensors", home);
    snprintf(again, sizeof again, "%s/again.safetensors", home);
    mq_report* rep = NULL;
    CHECK_RC(mq_quantize_file(src, dst, &cfg, NULL, NULL, NULL, &rep), MQ_OK);
    CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
    CHECK(int_field(buf, "run_id") == 1, "file run id: %.200s", buf);
    mq_report_free(rep);

    /* Run 2: in memory, with this process's torch version; then no_log and MONOQUANT_LOG=0. */
    CHECK_RC(mq_runlog_set_version("torch", "9.9.9-test"), MQ_OK);
    CHECK_RC(mq_runlog_set_version("monoquant", "1"), MQ_EINVAL);
    CHECK_RC(mq_runlog_set_version(NULL, "1"), MQ_EINVAL);
    CHECK(quantize_in_memory(&cfg) == 2, "in-memory run not recorded as run 2");
    cfg.no_log = 1;
    CHECK(quantize_in_memory(&cfg) == 0, "no_log recorded a run");
    cfg.no_log = 0;
    setenv("MONOQUANT_LOG", "0", 1);
    CHECK(quantize_in_memory(&cfg) == 0, "MONOQUANT_LOG=0 recorded a run");
    setenv("MONOQUANT_LOG", "1", 1);

    /* list, filters */
    JSON(mq_runs_list_json(NULL, NULL, buf, sizeof buf, &len_));
    CHECK(count(buf, "\"entry_point\":\"c\"") == 2, "list: %.300s", buf);
    JSON(mq_runs_list_json(NULL, "{\"id\": \"2\"}", buf, sizeof buf, &len_));
    CHECK(count(buf, "\"uuid\"") == 1 && strstr(buf, "\"torch\":\"9.9.9-test\""), "filter id=2 / torch version: %.600s", buf);
    CHECK(strstr(buf, "\"path\":\"\",\"sha256\":\"") != NULL, "in-memory input has no path and a fingerprint: %.600s", buf);
    JSON(mq_runs_list_json(NULL, "{\"options.bits\": \"4\"}", buf, sizeof buf, &len_));
    CHECK(strcmp(buf, "[]") == 0, "filter options.bits=4: %.300s", buf);
    CHECK_RC(mq_runs_list_json(NULL, "[1]", buf, sizeof buf, &len), MQ_EINVAL);
    CHECK_RC(mq_runs_list_json(NULL, NULL, buf, 4, &len), MQ_EBUFFER);
    CHECK_RC(mq_runs_list_json(NULL, NULL, buf, sizeof buf, NULL), MQ_EINVAL);

    /* show, metric */
    char sha[80], insha[80];
    JSON(mq_run_show_json(NULL, 1, buf, sizeof buf, &len_));
    str_field(strstr(buf, "\"output\""), "xxh3", sha, sizeof sha);
    str_field(strstr(buf, "\"input\""), "xxh3", insha, sizeof insha);
    CHECK(strlen(sha) == 32 && strlen(insha) == 32, "run 1 digests (XXH3-128): %s %s", sha, insha);
    CHECK(strstr(buf, "\"sha256\":\"\"") != NULL, "run 1 has a sha256 before asked: %.600s", buf);
    CHECK_RC(mq_run_add_sha256(NULL, 1), MQ_OK);
    JSON(mq_run_show_json(NULL, 1, buf, sizeof buf, &len_));
    char osha[80];
    str_field(strstr(buf, "\"output\""), "sha256", osha, sizeof osha);
    CHECK(strlen(osha) == 64, "run 1's output sha256 after mq_run_add_sha256: %s", osha);
    CHECK_RC(mq_run_add_sha256(NULL, 99), MQ_EINVAL);
    CHECK_RC(mq_run_show_json(NULL, 99, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK(strstr(mq_last_error(), "run 99") != NULL, "error: %s", mq_last_error());
    CHECK_RC(mq_run_log_metric(NULL, 1, "accuracy", 0.91), MQ_OK);
    CHECK_RC(mq_run_log_metric(NULL, 1, "accuracy", NAN), MQ_ENONFINITE);
    CHECK_RC(mq_run_log_metric(NULL, 1, "", 1), MQ_EINVAL);
    CHECK_RC(mq_run_log_metric(NULL, 1, NULL, 1), MQ_EINVAL);
    CHECK_RC(mq_run_log_metric(NULL, 42, "accuracy", 1), MQ_EINVAL);
    JSON(mq_run_show_json(NULL, 1, buf, sizeof buf, &len_));
    CHECK(strstr(buf, "\"metrics\":{\"accuracy\":0.91}") != NULL, "metric: %.200s", strstr(buf, "\"metrics\"") ? strstr(buf, "\"metrics\"") : buf);

    /* compare */
    const int64_t ids[2] = {1, 2};
    JSON(mq_runs_compare_json(NULL, ids, 2, buf, sizeof buf, &len_));
    CHECK(strstr(buf, "\"ids\":[1,2]") && strstr(buf, "\"pareto\":[") && strstr(buf, "\"key\":\"accuracy\""), "compare: %.400s", buf);
    CHECK_RC(mq_runs_compare_json(NULL, ids, 0, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK_RC(mq_runs_compare_json(NULL, NULL, 2, buf, sizeof buf, &len), MQ_EINVAL);

    /* reproduce run 1: identical, the output kept, recorded as run 3 under the options' entry */
    mq_runlog_options lo;
    CHECK_RC(mq_runlog_options_init(&lo), MQ_OK);
    lo.entry_point = "c.reproduce";
    CHECK_RC(mq_run_reproduce(&lo, 1, again, NULL, NULL, &rep), MQ_OK);
    CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
    char got[80], want[90];
    str_field(buf, "output_digest", got, sizeof got);
    snprintf(want, sizeof want, "xxh3 %s", sha);
    CHECK(strstr(buf, "\"identical\":true") && strcmp(got, want) == 0 && int_field(buf, "new_run_id") == 3,
          "reproduce 1: %.300s (recorded xxh3 %s)", buf, sha);
    mq_report_free(rep);
    JSON(mq_run_show_json(NULL, 3, buf, sizeof buf, &len_));
    CHECK(strstr(buf, "\"entry_point\":\"c.reproduce\"") != NULL, "reproduction's run: %.200s", buf);
    lo.no_log = 1;
    CHECK_RC(mq_run_reproduce(&lo, 1, NULL, NULL, NULL, &rep), MQ_OK);
    CHECK_RC(mq_report_json(rep, buf, sizeof buf, &len), MQ_OK);
    CHECK(strstr(buf, "\"identical\":true") && int_field(buf, "new_run_id") == 0 && !strstr(buf, "\"output\":\""), "unrecorded reproduction: %.300s", buf);
    mq_report_free(rep);
    /* a progress callback that stops: MQ_ECANCELED, no output, no report */
    int calls = 0;
    char stopped[512];
    snprintf(stopped, sizeof stopped, "%s/stopped.safetensors", home);
    CHECK_RC(mq_run_reproduce(&lo, 1, stopped, stop_at_first, &calls, &rep), MQ_ECANCELED);
    CHECK(calls == 1 && rep == NULL && access(stopped, F_OK) != 0, "canceled reproduction: %d calls, report %p", calls, (void*)rep);
    /* an in-memory run has no file to run again; a bad options struct; an unknown run */
    CHECK_RC(mq_run_reproduce(NULL, 2, NULL, NULL, NULL, &rep), MQ_EUNSUPPORTED);
    CHECK(rep == NULL, "a failed reproduction returned a report");
    CHECK_RC(mq_run_reproduce(NULL, 77, NULL, NULL, NULL, NULL), MQ_EINVAL);
    mq_runlog_options bad = lo;
    bad.version = 99;
    CHECK_RC(mq_run_show_json(&bad, 1, buf, sizeof buf, &len), MQ_EINVAL);
    CHECK_RC(mq_runlog_options_init(NULL), MQ_EINVAL);
    /* another log by path: none there yet */
    char other[512];
    snprintf(other, sizeof other, "%s/other.sqlite", home);
    mq_runlog_options olo;
    mq_runlog_options_init(&olo);
    olo.path = other;
    JSON(mq_runs_list_json(&olo, NULL, buf, sizeof buf, &len_));
    CHECK(strcmp(buf, "[]") == 0, "other log: %s", buf);

    /* a search trial, told, recorded with its objectives as metrics */
    mq_search* s = NULL;
    CHECK_RC(mq_search_new("{\"layers\": [{\"name\": \"fc\", \"params\": 2048, \"row\": 64}],"
                           " \"objectives\": [{\"name\": \"metric\", \"goal\": \"max\"}, {\"name\": \"size\", \"goal\": \"min\"}]}",
                           1, &s), MQ_OK);
    int64_t trial = -1, run = -1;
    CHECK_RC(mq_search_ask(s, &trial, buf, sizeof buf, &len), MQ_OK);
    CHECK_RC(mq_search_record_run(s, trial, NULL, &run), MQ_EINVAL); /* not told yet */
    const double vals[2] = {0.75, 1234};
    CHECK_RC(mq_search_tell(s, trial, vals, 2), MQ_OK);
    CHECK_RC(mq_search_record_run(s, trial, NULL, &run), MQ_OK);
    CHECK(run == 4, "search trial recorded as run %lld, want 4", (long long)run);
    CHECK_RC(mq_search_record_run(s, 999, NULL, &run), MQ_EINVAL);
    CHECK_RC(mq_search_record_run(NULL, trial, NULL, &run), MQ_EHANDLE);
    mq_search_free(s);
    JSON(mq_run_show_json(NULL, 4, buf, sizeof buf, &len_));
    CHECK(strstr(buf, "\"entry_point\":\"search\"") && strstr(buf, "\"metric\":0.75") && strstr(buf, "\"size\":1234") && strstr(buf, "\"recipe\""),
          "search run: %.600s", buf);
    CHECK_RC(mq_run_reproduce(NULL, 4, NULL, NULL, NULL, NULL), MQ_EUNSUPPORTED);

    CHECK(mq_debug_live_handles() == 0, "live handles: %lld", (long long)mq_debug_live_handles());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", home);
    TEST_EXIT();
}
