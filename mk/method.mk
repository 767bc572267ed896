# core/method: how weights become integers (rtn, mse, hqq, gptq). Owner: core/method/.
#   make test-method    unit tests with the race detector, incl. the golden torch-reference GPTQ
#   make bench-method   4096×4096 INT4 g128 with each method (cost goals in BENCHMARKS.md)
#   make golden-method  regenerate core/method/testdata/gptq_golden.safetensors from the torch
#                       reference GPTQ (core/method/testdata/gen_gptq_golden.py)
#   make sqnr-method MODEL=…/model.safetensors   mean weight SQNR per method on a real checkpoint
#                       (bench/method/weight_sqnr.py; MiniLM: see docs/methods.md)
#   make bench-sensitivity  monoquant.sensitivity on a MiniLM-sized BERT, 32 samples (goal <= 60 s)
#   make bench-perplexity   a char-level GPT trained here, INT4 g128 perplexity per method
#                       (goals: gptq's increase <= 0.6x rtn's, hqq's <= 0.85x)
.PHONY: test-method bench-method golden-method sqnr-method bench-sensitivity bench-perplexity

test-method:
	$(GO) test -race -count=1 ./core/method/...

bench-method:
	$(GO) test -run '^$$' -bench Methods4096 -benchtime 3x ./core/method/

golden-method: venv
	$(PY) core/method/testdata/gen_gptq_golden.py

sqnr-method: cli venv
	$(PY) bench/method/weight_sqnr.py $(MODEL) --monoquant $(BUILD)/monoquant

bench-sensitivity: lib venv
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so PYTHONPATH=bindings/python $(PY) bench/method/bench_sensitivity.py

bench-perplexity: lib venv
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so PYTHONPATH=bindings/python $(PY) bench/method/bench_perplexity.py

TEST_TARGETS  += test-method
BENCH_TARGETS += bench-method bench-sensitivity bench-perplexity
