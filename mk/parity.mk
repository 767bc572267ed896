# Cross-caller parity (tests/parity): the same input and options through Python in memory then
# save, Python's quantize_file, the CLI and C (mq_quantize_file) must give byte-identical files.
#   make test-parity

.PHONY: test-parity
test-parity: lib cli venv
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so MONOQUANT_CLI=$(CURDIR)/$(BUILD)/monoquant \
		$(PYTEST) -q tests/parity

TEST_TARGETS += test-parity
