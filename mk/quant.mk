# core/quant and core/tensor: torch-parity kernels.
#   make test-quant     unit + golden tests, with the race detector
#   make bench-quant    4096×4096 float32 quantize/dequantize throughput
#   make golden-quant   regenerate testdata/golden/quant from the torch in .venv
#   fuzzing: the AVX2 quantize kernels against the scalar loops (FuzzQuantRunMeasured) and
#   Quantize on arbitrary shapes and specs (FuzzQuantize), 50000 inputs each in make test (through
#   test-fuzz-short; a count, not seconds: mk/checkpoint.mk says why), FUZZ_TIME each in make fuzz
.PHONY: test-quant bench-quant golden-quant fuzz-quant-short fuzz-quant
QUANT_FUZZ := FuzzQuantRunMeasured FuzzQuantize

test-quant:
	$(GO) test -race -count=1 ./core/quant/... ./core/tensor/...

bench-quant:
	$(GO) test -run '^$$' -bench . -benchtime 10x ./core/quant/

golden-quant:
	$(PY) testdata/gen_quant_golden.py

test-fuzz-short: fuzz-quant-short
fuzz-quant-short:
	@set -e; for f in $(QUANT_FUZZ); do \
		echo "$(GO) test ./core/quant -run '^$$' -fuzz ^$$f\$$ -fuzztime=50000x"; \
		$(GO) test ./core/quant -run '^$$' -fuzz "^$$f\$$" -fuzztime=50000x; done

fuzz: fuzz-quant
fuzz-quant:
	@set -e; for f in $(QUANT_FUZZ); do \
		$(GO) test ./core/quant -run '^$$' -fuzz "^$$f\$$" -fuzztime=$(FUZZ_TIME); done

# (run by test-go with every other Go package)
BENCH_TARGETS += bench-quant
