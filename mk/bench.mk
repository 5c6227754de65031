# `make bench`: the cost of tracing, measured side by side (docs/bench.md). Not part of `make test`.
# BENCH_FLAGS passes bench/run.py's options, e.g. BENCH_FLAGS="--rounds 5 --concurrency 16" or "--quick".

.PHONY: bench

bench: install ## Cost of tracing: untraced / traced / bare chain, A/B/A/B; table + bench/results/latest.json
	@$(PY) -m bench.run $(BENCH_FLAGS)
