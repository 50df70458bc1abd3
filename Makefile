# Switchboard: build, run, test and benchmark entry points.
#
# Works on a fresh Debian 12 with only the Rust toolchain, as root: every target first installs
# the Debian packages it needs (scripts/ensure-apt.sh is a no-op when they are present).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
BIN   := $(CURDIR)/target/release/switchboard

# Debian packages needed to build and run the server (opus bundles libopus: cmake; speech
# recognition links pocketsphinx and uses its en-us model; TTS runs flite).
RUN_APT  := cmake pkg-config libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us flite
# Debian packages the tests use (real peers and PostgreSQL).
TEST_APT := $(RUN_APT) sip-tester baresip sox libsox-fmt-all opus-tools postgresql python3-venv tshark
# The dashboard's browser test: Debian chromium driven by playwright-core (tests/browser/).
BROWSER_APT := chromium nodejs
# Debian packages the benchmarks use.
BENCH_APT := $(RUN_APT) sip-tester
# The call benchmark also runs Kamailio (reference proxy) and dumpcap (RTP counts, package tshark).
BENCH_CALLS_APT := $(BENCH_APT) kamailio tshark

# Test PostgreSQL (scripts/pg-start.sh): data under target/pg, port 55432.
PG_DATA := $(CURDIR)/target/pg
PG_PORT := 55432
export SWITCHBOARD_TEST_PG := postgres://postgres@127.0.0.1:$(PG_PORT)/switchboard_test
export SWITCHBOARD_REQUIRE_PG := 1
# End-to-end tests run this binary.
export SWITCHBOARD_BIN := $(BIN)
# schemathesis (PyPI, pinned) for the API fuzz test, in a venv under target/.
SCHEMATHESIS_VERSION := 4.32.5
OPENAPI_VALIDATOR_VERSION := 0.9.0
export SWITCHBOARD_SCHEMATHESIS_VENV := $(CURDIR)/target/schemathesis-venv

# Benchmark knobs: `make bench BENCH_RATE=5000 BENCH_SECONDS=5`.
BENCH_RATE    ?= 20000
BENCH_SECONDS ?= 10

.PHONY: help run build test deps-run deps-test deps-schemathesis deps-browser deps-bench pg-start stop-pg bench bench-codec \
        bench-options bench-calls bench-calls-quick fuzz lint clean

help:
	@echo "make run      build (release) and run 'switchboard serve' with embedded defaults"
	@echo "make test     install test peers, start PostgreSQL, build, cargo test --release --workspace"
	@echo "make bench    SIP codec micro-benchmark + SIPp OPTIONS benchmark (BENCH_RATE=$(BENCH_RATE) BENCH_SECONDS=$(BENCH_SECONDS)) + bench-calls"
	@echo "make bench-calls  calls/s and concurrent RTP calls: SIPp, Kamailio, Switchboard (~8 min; bench-calls-quick: ~1.5 min)"
	@echo "make fuzz     60 s of cargo fuzz on the SIP parser"
	@echo "make lint     rustfmt check + clippy -D warnings"
	@echo "make stop-pg  stop the test PostgreSQL;  make clean  stop it and cargo clean"

deps-run:
	@scripts/ensure-apt.sh $(RUN_APT)

deps-test:
	@scripts/ensure-apt.sh $(TEST_APT)

deps-bench:
	@scripts/ensure-apt.sh $(BENCH_APT)

# Chromium and tests/browser/node_modules (npm ci only when the lock file changed).
deps-browser:
	@scripts/ensure-apt.sh $(BROWSER_APT)
	@cd tests/browser && { cmp -s package-lock.json node_modules/.installed-lock.json || \
		{ PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund && \
		  cp package-lock.json node_modules/.installed-lock.json; }; }

build: deps-run
	$(CARGO) build --release --bin switchboard

run: build
	exec $(BIN) serve

deps-schemathesis: deps-test
	@$(SWITCHBOARD_SCHEMATHESIS_VENV)/bin/pip show schemathesis 2>/dev/null | grep -qx 'Version: $(SCHEMATHESIS_VERSION)' \
	  && $(SWITCHBOARD_SCHEMATHESIS_VENV)/bin/pip show openapi-spec-validator 2>/dev/null | grep -qx 'Version: $(OPENAPI_VALIDATOR_VERSION)' \
	  || { python3 -m venv $(SWITCHBOARD_SCHEMATHESIS_VENV) && $(SWITCHBOARD_SCHEMATHESIS_VENV)/bin/pip install -q \
	       schemathesis==$(SCHEMATHESIS_VERSION) openapi-spec-validator==$(OPENAPI_VALIDATOR_VERSION); }

pg-start: deps-test
	@PG_PORT=$(PG_PORT) scripts/pg-start.sh $(PG_DATA) >/dev/null

stop-pg:
	@scripts/pg-stop.sh $(PG_DATA)

# Release profile, so that CI compiles the workspace once for the binary and the tests.
test: deps-test deps-schemathesis deps-browser pg-start
	$(CARGO) build --release --bin switchboard
	$(CARGO) test --release --workspace --no-fail-fast

bench: bench-codec bench-options bench-calls

bench-codec: deps-bench
	$(CARGO) bench -p switchboard-load --bench sip_codec

bench-options: deps-bench
	$(CARGO) build --release --bin switchboard
	$(CARGO) build --release -p switchboard-load --bin bench-options
	$(CURDIR)/target/release/bench-options --rate $(BENCH_RATE) --seconds $(BENCH_SECONDS) \
		--switchboard $(BIN)

# Calls/s (SIPp → SIPp, → Kamailio, → Switchboard) and concurrent calls with RTP; ~8 minutes.
# Reports (target/bench/calls.json); fails only when it cannot set up.
bench-calls:
	@scripts/ensure-apt.sh $(BENCH_CALLS_APT)
	$(CARGO) build --release --bin switchboard
	$(CARGO) build --release -p switchboard-load --bin bench-calls
	$(CURDIR)/target/release/bench-calls --switchboard $(BIN)

# The same in small steps (~1.5 minutes; target/bench/calls-quick.json).
bench-calls-quick:
	@scripts/ensure-apt.sh $(BENCH_CALLS_APT)
	$(CARGO) build --release --bin switchboard
	$(CARGO) build --release -p switchboard-load --bin bench-calls
	$(CURDIR)/target/release/bench-calls --quick --switchboard $(BIN)

# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP lets the stable toolchain provide them.
fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/corpus/parser
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parser fuzz/corpus/parser fuzz/seeds/parser -- -max_total_time=60

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean: stop-pg
	$(CARGO) clean
