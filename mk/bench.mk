# `make bench`: the cost of tracing, measured side by side (docs/bench.md). Not part of `make test`.
# BENCH_FLAGS passes bench/run.py's options, e.g. BENCH_FLAGS="--rounds 5 --concurrency 16", "--quick", or
# "--save-reference" to make a complete run the committed reference (bench/results/latest.json).

.PHONY: bench

bench: install ## Cost of tracing: untraced, traced and a bare floor, alternated; results in bench/results/last-run.json
	@$(PY) -m bench.run $(BENCH_FLAGS)
