# The command line `monoquant` (cmd/monoquant). Owner: cmd/monoquant/, tests/cli/.
#   make cli            build/monoquant (top-level Makefile)
#   make test-cli       Go tests of the CLI, with -race: golden output, end-to-end runs on the
#                       fixtures and examples, every error case, the progress bar on a pty
#   make test-cli-py    the CLI's output files judged by torch and safetensors (pytest tests/cli):
#                       INT8 bit-exact with torch's observer + quantize_per_channel, dequantize exact
#   make demo-cli       quantize the bundled example models to INT8 and INT4 into build/demo/
#   make bench-cli      end to end on a generated 2 GB checkpoint vs a torch script (BENCH_GB=2)
#   make golden-cli     rewrite the CLI's golden files (cmd/monoquant/testdata/golden) after a
#                       deliberate output change; review the diff before committing

DEMO_DIR := $(BUILD)/demo
BENCH_GB ?= 2

.PHONY: test-cli test-cli-py demo-cli bench-cli golden-cli

test-cli:
	$(GO) vet ./cmd/monoquant
	$(GO) test -race -count=1 ./cmd/monoquant
	$(GO) test -race -count=1 ./core/forward

test-cli-py: cli lib venv
	MONOQUANT_CLI=$(CURDIR)/$(BUILD)/monoquant $(PYTEST) tests/cli -q

# The README's first command: every example model to INT8 and INT4, with the report.
demo-cli: cli
	@mkdir -p $(DEMO_DIR)
	@set -e; for m in examples/digits_cnn.pt examples/digits_cnn_module.pt examples/tiny_transformer.safetensors; do \
		for b in 8 4; do \
			n=$$(basename $$m); n=$${n%.*}; \
			echo; echo "== monoquant quantize --model $$m --bits $$b --out $(DEMO_DIR)/$$n.int$$b.safetensors"; \
			$(BUILD)/monoquant quantize --model $$m --bits $$b --out $(DEMO_DIR)/$$n.int$$b.safetensors; \
		done; \
	done
	@echo; echo "== monoquant quantize --model examples/tiny_transformer.safetensors --recipe examples/recipes/tiny_transformer_mixed.json (per-layer mixed precision, docs/RECIPES.md)"
	@$(BUILD)/monoquant quantize --model examples/tiny_transformer.safetensors --recipe examples/recipes/tiny_transformer_mixed.json --out $(DEMO_DIR)/tiny_transformer.mixed.safetensors
	@echo; echo "== monoquant compare examples/digits_cnn.pt $(DEMO_DIR)/digits_cnn.int4.safetensors"
	@$(BUILD)/monoquant compare examples/digits_cnn.pt $(DEMO_DIR)/digits_cnn.int4.safetensors | tail -n 2

bench-cli: cli venv
	$(PY) tests/cli/bench_e2e.py --gb $(BENCH_GB) --monoquant $(BUILD)/monoquant

golden-cli:
	$(GO) test ./cmd/monoquant -run 'Golden' -update

TEST_TARGETS  += test-cli-py  # the Go tests of the CLI run in test-go
DEMO_TARGETS  += demo-cli
BENCH_TARGETS += bench-cli
