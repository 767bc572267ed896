# core/quant and core/tensor: torch-parity kernels.
#   make test-quant     unit + golden tests, with the race detector
#   make bench-quant    4096×4096 float32 quantize/dequantize throughput
#   make golden-quant   regenerate testdata/golden/quant from the torch in .venv
.PHONY: test-quant bench-quant golden-quant

test-quant:
	$(GO) test -race -count=1 ./core/quant/... ./core/tensor/...

bench-quant:
	$(GO) test -run '^$$' -bench . -benchtime 10x ./core/quant/

golden-quant:
	$(PY) testdata/gen_quant_golden.py

TEST_TARGETS  += test-quant
BENCH_TARGETS += bench-quant
