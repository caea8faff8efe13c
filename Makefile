# The entry point: `make demo` shows the profiler on live traffic, `make test` runs every
# test. Both install what is missing first (scripts/setup.sh, idempotent).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

PROFILER := target/release/http-profiler
PYTEST := python3 -m pytest

.PHONY: all setup build lint unit integration nix-check vm-test test demo clean help fuzz fuzz-gate audit soak

all: build

help:
	@echo "make demo    run the profiler on demo traffic (DURATION=seconds, default 20)"
	@echo "make test    lint, unit tests, privileged integration tests, VM tests (as root)"
	@echo "make vm-test the appliance on Debian kernels 5.10, 6.1, 6.12 (x86_64) and 6.1 (arm64) under QEMU"
	@echo "make build   build the profiler and its probes (target/release/http-profiler)"
	@echo "make nix-check  check the Nix flake's files (parse, format, lint, flake.lock)"
	@echo "make bench   benchmark against no profiler and tcpdump (as root, ~50 min)"
	@echo "make setup   install what the build and the tests need (Debian/Ubuntu, as root)"
	@echo "make fuzz    run each fuzz target for FUZZ_SECONDS (default 60)"
	@echo "make audit   check every Cargo.lock against the advisory database snapshot"
	@echo "make soak    10-minute soak: memory cap and no fd leak under load (SOAK_SECONDS)"

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --release --locked

# The fuzz crate and the Nix format checker are workspaces of their own: checked too.
NIX_FMT_CHECK := scripts/nix-fmt-check
lint: setup
	cargo fmt --all --check
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	@# cargo fuzz build has no --locked: a fuzz/Cargo.lock left behind a new dependency
	@# would be rewritten in the build and skipped by make audit.
	cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
	cargo fmt --manifest-path $(NIX_FMT_CHECK)/Cargo.toml --check
	cargo clippy --all-targets --locked -- -D warnings
	cargo clippy --manifest-path $(NIX_FMT_CHECK)/Cargo.toml --target-dir $(NIX_FMT_CHECK)/target \
		--all-targets --locked -- -D warnings

unit: setup
	cargo test --locked

# Loads probes into the running kernel: needs root, and fails (never skips) without it.
# The suite runs as the kernel allows (data syscalls hooked at exit only, from Linux 5.15);
# the tests of capture, syscalls and completeness run again with the enter hooks that
# kernels before 5.15 get, which the 5.10 guest of the VM test also runs.
integration: build
	$(PYTEST) -v tests/integration
	HTTP_PROFILER_ASSUME_NO_USER_REGS=1 $(PYTEST) -v tests/integration/test_capture.py \
		tests/integration/test_syscalls.py tests/integration/test_completeness.py

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

test: lint unit nix-check audit fuzz fuzz-gate integration vm-test

# Fuzzing: each target of fuzz/ for FUZZ_SECONDS on the committed corpus (copied, so the
# tree stays as it is); any panic, hang (-timeout) or memory blow-up (-rss_limit_mb)
# fails, by libFuzzer's exit status or by the input it saves, and so does a run that
# executed nothing. The crate is built without the probes (AYA_BUILD_SKIP) and without a
# sanitizer: the code under test is safe Rust, and debug assertions catch overflow.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := pipeline parser known_fields
FUZZ_BIN := fuzz/target/x86_64-unknown-linux-gnu/release
fuzz: setup
	AYA_BUILD_SKIP=1 cargo +nightly fuzz build --fuzz-dir fuzz -s none
	@for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d) && cp fuzz/corpus/$$t/* $$work/ && \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s" && \
		$(FUZZ_BIN)/$$t $$work -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
			-max_len=4096 -print_final_stats=1 -artifact_prefix=$$work/ 2>$$work/log; \
		rc=$$?; grep -E "^stat::number_of_executed_units|^Done" $$work/log; \
		found=$$(cd $$work && ls | grep -E '^(crash|leak|timeout|oom)-'); \
		if [ $$rc -ne 0 ] || [ -n "$$found" ]; then tail -n 60 $$work/log; \
			echo "fuzz: $$t failed (exit status $$rc; $${found:-no input saved}), in $$work"; exit 1; fi; \
		if ! grep -qE '^Done [1-9][0-9]* runs' $$work/log; then tail -n 20 $$work/log; \
			echo "fuzz: $$t ran no input"; exit 1; fi; \
		rm -rf $$work; \
	done

# make fuzz itself fails on a saved failing input and on a run of no input (stand-in targets).
fuzz-gate: setup
	bash tests/fuzz/test-fuzz-gate.sh

# The long soak: the profiler under sustained demo traffic for 10 minutes, memory under
# SOAK_RSS_MB (default 128) and no descriptor leak (make test runs it for 60 s).
soak: build
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(PYTEST) -v -s tests/integration/test_bounds.py -k soak

# Known vulnerabilities in every lock file, against the advisory database snapshot in
# audit/advisory-db (scripts cannot reach GitHub; see audit/README.md to refresh it).
# First a lock file with a known advisory must fail, so a pass means something.
AUDIT := cargo audit --db audit/advisory-db --no-fetch --stale
audit: setup
	@if $(AUDIT) --file audit/vulnerable.Cargo.lock >/dev/null 2>&1; then \
		echo "audit: the known-vulnerable lock file passed: the advisory database is not being read"; exit 1; fi
	$(AUDIT) --file Cargo.lock
	$(AUDIT) --file fuzz/Cargo.lock

DURATION ?= 20
export DURATION

demo: build
	@bash scripts/demo.sh

clean:
	cargo clean

# Benchmark (bench/): the profiler against no profiler and tcpdump, on nginx and
# demo-server; writes bench/results/ and the README's table. Loads probes: as root.
# BENCH_RUNS, BENCH_SECONDS, BENCH_RATES, BENCH_SOAK_SECONDS, BENCH_SOAK_RUNS,
# BENCH_IDLE_SECONDS, BENCH_CONNS adjust it (see bench/run.py); the defaults take about
# 50 minutes (six modes, with full-before and other-port: 52).
.PHONY: bench
bench: build
	@bash bench/setup.sh
	/usr/bin/python3 bench/run.py
