# Parley: a thin layer over CMake. `make` builds, `make test` runs the suite.
#
#   make / make build    configure build/ (RelWithDebInfo) if needed, then build
#   make run ARGS=...    install deps, build, run parleyd with data in ./data (127.0.0.1:7700)
#   make test            install deps, build, run every test (ctest, CTEST_JOBS at once)
#   make asan            the same under ASan+UBSan with clang, in build-asan/
#   make fuzz            build the libFuzzer targets in build-fuzz/, run each for FUZZ_SECONDS (30)
#   make fuzz-seeds      regenerate the committed seed corpus in fuzz/corpus/
#   make bench ARGS=...  run parley-bench, every scenario (bench/run-all.sh if present)
#   make cluster         a local cluster: PostgreSQL, 3 nats-servers, 3 nodes, haproxy (scripts/cluster.sh up;
#                        CLUSTER=status|down|clean for the rest)
#   make fmt             clang-format our sources in place
#   make install         build and install under PREFIX (/usr/local), into DESTDIR if set:
#                        parleyd, parleyctl, parley, the systemd unit, a sample /etc/parley/parleyd.conf
#   make clean           remove the build directories
#   make deps            install missing build packages (apt-get); test-deps: and the tests' (+ npm)

NPROC        := $(shell nproc 2>/dev/null || echo 2)
BUILD_TYPE   ?= RelWithDebInfo
# Integration tests each start their own parleyd on a free port, so they can
# run side by side; one per CPU, 2 to 8.
CTEST_JOBS   ?= $(shell n=$(NPROC); [ $$n -lt 2 ] && n=2; [ $$n -gt 8 ] && n=8; echo $$n)
FUZZ_SECONDS ?= 30
FUZZ_JOBS    ?= $(NPROC)
BENCH_SCENARIOS ?= idle pairs drain storm
ARGS         ?=
PREFIX       ?= /usr/local

# The tests' Python modules are Debian's (python3-websockets, paho-mqtt, ...,
# installed by test-deps): a python3 of pyenv or a virtualenv ahead on PATH
# would not see them, so Debian's comes first.
export PATH := /usr/bin:$(PATH)

SAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Configures directory $(1) with CMake arguments $(2) unless it already holds
# a generated build system (a configure that failed half way is redone).
configure = @if [ ! -f $(1)/CMakeCache.txt ] || { [ ! -f $(1)/Makefile ] && [ ! -f $(1)/build.ninja ]; }; then \
	  echo "cmake -S . -B $(1) $(2)"; cmake -S . -B $(1) $(2); fi

# The targets are thin wrappers whose steps must run in order (deps first);
# CMake parallelises the builds themselves.
.NOTPARALLEL:
.PHONY: install all build run test asan fuzz fuzz-build fuzz-seeds bench fmt clean deps test-deps cluster

all: build

deps:
	@scripts/deps.sh

# The tests also need a WebSocket client library, Chromium and playwright-core.
test-deps:
	@scripts/deps.sh --test

build:
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	cmake --build build -j$(NPROC)

# The unit file names the installed paths, so PREFIX is set at configure time.
install:
	$(call configure,build,-DCMAKE_BUILD_TYPE=$(BUILD_TYPE))
	cmake -S . -B build -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build build -j$(NPROC)
	cmake --install build

run: deps build
	mkdir -p data
	build/parleyd --data ./data $(ARGS)

CLUSTER ?= up
cluster: deps build
	scripts/cluster.sh $(CLUSTER)

test: test-deps build
	ctest --test-dir build --output-on-failure -j$(CTEST_JOBS)

asan: test-deps
	$(call configure,build-asan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPL_SANITIZE=ON -DCMAKE_C_COMPILER=clang)
	cmake --build build-asan -j$(NPROC)
	$(SAN_ENV) ctest --test-dir build-asan --output-on-failure -j$(CTEST_JOBS)

# Sanitized throughout (PL_SANITIZE), which also lets the codec library carry
# libFuzzer's coverage hooks (see fuzz/CMakeLists.txt). Only the fuzzers are built.
fuzz-build: deps
	$(call configure,build-fuzz,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DPL_FUZZ=ON -DPL_SANITIZE=ON)
	cmake --build build-fuzz -j$(NPROC) --target fuzzers

# New inputs go to build-fuzz/fuzz-work/, never into the committed fuzz/corpus/.
fuzz: fuzz-build
	$(SAN_ENV) fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS)

fuzz-seeds: fuzz-build
	cmake --build build-fuzz -j$(NPROC) --target make_seeds
	$(SAN_ENV) build-fuzz/fuzz/make_seeds fuzz/corpus

# Every scenario: through bench/run-all.sh (one summary table) when the tree has
# it, else each of BENCH_SCENARIOS in turn. parley-bench starts its own parleyd;
# ARGS go to every run.
bench: deps build
	@if [ ! -x build/parley-bench ]; then \
	  echo "bench: build/parley-bench was not built (is bench/ in the tree yet?); nothing to run"; exit 0; fi; \
	if [ -x bench/run-all.sh ]; then exec bench/run-all.sh $(ARGS); fi; \
	for s in $(BENCH_SCENARIOS); do echo "== parley-bench $$s"; build/parley-bench $$s $(ARGS) || exit 1; done

# Our sources only: generated code lives in build*/gen and is not ours to format.
FMT_DIRS := src include tests fuzz bench
fmt:
	@command -v clang-format >/dev/null || { echo "fmt: clang-format is not installed (apt-get install clang-format)"; exit 1; }
	find $(FMT_DIRS) -name '*.[ch]' -not -path '*/gen/*' -print0 | xargs -0 -r clang-format -i

clean:
	rm -rf build build-asan build-fuzz
