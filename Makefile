# pmprof — out-of-process profiler for native Linux programs.
# `make` builds build/pmprof; `make test`, `make demo`, `make bench`, `make install PREFIX=...`,
# `make sanitize`, `make format`. Missing Debian packages are installed first (as root) or the
# exact apt-get command is printed (as non-root).

BUILD    ?= build
PREFIX   ?= /usr/local
CXX      ?= g++
GO       ?= go

DEPS_PACKAGES := g++ make pkg-config libdw-dev libunwind-dev libcli11-dev libfmt-dev catch2 \
                 zlib1g-dev libcpp-httplib-dev libc6-dbg elfutils libiberty-dev python3
# clang, lld, mold and rustc build the toolchain targets (tests/integration/test_toolchains.cpp),
# which perf (linux-perf) checks the cpu shares of. graphviz: `go tool pprof -http` draws with dot;
# tmux drives `pmprof top` in its tests.
TEST_PACKAGES := golang-go golang-github-google-pprof-dev protobuf-compiler valgrind gdb strace \
                 libjemalloc2 chromium clang lld mold rustc linux-perf graphviz tmux

PKGS     := libdw libunwind-generic fmt zlib cpp-httplib
# Only pmprof-serve links libcpp-httplib (and through it OpenSSL); src/cli/main.cpp says why.
HTTP_LIBS := -lcpp-httplib
WARN     := -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wformat=2
ifneq ($(CI),)
WERROR   ?= 1
endif
ifeq ($(WERROR),1)
WARN     += -Werror
endif
OPT      ?= -O2 -g
CXXFLAGS += -std=c++20 $(OPT) $(WARN) -Iinclude -Isrc -MMD -MP
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Only libunwind's remote unwinder (libunwind-x86_64) is used. libunwind.so.8, the local one the
# .pc files add, would interpose _Unwind_RaiseException: every C++ exception (CLI11's --help and
# --version) then unwound through it with one rt_sigprocmask per frame. It is still loaded as
# libunwind-x86_64's dependency, so libgcc_s is made a direct one, which puts it first.
PKG_LIBS   = $(filter-out -lunwind $(HTTP_LIBS),$(shell pkg-config --libs $(PKGS) 2>/dev/null))
# libiberty (static, PIC in Debian): cplus_demangle, for C++ and Rust names (src/symbolize/demangle.cpp).
LDLIBS   += $(PKG_LIBS) -liberty -lpthread -Wl,--push-state,--no-as-needed -lgcc_s -Wl,--pop-state

