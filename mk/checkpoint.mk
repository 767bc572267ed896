# Checkpoints (safetensors, the checkpoint.Open dispatcher): interop tests against the official
# libraries, fuzzing of the header and index parsers, the read-with-Release memory benchmark.
#   make test-interop      pytest tests/interop (Go helpers built by tests/interop/conftest.py)
#   make test-fuzz-short   50000 inputs per safetensors fuzz target (part of make test)
#   make fuzz              FUZZ_TIME (default 5m) per target
#   make bench-checkpoint  peak RSS of a tensor-by-tensor pass over a 384 MB file

FUZZ_TIME        ?= 5m
SAFETENSORS_PKG  := ./core/checkpoint/safetensors
SAFETENSORS_FUZZ := FuzzParseHeader FuzzParseIndex

.PHONY: test-interop test-fuzz-short fuzz-safetensors-short fuzz-safetensors bench-checkpoint

test-interop: venv
	$(PYTEST) tests/interop -q

# The short fuzz runs of make test (here, mk/model.mk, mk/quant.mk, mk/torchpt.mk) are counted in
# inputs (-fuzztime=Nx, a few seconds each on the CI machine), not in seconds: with a duration,
# the fuzz coordinator of go1.26 can report its own deadline as a failure ("context deadline
# exceeded", no failing input) when a busy machine preempts it as the time runs out
# (golang/go#75804, fixed in go1.27); a count sets no deadline.
# test-fuzz-short and fuzz only gather prerequisites, so other areas can hang their own
# targets on them (e.g. `fuzz: fuzz-torchpt`) without clashing recipes.
test-fuzz-short: fuzz-safetensors-short
fuzz-safetensors-short:
	@set -e; for f in $(SAFETENSORS_FUZZ); do \
		echo "$(GO) test $(SAFETENSORS_PKG) -run '^$$' -fuzz ^$$f\$$ -fuzztime=50000x"; \
		$(GO) test $(SAFETENSORS_PKG) -run '^$$' -fuzz "^$$f\$$" -fuzztime=50000x; done

fuzz: fuzz-safetensors
fuzz-safetensors:
	@set -e; for f in $(SAFETENSORS_FUZZ); do \
		$(GO) test $(SAFETENSORS_PKG) -run '^$$' -fuzz "^$$f\$$" -fuzztime=$(FUZZ_TIME); done

bench-checkpoint:
	$(GO) test $(SAFETENSORS_PKG) -run '^$$' -bench ReadReleaseRSS -benchtime 3x

TEST_TARGETS  += test-interop test-fuzz-short
BENCH_TARGETS += bench-checkpoint
