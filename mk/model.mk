# core/model: end-to-end quantization of a large checkpoint (see BENCHMARKS.md,
# "End to end: 2 GB checkpoint"). BENCH_MODEL_SIZE=512MiB for a quicker run.
BENCH_MODEL_SIZE ?= 2GiB

.PHONY: bench-model test-model
bench-model: venv
	@mkdir -p $(BUILD)
	$(GO) build -o $(BUILD)/bench-model ./bench/model
	$(BUILD)/bench-model run -size $(BENCH_MODEL_SIZE) -python $(PY) -torch-script bench/model/torch_quantize.py
	# The same shapes as BF16, as most large checkpoints are stored (no torch step).
	$(BUILD)/bench-model run -size $(BENCH_MODEL_SIZE) -dtype BF16 -python ''
	# Embedding and lm_head 4x larger (128000x2048 F32, 1 GB each): streaming keeps the peak flat.
	$(BUILD)/bench-model run -size $(BENCH_MODEL_SIZE) -vocab 128000 -python ''

test-model:
	$(GO) test -race ./core/plan/... ./core/model/...

# (run by test-go with every other Go package)
BENCH_TARGETS += bench-model

# Fuzzing the quantized format's config reader (FuzzReadConfig), which every reader of a
# quantized file runs: 25000 inputs in make test (a count, not seconds: mk/checkpoint.mk says
# why), FUZZ_TIME in make fuzz.
.PHONY: fuzz-model-short fuzz-model
test-fuzz-short: fuzz-model-short
fuzz-model-short:
	$(GO) test ./core/model -run '^$$' -fuzz '^FuzzReadConfig$$' -fuzztime=25000x
fuzz: fuzz-model
fuzz-model:
	$(GO) test ./core/model -run '^$$' -fuzz '^FuzzReadConfig$$' -fuzztime=$(FUZZ_TIME)
