# Observers (core/observer) at bit parity with torch: golden replay, race run, benchmarks.
#   make test-observer     go test -race of core/observer (golden vectors from torch, edge cases, examples)
#   make bench-observer    Go benchmarks (HistogramObserver 100×64×4096 etc.), then torch's time for the same workload
#   make golden-observer   regenerate testdata/golden/observer from the torch in .venv

.PHONY: test-observer bench-observer golden-observer
test-observer:
	$(GO) vet ./core/observer/
	$(GO) test -race -count=1 ./core/observer/

bench-observer: venv
	$(GO) test -run '^$$' -bench . -benchtime 5x ./core/observer/ | tee $(BUILD)/bench-observer.txt
	$(PY) testdata/bench_observer_torch.py | tee -a $(BUILD)/bench-observer.txt

golden-observer: venv
	$(PY) testdata/gen_observer_golden.py

# (run by test-go with every other Go package)
BENCH_TARGETS += bench-observer

# HistogramObserver against torch (issue 17): the Go benchmark and its floors, then each library
# alone in a fresh process from Python, then both alternating in one process (bench_python.py's
# histogram part); every step through bench/prio.sh (its own autogroup at nice -20 when
# run as root, so a shared machine's load takes little of the cores). BENCHMARKS.md, issue 17.
.PHONY: bench-histogram
bench-histogram: venv lib
	@uptime
	bench/prio.sh $(GO) test -run '^$$' -bench 'Histogram100|HistogramFloor' -benchtime 20x -count 3 ./core/observer/
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so bench/prio.sh $(PY) $(PY_PKG)/bench/bench_histogram_alone.py mq 15
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so bench/prio.sh $(PY) $(PY_PKG)/bench/bench_histogram_alone.py torch 15
	MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so BENCH_ONLY=histogram BENCH_HIST_REPS=15 bench/prio.sh $(PY) $(PY_PKG)/bench/bench_python.py
	@uptime

BENCH_TARGETS += bench-histogram
