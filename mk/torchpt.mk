# Torch .pt reading/writing (core/checkpoint/torchpt) and the safe unpickler (core/checkpoint/pickle).
#   make test-fuzz-torchpt   80000 unpickles and 2000 opens (part of make test; a count, not seconds:
#                            mk/checkpoint.mk says why)
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
	$(GO) test ./core/checkpoint/pickle -run '^$$' -fuzz '^FuzzUnpickle$$' -fuzztime=80000x
	$(GO) test ./core/checkpoint/torchpt -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime=2000x

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
