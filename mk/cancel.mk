# Interrupting a long conversion (issue 11): signal to stop and to exit for Python's
# quantize_file (SIGINT, SIGTERM with and without a handler) and the CLI (BENCHMARKS.md,
# "Ctrl-C and SIGTERM"). BENCH_CANCEL_SRC=<file> reuses a checkpoint; else one of
# BENCH_MODEL_SIZE is generated under $(BUILD).
BENCH_CANCEL_SRC ?= $(BUILD)/bench-cancel.safetensors

.PHONY: bench-cancel
bench-cancel: lib cli venv
	@if [ ! -f $(BENCH_CANCEL_SRC) ]; then $(GO) build -o $(BUILD)/bench-model ./bench/model && \
		$(BUILD)/bench-model gen -out $(BENCH_CANCEL_SRC) -size $(BENCH_MODEL_SIZE); fi
	$(PY) bench/cancel/bench_cancel.py --src $(BENCH_CANCEL_SRC) --python $(PY)

BENCH_TARGETS += bench-cancel
