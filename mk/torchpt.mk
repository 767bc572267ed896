# Torch .pt reading/writing (core/checkpoint/torchpt) and the safe unpickler (core/checkpoint/pickle).
#   make test-fuzz-torchpt   10 s per fuzz target (part of make test)
#   make fuzz-torchpt        FUZZ_TIME (default 5m) per target; also run by `make fuzz`
#   make golden-torchpt      regenerate the torch fixtures and the malicious corpus
# The interop tests (tests/interop/test_torch_*.py) run under make test-interop.

TORCHPT_FUZZ := ./core/checkpoint/pickle:FuzzUnpickle ./core/checkpoint/torchpt:FuzzOpen
FUZZ_TIME    ?= 5m

.PHONY: test-fuzz-torchpt fuzz-torchpt golden-torchpt

define torchpt_fuzz_run
	@set -e; for t in $(TORCHPT_FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "$(GO) test $$pkg -run '^$$' -fuzz ^$$fn\$$ -fuzztime=$(1)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime=$(1); done
endef

test-fuzz-torchpt:
	$(call torchpt_fuzz_run,10s)

fuzz: fuzz-torchpt
fuzz-torchpt:
	$(call torchpt_fuzz_run,$(FUZZ_TIME))

golden-torchpt: venv
	$(PY) testdata/gen_torch_fixtures.py

TEST_TARGETS += test-fuzz-torchpt

.PHONY: bench-torchpt
# Write and read (open, touch every page, release) a 64 MiB 16-tensor .pt.
bench-torchpt:
	$(GO) test ./core/checkpoint/torchpt -run '^$$' -bench . -benchtime 5x
BENCH_TARGETS += bench-torchpt
