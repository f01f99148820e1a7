# Thin wrapper over meson/ninja. `make` builds ./build/cairn; `make demo` and `make test` first
# install what is missing (scripts/install-deps: apt-get, idempotent).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PY         := /usr/bin/python3

.PHONY: all deps build test unit e2e asan fuzz demo bench format clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized >/dev/null

build: $(BUILD)/build.ninja
	@ninja -C $(BUILD) >/dev/null || ninja -C $(BUILD)

# Every test: unit + e2e, then both again under ASan+UBSan, then each fuzz target briefly.
test: deps
	@scripts/test all

unit: build
	@scripts/test unit

e2e: build
	@scripts/test e2e

asan: deps
	@scripts/test asan

fuzz: deps
	@scripts/test fuzz

demo: deps build
	@scripts/demo

bench: deps build
	@bench/run

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'fuzz/*.c')

clean:
	rm -rf $(BUILD) build-test $(ASAN_BUILD) $(FUZZ_BUILD)
