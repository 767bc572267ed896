# The recipe search (issue #16). Owner: core/search, capi/search.go, bindings/python/monoquant/search.py.
#   make bench-search   the measured goals: bits/weight within 0.3 points in 40 trials, hypervolume
#                       vs random search and optuna's NSGAIISampler (5 seeds), Dask 2 workers vs 1
# Its tests run in test-go (core/search), test-c (tests/c/test_search.c) and test-python
# (bindings/python/tests/test_search.py).

.PHONY: bench-search
bench-search: venv lib
	cd bench/search && MONOQUANT_LIBRARY=$(CURDIR)/$(BUILD)/libmonoquant.so ../../$(PY) bench_search.py

BENCH_TARGETS += bench-search
