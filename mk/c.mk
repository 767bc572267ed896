# The C ABI: example, C tests (through CMake/ctest), benchmark. Owner: capi/, include/, tests/c/.
#   make example     build/c-example (the C example, built against build/libmonoquant.so)
#   make test-c      configure CMake in build/cmake with the make-built library, build, run ctest
#   make bench-c     INT8 per-channel / INT4 g128 throughput through the C ABI vs torch
#   make golden-c    regenerate tests/c/testdata/golden.h from torch

C_CFLAGS := -std=c99 -O2 -Wall -Wextra -Werror -pedantic -Iinclude
C_LDLIBS := -L$(BUILD) -lmonoquant -Wl,-rpath,'$$ORIGIN' -lm

.PHONY: example run-example test-c bench-c golden-c
example: $(BUILD)/c-example
$(BUILD)/c-example: bindings/c-example/example.c include/monoquant.h $(BUILD)/libmonoquant.so
	$(CC) $(C_CFLAGS) $< -o $@ $(C_LDLIBS)

run-example: $(BUILD)/c-example
	$(BUILD)/c-example

test-c: lib
	cmake -S . -B $(BUILD)/cmake -DMONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so >/dev/null
	cmake --build $(BUILD)/cmake -j2
	ctest --test-dir $(BUILD)/cmake --output-on-failure

$(BUILD)/bench_quantize: bench/c/bench_quantize.c include/monoquant.h $(BUILD)/libmonoquant.so
	$(CC) $(C_CFLAGS) -O3 $< -o $@ $(C_LDLIBS)

bench-c: $(BUILD)/bench_quantize venv
	@echo "== 4096x4096 float32, best of 10 ($$(lscpu | sed -n 's/^Model name: *//p'), $$(nproc) cores)"
	@$(BUILD)/bench_quantize 10 | tee $(BUILD)/bench-c.txt
	@$(PY) bench/torch_per_channel.py 10 | tee -a $(BUILD)/bench-c.txt
	@awk '/engine int8/ {e=$$4; ec=$$9} /torch int8/ {t=$$4; tc=$$9} END {if (e > 0 && ec > 0) printf "int8 per-channel: engine is %.2fx as fast as torch (wall), %.2fx (CPU time)\n", t/e, tc/ec}' $(BUILD)/bench-c.txt

golden-c: venv
	$(PY) tests/c/testdata/gen_golden.py

TEST_TARGETS  += test-c
BENCH_TARGETS += bench-c
DEMO_TARGETS  += run-example