SRCS       := $(sort $(wildcard src/*/*.cpp))
MAIN_SRCS  := src/cli/main.cpp src/cli/main_serve.cpp
LIB_SRCS   := $(filter-out $(MAIN_SRCS),$(SRCS))
LIB_OBJS   := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o)
# The HTTP server and `serve`'s command line: only in pmprof-serve (and the tests).
SERVE_OBJS := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard src/http/*.cpp) src/cli/serve.cpp)
CORE_OBJS  := $(filter-out $(SERVE_OBJS),$(LIB_OBJS))
TEST_SRCS  := $(sort $(wildcard tests/unit/*/*.cpp tests/integration/*.cpp tests/support/*.cpp))
TEST_OBJS  := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o)
TARGETS    := $(basename $(notdir $(wildcard tests/targets/*.cpp)))
TARGET_BINS := $(foreach t,$(TARGETS),$(BUILD)/targets/$(t)-fp $(BUILD)/targets/$(t)-nofp)
EXAMPLES   := $(basename $(notdir $(wildcard examples/*.cpp)))
EXAMPLE_BINS := $(EXAMPLES:%=$(BUILD)/examples/%)
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test-deps test unit integration demo bench install sanitize format clean \
        check-layers
all: $(BUILD)/pmprof $(BUILD)/pmprof-serve

# ---- dependencies -------------------------------------------------------------------------
# Installs what is missing: as root with apt-get (updating the package lists first when they are
# empty), otherwise it prints the exact command and fails.
define ensure_packages
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	  grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "pmprof: installing" $$missing; \
	    if ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; then apt-get update -q; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || \
	      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	  else \
	    echo "pmprof: missing packages; run: sudo apt-get install -y $$missing" >&2; exit 1; \
	  fi; \
	fi
endef
deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	$(call ensure_packages,$(DEPS_PACKAGES))
	@mkdir -p $(BUILD) && touch $@
test-deps: $(BUILD)/.test-deps-ok
$(BUILD)/.test-deps-ok: $(DEPS_STAMP)
	$(call ensure_packages,$(TEST_PACKAGES))
	@touch $@

# ---- the tool -----------------------------------------------------------------------------
$(BUILD)/obj/src/os/syscall_names.o: $(BUILD)/gen/syscall_names.inc
# x86_64 syscall names generated from the kernel headers the machine has.
$(BUILD)/gen/syscall_names.inc: | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	echo '#include <sys/syscall.h>' | $(CXX) -dM -E -x c - | \
	  sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/{\2, "\1"},/p' | sort -n -t'{' -k2 > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(PKG_CFLAGS) -I$(BUILD)/gen -c $< -o $@

$(BUILD)/pmprof: $(BUILD)/obj/src/cli/main.o $(CORE_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)
$(BUILD)/pmprof-serve: $(BUILD)/obj/src/cli/main_serve.o $(LIB_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) $(HTTP_LIBS)

# ---- tests --------------------------------------------------------------------------------
$(BUILD)/pmprof-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(CXX) $(CXXFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS) $(HTTP_LIBS)

# Targets are built twice: with frame pointers and without, both -O2 with inlining and -g.
TARGET_FLAGS := -std=c++20 -O2 -g -pthread
$(BUILD)/targets/%-fp: tests/targets/%.cpp tests/targets/target_support.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(TARGET_FLAGS) -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -o $@ $<
$(BUILD)/targets/%-nofp: tests/targets/%.cpp tests/targets/target_support.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(TARGET_FLAGS) -fomit-frame-pointer -o $@ $<

# The same program from every toolchain the tests check names against (test_toolchains.cpp),
# each with and without frame pointers. g++ + GNU ld is the rule above (toolchain_target-fp,
# -nofp); then clang++ + lld, g++ + mold, and clang++ alone (GNU ld; clang 14 writes DWARF 5 and
# no .debug_aranges, which the test checks with readelf).
TOOLCHAIN_GXX   ?= g++
TOOLCHAIN_CLANG ?= clang++
TC_CXX_clang-lld := $(TOOLCHAIN_CLANG) -fuse-ld=lld
TC_CXX_gcc-mold  := $(TOOLCHAIN_GXX) -fuse-ld=mold
TC_CXX_clang     := $(TOOLCHAIN_CLANG)
TC_FP_fp   := -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
TC_FP_nofp := -fomit-frame-pointer
TOOLCHAIN_BINS := $(foreach v,clang-lld gcc-mold clang,$(foreach f,fp nofp,\
                    $(BUILD)/targets/toolchain_target-$(v)-$(f)))
define toolchain_rule
$(BUILD)/targets/toolchain_target-$(1)-$(2): tests/targets/toolchain_target.cpp \
    tests/targets/target_support.h | $(BUILD)/.test-deps-ok
	@mkdir -p $$(dir $$@)
	$$(TC_CXX_$(1)) $$(TARGET_FLAGS) $$(TC_FP_$(2)) -o $$@ $$<
endef
$(foreach v,clang-lld gcc-mold clang,$(foreach f,fp nofp,$(eval $(call toolchain_rule,$(v),$(f)))))

# The Rust target, with Debian's rustc (1.63; a rustup rustc earlier in PATH is not what CI has):
# legacy symbol mangling (1.63's default), v0 mangling, and legacy linked by lld (the default
# linker of newer Rust), each with and without frame pointers.
RUSTC      ?= /usr/bin/rustc
RUST_FLAGS := -O -g --edition 2021 --crate-name rust_target
RUST_MANGLE_legacy :=
RUST_MANGLE_v0     := -C symbol-mangling-version=v0
RUST_MANGLE_lld    := -C link-arg=-fuse-ld=lld
RUST_FP_fp   := -C force-frame-pointers=yes
RUST_FP_nofp :=
RUST_BINS := $(foreach v,legacy v0 lld,$(foreach f,fp nofp,$(BUILD)/targets/rust_target-$(v)-$(f)))
define rust_rule
$(BUILD)/targets/rust_target-$(1)-$(2): tests/targets/rust_target.rs | $(BUILD)/.test-deps-ok
	@mkdir -p $$(dir $$@)
	$$(RUSTC) $$(RUST_FLAGS) $$(RUST_MANGLE_$(1)) $$(RUST_FP_$(2)) -o $$@ $$<
endef
$(foreach v,legacy v0 lld,$(foreach f,fp nofp,$(eval $(call rust_rule,$(v),$(f)))))

$(BUILD)/examples/%: examples/%.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 -O2 -g -pthread -o $@ $<

# A small Go checker over github.com/google/pprof/profile (Debian's GOPATH, no network).
$(BUILD)/pprofcheck: tests/tools/pprofcheck/main.go $(BUILD)/.test-deps-ok
	@mkdir -p $(BUILD)/gocache
	cd tests/tools/pprofcheck && GO111MODULE=off GOPATH=/usr/share/gocode \
	  GOCACHE=$(abspath $(BUILD))/gocache $(GO) build -o $(abspath $@) .

# Runs a command under a seccomp filter denying the named system calls (the fallback tests).
$(BUILD)/seccomp_exec: tests/tools/seccomp_exec.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 -O2 -Wall -Wextra -o $@ $<

TEST_BINS := $(BUILD)/pmprof $(BUILD)/pmprof-serve $(BUILD)/pmprof-tests $(TARGET_BINS) \
             $(TOOLCHAIN_BINS) $(RUST_BINS) $(EXAMPLE_BINS) $(BUILD)/pprofcheck \
             $(BUILD)/seccomp_exec
test: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory -j$(shell nproc) $(TEST_BINS)
	PMPROF_CACHE_DIR=$(abspath $(BUILD))/cache PMPROF_BUILD=$(abspath $(BUILD)) $(BUILD)/pmprof-tests $(TEST_ARGS)
unit: $(BUILD)/pmprof-tests
	$(BUILD)/pmprof-tests '[unit]'
integration: $(BUILD)/.test-deps-ok
	@$(MAKE) --no-print-directory -j$(shell nproc) $(TEST_BINS)
	PMPROF_CACHE_DIR=$(abspath $(BUILD))/cache PMPROF_BUILD=$(abspath $(BUILD)) $(BUILD)/pmprof-tests '[integration]'

# ---- demo, bench, install -----------------------------------------------------------------
# The demo also fetches a profile from `pmprof serve` with `go tool pprof` (a test package).
demo: $(BUILD)/.test-deps-ok $(BUILD)/pmprof $(BUILD)/pmprof-serve $(EXAMPLE_BINS)
	@BUILD=$(BUILD) examples/demo.sh

bench: $(BUILD)/.test-deps-ok $(BUILD)/pmprof
	@BUILD=$(BUILD) bench/run.sh

install: $(BUILD)/pmprof $(BUILD)/pmprof-serve
	install -D -m 0755 $(BUILD)/pmprof $(DESTDIR)$(PREFIX)/bin/pmprof
	install -D -m 0755 $(BUILD)/pmprof-serve $(DESTDIR)$(PREFIX)/libexec/pmprof/pmprof-serve
	install -D -m 0644 man/pmprof.1 $(DESTDIR)$(PREFIX)/share/man/man1/pmprof.1

sanitize:
	$(MAKE) BUILD=build-sanitize OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" build-sanitize/pmprof build-sanitize/pmprof-serve \
	  build-sanitize/pmprof-tests

# Every #include against the module -> layer table (src/layers.conf).
check-layers: $(DEPS_STAMP)
	python3 tests/tools/check_layers.py

format:
	clang-format -i $(wildcard src/*.cpp src/*.h include/pmprof/*.h tests/*/*.cpp tests/*/*.h \
	  examples/*.cpp bench/*.cpp)

clean:
	rm -rf $(BUILD) build-sanitize

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(MAIN_SRCS:%.cpp=$(BUILD)/obj/%.d)

# ---- fuzzing (owner: formats) -------------------------------------------------------------
# `make fuzz` builds a libFuzzer harness (clang, ASan + UBSan) for decode_pprof and every writer
# and runs it for FUZZ_SECONDS over tests/corpus/fuzz, where new interesting inputs are kept.
# tests/unit/test_report_corpus.cpp replays that corpus in every `make test` (no clang needed).
FUZZ_SECONDS ?= 300
FUZZ_CXX     ?= clang++
FUZZ_SRCS    := tests/fuzz/fuzz_decode_pprof.cpp src/support/error.cpp src/profile/profile.cpp \
                src/output/protobuf_wire.cpp src/output/pprof.cpp src/output/pprof_decode.cpp \
                src/output/text.cpp src/output/folded.cpp src/output/callgrind.cpp \
                src/output/svg.cpp src/output/svg_script.cpp src/report/render.cpp src/report/diff.cpp \
                src/profile/index.cpp src/report/list.cpp src/symbolize/symbolize.cpp src/symbolize/demangle.cpp \
                src/elf/image.cpp src/support/log.cpp src/support/fd.cpp src/os/procfs.cpp src/support/types.cpp src/ptrace/memory.cpp \
                src/ptrace/peek.cpp
.PHONY: fuzz fuzz-build
fuzz-build: $(BUILD)/fuzz_decode_pprof
$(BUILD)/fuzz_decode_pprof: $(FUZZ_SRCS) $(wildcard src/*/*.h include/pmprof/*/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Iinclude -Isrc $(PKG_CFLAGS) -o $@ $(FUZZ_SRCS) $(PKG_LIBS) -liberty
fuzz: $(BUILD)/fuzz_decode_pprof
	@mkdir -p tests/corpus/fuzz
	$(BUILD)/fuzz_decode_pprof -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	  -rss_limit_mb=4096 -print_final_stats=1 tests/corpus/fuzz

# ---- benchmark packages (owner: bench) ----------------------------------------------------
# `make bench` (bench/run.sh) also needs perf (the comparison and the sched trace that measures
# stop windows) and python3 (the driver and the report). A prerequisite-only rule adds the stamp
# to the `bench` target above.
BENCH_PACKAGES := linux-perf python3
$(BUILD)/.bench-deps-ok: $(BUILD)/.test-deps-ok
	$(call ensure_packages,$(BENCH_PACKAGES))
	@touch $@
bench: $(BUILD)/.bench-deps-ok
