# The entry point: `make demo` shows the profiler on live traffic, `make test` runs every
# test. Both install what is missing first (scripts/setup.sh, idempotent).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

PROFILER := target/release/http-profiler
PYTEST := python3 -m pytest

.PHONY: all setup build lint unit integration test demo clean help

all: build

help:
	@echo "make demo    run the profiler on demo traffic (DURATION=seconds, default 20)"
	@echo "make test    lint, unit tests, privileged integration tests (as root)"
	@echo "make build   build the profiler and its probes (target/release/http-profiler)"
	@echo "make bench   benchmark against no profiler and tcpdump (as root, ~25 min)"
	@echo "make setup   install what the build and the tests need (Debian/Ubuntu, as root)"

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --release --locked

lint: setup
	cargo fmt --all --check
	cargo clippy --all-targets --locked -- -D warnings

unit: setup
	cargo test --locked

# Loads probes into the running kernel: needs root, and fails (never skips) without it.
integration: build
	$(PYTEST) -v tests/integration

test: lint unit integration

DURATION ?= 20
export DURATION

demo: build
	@bash scripts/demo.sh

clean:
	cargo clean

# Benchmark (bench/): the profiler against no profiler and tcpdump, on nginx and
# demo-server; writes bench/results/ and the README's table. Loads probes: as root.
# BENCH_RUNS, BENCH_SECONDS, BENCH_RATES, BENCH_SOAK_SECONDS, BENCH_CONNS adjust it
# (see bench/run.py); the defaults take about 25 minutes.
.PHONY: bench
bench: build
	@bash bench/setup.sh
	/usr/bin/python3 bench/run.py
