# Mono Quant — build, test, demo, bench.
#   make demo    build everything and quantize the bundled example models
#   make test    install what tests need (.venv with torch, once) and run every test suite
#   make bench   speed benchmarks (figures go to BENCHMARKS.md)
# Area-specific targets live in mk/*.mk; each adds its suites to TEST_TARGETS.

SHELL      := /bin/bash
GO         ?= go
BUILD      := build
VENV       := .venv
PY         := $(VENV)/bin/python
PYTEST     := $(VENV)/bin/pytest
GO_SOURCES := $(shell find core capi cmd -name '*.go' -not -name '*_test.go' 2>/dev/null) go.mod go.sum

TEST_TARGETS  :=
BENCH_TARGETS :=
DEMO_TARGETS  :=

.PHONY: all lib cli venv test test-go demo bench fuzz golden clean install
all: lib cli

lib: $(BUILD)/libmonoquant.so
$(BUILD)/libmonoquant.so: $(GO_SOURCES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -o $@ ./capi
	@rm -f $(BUILD)/libmonoquant.h   # the cgo header is not the public one: include/monoquant.h is

cli: $(BUILD)/monoquant
$(BUILD)/monoquant: $(GO_SOURCES)
	@mkdir -p $(BUILD)
	$(GO) build -o $@ ./cmd/monoquant

# The project virtualenv: torch (CPU use of PyPI's build) and the test-only packages. Made once;
# later runs reuse it. The runtime Python package itself depends on torch alone.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

# Every Go package once, under the race detector (make test-quant, test-model, ... run one area).
test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	# Resident-memory bounds, without the race detector's shadow memory.
	$(GO) test -count=1 -run ResidentMemory ./core/...
	# Go callers import core on other systems too: keep it (and the CLI) building for macOS.
	GOOS=darwin GOARCH=arm64 $(GO) build ./core/... ./cmd/...

TEST_TARGETS += test-go

-include mk/*.mk

# Tests record their runs in build/, never in the user's own run log (docs/RUNLOG.md).
test: export MONOQUANT_HOME := $(CURDIR)/$(BUILD)/test-home
test: venv lib cli
	@set -e; for t in $(TEST_TARGETS); do echo "== $$t"; $(MAKE) --no-print-directory $$t; done

demo: lib cli $(DEMO_TARGETS)

bench: venv lib cli $(BENCH_TARGETS)

# Regenerate every golden file from the torch in .venv (they are committed): the vectors under
# testdata/, the C tests' golden.h and the CLI's expected outputs. Review the diff before
# committing.
golden: venv cli
	@set -e; for s in testdata/gen_*.py; do echo "== $$s"; $(PY) $$s; done
	$(MAKE) --no-print-directory golden-c golden-cli

# Installs the library, the header, the CMake package files and monoquant.pc (through CMake),
# and the CLI, under PREFIX (default /usr/local; DESTDIR is honoured).
PREFIX ?= /usr/local
install: lib cli
	cmake -S . -B $(BUILD)/cmake -DMONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so >/dev/null
	cmake --build $(BUILD)/cmake -j2 >/dev/null
	cmake --install $(BUILD)/cmake --prefix $(DESTDIR)$(PREFIX)
	install -D -m 755 $(BUILD)/monoquant $(DESTDIR)$(PREFIX)/bin/monoquant

clean:
	rm -rf $(BUILD)
