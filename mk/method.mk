# core/method: how weights become integers (rtn, mse, hqq, gptq). Owner: core/method/.
#   make test-method    unit tests with the race detector, incl. the golden torch-reference GPTQ
#   make bench-method   4096×4096 INT4 g128 with each method (cost goals in BENCHMARKS.md)
#   make golden-method  regenerate core/method/testdata/gptq_golden.safetensors from the torch
#                       reference GPTQ (core/method/testdata/gen_gptq_golden.py)
#   make sqnr-method MODEL=…/model.safetensors   mean weight SQNR per method on a real checkpoint
#                       (bench/method/weight_sqnr.py; MiniLM: see docs/methods.md)
.PHONY: test-method bench-method golden-method sqnr-method

test-method:
	$(GO) test -race -count=1 ./core/method/...

bench-method:
	$(GO) test -run '^$$' -bench Methods4096 -benchtime 3x ./core/method/

golden-method: venv
	$(PY) core/method/testdata/gen_gptq_golden.py

sqnr-method: cli venv
	$(PY) bench/method/weight_sqnr.py $(MODEL) --monoquant $(BUILD)/monoquant

TEST_TARGETS  += test-method
BENCH_TARGETS += bench-method
