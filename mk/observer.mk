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
