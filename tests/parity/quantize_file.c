/* A C caller of mq_quantize_file for the cross-caller parity test: the options come from the
 * command line into mq_model_config's own fields (not options_json), as a C program would set
 * them. Usage: quantize_file SRC DST [--bits N] [--bf16] [--group-size N] [--asym]
 * [--activations A] [--recipe FILE] [--skip PATTERN]... [--outliers] [--outlier-threshold T] Prints the error and exits 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monoquant.h"
#include "monoquant_debug.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SRC DST [options]\n", argv[0]);
        return 2;
    }
    mq_model_config cfg;
    if (mq_model_config_init(&cfg) != MQ_OK) return 1;
    const char* skip[64];
    size_t n_skip = 0;
    for (int i = 3; i < argc; i++) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--bits") && v) cfg.bits = atoi(v), i++;
        else if (!strcmp(a, "--bf16")) cfg.bits = 16, cfg.bf16 = 1;
        else if (!strcmp(a, "--group-size") && v) cfg.spec.group_size = atoi(v), i++;
        else if (!strcmp(a, "--asym")) cfg.spec.scheme = MQ_ASYMMETRIC;
        else if (!strcmp(a, "--activations") && v) cfg.activations = v, i++;
        else if (!strcmp(a, "--recipe") && v) cfg.recipe_file = v, i++;
        else if (!strcmp(a, "--skip") && v && n_skip < 64) skip[n_skip++] = v, i++;
        else if (!strcmp(a, "--validate")) cfg.validate = 1;
        else if (!strcmp(a, "--outliers")) cfg.outliers = 1;
        else if (!strcmp(a, "--outlier-threshold") && v) cfg.outlier_threshold = atof(v), i++;
        else {
            fprintf(stderr, "unknown argument %s\n", a);
            return 2;
        }
    }
    cfg.skip = n_skip ? skip : NULL;
    cfg.n_skip = n_skip;
    mq_report* rep = NULL;
    if (mq_quantize_file(argv[1], argv[2], &cfg, NULL, NULL, NULL, &rep) != MQ_OK) {
        fprintf(stderr, "%s\n", mq_last_error());
        return 1;
    }
    mq_report_free(rep);
    return mq_debug_live_handles() == 0 ? 0 : 1;
}
