# The entry point: `make demo` shows the profiler on live traffic, `make test` runs every
# test. Both install what is missing first (scripts/setup.sh, idempotent).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

PROFILER := target/release/http-profiler
PYTEST := python3 -m pytest

.PHONY: all setup build lint unit integration nix-check vm-test test demo clean help

all: build

help:
	@echo "make demo    run the profiler on demo traffic (DURATION=seconds, default 20)"
	@echo "make test    lint, unit tests, privileged integration tests, VM tests (as root)"
	@echo "make vm-test the appliance on Debian kernels 5.10, 6.1, 6.12 (x86_64) and 6.1 (arm64) under QEMU"
	@echo "make build   build the profiler and its probes (target/release/http-profiler)"
	@echo "make nix-check  check the Nix flake's files (parse, format, lint, flake.lock)"
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

# The Nix flake cannot be evaluated here (no nixpkgs): parse, format, lint and lock checks,
# and a test that each of them fails on a broken copy.
nix-check: setup
	bash scripts/nix-check.sh
	bash tests/nix/test-nix-check.sh

# The appliance (demo-server, http-profiler, traffic-gen) on Debian's 5.10, 6.1 and 6.12
# x86_64 kernels and its 6.1 arm64 kernel under QEMU, its capture checked by
# `http-profiler check` (vm-tests/run.sh); then proof that an empty capture fails that
# test (vm-tests/selftest.sh). Needs root; kernels are cached in vm-tests/.cache.
vm-test: setup
	bash vm-tests/run.sh
	bash vm-tests/selftest.sh

test: lint unit nix-check integration vm-test

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
