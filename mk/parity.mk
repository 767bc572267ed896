# Cross-caller parity (tests/parity): the same input and options through Python in memory then
# save, Python's quantize_file, the CLI and C (mq_quantize_file) must give byte-identical files.
#   make test-parity

.PHONY: test-parity
test-parity: lib cli venv
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so MONOQUANT_CLI=$(CURDIR)/$(BUILD)/monoquant \
		$(PYTEST) -q tests/parity

TEST_TARGETS += test-parity

# The same 2 GB checkpoint through the CLI, Python's quantize_file and C's mq_quantize_file
# (BENCHMARKS.md, "Callers"). BENCH_GB=2 BENCH_REPS=3.
BENCH_REPS ?= 3
.PHONY: bench-callers
bench-callers: lib cli venv
	bench/prio.sh $(PY) bench/callers/bench_callers.py --gb $(BENCH_GB) --reps $(BENCH_REPS)

BENCH_TARGETS += bench-callers
