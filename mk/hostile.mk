# Hostile and damaged files (issue 11, SECURITY.md): a generated corpus through every entry point.
#   make test-hostile   the fast subset (part of make test): CLI, Python load/dequantize, C ABI
#   make fuzz-hostile   every case, including a file truncated while it is read (part of make fuzz)

.PHONY: test-hostile fuzz-hostile

test-hostile: venv lib cli
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so MONOQUANT_CLI=$(CURDIR)/$(BUILD)/monoquant \
		$(PYTEST) -q tests/hostile

fuzz: fuzz-hostile
fuzz-hostile: venv lib cli
	MONOQUANT_HOSTILE_FULL=1 MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so \
		MONOQUANT_CLI=$(CURDIR)/$(BUILD)/monoquant $(PYTEST) -q tests/hostile

TEST_TARGETS += test-hostile
