# vio top-level Makefile: set-up, build, test and demo in one command each.
# The real build is Meson/Ninja; this file only strings the steps together.
#
#   make demo    install what is missing, build, run the demo
#   make test    install what is missing, build, run the whole suite
#   make build   the three build trees:
#                  build/release  optimized vio (demo, benchmarks)
#                  build/asan     ASan+UBSan vio and unit tests (tests)
#                  build/fuzz     clang libFuzzer targets
#   make clean   remove build trees (keeps the cached guest kernel)

MESON ?= meson
NINJA ?= ninja

.PHONY: all deps build release asan fuzz guest test unit demo clean format

all: build

deps:
	@scripts/deps.sh

build/release/build.ninja:
	$(MESON) setup build/release --buildtype=debugoptimized -Dtests=false
build/asan/build.ninja:
	$(MESON) setup build/asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
build/fuzz/build.ninja:
	CC=clang $(MESON) setup build/fuzz --buildtype=debugoptimized -Dtests=false -Dfuzz=true \
	    -Db_sanitize=address,undefined -Db_lundef=false

release: deps build/release/build.ninja
	$(NINJA) -C build/release
asan: deps build/asan/build.ninja
	$(NINJA) -C build/asan
fuzz: deps build/fuzz/build.ninja
	$(NINJA) -C build/fuzz
guest: deps
	tests/guest/build.sh

build: release asan fuzz

test: build guest
	python3 tests/run.py

unit: asan
	python3 tests/run.py --stage unit

demo: release guest
	python3 scripts/demo.py

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'fuzz/*.c')

clean:
	rm -rf build/release build/asan build/fuzz build/test-work build/fuzz-work
