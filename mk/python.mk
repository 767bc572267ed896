# The Python package (bindings/python). Owner: bindings/python/**.
#   make test-python    pytest suite against build/libmonoquant.so (includes the wheel install test)
#   make wheel          build/dist/monoquant-<v>-py3-none-<platform>.whl carrying libmonoquant.so
#   make bench-python   quantize() vs torch quantize_dynamic, HistogramObserver vs torch's; run-time
#                       speed and resident memory of quantized models (bench/bench_kernels.py),
#                       Conv2d/LSTM kernels and the memory goals of issue #13 (bench/bench_conv_lstm.py)
#   make bench-load     peak RSS of monoquant.load into a meta skeleton / factory vs the file size
#                       (bench/bench_load.py; needs transformers, a test-only package)

PY_PKG      := bindings/python
PY_SOURCES  := $(shell find $(PY_PKG)/monoquant -name '*.py' 2>/dev/null) $(PY_PKG)/pyproject.toml $(PY_PKG)/setup.py
WHEEL_STAGE := $(BUILD)/wheel-src
WHEEL_DIR   := $(BUILD)/dist

.PHONY: test-python wheel bench-python bench-load
TEST_TARGETS  += test-python
BENCH_TARGETS += bench-python bench-load

test-python: venv lib wheel
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so MONOQUANT_WHEEL_DIR=$(CURDIR)/$(WHEEL_DIR) \
		$(PYTEST) -q $(PY_PKG)/tests

# The wheel is built from a staging copy so the .so never lands in the source tree; pip runs
# offline with the venv's own setuptools (no build isolation, no dependency download).
wheel: $(BUILD)/libmonoquant.so $(PY_SOURCES) venv
	rm -rf $(WHEEL_STAGE) && mkdir -p $(WHEEL_STAGE) $(WHEEL_DIR)
	cp -r $(PY_PKG)/pyproject.toml $(PY_PKG)/setup.py $(PY_PKG)/README.md $(PY_PKG)/monoquant $(WHEEL_STAGE)/
	find $(WHEEL_STAGE) -name __pycache__ -prune -exec rm -rf {} +
	cp $(BUILD)/libmonoquant.so $(WHEEL_STAGE)/monoquant/
	rm -f $(WHEEL_DIR)/monoquant-*.whl
	$(PY) -m pip wheel -q --no-deps --no-build-isolation --no-index -w $(WHEEL_DIR) $(WHEEL_STAGE)
	@ls $(WHEEL_DIR)/monoquant-*.whl

bench-python: venv lib
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so $(PY) $(PY_PKG)/bench/bench_python.py
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so $(PY) $(PY_PKG)/bench/bench_kernels.py
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so $(PY) $(PY_PKG)/bench/bench_zero_copy.py
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so $(PY) $(PY_PKG)/bench/bench_conv_lstm.py

# LLM.int8() outliers at run time: a 4096×4096 Linear, INT8 dynamic vs the outlier modes
# (BENCHMARKS.md, "LLM.int8() outliers"). BENCH_REPS=20, BENCH_THREADS=0 (torch's default).
.PHONY: bench-outliers
bench-outliers: venv lib
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so PYTHONPATH=$(CURDIR)/bindings/python $(PY) bench/outliers/bench_outliers.py --reps $(or $(BENCH_REPS),20) --threads $(or $(BENCH_THREADS),0)

BENCH_TARGETS += bench-outliers

bench-load: venv lib
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so PYTHONPATH=$(CURDIR)/$(PY_PKG) $(PY) $(PY_PKG)/bench/bench_load.py
