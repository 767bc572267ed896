# The run log (core/runlog, `monoquant runs`). Owner: core/runlog/, cmd/monoquant/cmd_runs.go.
#   tests: core/runlog and cmd/monoquant run in test-go and test-cli; the MLflow export is read
#          back by MLflow in test-cli-py (tests/cli/test_runs_mlflow.py)
#   make demo-runlog   five runs of the bundled example into build/demo/runlog (a log of its
#                      own, never the user's), `runs list`, `runs reproduce 3`, then
#                      `monoquant runs compare` of them all (text, and build/demo/compare.html):
#                      the last thing `make demo` prints
#   make bench-runlog  the log's overhead from every entry point in one run: the CLI and
#                      quantize_file on a generated checkpoint (BENCH_RUNLOG_SIZE=1GiB), and
#                      an in-memory monoquant.quantize of the same size, each with the log on
#                      and off, interleaved, BENCH_RUNLOG_REPS=9 repetitions, medians
#                      (bench/runlog/bench_overhead.py)

BENCH_RUNLOG_SIZE  ?= 1GiB
BENCH_RUNLOG_REPS  ?= 9
DEMO_RUNLOG := $(BUILD)/demo/runlog

.PHONY: demo-runlog bench-runlog

# Every quantization is recorded: the runs of an area's tests (make test-python, test-parity, ...)
# go to build/test-home as `make test`'s do, never to the user's own run log.
test-%: export MONOQUANT_HOME := $(CURDIR)/$(BUILD)/test-home

demo-runlog: cli
	@rm -rf $(DEMO_RUNLOG) && mkdir -p $(DEMO_RUNLOG)
	@set -e; export MONOQUANT_HOME=$(CURDIR)/$(DEMO_RUNLOG); m=examples/digits_cnn.pt; \
	for f in "--bits 8" "--bits 8 --scheme asymmetric" "--bits 4 --group-size 32 --group-fallback" "--bits 4" "--bits 16"; do \
		o=$(DEMO_RUNLOG)/digits_cnn.$$(echo $$f | tr -d ' -').safetensors; \
		echo "== monoquant quantize --model $$m $$f --out $$o"; \
		r=$$($(BUILD)/monoquant quantize --model $$m $$f --out $$o --quiet); echo "$$r" | tail -n 1; \
	done; \
	echo; echo "== monoquant runs list"; $(BUILD)/monoquant runs list; \
	echo; echo "== monoquant runs reproduce 3"; $(BUILD)/monoquant runs reproduce 3 --quiet; \
	echo; echo "== monoquant runs compare 1 2 3 4 5 6 --html $(BUILD)/demo/compare.html"; \
	$(BUILD)/monoquant runs compare 1 2 3 4 5 6 --html $(BUILD)/demo/compare.html | sed -n '/^Results:/,$$p'

bench-runlog: cli lib venv
	@mkdir -p $(BUILD)/bench-runlog
	$(GO) build -o $(BUILD)/bench-model ./bench/model
	@test -f $(BUILD)/bench-runlog/model.safetensors || $(BUILD)/bench-model gen -out $(BUILD)/bench-runlog/model.safetensors -size $(BENCH_RUNLOG_SIZE)
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so PYTHONPATH=bindings/python $(PY) bench/runlog/bench_overhead.py \
		$(BUILD)/monoquant $(BUILD)/bench-runlog/model.safetensors $(BENCH_RUNLOG_REPS)

DEMO_TARGETS  += demo-runlog
BENCH_TARGETS += bench-runlog
