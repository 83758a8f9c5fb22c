# openmpos: `make demo` and `make test` do all set-up on a fresh Debian 12 machine (as root).
# SANITIZE=1 builds with ASan+UBSan in build-san/; FUZZ_SECONDS sets the fuzz run per target.

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
ifeq ($(SANITIZE),1)
BUILD ?= build-san
CMAKE_FLAGS += -DMPOS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
export MPOS_TEST_SCALE ?= 10
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
else
BUILD ?= build
CMAKE_FLAGS += -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif
FUZZ_BUILD ?= build-fuzz

.PHONY: all deps build test demo bench fuzz format clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: deps
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

demo: deps
	@$(MAKE) --no-print-directory build
	@scripts/demo $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory build
	$(BUILD)/bench/mpos-bench

fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DMPOS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	scripts/run-fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san $(FUZZ_BUILD)
