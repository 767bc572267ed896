/* A C caller of mq_dequantize_file for the cross-caller parity test.
 * Usage: dequantize_file SRC DST. Prints the error and exits 1 on failure. */
#include <stdio.h>

#include "monoquant.h"
#include "monoquant_debug.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SRC DST\n", argv[0]);
        return 2;
    }
    if (mq_dequantize_file(argv[1], argv[2], NULL, NULL) != MQ_OK) {
        fprintf(stderr, "%s\n", mq_last_error());
        return 1;
    }
    return mq_debug_live_handles() == 0 ? 0 : 1;
}
